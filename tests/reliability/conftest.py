"""Fixtures of the reliability suite (see helpers.py and docs/RELIABILITY.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.conftest import CenterServer
from tests.reliability.helpers import REPORT_LINES, FaultProxy


@pytest.fixture
def influx_proxy(center: CenterServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the real influxd, handed to devices as their InfluxDB URL
    (the server is restarted with DEVICE_INFLUX_URL pointing at it)."""
    proxy = FaultProxy(center.influx.url)
    center.stop()
    center.extra["DEVICE_INFLUX_URL"] = proxy.url
    center.start()
    yield proxy
    proxy.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Collects the agents a test starts and kills any left running at the end."""
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()
        print(f"--- agent {a.device_id} log (last 4000 chars) ---\n{a.log()[-4000:]}")


def new_agent(
    agents: list[AgentProcess], center: CenterServer, tmp_path: Path, device_id: str, **extra: str
) -> AgentProcess:
    cfg = center.register(device_id)
    a = AgentProcess(
        center.url,
        device_id,
        cfg["influx_token"],
        tmp_path / device_id,
        settings={"health_interval": "5", "sync_interval": "2"},
        env=extra,  # IOT_* variables, as a systemd drop-in would set them
    )
    agents.append(a)
    return a


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORT_LINES:
        terminalreporter.section("reliability figures")
        for line in REPORT_LINES:
            terminalreporter.write_line(line)
