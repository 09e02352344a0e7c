"""`make demo` end to end: InfluxDB, server, provisioned virtual Pi and agent, then a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from influxdb_client import InfluxDBClient

from iot_center.local_influxdb import LocalInfluxDB, free_port

pytestmark = pytest.mark.integration


def live(records: list) -> list:
    return [r for r in records if r.get_time().second or r.get_time().microsecond]


def test_demo_runs_the_whole_system_and_stops_cleanly(
    influx: LocalInfluxDB, tmp_path: Path
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iot_center.demo",
            "--dir",
            str(tmp_path),
            "--port",
            str(port),
            "--history",
            "1h",
            "--interval",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "INFLUXD": influx.binary},
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            if "IoT Center demo is running" in line or time.monotonic() > deadline:
                break
        text = "".join(output)
        assert "IoT Center demo is running" in text, text
        creds = json.loads((tmp_path / "influxdb.json").read_text())
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200

        # The virtual Pi's readings become queryable in InfluxDB.
        found: list = []
        with InfluxDBClient(
            url=f"http://127.0.0.1:{creds['port']}", token=creds["token"], org="iot"
        ) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(live(found)) < 3:
                tables = client.query_api().query(
                    'from(bucket: "iot_center") |> range(start: -2h) '
                    '|> filter(fn: (r) => r._measurement == "environment" '
                    'and r.clientId == "demo-pi" '
                    'and r._field == "Temperature")'
                )
                found = [r for t in tables for r in t.records]
                time.sleep(1)
        # The agent's readings (stamped when read) follow an hour of history (whole minutes).
        assert len(live(found)) >= 3, (tmp_path / "agent.log").read_text()[-3000:]
        assert len(found) - len(live(found)) >= 59
        assert {r.values["device"] for r in found} == {"virtual"}
        # Provisioning removed the enrollment token from the virtual boot partition.
        boot = (tmp_path / "pi-root" / "boot" / "firmware" / "iot-center.ini").read_text()
        assert "enrollment_token" not in boot
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, rest
    for what in ("stopping iot-agent", "stopping iot-center", "stopping InfluxDB"):
        assert what in rest
    assert not any(p.poll() is None for p in [proc])
