"""Shared fixtures: one real influxd per test run, isolated buckets per test, a real IoT Center
server process on a real port. Nothing here fakes InfluxDB or HTTP peers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from iot_center.local_influxdb import LocalInfluxDB, free_port

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxDB]:
    """One onboarded influxd for the whole run (binary from $INFLUXD or the build cache).

    Tests that kill it must `launch()` it again before they end (see `restarted`)."""
    data = tmp_path_factory.mktemp("influxd")
    server = LocalInfluxDB.start(data_dir=data, binary=os.environ.get("INFLUXD") or None)
    yield server
    server.stop(remove_data=True)


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass
class Buckets:
    telemetry: str
    devices: str
    telemetry_id: str
    devices_id: str


@pytest.fixture
def buckets(influx: LocalInfluxDB) -> Iterator[Buckets]:
    """A fresh telemetry bucket (30 d) and devices bucket (forever) for this test only."""
    tel, dev = _unique("tel"), _unique("dev")
    b = Buckets(tel, dev, influx.create_bucket(tel, 30 * 86400), influx.create_bucket(dev, 0))
    yield b
    for bucket_id in (b.telemetry_id, b.devices_id):
        with contextlib.suppress(requests.RequestException):  # influxd may be stopped
            requests.delete(
                f"{influx.url}/api/v2/buckets/{bucket_id}",
                headers={"Authorization": f"Token {influx.token}"},
                timeout=10,
            )


@dataclass
class CenterServer:
    """A real IoT Center (`iot-center run`) in its own process, on its own port."""

    influx: LocalInfluxDB
    buckets: Buckets
    workdir: Path
    port: int = field(default_factory=free_port)
    enrollment_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    extra: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_token(self) -> str:
        return self.influx.token

    @property
    def log_path(self) -> Path:
        return self.workdir / "center.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.ini"

    def settings(self) -> dict[str, str]:
        return {
            "INFLUX_URL": self.influx.url,
            "INFLUX_TOKEN": self.influx.token,
            "INFLUX_ORG": self.influx.org,
            "INFLUX_BUCKET": self.buckets.telemetry,
            "INFLUX_BUCKET_AUTH": self.buckets.devices,
            "ENROLLMENT_TOKEN": self.enrollment_token,
            "SECRET_KEY": "test-secret-key-" + "x" * 16,
            "MEASUREMENT_INTERVAL": "1",
            "CONFIGURATION_REFRESH": "5",
            "ADMIN_USER": "",
            **self.extra,
        }

    def write_config(self) -> None:
        lines = ["[APP]"] + [f"{k} = {v}" for k, v in self.settings().items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, wait: bool = True) -> None:
        self.write_config()
        env = {k: v for k, v in os.environ.items() if k not in self.settings()}
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iot_center.cli",
                "--config",
                str(self.config_path),
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )
        log.close()
        if wait:
            self.wait_up()

    def wait_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"iot-center exited: {self.log_path.read_text()[-2000:]}")
            try:
                requests.get(f"{self.url}/health", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError(f"iot-center not answering: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- helpers for tests ---------------------------------------------------------------

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.admin_token}"}

    def register(self, device_id: str) -> dict:
        """Register through the API with the enrollment token; the answer holds the token."""
        r = requests.post(
            f"{self.url}/api/devices",
            json={"deviceId": device_id},
            headers={"Authorization": f"Token {self.enrollment_token}"},
            timeout=15,
        )
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture
def center(influx: LocalInfluxDB, buckets: Buckets, tmp_path: Path) -> Iterator[CenterServer]:
    """A running IoT Center on fresh buckets. `center.extra` + restart changes its settings."""
    server = CenterServer(influx=influx, buckets=buckets, workdir=tmp_path)
    server.start()
    yield server
    server.stop()
    print(f"--- iot-center log ({server.log_path}) ---\n{server.log()[-6000:]}")  # shown on failure


@pytest.fixture
def restarted(influx: LocalInfluxDB) -> Iterator[LocalInfluxDB]:
    """The shared influxd, guaranteed running again after a test that kills or stops it."""
    yield influx
    if influx.process is None or influx.process.poll() is not None:
        influx.launch()


def flux_rows(influx: LocalInfluxDB, query: str, params: dict | None = None) -> list[dict]:
    """Run Flux with the operator token and return rows as dicts (via influxdb-client)."""
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        tables = client.query_api().query(query, params=params or {})
        return [rec.values for t in tables for rec in t.records]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Anything that needs the real influxd is an integration test, marked or not."""
    for item in items:
        if "influx" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config: pytest.Config) -> str:
    return f"influxd: {os.environ.get('INFLUXD', '(found by scripts/get-influxd.sh)')}"


__all__ = ["Buckets", "CenterServer", "flux_rows", "json"]
