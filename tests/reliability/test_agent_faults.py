"""Faults around the edge agent, with real processes: a real `iot-agent run` (virtual sensor,
one reading a second), the real IoT Center, the real influxd, and where needed a fault proxy
in front of that influxd. Each test prints one `RELIABILITY <fault>: ...` line with the times
injected, readings produced (the agent's own `readings` counter, committed in the same SQLite
transaction as the point), readings in InfluxDB, lost and duplicates.

IOT_SOAK=1 runs the long versions; IOT_FAULT_SEED=<n> replays a run's random choices.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.agent_process import AgentProcess
from tests.conftest import CenterServer
from tests.reliability.conftest import new_agent
from tests.reliability.helpers import (
    SOAK,
    FaultProxy,
    buffered_times,
    count_readings,
    report,
    rng,
    wait_until,
)

pytestmark = pytest.mark.integration


def finish(
    agent: AgentProcess,
    center: CenterServer,
    fault: str,
    injected: int,
    exact: bool = True,
    tracebacks_ok: bool = False,
    **more: object,
) -> dict[str, int]:
    """Stop the agent (it drains), then compare its acknowledged readings with InfluxDB.

    `exact=False`: the counter is not the reference (power cut) or drops were deliberate
    (disk full: the buffer's `dropped` counter must account for every missing reading)."""
    if not agent.alive():
        agent.start()
    agent.wait_drained(90)
    assert agent.stop() == 0, agent.log()[-3000:]
    c = agent.counters()
    produced = c["readings"]
    got = count_readings(center, agent.device_id)
    lost = produced - got.distinct - (c.get("dropped", 0) if not exact else 0)
    report(
        fault,
        injected=injected,
        produced=produced,
        in_influxdb=got.distinct,
        lost=max(lost, 0),
        duplicates=got.duplicates,
        **more,
    )
    assert c["depth"] == 0
    assert got.duplicates == 0, got
    assert got.series == 1, got
    if exact:
        assert got.distinct == produced, (produced, got)
    if not tracebacks_ok:
        assert "Traceback" not in agent.log(), agent.log()[-4000:]
    return c


# --- the agent killed ---------------------------------------------------------------------


@pytest.mark.timeout(1800 if SOAK else 300)  # the soak's 300 kills take about 16 minutes
def test_agent_sigkill_at_random_moments(center: CenterServer, agents, tmp_path: Path) -> None:
    kills = 300 if SOAK else 50
    r = rng()
    agent = new_agent(agents, center, tmp_path, "pi-kill9")
    for _ in range(kills):
        agent.start()
        time.sleep(r.uniform(0.3, 2.2) if not SOAK else r.uniform(0.2, 6.0))
        assert agent.alive(), agent.log()[-3000:]
        agent.kill()
    agent.start()
    agent.wait_readings(agent.counters().get("readings", 0) + 2, 30)
    c = finish(agent, center, "agent SIGKILL", kills, starts=agent.starts)
    assert c["readings"] >= kills // 2  # it did measure between the kills


# --- influxd killed -----------------------------------------------------------------------


def test_influxd_sigkill_and_restart_while_agent_writes_and_server_serves(
    center: CenterServer, restarted, agents, tmp_path: Path
) -> None:
    rounds = 10 if SOAK else 3
    r = rng()
    agent = new_agent(agents, center, tmp_path, "pi-influx-kill")
    agent.start()
    agent.wait_readings(2, 30)
    statuses: dict[int, int] = {}
    stop = threading.Event()

    def poll() -> None:  # the dashboard and the device endpoint, all through the outage
        s = requests.Session()
        while not stop.is_set():
            for path, headers in (
                (f"/api/devices/{agent.device_id}/measurements/last", center.admin()),
                (f"/api/env/{agent.device_id}", {"Authorization": f"Token {agent.token}"}),
                ("/health", {}),
            ):
                try:
                    code = s.get(center.url + path, headers=headers, timeout=15).status_code
                except requests.RequestException:
                    code = -1
                statuses[code] = statuses.get(code, 0) + 1
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    down_answers = 0
    try:
        for _ in range(rounds):
            time.sleep(r.uniform(1.0, 4.0))
            center.influx.kill()
            h = requests.get(f"{center.url}/health", timeout=15)
            d = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=15)
            assert (h.status_code, d.status_code) == (503, 503), (h.text, d.text)
            assert "Traceback" not in d.text and d.json()["error"] == "influxdb_unavailable"
            down_answers += 2
            time.sleep(r.uniform(1.0, 4.0))
            center.influx.launch()
            wait_until(
                lambda: (
                    requests.get(
                        f"{center.url}/api/devices", headers=center.admin(), timeout=15
                    ).status_code
                    == 200
                ),
                30,
                "the server to recover by itself",
            )
    finally:
        stop.set()
        poller.join(20)
    assert agent.alive()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.get(503, 0) > 0 and statuses.get(200, 0) > 0, statuses
    finish(
        agent,
        center,
        "influxd SIGKILL+restart",
        rounds,
        server_200=statuses.get(200, 0),
        server_503=statuses.get(503, 0),
    )


