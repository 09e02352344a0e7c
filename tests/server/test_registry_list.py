"""The device list a worker may keep (pages at thousands of devices), against a real InfluxDB:
two registries on one InfluxDB stand for two gunicorn workers."""

from __future__ import annotations

import time

from iot_center.influx import Influx
from iot_center.registry import DeviceRegistry
from iot_center.settings import Settings
from tests.conftest import CenterServer


def ids(devices) -> list[str]:
    return [d.device_id for d in devices]


def test_a_kept_list_is_bounded_by_age_and_by_changes_the_caller_knows_of(
    center: CenterServer,
) -> None:
    settings = Settings.load(center.config_path, environ={})
    influx_a, influx_b = Influx(settings), Influx(settings)
    try:
        worker_a, worker_b = DeviceRegistry(influx_a), DeviceRegistry(influx_b)
        worker_a.register("list-1")
        assert ids(worker_b.list(max_age=60)) == ["list-1"]  # read, and kept
        worker_a.register("list-2")
        changed = time.time()
        # Another worker's change: b's copy is still within its age ...
        assert ids(worker_b.list(max_age=60)) == ["list-1"]
        # ... unless the caller knows of a change after b read it (the session stamp) ...
        assert ids(worker_b.list(max_age=60, changed_since=changed)) == ["list-1", "list-2"]
        time.sleep(1.1)
        worker_a.register("list-3")
        assert ids(worker_b.list(max_age=60)) == ["list-1", "list-2"]
        # ... or it is older than allowed, or the caller wants it fresh.
        assert ids(worker_b.list(max_age=1)) == ["list-1", "list-2", "list-3"]
        worker_a.remove("list-3")
        assert ids(worker_b.list()) == ["list-1", "list-2"]
        # The worker's own change drops its copy at once.
        assert ids(worker_b.list(max_age=60)) == ["list-1", "list-2"]
        worker_b.remove("list-1")
        assert ids(worker_b.list(max_age=60)) == ["list-2"]
    finally:
        influx_a.close()
        influx_b.close()


def test_one_devices_last_seen_reads_only_that_device(center: CenterServer) -> None:
    settings = Settings.load(center.config_path, environ={})
    influx = Influx(settings)
    try:
        registry = DeviceRegistry(influx)
        for name in ("seen-1", "seen-2"):
            registry.register(name)
        now = time.time_ns()
        lines = "\n".join(
            f"environment,clientId=seen-{i} Temperature=2{i}.5 {now - i * 10**9}" for i in (1, 2)
        )
        influx.write_api.write(bucket=settings.INFLUX_BUCKET, record=lines)
        one = registry.last_seen(device_id="seen-2")
        assert list(one) == ["seen-2"]
        assert one["seen-2"] == registry.last_seen()["seen-2"]
        assert abs(one["seen-2"].timestamp() - (now / 1e9 - 2)) < 0.01
        assert registry.last_seen(device_id="nobody") == {}
    finally:
        influx.close()
