"""A throwaway local InfluxDB 2: start `influxd` on loopback, onboard it, stop it.

Used by the tests, `make demo` and the benchmarks. Each instance gets its own free ports
and data directory, so several can run at once. Only the standard library is used, so it
works before the server's dependencies are installed.

    with LocalInfluxDB.start() as influx:
        print(influx.url, influx.token)
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GET_INFLUXD = REPO_ROOT / "scripts" / "get-influxd.sh"

DEFAULT_ORG = "iot"
DEFAULT_USER = "admin"
TELEMETRY_BUCKET = "iot_center"
DEVICES_BUCKET = "iot_center_devices"
TELEMETRY_RETENTION_S = 30 * 24 * 3600  # finite: telemetry ages out
DEVICES_RETENTION_S = 0  # forever: device records must not expire


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_influxd() -> str:
    """Path of an influxd 2.x binary, built and cached by scripts/get-influxd.sh if needed."""
    out = subprocess.run(
        ["bash", str(GET_INFLUXD)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    return out.splitlines()[-1]


def _request(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http URLs we build)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Token {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (http only)
        raw = resp.read()
    return json.loads(raw) if raw else {}


@dataclass
class LocalInfluxDB:
    """One running, onboarded influxd with its own data directory."""

    binary: str
    data_dir: Path
    port: int
    org: str = DEFAULT_ORG
    user: str = DEFAULT_USER
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    org_id: str = ""
    process: subprocess.Popen | None = None
    owns_data_dir: bool = False
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        data_dir: Path | None = None,
        port: int | None = None,
        binary: str | None = None,
        onboard: bool = True,
        timeout: float = 60.0,
    ) -> LocalInfluxDB:
        owns = data_dir is None
        data_dir = Path(data_dir or tempfile.mkdtemp(prefix="iot-influxd-"))
        inst = cls(
            binary=binary or find_influxd(),
            data_dir=data_dir,
            port=port or free_port(),
            owns_data_dir=owns,
        )
        inst.launch(timeout=timeout)
        if onboard:
            inst.onboard()
        return inst

    def launch(self, timeout: float = 60.0) -> None:
        """Start (or restart) the influxd process on the same port and data directory."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "influxd.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 (handed to the child process)
        args = [
            self.binary,
            f"--http-bind-address=127.0.0.1:{self.port}",
            f"--bolt-path={self.data_dir / 'influxd.bolt'}",
            f"--engine-path={self.data_dir / 'engine'}",
            f"--sqlite-path={self.data_dir / 'influxd.sqlite'}",
            "--reporting-disabled",
            "--log-level=warn",
            "--metrics-disabled=false",
        ]
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"influxd exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                if _request("GET", f"{self.url}/health").get("status") == "pass":
                    return
            except (OSError, urllib.error.URLError, ValueError) as e:
                last_err = e
            time.sleep(0.1)
        raise TimeoutError(
            f"influxd not healthy after {timeout}s ({last_err}); see {self.log_path}"
        )

    def onboard(self) -> None:
        """Run the setup API once: org, admin user, operator token, telemetry bucket."""
        status = _request("GET", f"{self.url}/api/v2/setup")
        if not status.get("allowed", False):
            self.org_id = self._lookup_org_id()
            return
        resp = _request(
            "POST",
            f"{self.url}/api/v2/setup",
            {
                "username": self.user,
                "password": self.password,
                "org": self.org,
                "bucket": TELEMETRY_BUCKET,
                "retentionPeriodSeconds": TELEMETRY_RETENTION_S,
                "token": self.token,
            },
        )
        self.org_id = resp["org"]["id"]
        self.create_bucket(DEVICES_BUCKET, DEVICES_RETENTION_S)

    def _lookup_org_id(self) -> str:
        orgs = _request("GET", f"{self.url}/api/v2/orgs?org={self.org}", token=self.token)
        return orgs["orgs"][0]["id"]

    def create_bucket(self, name: str, retention_seconds: int = 0) -> str:
        rules = [{"type": "expire", "everySeconds": retention_seconds}] if retention_seconds else []
        resp = _request(
            "POST",
            f"{self.url}/api/v2/buckets",
            {"orgID": self.org_id, "name": name, "retentionRules": rules},
            token=self.token,
        )
        return resp["id"]

    def kill(self) -> None:
        """SIGKILL influxd (fault injection); `launch()` brings it back on the same data."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, remove_data: bool | None = None) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        if remove_data if remove_data is not None else self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalInfluxDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, str]:
        return {
            "url": self.url,
            "org": self.org,
            "user": self.user,
            "password": self.password,
            "token": self.token,
            "bucket": TELEMETRY_BUCKET,
            "devices_bucket": DEVICES_BUCKET,
            "data_dir": str(self.data_dir),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a local, onboarded InfluxDB 2 in the foreground until Ctrl-C."
    )
    parser.add_argument("--data-dir", type=Path, help="keep data here (default: a temp dir)")
    parser.add_argument("--port", type=int, help="HTTP port (default: a free one)")
    parser.add_argument("--json", action="store_true", help="print the credentials as JSON")
    args = parser.parse_args(argv)
    influx = LocalInfluxDB.start(data_dir=args.data_dir, port=args.port)
    info = influx.describe()
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        for k, v in info.items():
            print(f"{k:>15}: {v}")
        print("InfluxDB is running; Ctrl-C stops it.", flush=True)
    try:
        while influx.process and influx.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        influx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