# --- InfluxDB answering errors ------------------------------------------------------------


def _phase(
    proxy: FaultProxy, status: int, n: int, headers: dict[str, str] | None = None
) -> list[float]:
    """Answer the next `n` writes with `status`; return when each of them arrived."""
    start = len(proxy.log)
    proxy.inject("status", n, status, headers)
    wait_until(lambda: proxy.pending() == 0, 60, f"{n} x HTTP {status} to be served")
    return [t for t, what, _ in proxy.log[start:] if what == "status"]


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def test_influxdb_429_500_503_413_lose_nothing(
    center: CenterServer, influx_proxy: FaultProxy, agents, tmp_path: Path
) -> None:
    proxy = influx_proxy
    agent = new_agent(agents, center, tmp_path, "pi-http-errors")
    agent.start()
    agent.wait_readings(2, 30)
    wait_until(lambda: proxy.forwarded > 0, 20, "a first write through the proxy")
    injected = 0
    gaps: dict[str, list[float]] = {}

    def http_date(seconds: float) -> str:  # the other form of Retry-After (RFC 9110)
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + seconds))

    for status, n, headers in (
        (429, 3, lambda: {"Retry-After": "1"}),
        (500, 5, lambda: None),
        (503, 2, lambda: {"Retry-After": http_date(3)}),
        (503, 3, lambda: None),
    ):
        g = _gaps(_phase(proxy, status, n, headers()))
        gaps[str(status)] = gaps.get(str(status), []) + g
        injected += n
        # Backed off, never a tight loop: even a cut-short wait is followed by real ones.
        assert sum(g) >= 0.1 * (n - 1), (status, g)
    # 413: let a backlog build (InfluxDB unreachable), then allow only small bodies.
    proxy.close()
    time.sleep(6)
    proxy.max_body = 3 * 260  # about three points
    proxy.open()
    wait_until(lambda: agent.counters().get("depth", 1) <= 1, 60, "the backlog to drain in pieces")
    assert proxy.too_large > 0
    injected += proxy.too_large
    proxy.max_body = None
    c = finish(agent, center, "InfluxDB 429/500/503/413", injected, http_413=proxy.too_large)
    assert c.get("rejected", 0) == 0
    print("gaps between failed attempts (s):", gaps)


def test_retry_after_is_honoured(
    center: CenterServer, influx_proxy: FaultProxy, agents, tmp_path: Path
) -> None:
    proxy = influx_proxy
    agent = new_agent(agents, center, tmp_path, "pi-retry-after")
    agent.start()
    agent.wait_readings(2, 30)
    wait_until(lambda: proxy.forwarded > 0, 20, "a first write through the proxy")
    g429 = _gaps(_phase(proxy, 429, 3, {"Retry-After": "2"}))
    g503 = _gaps(_phase(proxy, 503, 3, {"Retry-After": "2"}))
    report("Retry-After honoured", gaps_429=g429, gaps_503=g503)
    assert all(g >= 1.8 for g in g429 + g503), (g429, g503)


# --- the network cut ----------------------------------------------------------------------


