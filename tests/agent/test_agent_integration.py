"""The agent as a real process against a real influxd and a real IoT Center.

Every test runs `python -m agent.cli --config agent.ini run` on the virtual sensor, one reading
a second, and compares the agent's own `readings` counter (committed in the same SQLite
transaction as each buffered reading) with what a Flux query finds in InfluxDB. Points carry
their read-time timestamps, so a batch sent twice overwrites rather than duplicates: "exactly
once" means the count in InfluxDB equals the readings counter and every timestamp is distinct.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.agent_process import AgentProcess
from tests.conftest import CenterServer, flux_rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()
        print(f"--- agent log {agent.device_id} ---\n{agent.log()[-5000:]}")


def new_agent(
    agents: list[AgentProcess], center: CenterServer, tmp_path: Path, device_id: str
) -> AgentProcess:
    registered = center.register(device_id)
    agent = AgentProcess(center.url, device_id, registered["influx_token"], tmp_path / device_id)
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


def assert_exactly_once(agent: AgentProcess, center: CenterServer) -> int:
    """After a clean stop with InfluxDB up: buffer empty, InfluxDB holds every reading once."""
    c = agent.counters()
    assert c["depth"] == 0, c
    assert c["dropped"] == 0 and c["rejected"] == 0, c
    rows, distinct = stored(center, agent.device_id)
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
    assert assert_exactly_once(agent, center) >= at_kill + 7


def test_agent_sigkill_and_restart_loses_nothing(
    center: CenterServer, agents, tmp_path: Path
) -> None:
    agent = new_agent(agents, center, tmp_path, "pi-kill9")
    for round_ in range(3):
        agent.start()
        agent.wait_readings(agent.counters().get("readings", 0) + 3)
        time.sleep(0.3 * round_)  # different moments relative to the write cycle
        agent.kill()
    agent.start()
    agent.wait_readings(agent.counters()["readings"] + 2)
    assert agent.stop() == 0
    assert assert_exactly_once(agent, center) >= 11


def test_health_points_reach_influxdb(center: CenterServer, agents, tmp_path: Path) -> None:
    agent = new_agent(agents, center, tmp_path, "pi-health")
    agent.settings["health_interval"] = "1"
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
    assert_exactly_once(agent, center)  # health points do not disturb the reading count


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
    assert_exactly_once(agent, center)
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
