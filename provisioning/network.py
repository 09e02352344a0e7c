"""Wait until the IoT Center host resolves and accepts a TCP connection.

At first boot the network comes up late (Wi-Fi association, DHCP, DNS), so provisioning
waits for it instead of failing; the progress line says which of the two is missing.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from provisioning.errors import BootConfigError, NetworkError
from provisioning.progress import Progress
from provisioning.retry import Backoff, Deadline, TryAgain, retry_until


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise BootConfigError(f"url {url!r} has no host name")
    try:
        port = parts.port
    except ValueError as error:
        raise BootConfigError(f"url {url!r} has a bad port: {error}") from error
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_reachable(host: str, port: int, timeout: float = 5.0) -> None:
    """Raise TryAgain naming the cause if `host:port` cannot be reached right now."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise TryAgain(
            f"cannot resolve {host} ({error.strerror or error}): no network or DNS not ready",
            NetworkError(),
        ) from error
    last: OSError | None = None
    for family, kind, proto, _name, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return
        except OSError as error:
            last = error
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise TryAgain(
        f"cannot connect to {host}:{port} ({reason}): server down or unreachable",
        NetworkError(),
    )


def wait_for_server(
    url: str,
    *,
    deadline: Deadline,
    progress: Progress,
    backoff: Backoff = Backoff(),  # noqa: B008
) -> None:
    host, port = host_and_port(url)
    progress.say(f"waiting for the network: {host}:{port}")
    retry_until(
        lambda: check_reachable(host, port),
        what="network",
        deadline=deadline,
        progress=progress,
        backoff=backoff,
    )
    progress.say(f"network is up: {host}:{port} answers")
