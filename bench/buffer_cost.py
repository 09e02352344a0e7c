"""3. Buffer: what agent.buffer.Buffer costs per reading, and its size on disk.

- append: one reading per call (one transaction each), as Agent.read_once does, N times, in
  blocks of the agent's default batch_size;
- ack: after each block, peek + ack of that block, as the writer does (so the buffer stays
  shallow, as it does while InfluxDB is reachable);
- append at depth: the same single append when the buffer already holds 100,000 (and 500,000,
  the default bound) readings, i.e. during an outage (it should stay flat);
- sync: Buffer.sync() (a passive WAL checkpoint) as the loop calls it every sync_interval;
- size: 1,000,000 readings appended (in large transactions: the rows are the same), the
  database closed (checkpointed), then the file size; beside it the size of the same line
  protocol as plain text (the peer: an append-only log of the lines).

At the default sync setting (`normal`), and at `full` beside it for comparison. The buffer
files live on the machine's disk (not tmpfs), so fsync is real.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import fields

from bench.common import Ctx, log, median, proc_io, reading_lines

NAME = "buffer"


def _defaults() -> dict:
    from agent.settings import Settings

    return {f.name: f.default for f in fields(Settings)}


def append_ack(ctx: Ctx, lines: list[str], sync: str, batch: int, tag: str) -> dict[str, float]:
    from agent.buffer import Buffer

    d = ctx.root / f"buffer-{tag}"
    path = d / "buffer.sqlite"
    buf = Buffer(path, sync=sync)
    # Online the writer keeps up, so the buffer stays shallow: append a batch of readings one
    # by one (one transaction each, as Agent.read_once does), then peek + ack that batch (as
    # the writer does after InfluxDB accepted it), and so on. Depth stays <= batch.
    t_append = cpu_append = t_ack = 0.0
    wb_append = 0
    for start in range(0, len(lines), batch):
        io0, c0 = proc_io(os.getpid())["write_bytes"], time.process_time()
        t0 = time.perf_counter()
        for line in lines[start : start + batch]:
            buf.append(line, counter="readings")
        t_append += time.perf_counter() - t0
        cpu_append += time.process_time() - c0
        wb_append += proc_io(os.getpid())["write_bytes"] - io0
        t0 = time.perf_counter()
        got = buf.peek_batch(batch)  # as the writer: one blob read, one range delete
        if got is not None:
            buf.ack_batch(got)
        t_ack += time.perf_counter() - t0
    syncs = 0
    t0 = time.perf_counter()
    for _ in range(5):
        buf.append(lines[0])
        buf.sync()
        syncs += 1
    t_sync = (time.perf_counter() - t0) / syncs
    buf.close()
    shutil.rmtree(d, ignore_errors=True)
    n = len(lines)
    return {
        "append_us": t_append / n * 1e6,
        "append_cpu_us": cpu_append / n * 1e6,
        "append_disk_bytes": wb_append / n,
        "ack_us": t_ack / n * 1e6,
        "sync_ms": t_sync * 1e3,
    }


def append_at_depth(ctx: Ctx, lines: list[str], depths: list[int], probes: int) -> dict[int, float]:
    """Wall µs per single-reading append when the buffer already holds `depth` readings (an
    outage in progress)."""
    import agent.buffer as ab

    d = ctx.root / "buffer-depth"
    out: dict[int, float] = {}
    try:
        buf = ab.Buffer(d / "buffer.sqlite", max_points=max(depths) + probes * len(depths) + 1)
        have = 0
        for depth in depths:
            while have < depth:
                k = min(50_000, depth - have)
                buf.append(lines[:k], counter="readings")
                have += k
            t0 = time.perf_counter()
            for i in range(probes):
                buf.append(lines[i], counter="readings")
            out[depth] = (time.perf_counter() - t0) / probes * 1e6
            have += probes
        buf.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def size_per_million(ctx: Ctx, lines: list[str]) -> tuple[float, float]:
    from agent.buffer import Buffer

    d = ctx.root / "buffer-size"
    path = d / "buffer.sqlite"
    with Buffer(path, max_points=len(lines) + 1) as buf:
        for i in range(0, len(lines), 50_000):
            buf.append(lines[i : i + 50_000], counter="readings")
    total = sum(f.stat().st_size for f in d.iterdir() if f.name.startswith("buffer.sqlite"))
    text = sum(len(x) + 1 for x in lines)
    shutil.rmtree(d, ignore_errors=True)
    scale = 1e6 / len(lines)
    return total * scale / 1e6, text * scale / 1e6


def run(ctx: Ctx) -> None:
    defaults = _defaults()
    n = ctx.pick(3_000, 10_000)
    rounds = ctx.pick(2, 3)
    lines = list(reading_lines("buffer-pi", time.time() - 86400, n, 1.0))
    res: dict[str, list[dict[str, float]]] = {"normal": [], "full": []}
    for i in range(rounds):
        for sync in ("normal", "full"):
            log(f"buffer round {i + 1}/{rounds}: append+ack {n:,} readings, sync={sync}")
            res[sync].append(append_ack(ctx, lines, sync, defaults["batch_size"], f"{sync}{i}"))
    depths = ctx.pick([0, 100_000], [0, 100_000, 500_000])
    log(f"buffer: append cost at depths {depths}")
    pool = list(reading_lines("buffer-pi", time.time() - 3e6, 50_000, 1.0))
    shipped = append_at_depth(ctx, pool, depths, 200)
    log("buffer: size on disk of 1,000,000 readings")
    big = list(reading_lines("buffer-pi", time.time() - 2e6, ctx.pick(200_000, 1_000_000), 1.0))
    mb, text_mb = size_per_million(ctx, big)

    def m(sync: str, key: str) -> float:
        return median([r[key] for r in res[sync]])

    default = defaults["buffer_sync"]
    other = "full" if default == "normal" else "normal"
    per = m(default, "append_us") + m(default, "ack_us")
    ctx.emit(
        NAME,
        f"buffer_sync_{default}",
        readings=n,
        rounds=rounds,
        append_us=m(default, "append_us"),
        append_cpu_us=m(default, "append_cpu_us"),
        append_disk_bytes=m(default, "append_disk_bytes"),
        ack_us=m(default, "ack_us"),
        per_reading_us=per,
        sync_ms=m(default, "sync_ms"),
        sync_every_s=defaults["sync_interval"],
    )
    ctx.emit(
        NAME,
        f"buffer_sync_{other}",
        readings=n,
        rounds=rounds,
        append_us=m(other, "append_us"),
        append_cpu_us=m(other, "append_cpu_us"),
        append_disk_bytes=m(other, "append_disk_bytes"),
        ack_us=m(other, "ack_us"),
        per_reading_us=m(other, "append_us") + m(other, "ack_us"),
        ratio_to_default=(m(other, "append_us") + m(other, "ack_us")) / per,
    )
    ctx.emit(
        NAME,
        "buffer_size",
        mb_per_million=mb,
        text_mb_per_million=text_mb,
        ratio_to_text=mb / text_mb,
    )
    ctx.emit(
        NAME, "buffer_append_at_depth", **{f"us_at_{k // 1000}k": v for k, v in shipped.items()}
    )
    ctx.target("3 buffer: append+ack per reading (sync=normal)", f"{per:.0f} us", "(report)", None)
    deepest = max(depths)
    ctx.target(
        f"3 buffer: append at {deepest:,} buffered (outage)",
        f"{shipped[deepest] / 1000:.1f} ms",
        "(report; ~flat expected)",
        None,
    )
    ctx.target("3 buffer: disk per million readings", f"{mb:.0f} MB", "(report)", None)