def test_network_cut_and_restored_repeatedly(
    center: CenterServer, influx_proxy: FaultProxy, agents, tmp_path: Path
) -> None:
    """Both links (agent->InfluxDB and agent->IoT Center) go through proxies that refuse
    connections (cable pulled), reset them mid-request, or forward a write and then drop the
    answer (the write landed but the agent never hears it: it must re-send without making a
    duplicate)."""
    cuts = 20 if SOAK else 5
    r = rng()
    center_proxy = FaultProxy(center.url)
    try:
        agent = new_agent(agents, center, tmp_path, "pi-netcut")
        agent.center_url = center_proxy.url
        agent.start()
        agent.wait_readings(2, 30)
        kinds = {"refuse": 0, "reset": 0, "lose_answer": 0}
        for i in range(cuts):
            time.sleep(r.uniform(1.0, 3.0))
            kind = list(kinds)[i % 3]
            kinds[kind] += 1
            if kind == "refuse":
                influx_proxy.close()
                center_proxy.close()
                time.sleep(r.uniform(2.0, 5.0))
                influx_proxy.open()
                center_proxy.open()
            else:
                n = r.randint(2, 4)
                influx_proxy.inject(kind, n)
                center_proxy.inject("reset", 1)
                wait_until(lambda: influx_proxy.pending() == 0, 60, f"{kind} x{n}")
        assert agent.alive()
        finish(
            agent,
            center,
            "network cut",
            cuts,
            **{f"{k}": v for k, v in kinds.items()},
            requests_sabotaged=influx_proxy.injected,
        )
    finally:
        center_proxy.close()


# --- power cut on the buffer --------------------------------------------------------------


def test_power_cut_between_write_and_sync_loses_at_most_one_sync_interval(
    center: CenterServer, influx_proxy: FaultProxy, agents, tmp_path: Path
) -> None:
    """InfluxDB unreachable so everything stays in the buffer; SIGKILL; the WAL (where commits
    since the last sync live) truncated at a random byte, as a power cut would leave it."""
    rounds = 10 if SOAK else 3
    r = rng()
    sync_interval = 2.0
    agent = new_agent(
        agents, center, tmp_path, "pi-powercut", IOT_AGENT_SYNC_INTERVAL=str(sync_interval)
    )
    agent.start()
    agent.wait_readings(1, 30)
    before: set[int] = set()
    for _ in range(rounds):
        influx_proxy.close()
        time.sleep(r.uniform(2.0, 4.5))
        stamped = set(buffered_times(agent.buffer_path, agent.device_id))
        agent.kill()
        wal = Path(str(agent.buffer_path) + "-wal")
        if wal.exists() and wal.stat().st_size:
            os.truncate(wal, r.randrange(wal.stat().st_size))
        before |= stamped
        agent.start()
        influx_proxy.open()
        agent.wait_readings(agent.counters().get("readings", 0) + 1, 30)
        agent.wait_drained(60)
    # A power cut may also take back the counter of a reading that had already been
    # delivered (its ack and its count were in the lost WAL tail), so the counter is not the
    # reference here: the timestamps buffered before each cut are.
    finish_counts = finish(
        agent, center, "power cut (WAL truncated), counters", rounds, exact=False
    )
    stored = set(influx_times(center, agent.device_id))
    lost_total = len(before - stored)
    per_round_bound = int(sync_interval) + 2  # readings of one sync interval, plus slack
    report(
        "power cut (WAL truncated) vs pre-cut buffer",
        injected=rounds,
        buffered_before_cuts=len(before),
        lost=lost_total,
        bound=rounds * per_round_bound,
    )
    assert lost_total <= rounds * per_round_bound
    assert finish_counts["readings"] > 0


def influx_times(center: CenterServer, device_id: str) -> list[int]:
    from tests.conftest import flux_rows

    rows = flux_rows(
        center.influx,
        """from(bucket: p_bucket) |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "environment" and r._field == "Temperature"
                       and r.clientId == p_id)
  |> map(fn: (r) => ({r with ns: int(v: r._time)})) |> keep(columns: ["ns"])""",
        {"p_bucket": center.buckets.telemetry, "p_id": device_id},
    )
    return [r["ns"] for r in rows]


