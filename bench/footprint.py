"""2. Footprint: the agent running on the virtual sensor, writing to a real IoT Center + influxd.

At 1 reading/s (`iot-agent run`, measurement_interval_override = 1) and at 50 readings/s
(the same with measurement_interval_override = 0.02), each
for a window of 60 s (15 s with --quick) after the agent is running and has buffered its first
reading. From /proc/<pid>:

- peak RSS: VmHWM at the end of the window (the whole life of the process), beside VmHWM of a
  bare interpreter that imported the agent's dependencies (requests, tenacity, sqlite3, json,
  logging, threading), measured in the same run; the difference is what the agent adds;
- CPU: utime + stime over the window, per 1,000 readings and as % of one core;
- disk: write_bytes over the window (what reaches the block layer: the SQLite WAL, its
  checkpoints, the status file) per reading. Also wchar (bytes passed to write()).

Readings are counted from the buffer's own `readings` counter. The state directory is on the
machine's disk, not tmpfs.

And the agent draining a backlog: its buffer filled to the default bound, 500,000 readings
(100,000 with --quick; almost 6 days at 1 Hz), before it starts, as after a long outage; from
process start until every one of them is acked: seconds, points per second, peak RSS over
the same baseline (the cost of the requests in flight), RSS once drained, and CPU per 1,000
points, with the reading loop running alongside.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from bench.common import (
    PY,
    REPO,
    Ctx,
    log,
    proc_cpu_seconds,
    proc_io,
    proc_status_kb,
    reading_lines,
)

NAME = "footprint"


def baseline_hwm_kb(ctx: Ctx) -> int:
    proc = subprocess.Popen(
        [PY, "-m", "bench.agent_proc", "baseline"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.5)
        return proc_status_kb(proc.pid, "VmHWM")
    finally:
        proc.kill()
        proc.wait()


def readings(state: Path) -> int:
    from agent.buffer import read_counters

    got = read_counters(state / "buffer.sqlite")
    return got[1]["readings"] if got else 0


def start_agent(ctx: Ctx, device_id: str, rate: float, prefill: int = 0):
    """The agent as its own process; `prefill` readings are buffered before it starts."""
    w = ctx.world()
    token = w.register(device_id)
    state = ctx.root / f"agent-{device_id}"
    state.mkdir(parents=True)
    if prefill:
        from agent.buffer import Buffer

        lines = list(reading_lines(device_id, float(int(time.time()) - prefill - 60), prefill, 1))
        with Buffer(state / "buffer.sqlite", max_points=prefill + 1000) as buf:
            for i in range(0, prefill, 50_000):
                buf.append(lines[i : i + 50_000], counter="readings")
    env = {
        **os.environ,
        "IOT_CENTER_URL": w.url,
        "IOT_DEVICE_ID": device_id,
        "IOT_DEVICE_TOKEN": token,
        "IOT_STATE_DIR": str(state),
        "IOT_AGENT_SENSOR": "virtual",
        "IOT_AGENT_FALLBACK": "virtual",
        "IOT_AGENT_CLOCK_CHECK": "off",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO),
    }
    env["IOT_AGENT_MEASUREMENT_INTERVAL_OVERRIDE"] = f"{1.0 / rate:g}"
    if prefill:
        env["IOT_AGENT_BUFFER_MAX_POINTS"] = str(max(prefill + 1000, 500_000))
    cmd = [PY, "-m", "agent.cli", "run"]
    logf = open(state / "agent.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=state, env=env, stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
    return proc, state


def stop_agent(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def oldest_id(path: Path) -> int | None:
    """The buffer's oldest id (an index lookup, cheap enough to poll); None if empty."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT min(id) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def run_drain(ctx: Ctx, n: int) -> dict[str, float]:
    device_id = f"footprint-drain-{int(time.time()) % 100000}"
    log(f"footprint: filling a buffer with {n:,} readings")
    proc, state = start_agent(ctx, device_id, 1.0, prefill=n)
    t0 = time.monotonic()
    try:
        while True:
            oldest = oldest_id(state / "buffer.sqlite")
            if oldest is None or oldest > n:  # the prefilled ids 1..n are all delivered
                break
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited: {(state / 'agent.log').read_text()[-2000:]}")
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"drain not done in 600 s (oldest id {oldest})")
            time.sleep(0.02)
        dt = time.monotonic() - t0
        hwm = proc_status_kb(proc.pid, "VmHWM")
        cpu = proc_cpu_seconds(proc.pid)
        time.sleep(2.0)
        rss = proc_status_kb(proc.pid, "VmRSS")
    finally:
        stop_agent(proc)
    return {
        "points": n,
        "seconds": dt,
        "pts_per_s": n / dt,
        "hwm_mb": hwm / 1024,
        "rss_after_mb": rss / 1024,
        "cpu_s_per_1000": cpu / n * 1000,
    }


