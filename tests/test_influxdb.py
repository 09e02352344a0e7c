"""The foundation: a real influxd starts, is onboarded, and stores what we write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from iot_center.local_influxdb import DEVICES_BUCKET, TELEMETRY_BUCKET, LocalInfluxDB

pytestmark = pytest.mark.integration


def test_write_points_and_read_them_back_with_flux(influx: LocalInfluxDB, buckets) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    temps = [20.5, 21.25, 19.75]
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        write.write(
            bucket=buckets.telemetry,
            record=[
                Point("environment")
                .tag("clientId", "dev-1")
                .field("Temperature", t)
                .time(base + timedelta(seconds=i), WritePrecision.S)
                for i, t in enumerate(temps)
            ],
        )
        tables = client.query_api().query(
            """from(bucket: p_bucket)
                 |> range(start: p_start)
                 |> filter(fn: (r) => r._measurement == "environment" and r.clientId == p_id)""",
            params={
                "p_bucket": buckets.telemetry,
                "p_start": base - timedelta(hours=1),
                "p_id": "dev-1",
            },
        )
    rows = [(r.get_time(), r.get_value()) for t in tables for r in t.records]
    assert rows == [(base + timedelta(seconds=i), t) for i, t in enumerate(temps)]


def test_onboarding_created_org_and_both_buckets_with_retention(influx: LocalInfluxDB) -> None:
    headers = {"Authorization": f"Token {influx.token}"}
    found = requests.get(
        f"{influx.url}/api/v2/buckets?orgID={influx.org_id}", headers=headers, timeout=10
    )
    by_name = {b["name"]: b for b in found.json()["buckets"]}
    assert by_name[TELEMETRY_BUCKET]["retentionRules"][0]["everySeconds"] == 30 * 86400
    # No expiry rule (or one of 0 s) means the device records are kept forever.
    assert all(r["everySeconds"] == 0 for r in by_name[DEVICES_BUCKET]["retentionRules"])


def test_two_instances_run_side_by_side(influx: LocalInfluxDB) -> None:
    with LocalInfluxDB.start(binary=influx.binary) as second:
        assert second.port != influx.port
        assert second.data_dir != influx.data_dir
        assert requests.get(f"{second.url}/health", timeout=5).json()["status"] == "pass"
        assert requests.get(f"{influx.url}/health", timeout=5).json()["status"] == "pass"
    assert second.process is None
    assert not second.data_dir.exists()
