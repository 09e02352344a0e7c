"""Put the result of a registration in place and hand over to the agent.

Order matters for a device that loses power half-way (each file is written atomically):
1. the device credential (0600, owned by the service user), 2. the agent configuration,
3. the "provisioned" marker, 4. the enrollment token removed from the boot partition,
5. `systemctl enable --now iot-agent.service`.
A cut before 3 simply re-runs provisioning at the next boot (the id is re-provisioned with a
fresh token); a cut between 3 and 4 leaves the enrollment token on the boot partition, which
the next `iot-provision` run reports.
"""

from __future__ import annotations

import configparser
import datetime as dt
import io
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from agent import settings as agent_settings
from agent.center import CenterClient
from agent.contract import DeviceConfig
from provisioning.bootconfig import fsync_dir
from provisioning.errors import InstallError, StartError
from provisioning.paths import AGENT_CONFIG_NAME, AGENT_UNIT, MARKER_NAME, TOKEN_FILE_NAME

# Keys provisioning writes itself; a boot config [agent] section may add any other agent key.
OWNED_KEYS = ("center_url", "device_id", "device_token_file", "state_dir")
SECRET_KEYS = ("device_token",)


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int
    name: str


def service_owner(
    user: str, lookup: Callable[[str], pwd.struct_passwd] = pwd.getpwnam
) -> Owner | None:
    """The service user to own the credential: only when running as root and it exists."""
    if os.geteuid() != 0:
        return None
    try:
        entry = lookup(user)
    except KeyError:
        return None
    return Owner(entry.pw_uid, entry.pw_gid, user)


def write_file(path: Path, content: str, *, mode: int, owner: Owner | None = None) -> None:
    """Write `content` to `path` atomically with `mode` (set before any byte is written)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise InstallError(f"cannot write {path}: {error.strerror or error}") from error
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise InstallError(f"cannot write {path}: {error.strerror or error}") from error
    fsync_dir(path.parent)


def save_credential(path: Path, token: str, owner: Owner | None = None) -> None:
    """The device token, readable by its owner only (0600)."""
    write_file(path, token.strip() + "\n", mode=0o600, owner=owner)


def agent_extras(boot_config_path: Path) -> dict[str, str]:
    """Extra agent settings from an optional `[agent]` section of the boot config.

    Lets a fleet set, say, `led_pin = 17` on the SD card. Unknown keys are refused here,
    where the person who wrote them reads the error, rather than at every agent start.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(boot_config_path, encoding="utf-8-sig")
    except configparser.Error:
        return {}
    if not parser.has_section(agent_settings.SECTION):
        return {}
    known = {f.name for f in fields(agent_settings.Settings)}
    extras: dict[str, str] = {}
    for key, value in parser.items(agent_settings.SECTION):
        if key in OWNED_KEYS or key in SECRET_KEYS:
            continue
        if key not in known:
            raise InstallError(
                f"{boot_config_path} [{agent_settings.SECTION}] has unknown key '{key}'"
            )
        extras[key] = value
    return extras


def agent_ini(
    *,
    center_url: str,
    device_id: str,
    token_file: Path,
    state_dir: Path,
    extras: Mapping[str, str] | None = None,
) -> str:
    """The agent's configuration file (agent/settings.py reads it)."""
    parser = configparser.ConfigParser(interpolation=None)
    section = agent_settings.SECTION
    parser[section] = {
        "center_url": center_url,
        "device_id": device_id,
        "device_token_file": str(token_file),
        "state_dir": str(state_dir),
    }
    for key, value in (extras or {}).items():
        parser[section][key] = value
    out = io.StringIO()
    out.write(
        "# Written by iot-provision; the device token is in device_token_file, not here.\n"
        "# Other keys the agent knows (led_pin, button_pin, sensor, ...): see agent/settings.py.\n"
    )
    parser.write(out)
    return out.getvalue()


def write_marker(path: Path, *, device_id: str, center_url: str, replaced: bool) -> None:
    record = {
        "deviceId": device_id,
        "centerUrl": center_url,
        "reprovisioned": replaced,
        "provisionedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_file(path, json.dumps(record, indent=2) + "\n", mode=0o644)


def read_marker(path: Path) -> dict[str, object] | None:
    """The marker's record, {} if it exists but cannot be read as one, None if absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


@dataclass(frozen=True)
class Layout:
    """Where provisioning writes, on a device: /etc/iot-agent and /var/lib/iot-agent."""

    config_dir: Path
    state_dir: Path

    @property
    def agent_config(self) -> Path:
        return self.config_dir / AGENT_CONFIG_NAME

    @property
    def token_file(self) -> Path:
        return self.config_dir / TOKEN_FILE_NAME

    @property
    def marker(self) -> Path:
        return self.state_dir / MARKER_NAME


def seed_device_config(
    layout: Layout, config: DeviceConfig, owner: Owner | None, center_url: str
) -> Path:
    """Save the configuration the registration answered where the agent keeps its last good
    copy, with the agent's own code: the agent can start even if the server is unreachable
    right after provisioning, and never starts from a copy holding a revoked token."""
    cache = agent_settings.Settings(
        center_url=center_url,
        device_id=config.id,
        device_token=config.influx_token,
        state_dir=layout.state_dir,
    ).config_cache
    try:
        CenterClient(center_url, config.id, config.influx_token, cache_path=cache).save(config)
        if owner is not None:
            os.chown(cache, owner.uid, owner.gid)
    except OSError as error:
        raise InstallError(f"cannot write {cache}: {error.strerror or error}") from error
    return cache


def install(
    layout: Layout,
    *,
    center_url: str,
    device_id: str,
    token: str,
    owner: Owner | None,
    extras: Mapping[str, str] | None = None,
    config: DeviceConfig | None = None,
) -> None:
    """Steps 1-2: the credential and the agent configuration (and its first device config)."""
    save_credential(layout.token_file, token, owner)
    try:
        layout.state_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(layout.state_dir, owner.uid, owner.gid)
    except OSError as error:
        raise InstallError(f"cannot create {layout.state_dir}: {error.strerror}") from error
    if config is not None:
        seed_device_config(layout, config, owner, center_url)
    write_file(
        layout.agent_config,
        agent_ini(
            center_url=center_url,
            device_id=device_id,
            token_file=layout.token_file,
            state_dir=layout.state_dir,
            extras=extras,
        ),
        mode=0o644,
    )


def start_agent(
    unit: str = AGENT_UNIT,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> None:
    """`systemctl enable --now <unit>`, in two steps, naming the cause when one fails.

    `restart` rather than `start`: after `--force` an agent may be running with the old,
    now revoked token. The (re)start is queued (`--no-block`) rather than awaited: the agent
    is `Type=notify` and may take a while to say READY (it waits for its sensor and clock),
    and this command may itself run inside iot-provision.service, where waiting on another
    start job only risks a hang.
    """
    if shutil.which("systemctl") is None:
        raise StartError(f"systemctl not found; start {unit} by hand (or use --no-start)")
    for command in (
        ["systemctl", "enable", unit],
        ["systemctl", "restart", "--no-block", unit],
    ):
        shown = " ".join(command)
        try:
            result = run(command, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.SubprocessError) as error:
            raise StartError(f"{shown}: {error}") from error
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise StartError(
                f"{shown} failed ({result.returncode}): "
                f"{detail[-1] if detail else 'no output'}; see journalctl -u {unit}"
            )
