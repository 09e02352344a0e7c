"""Load: concurrent clients on the device endpoint and the dashboard data endpoint while
agents write, against the real server (`iot-center run`) and influxd. Zero errors; p50/p99
reported. Default: ~10 s, 40 clients, 20 writers. IOT_SOAK=1: 60 s, 200 clients, 100 writers.

The writers are the agent's own Buffer + Writer (durable SQLite buffer, retry policy) with
their own device tokens, as threads of one process: 100 full `iot-agent run` processes
(~40 MB and a Python interpreter each) do not fit next to influxd and the server on 2 cores.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pytest
import requests

from agent.buffer import Buffer
from agent.contract import DeviceConfig
from agent.loop import reading_point
from agent.sensors.reading import Reading
from agent.writer import Target, Writer
from tests.conftest import CenterServer
from tests.reliability.helpers import SOAK, count_readings, report

pytestmark = pytest.mark.integration

DURATION = 60 if SOAK else 10
CLIENTS = 200 if SOAK else 40
WRITERS = 100 if SOAK else 20


def test_load_device_and_dashboard_endpoints_with_agents_writing(
    center: CenterServer, tmp_path: Path
) -> None:
    configs = [center.register(f"load-{i:03d}") for i in range(WRITERS)]
    stop = threading.Event()
    errors: list[str] = []
    latencies: dict[str, list[float]] = {"device": [], "dashboard": []}
    lock = threading.Lock()

    # --- writers ---
    buffers: list[tuple[str, Buffer, Writer]] = []
    for cfg in configs:
        conf = DeviceConfig.from_dict(cfg)
        buf = Buffer(tmp_path / f"{conf.id}.sqlite")
        target = Target.from_config(conf)
        w = Writer(
            buf,
            lambda t=target: t,
            batch_size=500,
            flush_interval=0.5,
            retry_initial=0.2,
            retry_max=2,
        )
        w.start()
        buffers.append((conf.id, buf, w))

    def produce() -> None:
        n = 0
        while not stop.is_set():
            t0 = time.monotonic()
            for dev_id, buf, w in buffers:
                conf = DeviceConfig.from_dict(configs[0] | {"id": dev_id})
                p = reading_point(
                    dev_id, Reading(20 + n % 5, 40.0, 1000.0), "virtual", conf, time.time_ns()
                )
                buf.append(p.encode(), counter="readings")
                w.notify_data()
            n += 1
            stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))

    # --- clients ---
    def client(i: int) -> None:
        s = requests.Session()
        cfg = configs[i % WRITERS]
        device = (
            f"{center.url}/api/env/{cfg['id']}",
            {"Authorization": f"Token {cfg['influx_token']}"},
            "device",
        )
        dash = (
            f"{center.url}/api/devices/{cfg['id']}/measurements?start=-5m&window=10s",
            center.admin(),
            "dashboard",
        )
        k = i
        while not stop.is_set():
            url, headers, kind = (device, dash)[k % 2]
            k += 1
            t0 = time.perf_counter()
            try:
                r = s.get(url, headers=headers, timeout=60)
                ok = r.status_code == 200
                what = f"{kind} HTTP {r.status_code}"
            except requests.RequestException as e:
                ok, what = False, f"{kind} {type(e).__name__}"
            dt = time.perf_counter() - t0
            with lock:
                latencies[kind].append(dt)
                if not ok:
                    errors.append(what)

    producer = threading.Thread(target=produce, daemon=True)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    producer.start()
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(DURATION)
    stop.set()
    for t in threads:
        t.join(70)
    elapsed = time.monotonic() - started
    producer.join(5)
    produced = written = 0
    lost = dups = 0
    for dev_id, buf, w in buffers:
        assert w.finish(30), f"{dev_id}: buffer not drained"
        c = buf.counters()
        buf.close()
        got = count_readings(center, dev_id)
        produced += c["readings"]
        written += got.distinct
        lost += max(0, c["readings"] - got.distinct)
        dups += got.duplicates

    def pct(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return round(1000 * xs[min(len(xs) - 1, int(p * len(xs)))], 1) if xs else 0.0

    all_lat = latencies["device"] + latencies["dashboard"]
    report(
        "load",
        seconds=round(elapsed, 1),
        clients=CLIENTS,
        writers=WRITERS,
        requests=len(all_lat),
        rps=round(len(all_lat) / elapsed),
        errors=len(errors),
        p50_ms=pct(all_lat, 0.5),
        p99_ms=pct(all_lat, 0.99),
        device_p99_ms=pct(latencies["device"], 0.99),
        dashboard_p99_ms=pct(latencies["dashboard"], 0.99),
        mean_ms=round(1000 * statistics.fmean(all_lat), 1) if all_lat else 0,
        produced=produced,
        in_influxdb=written,
        lost=lost,
        duplicates=dups,
    )
    assert errors == [], errors[:20]
    assert lost == 0 and dups == 0 and produced == written
