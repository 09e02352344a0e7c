"""The agent as a real process for the tests that need one: `python -m agent.cli --config
agent.ini run` on the virtual sensor, started, SIGKILLed or stopped as systemd does, its
counters read from its buffer file (the `readings` counter is committed in the same SQLite
transaction as each reading, so tests can compare it with what InfluxDB holds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.buffer import read_counters

REPO = Path(__file__).resolve().parent.parent

# One reading a second and short timings, so that faults play out in seconds.
TEST_SETTINGS = {
    "sensor": "virtual",
    "fallback": "virtual",
    "clock_check": "off",
    "measurement_interval_override": "1",
    "flush_interval": "0.2",
    "retry_initial": "0.2",
    "retry_max": "2",
    "http_timeout": "3",
    "status_interval": "0.5",
    "health_interval": "0",
    "sync_interval": "1",
    "flush_deadline": "15",
    "removed_retry": "2",
}


@dataclass
class AgentProcess:
    """One agent installation under `home` (agent.ini, device-token, state/, agent.log).

    `settings` override TEST_SETTINGS in agent.ini; `env` adds environment variables, which
    override the file as they do under systemd. The file is written at every start, so a test
    may change `center_url` or `settings` between starts."""

    center_url: str
    device_id: str
    token: str
    home: Path
    settings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def ini(self) -> Path:
        return self.home / "agent.ini"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def log_path(self) -> Path:
        return self.home / "agent.log"

    @property
    def buffer_path(self) -> Path:
        chosen = self.env.get("IOT_BUFFER_PATH") or self.settings.get("buffer_path")
        return Path(chosen) if chosen else self.state_dir / "buffer.sqlite"

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        token_file = self.home / "device-token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        values = {
            "center_url": self.center_url,
            "device_id": self.device_id,
            "device_token_file": str(token_file),
            "state_dir": str(self.state_dir),
            **TEST_SETTINGS,
            **self.settings,
        }
        self.ini.write_text("[agent]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))

    def start(self) -> None:
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
        env.update({"PYTHONUNBUFFERED": "1", **self.env})
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts} at {time.time():.3f} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "--config", str(self.ini), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, the OOM killer, a power cut as far as the process can tell."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as systemd does: the agent stops reading, flushes, and exits. Not exiting
        within `timeout` is a failure (it is killed first)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise AssertionError(
                    f"agent ignored SIGTERM for {timeout} s:\n{self.log()[-3000:]}"
                ) from None
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
        """Depth and lifetime counters straight from the buffer file (read-only)."""
        got = read_counters(self.buffer_path)
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

    def wait_drained(self, timeout: float = 60) -> None:
        self.wait("an empty buffer", lambda: self.counters().get("depth", 1) == 0, timeout)
