"""Clock judgement, the retry loop's progress lines and deadline, the network check."""

from __future__ import annotations

import datetime as dt
import io
import re
import socket

import pytest

from provisioning import clock, network
from provisioning.errors import BootConfigError, ClockError, NetworkError, ServerError
from provisioning.progress import Progress
from provisioning.retry import Backoff, Deadline, TryAgain, retry_until

FLOOR = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)
BEFORE = dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC).timestamp()
AFTER = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()


def test_clock_before_floor_waits_and_says_why() -> None:
    with pytest.raises(TryAgain) as caught:
        clock.check_clock(mode="auto", floor=FLOOR, now=lambda: BEFORE, ntp=lambda: True)
    assert "1970-01-01" in caught.value.reason
    assert "no real-time clock" in caught.value.reason
    assert isinstance(caught.value.give_up, ClockError)


def test_clock_not_ntp_synchronised_waits() -> None:
    with pytest.raises(TryAgain, match="not synchronised"):
        clock.check_clock(mode="auto", floor=FLOOR, now=lambda: AFTER, ntp=lambda: False)


def test_clock_good() -> None:
    assert "NTP" in clock.check_clock(mode="auto", now=lambda: AFTER, ntp=lambda: True)
    # timedatectl cannot answer (no systemd): the floor alone decides.
    assert "past 2025-11-01" in clock.check_clock(mode="auto", now=lambda: AFTER, ntp=lambda: None)
    # floor mode never asks timedatectl.
    assert "past" in clock.check_clock(mode="floor", now=lambda: AFTER, ntp=lambda: False)
    assert clock.check_clock(mode="none", now=lambda: BEFORE) == "clock check skipped"


def test_parse_floor() -> None:
    assert clock.parse_floor("2030-01-02") == dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        clock.parse_floor("soon")


def test_ntp_synchronized_reads_timedatectl(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    monkeypatch.setattr(clock.shutil, "which", lambda name: "/usr/bin/timedatectl")
    answers = {"yes\n": True, "no\n": False}
    for out, expected in answers.items():

        def run(cmd: list[str], out: str = out, **_: object) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(cmd, 0, out, "")

        assert clock.ntp_synchronized(run) is expected
    failed = clock.ntp_synchronized(
        lambda cmd, **_: subprocess.CompletedProcess(cmd, 1, "", "Failed to connect to bus")
    )
    assert failed is None


class FakeTime:
    """A monotonic clock that sleeping advances, so backoff tests take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_retry_backs_off_exponentially_reports_each_attempt_and_succeeds() -> None:
    fake = FakeTime()
    out = io.StringIO()
    progress = Progress(out)
    calls = []

    def attempt() -> str:
        calls.append(fake.now)
        if len(calls) < 5:
            raise TryAgain(f"not yet ({len(calls)})", NetworkError())
        return "ok"

    result = retry_until(
        attempt,
        what="thing",
        deadline=Deadline(0, clock=fake),
        progress=progress,
        backoff=Backoff(initial=1, maximum=6, jitter=0),
        sleep=fake.sleep,
    )
    assert result == "ok"
    assert fake.sleeps == [1, 2, 4, 6]  # doubling, capped
    assert len(progress.lines) == 4
    assert (
        progress.lines[0] == "thing: attempt 1 failed: not yet (1); next try in 1 s (no time limit)"
    )
    assert out.getvalue().startswith("iot-provision: thing: attempt 1 failed")


def test_retry_gives_up_at_the_deadline_with_the_cause() -> None:
    fake = FakeTime()
    progress = Progress(io.StringIO())

    def attempt() -> None:
        raise TryAgain("server said 503", ServerError("IoT Center kept answering 503"))

    with pytest.raises(ServerError) as caught:
        retry_until(
            attempt,
            what="registration",
            deadline=Deadline(10, clock=fake),
            progress=progress,
            backoff=Backoff(initial=1, maximum=4, jitter=0),
            sleep=fake.sleep,
        )
    assert fake.now == 10  # never sleeps past the deadline
    assert "server said 503" in str(caught.value)
    assert "gave up after" in str(caught.value)
    assert "giving up in" in progress.lines[0]


def test_permanent_error_stops_at_once() -> None:
    fake = FakeTime()

    def attempt() -> None:
        raise BootConfigError("bad")

    with pytest.raises(BootConfigError):
        retry_until(
            attempt,
            what="x",
            deadline=Deadline(0, clock=fake),
            progress=Progress(io.StringIO()),
            sleep=fake.sleep,
        )
    assert fake.sleeps == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_network_check_refused_and_unresolvable() -> None:
    port = free_port()
    with pytest.raises(TryAgain, match=re.escape(f"cannot connect to 127.0.0.1:{port}")):
        network.check_reachable("127.0.0.1", port)
    with pytest.raises(TryAgain, match=re.escape("cannot resolve no-such-host.invalid")):
        network.check_reachable("no-such-host.invalid", 80)


def test_network_check_passes_on_a_listening_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        network.check_reachable("127.0.0.1", server.getsockname()[1])


def test_host_and_port() -> None:
    assert network.host_and_port("https://iot.example.com") == ("iot.example.com", 443)
    assert network.host_and_port("http://10.0.0.5:5000/x") == ("10.0.0.5", 5000)
    assert network.host_and_port("http://[::1]:8") == ("::1", 8)
    with pytest.raises(BootConfigError):
        network.host_and_port("http://h:notaport")
