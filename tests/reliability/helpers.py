"""Tools for the reliability suite: a fault-injecting HTTP proxy in front
of the real influxd, and counting what actually reached InfluxDB.

Nothing here imitates InfluxDB: the proxy forwards every request it does not sabotage to the
real `influxd` and passes its real answer back.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.conftest import CenterServer, flux_rows

REPO = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("IOT_SOAK", "") not in ("", "0", "false", "no")


def report(fault: str, **figures: object) -> str:
    """One line per fault, printed (visible with -s or in the captured output) and kept for
    the summary at the end of the session (see conftest's terminal summary hook)."""
    line = f"RELIABILITY {fault}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    print(line, flush=True)
    REPORT_LINES.append(line)
    return line


REPORT_LINES: list[str] = []


# --- counting in InfluxDB ---------------------------------------------------------------------


@dataclass
class Count:
    rows: int  # Temperature values stored for the device, over all its series
    distinct: int  # distinct timestamps among them
    series: int

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct


def count_readings(center: CenterServer, device_id: str) -> Count:
    rows = flux_rows(
        center.influx,
        """from(bucket: p_bucket) |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "environment" and r._field == "Temperature"
                       and r.clientId == p_id)
  |> keep(columns: ["_time", "_value", "clientId", "device", "TemperatureSensor"])""",
        {"p_bucket": center.buckets.telemetry, "p_id": device_id},
    )
    times = [r["_time"] for r in rows]
    series = {(r.get("device"), r.get("TemperatureSensor")) for r in rows}
    return Count(len(rows), len(set(times)), len(series))


def wait_for_count(center: CenterServer, device_id: str, want: int, timeout: float) -> Count:
    deadline = time.monotonic() + timeout
    c = count_readings(center, device_id)
    while c.distinct < want and time.monotonic() < deadline:
        time.sleep(0.5)
        c = count_readings(center, device_id)
    return c


def measurements_in(center: CenterServer, bucket: str) -> set[str]:
    rows = flux_rows(
        center.influx,
        'import "influxdata/influxdb/schema"\nschema.measurements(bucket: p_b, start: 0)',
        {"p_b": bucket},
    )
    return {r["_value"] for r in rows}


def bucket_names(center: CenterServer) -> set[str]:
    r = requests.get(
        f"{center.influx.url}/api/v2/buckets?limit=100", headers=center.admin(), timeout=10
    )
    r.raise_for_status()
    return {b["name"] for b in r.json()["buckets"]}


def series_keys(center: CenterServer, bucket: str) -> set[tuple]:
    rows = flux_rows(
        center.influx,
        "from(bucket: p_b) |> range(start: 0) |> last()",
        {"p_b": bucket},
    )
    skip = {"_time", "_value", "_start", "_stop", "result", "table"}
    return {tuple(sorted((k, str(v)) for k, v in r.items() if k not in skip)) for r in rows}


def influx_snapshot(center: CenterServer) -> dict[str, object]:
    """Everything an injection could have changed: buckets, measurements, series."""
    return {
        "buckets": bucket_names(center),
        "telemetry": series_keys(center, center.buckets.telemetry),
        "devices": series_keys(center, center.buckets.devices),
        "authorizations": sorted(
            a["description"]
            for a in requests.get(
                f"{center.influx.url}/api/v2/authorizations",
                headers=center.admin(),
                timeout=10,
            ).json()["authorizations"]
            if a.get("description", "").startswith("IoT Center:")
        ),
    }


# --- the agent as a real process: tests/agent_process.py ----------------------------------


def buffered_times(path: Path, device_id: str) -> list[int]:
    """Timestamps of the environment points still waiting in a buffer file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        lines = [r[0] for r in conn.execute("SELECT line FROM points").fetchall()]
    finally:
        conn.close()
    return [
        int(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("environment,") and f"clientId={device_id}" in line
    ]


# --- a fault-injecting HTTP proxy in front of a real server ---------------------------------


class FaultProxy:
    """Forwards HTTP to `upstream` (the real influxd or IoT Center) unless told to misbehave.

    Modes:
    - "pass": forward;
    - "status": answer `status` (with `headers`) without forwarding, for the next `count`
      requests (then pass again) — 429/500/503/413 from "InfluxDB";
    - "reset": accept and close the connection at once (network cut mid-connection);
    - "lose_answer": forward, then close the connection without answering (the write landed
      but the agent never hears so, and must re-send without duplicating);
    - "refuse": the listening socket is closed: connect() is refused (cable pulled).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.status = 503
        self.headers: dict[str, str] = {}
        self.count = 0
        self.injected = 0
        self.forwarded = 0
        self.max_body: int | None = None  # answer 413 to larger bodies (a size limit)
        self.too_large = 0
        self.log: list[tuple[float, str, int]] = []  # (time, what happened, body size)
        self._lock = threading.Lock()
        self._session = requests.Session()
        self.port = _free_port()
        self._server: ThreadingHTTPServer | None = None
        self._conns: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self.open()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        if self._server is not None:
            return
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._conns.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._conns.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy._next_action()
                if action == "pass" and proxy.max_body is not None and len(body) > proxy.max_body:
                    action = "too_large"
                proxy.log.append((time.monotonic(), action, len(body)))
                if action == "too_large":
                    with proxy._lock:
                        proxy.too_large += 1
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "status":
                    payload = json.dumps(
                        {"code": "injected", "message": f"fault proxy: {proxy.status}"}
                    ).encode()
                    self.send_response(proxy.status)
                    for k, v in proxy.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                try:
                    resp = proxy._session.request(
                        self.command,
                        proxy.upstream + self.path,
                        data=body,
                        headers=headers,
                        timeout=30,
                    )
                except requests.RequestException:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                with proxy._lock:
                    proxy.forwarded += 1
                if action == "lose_answer":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening (new connections are refused) and cut the open ones."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def _next_action(self) -> str:
        with self._lock:
            if self.mode in ("status", "reset", "lose_answer"):
                if self.count <= 0:
                    self.mode = "pass"
                    return "pass"
                self.count -= 1
                self.injected += 1
                return self.mode
            return "pass"

    def inject(
        self, mode: str, count: int = 1, status: int = 503, headers: dict[str, str] | None = None
    ) -> None:
        with self._lock:
            self.mode, self.count, self.status = mode, count, status
            self.headers = headers or {}

    def pending(self) -> int:
        with self._lock:
            return self.count if self.mode != "pass" else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise TimeoutError(f"timed out waiting for {what}")


def rng(seed_env: str = "IOT_FAULT_SEED") -> random.Random:
    seed = int(os.environ.get(seed_env) or time.time())
    print(f"fault seed {seed} (set {seed_env}={seed} to replay)")
    return random.Random(seed)
