"""What the benchmarks share: the run context, figure output, a real influxd, a real IoT Center
under gunicorn with registered devices, line protocol as the agent writes it, /proc readers and
the out-of-process load generator."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from agent import contract
from agent.lineprotocol import Point, device_tags
from agent.sensors import SensorTags
from agent.sensors.virtual import VirtualWeather
from iot_center.local_influxdb import LocalInfluxDB, free_port

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


# --- run context and output -------------------------------------------------------------


@dataclass
class Figure:
    bench: str
    name: str
    metrics: dict[str, Any]


@dataclass
class Ctx:
    quick: bool = False
    full: bool = False
    keep: bool = False
    root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="iot-bench-", dir="/var/tmp"))
    )
    figures: list[Figure] = field(default_factory=list)
    summary: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    _influx: LocalInfluxDB | None = None
    _worlds: dict[str, World] = field(default_factory=dict)

    def pick(self, quick: Any, default: Any, full: Any = None) -> Any:
        if self.quick:
            return quick
        if self.full and full is not None:
            return full
        return default

    @property
    def influx(self) -> LocalInfluxDB:
        if self._influx is None:
            log("starting influxd")
            self._influx = LocalInfluxDB.start(
                data_dir=self.root / "influxd", binary=os.environ.get("INFLUXD") or None
            )
        return self._influx

    def world(self, name: str = "main") -> World:
        if name not in self._worlds:
            self._worlds[name] = World(self, name)
        return self._worlds[name]

    def close(self) -> None:
        for w in self._worlds.values():
            w.close()
        if self._influx is not None:
            self._influx.stop(remove_data=False)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def emit(self, bench: str, name: str, **metrics: Any) -> None:
        self.figures.append(Figure(bench, name, metrics))

    def target(self, what: str, measured: str, target: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "MISSED")
        self.summary.append(("", what, measured, target, verdict))

    def print_figures(self, bench: str) -> None:
        for f in self.figures:
            if f.bench == bench:
                parts = " ".join(f"{k}={fmt(v)}" for k, v in f.metrics.items())
                print(f"BENCH {f.name} {parts}", flush=True)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1000:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) >= 0.1:
            return f"{v:.3f}"
        return f"{v:.4g}"
    return str(v)


def log(msg: str) -> None:
    print(f"  · {msg}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --- line protocol as the agent writes it ----------------------------------------------


def reading_line(
    device_id: str, t_s: float, weather: VirtualWeather, lat=50.0872, lon=14.4211
) -> str:
    """One `environment` line exactly as agent.loop.reading_point encodes it."""
    r = weather.at(t_s)
    return Point(
        contract.MEASUREMENT,
        {
            contract.FIELD_TEMPERATURE: float(r.temperature),
            contract.FIELD_HUMIDITY: float(r.humidity),
            contract.FIELD_PRESSURE: float(r.pressure),
            contract.FIELD_LAT: float(lat),
            contract.FIELD_LON: float(lon),
        },
        int(t_s * 1e9),
        device_tags(device_id, **SensorTags.for_kind("virtual").as_tags()),
    ).encode()


def reading_lines(device_id: str, start_s: float, count: int, interval: float) -> Iterator[str]:
    """`count` readings from start_s every `interval` s (the agent's encoding, sped up by
    encoding the tag set once: checked against the full encoder on the first line)."""
    weather = VirtualWeather(device_id)
    first = reading_line(device_id, start_s, weather)
    prefix = first.split(" ", 1)[0]
    fields = (
        contract.FIELD_TEMPERATURE,
        contract.FIELD_HUMIDITY,
        contract.FIELD_PRESSURE,
        contract.FIELD_LAT,
        contract.FIELD_LON,
    )
    lat, lon = 50.0872, 14.4211
    for i in range(count):
        t = start_s + i * interval
        r = weather.at(t)
        line = (
            f"{prefix} {fields[0]}={float(r.temperature)!r},{fields[1]}={float(r.humidity)!r},"
            f"{fields[2]}={float(r.pressure)!r},{fields[3]}={lat!r},{fields[4]}={lon!r} "
            f"{int(t * 1e9)}"
        )
        if i == 0:
            assert line == first, (line, first)
        yield line


# --- InfluxDB helpers --------------------------------------------------------------------


def bucket(influx: LocalInfluxDB, prefix: str, retention_s: int = 30 * 86400) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    influx.create_bucket(name, retention_s)
    return name


def write_url(influx: LocalInfluxDB, bucket_name: str) -> str:
    return f"{influx.url}/api/v2/write?org={influx.org}&bucket={bucket_name}&precision=ns"


def write_lines(
    influx: LocalInfluxDB, bucket_name: str, lines: list[str], batch: int = 20000, threads: int = 2
) -> None:
    """Bulk load (setup, not measured): gzip, big batches, a few connections."""
    url = write_url(influx, bucket_name)
    headers = {
        "Authorization": f"Token {influx.token}",
        "Content-Encoding": "gzip",
        "Content-Type": "text/plain; charset=utf-8",
    }

    def post(chunk: list[str]) -> None:
        body = gzip.compress("\n".join(chunk).encode(), 1)
        r = requests.post(url, data=body, headers=headers, timeout=120)
        if r.status_code != 204:
            raise RuntimeError(f"write failed: {r.status_code} {r.text[:300]}")

    chunks = [lines[i : i + batch] for i in range(0, len(lines), batch)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, chunks))


def flux_body(influx: LocalInfluxDB, flux: str, params: dict[str, Any]) -> str:
    """The exact JSON body influxdb-client sends for `flux` with `params` (as IoT Center does:
    each key k becomes the Flux option p_k in the request's `extern`)."""
    return flux_bodies(influx, flux, [params])[0]


def flux_bodies(influx: LocalInfluxDB, flux: str, many: list[dict[str, Any]]) -> list[str]:
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.query_api import QueryApi

    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        qa = client.query_api()
        out = []
        for params in many:
            q = qa._create_query(
                flux, QueryApi.default_dialect, {f"p_{k}": v for k, v in params.items()}
            )
            out.append(json.dumps(client.api_client.sanitize_for_serialization(q)))
        return out


def flux_request(influx: LocalInfluxDB, body: str) -> list:
    return [
        "POST",
        f"/api/v2/query?org={influx.org}",
        {
            "Authorization": f"Token {influx.token}",
            "Content-Type": "application/json",
            "Accept": "application/csv",
            "Accept-Encoding": "identity",
        },
        body,
    ]


# --- /proc ----------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    rest = raw[raw.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_io(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = int(v)
    return out


# --- load generator in its own process --------------------------------------------------


def load(
    ctx: Ctx, url: str, reqs: list, concurrency: int, duration: float, warmup: float = 1.0
) -> dict:
    host_port = url.split("//", 1)[1]
    host, port = host_port.split(":")
    spec = {
        "host": host,
        "port": int(port),
        "concurrency": concurrency,
        "duration": duration,
        "warmup": warmup,
        "requests": reqs,
    }
    path = ctx.root / f"load-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run(
        [PY, "-m", "bench.loadgen", str(path)],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=duration + warmup + 120,
    )
    path.unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- a real IoT Center under gunicorn, with registered devices ----------------------------


