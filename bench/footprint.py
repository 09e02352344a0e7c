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
"""

from __future__ import annotations

import json
import os
import signal
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


def run_agent(ctx: Ctx, rate: float, window: float) -> dict[str, float]:
    w = ctx.world()
    device_id = f"footprint-{int(rate)}hz-{int(time.time()) % 100000}"
    token = w.register(device_id)
    state = ctx.root / f"agent-{device_id}"
    state.mkdir(parents=True)
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
    cmd = [PY, "-m", "agent.cli", "run"]
    logf = open(state / "agent.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=state, env=env, stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
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
