"""sd_notify without libsystemd: a datagram to $NOTIFY_SOCKET (Type=notify services).

READY=1 tells systemd the agent is up (so dependants start after it), WATCHDOG=1 proves the
main loop still turns (systemd restarts a hung agent), STATUS= shows in `systemctl status`.
Outside systemd every call is a silent no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*assignments: str, env: dict[str, str] | None = None) -> bool:
    """Send e.g. notify("READY=1", "STATUS=running"); True if systemd got it."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET")
    if not address or not assignments:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    message = "\n".join(assignments).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half systemd's WatchdogSec), or None if not asked."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1e6 / 2, 0.5)
    except ValueError:
        return None