class World:
    """Own telemetry and devices buckets on the shared influxd, a gunicorn IoT Center on them
    (2 gthread workers, as deployed), and devices registered through its API."""

    def __init__(self, ctx: Ctx, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.influx = ctx.influx
        self.telemetry = bucket(self.influx, f"tel_{name}")
        self.devices_bucket = bucket(self.influx, f"dev_{name}", 0)
        self.enrollment = secrets.token_urlsafe(24)
        self.dir = ctx.root / f"center-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.devices: list[tuple[str, str]] = []  # (id, token)
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.influx.token}"}

    def env(self) -> dict[str, str]:
        return {
            "INFLUX_URL": self.influx.url,
            "INFLUX_TOKEN": self.influx.token,
            "INFLUX_ORG": self.influx.org,
            "INFLUX_BUCKET": self.telemetry,
            "INFLUX_BUCKET_AUTH": self.devices_bucket,
            "ENROLLMENT_TOKEN": self.enrollment,
            "SECRET_KEY": secrets.token_urlsafe(24),
            "MEASUREMENT_INTERVAL": "10",
            # Pages read the device list afresh on every request: the cost measured is that of
            # a first view (or any view after the list's TTL), never a worker's kept copy.
            "LIST_CACHE_SECONDS": "0",
            "IOT_CENTER_CONFIG": str(self.dir / "none.ini"),
        }

    def start(self) -> None:
        (self.dir / "none.ini").write_text("[APP]\n")
        env = {**os.environ, **self.env(), "PYTHONUNBUFFERED": "1"}
        gunicorn = str(Path(PY).with_name("gunicorn"))
        logf = open(self.dir / "gunicorn.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                gunicorn,
                "--worker-class",
                "gthread",
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-control-socket",
                "--bind",
                f"127.0.0.1:{self.port}",
                "iot_center:create_app()",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.dir,
            start_new_session=True,
        )
        logf.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited: {(self.dir / 'gunicorn.log').read_text()[-2000:]}"
                )
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("IoT Center did not come up")

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def register(self, device_id: str) -> str:
        with requests.Session() as s:
            r = s.post(
                f"{self.url}/api/devices",
                json={"deviceId": device_id},
                headers={"Authorization": f"Token {self.enrollment}"},
                timeout=60,
            )
        if r.status_code != 201:
            raise RuntimeError(f"register {device_id}: {r.status_code} {r.text[:200]}")
        return r.json()["influx_token"]

    def ensure_devices(self, n: int, threads: int = 6) -> float:
        """Register devices until there are n; return seconds per registration (0 if none)."""
        have = len(self.devices)
        if have >= n:
            return 0.0
        ids = [f"bench-{i:05d}" for i in range(have, n)]
        log(f"registering {len(ids)} devices on {self.name} (to {n})")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            tokens = list(pool.map(self.register, ids))
        dt = time.perf_counter() - t0
        self.devices.extend(zip(ids, tokens, strict=True))
        return dt / len(ids)

    def recent_telemetry(self, ids: list[str], minutes: int = 10) -> None:
        """A few minutes of 1-minute readings per device, so each has a last-seen time."""
        now = time.time()
        lines: list[str] = []
        for dev in ids:
            lines.extend(reading_lines(dev, now - minutes * 60, minutes, 60.0))
        write_lines(self.influx, self.telemetry, lines)
