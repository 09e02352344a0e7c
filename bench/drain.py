"""1. Drain after an outage: the agent's buffer holding N readings drains into InfluxDB.

Three ways to move the same N lines of line protocol (one device, 1 s apart, as the agent
encodes them) into a fresh bucket of the same influxd, interleaved round by round:

- raw:   the practical limit. The lines are pre-split into batches of 50,000 and gzip-compressed
         before the clock starts, then POSTed to /api/v2/write over 4 keep-alive connections.
- agent: agent.writer.Writer with the agent's default settings (batch sizes, requests in
         flight, timeout) draining an agent.buffer.Buffer file holding the N readings (a copy
         of one filled before the clock starts), exactly as Writer.run does while there is
         data: flush_once() until the buffer is empty. Each batch: SQLite read, gzip, POST,
         delete in SQLite.
- peer:  influxdb-client's batching WriteApi with its default WriteOptions, fed the same lines
         from memory (it has no disk buffer), timed until close() has flushed everything.

Points per second for each, and agent/raw and agent/peer ratios per round (medians).
"""

from __future__ import annotations

import gzip
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import requests

from bench.common import Ctx, bucket, log, median, reading_lines, write_url

NAME = "drain"
RAW_BATCH = 50_000
RAW_CONNECTIONS = 4


def _agent_defaults() -> dict:
    from agent.settings import Settings

    wanted = ("batch_size", "drain_batch_size", "write_concurrency", "http_timeout")
    return {f.name: f.default for f in fields(Settings) if f.name in wanted}


def count_points(ctx: Ctx, bucket_name: str) -> int:
    from bench.common import flux_body, flux_request

    flux = (
        "from(bucket: p_bucket) |> range(start: 0) "
        '|> filter(fn: (r) => r._field == "Temperature") |> count() '
        "|> group() |> sum()"
    )
    _, path, headers, body = flux_request(
        ctx.influx, flux_body(ctx.influx, flux, {"bucket": bucket_name})
    )
    r = requests.post(ctx.influx.url + path, data=body, headers=headers, timeout=120)
    rows = [x for x in r.text.splitlines() if x and not x.startswith("#")]
    if len(rows) < 2:
        return 0
    header = rows[0].split(",")
    return int(rows[1].split(",")[header.index("_value")])


