"""`iot-center setup` on a fresh and on a prepared InfluxDB; `iot-center simulate`."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from iot_center.local_influxdb import LocalInfluxDB
from tests.conftest import CenterServer, flux_rows

pytestmark = pytest.mark.integration


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iot_center.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_setup_onboards_a_fresh_influxdb_and_is_safe_to_repeat(
    influx: LocalInfluxDB, tmp_path: Path
) -> None:
    fresh = LocalInfluxDB.start(binary=influx.binary, onboard=False)
    try:
        ini = tmp_path / "config.ini"
        ini.write_text(
            "[APP]\n"
            f"INFLUX_URL = {fresh.url}\nINFLUX_TOKEN = setup-test-token-123\nINFLUX_ORG = acme\n"
            "SECRET_KEY = 0123456789abcdef0123\nTELEMETRY_RETENTION_DAYS = 7\n"
        )
        first = run_cli(ini, "setup", "--username", "admin", "--password", "correct-horse")
        assert first.returncode == 0, first.stderr
        assert "onboarded InfluxDB: org acme" in first.stdout
        assert "created bucket iot_center_devices (device records, kept forever)" in first.stdout
        headers = {"Authorization": "Token setup-test-token-123"}
        buckets = requests.get(f"{fresh.url}/api/v2/buckets", headers=headers, timeout=10).json()[
            "buckets"
        ]
        by_name = {b["name"]: b for b in buckets}
        assert by_name["iot_center"]["retentionRules"][0]["everySeconds"] == 7 * 86400
        assert all(r["everySeconds"] == 0 for r in by_name["iot_center_devices"]["retentionRules"])

        second = run_cli(ini, "setup")
        assert second.returncode == 0, second.stderr
        assert "already onboarded" in second.stdout and "nothing to do" in second.stdout
    finally:
        fresh.stop()


def test_setup_without_credentials_on_fresh_influxdb_says_what_is_missing(
    influx: LocalInfluxDB, tmp_path: Path
) -> None:
    fresh = LocalInfluxDB.start(binary=influx.binary, onboard=False)
    try:
        ini = tmp_path / "config.ini"
        ini.write_text(
            f"[APP]\nINFLUX_URL = {fresh.url}\nINFLUX_TOKEN = t-123\nINFLUX_ORG = acme\n"
            "SECRET_KEY = 0123456789abcdef0123\n"
        )
        out = run_cli(ini, "setup")
        assert out.returncode != 0
        assert "--username and --password" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        fresh.stop()


def test_simulate_backfills_realistic_virtual_data(center: CenterServer) -> None:
    out = run_cli(center.config_path, "simulate", "sim-1", "--backfill", "6h", "--interval", "1m")
    assert out.returncode == 0, out.stderr
    assert "registered device sim-1" in out.stderr
    written = int(re.search(r"wrote (\d+) points for sim-1", out.stderr).group(1))
    assert written in (360, 361)  # one point a minute over 6 h, aligned to whole minutes
    assert f"{written}/{written} points 100.0%" in out.stderr
    rows = flux_rows(
        center.influx,
        """from(bucket: p_b) |> range(start: -7h)
             |> filter(fn: (r) => r._measurement == "environment" and r.clientId == "sim-1")""",
        {"p_b": center.buckets.telemetry},
    )
    temps = [r["_value"] for r in rows if r["_field"] == "Temperature"]
    assert len(temps) == written
    assert all(
        r["device"] == "virtual" and r["TemperatureSensor"] == "virtual_bme280" for r in rows
    )
    assert 5 < min(temps) < max(temps) < 40
    # Smooth, not noise: one minute apart the temperature moves by well under a degree.
    steps = [abs(a - b) for a, b in itertools.pairwise(temps)]
    assert max(steps) < 0.5
    # It went through the device's own token, and the device appears as seen.
    devices = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=10).json()[
        "devices"
    ]
    assert devices[0]["deviceId"] == "sim-1" and devices[0]["lastSeen"]


def test_simulate_rejects_bad_arguments(center: CenterServer) -> None:
    out = run_cli(center.config_path, "simulate", "bad id", "--backfill", "1h")
    assert out.returncode == 2 and "device id contains ' '" in out.stderr
    out = run_cli(center.config_path, "simulate", "ok", "--backfill", "forever")
    assert out.returncode == 2 and "--backfill must look like" in out.stderr
