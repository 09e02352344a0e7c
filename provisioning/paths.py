"""Where things live on a device, each under an optional root (a temp dir in tests and demos)."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR = "/etc/iot-agent"  # systemd ConfigurationDirectory=iot-agent
STATE_DIR = "/var/lib/iot-agent"  # systemd StateDirectory=iot-agent
AGENT_CONFIG_NAME = "agent.ini"
TOKEN_FILE_NAME = "device-token"  # noqa: S105 (a file name)
MARKER_NAME = "provisioned"
SERVICE_USER = "iot-agent"
AGENT_UNIT = "iot-agent.service"


def under(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """`path` (absolute, as on a device) inside `root`: under("/tmp/x", "/etc") = /tmp/x/etc."""
    relative = str(path).lstrip("/")
    return Path(root) / relative if relative else Path(root)