def run_agent(ctx: Ctx, rate: float, window: float) -> dict[str, float]:
    device_id = f"footprint-{int(rate)}hz-{int(time.time()) % 100000}"
    proc, state = start_agent(ctx, device_id, rate)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited: {(state / 'agent.log').read_text()[-2000:]}")
            status = state / "status.json"
            try:
                running = json.loads(status.read_text()).get("state") == "running"
            except (OSError, ValueError):
                running = False
            if running and readings(state) > 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"agent not running: {(state / 'agent.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        time.sleep(2.0)  # let start-up settle (first write, first status file)
        pid = proc.pid
        cpu0, io0, n0, t0 = proc_cpu_seconds(pid), proc_io(pid), readings(state), time.monotonic()
        time.sleep(window)
        cpu1, io1, n1, t1 = proc_cpu_seconds(pid), proc_io(pid), readings(state), time.monotonic()
        hwm = proc_status_kb(pid, "VmHWM")
        rss = proc_status_kb(pid, "VmRSS")
    finally:
        stop_agent(proc)
    n = max(1, n1 - n0)
    dt = t1 - t0
    return {
        "readings": n,
        "rate": n / dt,
        "hwm_mb": hwm / 1024,
        "rss_mb": rss / 1024,
        "cpu_s_per_1000": (cpu1 - cpu0) / n * 1000,
        "cpu_pct": (cpu1 - cpu0) / dt * 100,
        "disk_bytes_per_reading": (io1["write_bytes"] - io0["write_bytes"]) / n,
        "wchar_per_reading": (io1["wchar"] - io0["wchar"]) / n,
    }


def run(ctx: Ctx) -> None:
    window = ctx.pick(10.0, 60.0)
    base = baseline_hwm_kb(ctx) / 1024
    results = {}
    for rate in (1.0, 50.0):
        log(f"footprint: agent at {rate:g} reading/s for {window:.0f} s")
        results[rate] = run_agent(ctx, rate, window)
    drain = run_drain(ctx, ctx.pick(100_000, 500_000))
    ctx.emit(NAME, "footprint_baseline", peak_rss_mb=base, what="python+requests+tenacity+sqlite3")
    for rate, r in results.items():
        ctx.emit(
            NAME,
            f"footprint_{int(rate)}hz",
            window_s=window,
            readings=r["readings"],
            readings_per_s=r["rate"],
            peak_rss_mb=r["hwm_mb"],
            over_baseline_mb=r["hwm_mb"] - base,
            cpu_s_per_1000=r["cpu_s_per_1000"],
            cpu_pct_core=r["cpu_pct"],
            disk_bytes_per_reading=r["disk_bytes_per_reading"],
            wchar_per_reading=r["wchar_per_reading"],
        )
    ctx.emit(
        NAME,
        "footprint_drain",
        points=drain["points"],
        seconds=drain["seconds"],
        pts_per_s=drain["pts_per_s"],
        peak_rss_mb=drain["hwm_mb"],
        over_baseline_mb=drain["hwm_mb"] - base,
        rss_after_mb=drain["rss_after_mb"],
        cpu_s_per_1000=drain["cpu_s_per_1000"],
    )
    one = results[1.0]
    ctx.target(
        "2 footprint: peak RSS over baseline (1/s)",
        f"{one['hwm_mb'] - base:.1f} MB",
        "<= 10 MB",
        one["hwm_mb"] - base <= 10,
    )
    fifty = results[50.0]
    ctx.target(
        "2 footprint: peak RSS over baseline (50/s)",
        f"{fifty['hwm_mb'] - base:.1f} MB",
        "<= 10 MB",
        fifty["hwm_mb"] - base <= 10,
    )
    ctx.target(
        "2 footprint: CPU at 1 reading/s",
        f"{one['cpu_pct']:.2f} % core",
        "< 1 %",
        one["cpu_pct"] < 1,
    )
    ctx.target(
        "2 footprint: disk written per reading (1/s)",
        f"{one['disk_bytes_per_reading']:.0f} B",
        "(report)",
        None,
    )