def test_truncated_buffer_file_is_moved_aside_and_agent_starts(
    center: CenterServer, influx_proxy: FaultProxy, agents, tmp_path: Path
) -> None:
    rounds = 10 if SOAK else 3
    r = rng()
    agent = new_agent(agents, center, tmp_path, "pi-truncated")
    moved = 0
    for i in range(rounds):
        influx_proxy.close()
        agent.start()
        agent.wait_readings(agent.counters().get("readings", 0) + 4, 30)
        agent.kill()
        db = agent.buffer_path
        size = db.stat().st_size
        Path(str(db) + "-wal").unlink(missing_ok=True)  # the power cut took the WAL with it
        Path(str(db) + "-shm").unlink(missing_ok=True)
        os.truncate(db, r.randrange(size))
        influx_proxy.open()
        agent.start()
        agent.wait_readings(1, 30)  # it starts and measures whatever the file looked like
        assert agent.alive()
        aside = [
            p
            for p in db.parent.glob(db.name + ".corrupt-*")
            if not p.name.endswith(("-wal", "-shm"))
        ]
        if len(aside) > moved:
            moved = len(aside)
            wait_until(lambda: "moved it aside" in agent.log(), 10, "the log line")
        agent.wait_drained(60)
        agent.stop()
        if i + 1 < rounds:
            time.sleep(1.1)  # the aside name has a one-second stamp
    # Count again at the end: damage can also be found mid-run (during the drain), after the
    # check in the loop above; every move must have its log line and vice versa.
    moved = len(
        [
            p
            for p in agent.buffer_path.parent.glob(agent.buffer_path.name + ".corrupt-*")
            if not p.name.endswith(("-wal", "-shm"))
        ]
    )
    log = agent.log()
    report(
        "power cut (buffer file truncated)",
        injected=rounds,
        moved_aside=moved,
        log_lines=log.count("moved it aside"),
    )
    assert log.count("moved it aside") == moved
    assert "Traceback" not in log
    assert moved >= 1  # a random truncation of a small SQLite file is nearly always detected


# --- disk full ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "smalldisk"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Take every free byte of the file system `path` is on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def disk_full_run(center, influx_proxy, agents, tmp_path, small_disk, name, full_for):
    agent = new_agent(
        agents,
        center,
        tmp_path,
        name,
        IOT_BUFFER_PATH=str(small_disk / "buffer.sqlite"),
        IOT_AGENT_SYNC_INTERVAL="3600",  # no checkpoints: every commit grows the WAL
    )
    influx_proxy.close()  # InfluxDB unreachable: everything stays in the buffer
    agent.start()
    agent.wait_readings(3, 30)
    filler = small_disk / "filler"
    fill(filler)
    time.sleep(full_for)
    assert agent.alive(), agent.log()[-3000:]
    status = agent.status()
    log = agent.log()
    filler.unlink()  # space returns
    influx_proxy.open()
    before = agent.counters().get("readings", 0)
    agent.wait_readings(before + 3, 30)
    return agent, status.get("counters", {}), log


def test_disk_full_agent_keeps_running_counts_and_recovers(
    center: CenterServer, influx_proxy: FaultProxy, agents, tmp_path: Path, small_disk: Path
) -> None:
    full_for = 60 if SOAK else 10
    agent, counters, log = disk_full_run(
        center, influx_proxy, agents, tmp_path, small_disk, "pi-diskfull", full_for
    )
    lost, dropped = counters.get("lost_readings", 0), counters.get("dropped", 0)
    assert lost + dropped > 0, counters  # counted, not silent
    assert "full" in log
    c = finish(
        agent,
        center,
        "disk full",
        1,
        exact=False,
        seconds_full=full_for,
        not_buffered_newest=lost,
        dropped_oldest=dropped,
    )
    got = count_readings(center, agent.device_id)
    # Every reading the agent counted either reached InfluxDB or was counted as dropped.
    assert c["readings"] - got.distinct <= c["dropped"], (c, got)


def test_disk_full_drops_oldest_not_newest(
    center: CenterServer, influx_proxy: FaultProxy, agents, tmp_path: Path, small_disk: Path
) -> None:
    agent, counters, log = disk_full_run(
        center, influx_proxy, agents, tmp_path, small_disk, "pi-diskfull-spec", 6
    )
    agent.stop()
    assert counters.get("lost_readings", 0) == 0 and counters.get("dropped", 0) > 0, counters
    assert "Traceback" not in log
