"""Is the system clock trustworthy? A Raspberry Pi has no real-time clock.

Until NTP has set it, a Pi's clock starts from the last shutdown (fake-hwclock) or from 1970,
and readings stamped with it land at the wrong time: worse than no reading. The kernel knows
whether a time source has synchronised it (adjtimex reports TIME_ERROR / STA_UNSYNC until
then; that is what `timedatectl`'s NTPSynchronized shows), so we ask it through ctypes.
"Unknown" (no way to ask) is treated as synchronised once the year is plausible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex: clock not synchronised
STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    # Only the fields before `status` matter; the tail pads for every architecture.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def synchronised() -> bool | None:
    """Ask the kernel; where a sandbox forbids that (systemd's ProtectClock= filters
    adjtimex), ask systemd-timesyncd's flag file, then timedatectl; None if nobody knows."""
    answer = kernel_synchronised()
    if answer is not None:
        return answer
    if TIMESYNC_FLAG.exists():
        return True
    try:
        out = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip().lower()
    return {"yes": True, "no": False}.get(value) if out.returncode == 0 else None


def kernel_synchronised() -> bool | None:
    """True/False from adjtimex(2); None where that cannot be asked (not Linux, sandbox)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not tx.status & STA_UNSYNC


def plausible(now: float, min_year: int) -> bool:
    """A clock before `min_year` is certainly wrong (this software did not exist then)."""
    return time.gmtime(now).tm_year >= min_year


def wait_for_clock(
    mode: str,
    min_year: int,
    wait_max: float,
    pause: Callable[[float], bool],
    *,
    now: Callable[[], float] = time.time,
    synchronised: Callable[[], bool | None] = synchronised,
    poll: float = 5.0,
) -> bool:
    """Block until the clock can be trusted; False if `pause` said to stop first.

    `pause(seconds)` sleeps (pinging the watchdog) and returns False when the agent stops.

    mode "off": trust it. "floor": only require year >= min_year. "auto": also wait for the
    kernel to report synchronisation, for at most `wait_max` seconds; after that a plausible
    clock is used with a warning (a Pi with no network must still measure something).
    """
    if mode == "off":
        return True
    started = time.monotonic()
    last_log = -1e9
    while True:
        t = now()
        ok_floor = plausible(t, min_year)
        synced = synchronised() if mode == "auto" else True
        waited = time.monotonic() - started
        if ok_floor and synced is not False:
            if waited > 1:
                log.info("clock is synchronised after %.0f s; starting to measure", waited)
            return True
        if ok_floor and waited >= wait_max:
            log.warning(
                "clock still not synchronised after %.0f s; using it anyway (%s UTC) - "
                "timestamps may be off until NTP catches up",
                waited,
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)),
            )
            return True
        if time.monotonic() - last_log >= 60:
            last_log = time.monotonic()
            why = (
                f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(t))}, before {min_year}"
                if not ok_floor
                else "the kernel reports it is not synchronised (NTP not reached yet)"
            )
            log.warning("waiting for the clock before measuring: %s", why)
        if not pause(poll):
            return False