def run_raw(ctx: Ctx, lines: list[str]) -> float:
    influx = ctx.influx
    b = bucket(influx, "drain_raw")
    bodies = [
        gzip.compress("\n".join(lines[i : i + RAW_BATCH]).encode(), 1)
        for i in range(0, len(lines), RAW_BATCH)
    ]
    url = write_url(influx, b)
    headers = {
        "Authorization": f"Token {influx.token}",
        "Content-Encoding": "gzip",
        "Content-Type": "text/plain; charset=utf-8",
    }
    local = threading.local()

    def post(body: bytes) -> None:
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        r = s.post(url, data=body, headers=headers, timeout=300)
        if r.status_code != 204:
            raise RuntimeError(f"raw write: {r.status_code} {r.text[:200]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(RAW_CONNECTIONS) as pool:
        list(pool.map(post, bodies))
    dt = time.perf_counter() - t0
    _check(ctx, b, len(lines))
    return len(lines) / dt


def fill_template(ctx: Ctx, lines: list[str]):
    from agent.buffer import Buffer

    path = ctx.root / "drain-template" / "buffer.sqlite"
    with Buffer(path, max_points=max(500_000, len(lines) + 1)) as buf:
        for i in range(0, len(lines), 50_000):
            buf.append(lines[i : i + 50_000], counter="readings")
    return path


def run_agent(
    ctx: Ctx,
    template,
    n: int,
    round_no: int,
    serial: bool = False,
    parts: dict | None = None,
) -> float:
    from agent.buffer import Buffer
    from agent.writer import Target, Writer

    influx = ctx.influx
    b = bucket(influx, "drain_agent")
    path = ctx.root / f"drain-agent-{round_no}" / "buffer.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, path)
    defaults = _agent_defaults()
    buf = Buffer(path, max_points=n + 1)
    target = Target(write_url(influx, b), influx.token)
    writer = Writer(
        buf,
        lambda: target,
        batch_size=defaults["batch_size"],
        # serial: one request of batch_size at a time, as the writer drained before it learned
        # to keep several larger requests in flight (informative, not the agent's behaviour)
        drain_batch_size=defaults["batch_size" if serial else "drain_batch_size"],
        concurrency=1 if serial else defaults["write_concurrency"],
        timeout=defaults["http_timeout"],
    )
    if parts is not None:  # where the time goes: SQLite read, HTTP write, SQLite delete
        for attr in ("peek_batch", "ack_batch"):
            _timed_method(buf, attr, parts)
        _timed_method(writer, "send", parts)
    t0 = time.perf_counter()
    while writer.flush_once():
        pass
    dt = time.perf_counter() - t0
    left = buf.depth()
    buf.close()
    shutil.rmtree(path.parent, ignore_errors=True)
    if left:
        raise RuntimeError(f"agent drain left {left} points")
    _check(ctx, b, n)
    return n / dt


def _timed_method(obj, attr: str, parts: dict) -> None:
    inner = getattr(obj, attr)

    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            parts[attr] = parts.get(attr, 0.0) + time.perf_counter() - t0

    setattr(obj, attr, wrapper)


def run_peer(ctx: Ctx, lines: list[str]) -> float:
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import WriteOptions

    influx = ctx.influx
    b = bucket(influx, "drain_peer")
    errors: list[str] = []
    client = InfluxDBClient(url=influx.url, token=influx.token, org=influx.org, timeout=60_000)
    t0 = time.perf_counter()
    wa = client.write_api(
        write_options=WriteOptions(),  # the defaults a user gets: batches of 1000, 1 s flush
        error_callback=lambda conf, data, exc: errors.append(str(exc)),
    )
    for line in lines:  # as an agent loop would hand it readings, one record per call
        wa.write(bucket=b, record=line)
    wa.close()  # blocks until the queue is flushed
    dt = time.perf_counter() - t0
    client.close()
    if errors:
        raise RuntimeError(f"peer write errors: {errors[:3]}")
    _check(ctx, b, len(lines))
    return len(lines) / dt


def _check(ctx: Ctx, b: str, n: int) -> None:
    got = count_points(ctx, b)
    if got != n:
        raise RuntimeError(f"bucket {b} holds {got} readings, expected {n}")


def run(ctx: Ctx) -> None:
    n = ctx.pick(100_000, 1_000_000)
    rounds = ctx.pick(2, 3)
    log(f"drain: generating {n:,} readings")
    start = time.time() - n - 3600
    lines = list(reading_lines("drain-pi", float(int(start)), n, 1.0))
    template = fill_template(ctx, lines)
    raw, agent, peer, r_raw, r_peer, tuned = [], [], [], [], [], []
    parts: dict[str, float] = {}
    for i in range(rounds):
        log(f"drain round {i + 1}/{rounds}: raw")
        raw.append(run_raw(ctx, lines))
        log(f"drain round {i + 1}/{rounds}: agent ({raw[-1]:,.0f} pts/s raw)")
        p: dict[str, float] = {}
        agent.append(run_agent(ctx, template, n, i, parts=p))
        for k, v in p.items():
            parts.setdefault(k, []).append(v / n * 1e6)
        log(
            f"drain round {i + 1}/{rounds}: influxdb-client WriteApi ({agent[-1]:,.0f} pts/s agent)"
        )
        peer.append(run_peer(ctx, lines))
        log(f"drain round {i + 1}/{rounds}: peer {peer[-1]:,.0f} pts/s")
        r_raw.append(agent[-1] / raw[-1])
        r_peer.append(agent[-1] / peer[-1])
        if i == 0:  # informative: the same code sending one request at a time
            tuned.append(run_agent(ctx, template, n, 100 + i, serial=True) / raw[-1])
    ctx.emit(NAME, "drain_raw", points=n, rounds=rounds, pts_per_s=median(raw))
    ctx.emit(NAME, "drain_peer_writeapi", points=n, rounds=rounds, pts_per_s=median(peer))
    ctx.emit(
        NAME,
        "drain_agent",
        points=n,
        rounds=rounds,
        pts_per_s=median(agent),
        ratio_to_raw=median(r_raw),
        ratio_to_peer=median(r_peer),
        seconds_per_million=1e6 / median(agent),
    )
    ctx.emit(
        NAME,
        "drain_agent_parts",
        sqlite_peek_us=median(parts.get("peek_batch", [])),
        http_send_us=median(parts.get("send", [])),
        sqlite_ack_us=median(parts.get("ack_batch", [])),
        per="reading",
    )
    ctx.emit(NAME, "drain_agent_one_request_at_a_time", ratio_to_raw=median(tuned))
    ctx.target(
        "1 drain: agent / raw ingest", f"{median(r_raw):.0%}", ">= 80%", median(r_raw) >= 0.8
    )
    ctx.target("1 drain: agent / WriteApi", f"{median(r_peer):.2f}x", "> 1x", median(r_peer) > 1.0)
