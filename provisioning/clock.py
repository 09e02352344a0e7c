"""Wait for a synchronised clock before registering.

A Raspberry Pi has no battery-backed real-time clock: until NTP answers, it starts from the
time of its last shutdown (fake-hwclock) or from 1970. Registering with such a clock gives
wrong `createdAt` times and, on https, certificates that are "not yet valid"; the agent would
also stamp readings wrongly. So provisioning waits for the clock and says so.

Two checks, both must pass:
- the time is past a floor date (a clock before it is certainly wrong; default: the date this
  code was written);
- in `auto` mode, `timedatectl show -p NTPSynchronized --value` says `yes` when timedatectl
  can answer (systemd running); when it cannot (containers, no systemd), the floor alone.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Callable

from provisioning.errors import ClockError
from provisioning.progress import Progress
from provisioning.retry import Backoff, Deadline, TryAgain, retry_until

DEFAULT_FLOOR = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)
MODES = ("auto", "floor", "none")


def ntp_synchronized(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> bool | None:
    """True/False from timedatectl, or None when it cannot tell (absent, no systemd)."""
    if shutil.which("timedatectl") is None:
        return None
    try:
        result = run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    answer = result.stdout.strip().lower()
    if result.returncode != 0 or answer not in ("yes", "no"):
        return None
    return answer == "yes"


def parse_floor(text: str) -> dt.datetime:
    """A floor date from `YYYY-MM-DD` or an ISO date-time (UTC if no zone is given)."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def check_clock(
    *,
    mode: str = "auto",
    floor: dt.datetime = DEFAULT_FLOOR,
    now: Callable[[], float] = time.time,
    ntp: Callable[[], bool | None] = ntp_synchronized,
) -> str:
    """Return how the clock was judged good, or raise TryAgain saying why it is not."""
    if mode == "none":
        return "clock check skipped"
    current = dt.datetime.fromtimestamp(now(), tz=dt.UTC)
    shown = current.strftime("%Y-%m-%d %H:%M:%S UTC")
    if current < floor:
        raise TryAgain(
            f"the clock says {shown}, before {floor:%Y-%m-%d}; a Pi has no real-time clock, "
            "waiting for NTP to set it",
            ClockError(),
        )
    if mode == "auto":
        synced = ntp()
        if synced is False:
            raise TryAgain(
                f"the clock ({shown}) is not synchronised yet (timedatectl NTPSynchronized=no); "
                "a Pi has no real-time clock, waiting for NTP",
                ClockError(),
            )
        if synced is True:
            return f"clock synchronised by NTP: {shown}"
    return f"clock is past {floor:%Y-%m-%d}: {shown}"


def wait_for_clock(
    *,
    deadline: Deadline,
    progress: Progress,
    check: Callable[[], str] | None = None,
    backoff: Backoff = Backoff(),  # noqa: B008
) -> None:
    """Wait until `check` (default: `check_clock()`) passes or the deadline passes."""
    attempt = check or check_clock
    result = retry_until(
        attempt, what="clock", deadline=deadline, progress=progress, backoff=backoff
    )
    progress.say(result)
