"""The agent as a real process against a real influxd and a real IoT Center.

Every test runs `python -m agent.cli --config agent.ini run` on the virtual sensor, one reading
a second, and compares the agent's own `readings` counter (committed in the same SQLite
transaction as each buffered reading) with what a Flux query finds in InfluxDB. Points carry
their read-time timestamps, so a batch sent twice overwrites rather than duplicates: "exactly
once" means the count in InfluxDB equals the readings counter and every timestamp is distinct.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from agent.buffer import read_counters
from tests.conftest import CenterServer, flux_rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class AgentRun:
    """One agent installation (state dir + agent.ini) that can be started, killed, restarted."""

    def __init__(self, center: CenterServer, device_id: str, token: str, home: Path) -> None:
        self.center, self.device_id, self.home = center, device_id, home
        self.state_dir = home / "state"
        self.ini = home / "agent.ini"
        self.log_path = home / "agent.log"
        self.process: subprocess.Popen | None = None
        token_file = home / "device-token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        self.ini.write_text(
            "[agent]\n"
            f"center_url = {center.url}\n"
            f"device_id = {device_id}\n"
            f"device_token_file = {token_file}\n"
            f"state_dir = {self.state_dir}\n"
            "sensor = virtual\n"
            "clock_check = off\n"
            "measurement_interval_override = 1\n"
            "flush_interval = 0.2\n"
            "retry_initial = 0.2\n"
            "retry_max = 2\n"
            "http_timeout = 3\n"
            "status_interval = 0.5\n"
            "health_interval = 0\n"
            "sync_interval = 1\n"
            "flush_deadline = 15\n"
            "removed_retry = 2\n"
        )

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"--- start at {time.time():.3f} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "--config", str(self.ini), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as systemd does: the agent stops reading, flushes, and exits."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise
        rc, self.process = self.process.returncode, None
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict:
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def counters(self) -> dict[str, int]:
        got = read_counters(self.state_dir / "buffer.sqlite")
        if got is None:
            return {}
        depth, counters = got
        return {"depth": depth, **counters}

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"agent exited while waiting for {what}:\n{self.log()[-3000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(
            f"timed out waiting for {what}; {self.counters()}\n{self.log()[-3000:]}"
        )

    def wait_readings(self, n: int, timeout: float = 30) -> None:
        self.wait(f"{n} readings", lambda: self.counters().get("readings", 0) >= n, timeout)

    def wait_written(self, n: int, timeout: float = 30) -> None:
        self.wait(f"{n} written", lambda: self.counters().get("written", 0) >= n, timeout)


@pytest.fixture
def agents() -> Iterator[list[AgentRun]]:
    started: list[AgentRun] = []
    yield started
    for agent in started:
        if agent.alive():
            agent.process.kill()  # type: ignore[union-attr]
            agent.process.wait(5)  # type: ignore[union-attr]
        print(f"--- agent log {agent.device_id} ---\n{agent.log()[-5000:]}")


def new_agent(agents: list[AgentRun], center: CenterServer, tmp_path: Path, device_id: str):
    registered = center.register(device_id)
    home = tmp_path / device_id
    home.mkdir()
    agent = AgentRun(center, device_id, registered["influx_token"], home)
    agents.append(agent)
    return agent


def stored(center: CenterServer, device_id: str) -> tuple[int, int]:
    """(rows, distinct timestamps) of Temperature for the device in the telemetry bucket."""
    rows = flux_rows(
        center.influx,
        """from(bucket: p_bucket) |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "environment" and r._field == "Temperature"
                       and r.clientId == p_id)
  |> keep(columns: ["_time", "_value", "device", "TemperatureSensor"])""",
        {"p_bucket": center.buckets.telemetry, "p_id": device_id},
    )
    assert all(
        r["device"] == "virtual" and r["TemperatureSensor"] == "virtual_bme280" for r in rows
    )
    return len(rows), len({r["_time"] for r in rows})


def assert_exactly_once(agent: AgentRun) -> int:
    """After a clean stop with InfluxDB up: buffer empty, InfluxDB holds every reading once."""
    c = agent.counters()
    assert c["depth"] == 0, c
    assert c["dropped"] == 0 and c["rejected"] == 0, c
    rows, distinct = stored(agent.center, agent.device_id)
    assert rows == distinct == c["readings"], (rows, distinct, c)
    assert "Traceback" not in agent.log(), agent.log()[-4000:]
    return rows


def test_influxd_killed_and_restarted_every_reading_arrives_once(
    center: CenterServer, restarted, agents, tmp_path: Path
) -> None:
    agent = new_agent(agents, center, tmp_path, "pi-influx-restart")
    agent.start()
    agent.wait_written(3)
    center.influx.kill()
    at_kill = agent.counters()["readings"]
    agent.wait_readings(at_kill + 5)  # readings keep coming while InfluxDB is gone
    agent.wait("the agent to report failing writes", lambda: agent.status().get("writeFailing"))
    assert agent.counters()["depth"] >= 4
    center.influx.launch()
    agent.wait("the backlog to drain", lambda: agent.counters()["depth"] == 0, 60)
    agent.wait_readings(agent.counters()["readings"] + 2)
    assert agent.stop() == 0
    assert assert_exactly_once(agent) >= at_kill + 7


def test_agent_sigkill_and_restart_loses_nothing(
    center: CenterServer, agents, tmp_path: Path
) -> None:
    agent = new_agent(agents, center, tmp_path, "pi-kill9")
    for round_ in range(3):
        agent.start()
        agent.wait_readings(agent.counters().get("readings", 0) + 3)
        time.sleep(0.3 * round_)  # different moments relative to the write cycle
        agent.kill9()
    agent.start()
    agent.wait_readings(agent.counters()["readings"] + 2)
    assert agent.stop() == 0
    assert assert_exactly_once(agent) >= 11


def test_health_points_reach_influxdb(center: CenterServer, agents, tmp_path: Path) -> None:
    agent = new_agent(agents, center, tmp_path, "pi-health")
    text = agent.ini.read_text()
    agent.ini.write_text(text.replace("health_interval = 0", "health_interval = 1"))
    agent.start()
    agent.wait_written(8)
    assert agent.stop() == 0
    rows = flux_rows(
        center.influx,
        """from(bucket: p_bucket) |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "agent" and r.clientId == p_id)
  |> last()""",
        {"p_bucket": center.buckets.telemetry, "p_id": agent.device_id},
    )
    fields = {r["_field"]: r["_value"] for r in rows}
    for name in ("buffer_depth", "readings", "written", "dropped", "write_errors", "uptime_s"):
        assert name in fields, fields
    assert fields["readings"] >= 1 and fields["dropped"] == 0
    assert_exactly_once(agent)  # health points do not disturb the reading count


def test_center_down_at_start_runs_from_saved_configuration(
    center: CenterServer, agents, tmp_path: Path
) -> None:
    agent = new_agent(agents, center, tmp_path, "pi-center-down")
    agent.start()
    agent.wait_written(2)
    assert agent.stop() == 0
    saved = agent.state_dir / "device-config.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    center.stop()
    before = agent.counters()
    agent.start()
    agent.wait(
        "the agent to report the IoT Center unreachable",
        lambda: agent.status().get("center", {}).get("state") == "unreachable",
    )
    agent.wait_written(before["written"] + 3)
    status = agent.status()
    assert status["center"]["configSource"] == "saved copy"
    assert agent.stop() == 0
    assert "running on the saved copy" in agent.log()
    assert_exactly_once(agent)
    center.start()  # for the fixture's teardown


def test_device_removed_agent_reports_it_and_keeps_data(
    center: CenterServer, agents, tmp_path: Path
) -> None:
    agent = new_agent(agents, center, tmp_path, "pi-removed")
    agent.start()
    agent.wait_written(2)
    r = requests.delete(
        f"{center.url}/api/devices/{agent.device_id}", headers=center.admin(), timeout=15
    )
    assert r.status_code == 204, r.text
    agent.wait(
        "the agent to report the device removed",
        lambda: agent.status().get("center", {}).get("state") == "removed",
    )
    depth = agent.counters()["depth"]
    agent.wait("readings to pile up in the buffer", lambda: agent.counters()["depth"] >= depth + 3)
    assert agent.alive()
    assert agent.stop() == 0
    c = agent.counters()
    assert c["depth"] >= 3  # kept on disk, not dropped
    assert c["readings"] == c["written"] + c["depth"], c  # every reading accounted for
    assert c["dropped"] == 0 and c["rejected"] == 0
    log = agent.log()
    assert "does not know device 'pi-removed'" in log
    assert "data stays buffered" in log
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--config", str(agent.ini), "status"],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )  # fmt: skip
    assert "removed" in out.stdout and f"{c['depth']} points waiting" in out.stdout, out.stdout
