"""Local agent settings: the `[agent]` section of agent.ini, overridden by the environment.

The file says what never comes from the server: where the IoT Center is, who this device is,
its credential, where the buffer lives, which sensor and GPIO pins to use. Everything about
InfluxDB (URL, bucket, token, measurement interval) comes from the IoT Center instead.

Environment variables win over the file, so a container or a test can run without one.
`IOT_CENTER_URL` and `IOT_DEVICE_ID` are the names the Node.js IoT Center's Python client uses;
every other key can be set as `IOT_AGENT_<KEY>` (e.g. `IOT_AGENT_LED_PIN=17`), and a few have
short aliases (`IOT_DEVICE_TOKEN`, `IOT_BUFFER_PATH`, `IOT_STATE_DIR`).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from agent import contract

DEFAULT_CONFIG_PATH = Path("/etc/iot-agent/agent.ini")
DEFAULT_STATE_DIR = Path("/var/lib/iot-agent")
SECTION = "agent"

ENV_ALIASES = {
    "center_url": "IOT_CENTER_URL",
    "device_id": "IOT_DEVICE_ID",
    "device_token": "IOT_DEVICE_TOKEN",
    "device_token_file": "IOT_DEVICE_TOKEN_FILE",
    "buffer_path": "IOT_BUFFER_PATH",
    "state_dir": "IOT_STATE_DIR",
}

SENSOR_CHOICES = ("auto", "bme280", "virtual")
FALLBACK_CHOICES = ("auto", "virtual", "never")
SYNC_CHOICES = ("normal", "full")
COMPRESSION_CHOICES = ("gzip", "none")
CLOCK_CHOICES = ("auto", "floor", "off")


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the file (or variable) and key."""


@dataclass(frozen=True)
class Settings:
    """Everything the agent needs locally. Times are in seconds."""

    center_url: str
    device_id: str
    device_token: str
    state_dir: Path = DEFAULT_STATE_DIR
    buffer_path: Path | None = None  # default: <state_dir>/buffer.sqlite
    device_token_file: Path | None = None  # read when device_token is not given
    # Buffer: bounded by points; "normal" syncs to disk every sync_interval, "full" each commit.
    buffer_max_points: int = 500_000
    buffer_sync: str = "normal"
    sync_interval: float = 5.0
    # Writer.
    batch_size: int = 1000
    drain_batch_size: int = 10000  # points per request while draining a backlog
    write_concurrency: int = 4  # requests in flight while draining a backlog
    http_compression: str = "gzip"  # request bodies over 1 KB: "gzip" or "none"
    flush_interval: float = 1.0
    http_timeout: float = 10.0
    retry_initial: float = 1.0
    retry_max: float = 300.0
    flush_deadline: float = 20.0
    # Sensor.
    sensor: str = "auto"
    fallback: str = "auto"
    i2c_addresses: tuple[int, ...] = (0x77, 0x76)
    sensor_reinit_after: int = 3
    # Status LED and button (BCM pin numbers); absent means none.
    led_pin: int | None = None
    button_pin: int | None = None
    # Clock: wait for NTP ("auto"), only check the year ("floor"), or trust it ("off").
    clock_check: str = "auto"
    clock_min_year: int = 2025
    clock_wait_max: float = 900.0
    # Loop.
    measurement_interval_override: float | None = None  # seconds, >= 0.01 (50/s: 0.02)
    configuration_refresh_override: int | None = None
    removed_retry: float = 600.0
    health_interval: float = 60.0
    status_interval: float = 5.0

    @property
    def buffer_file(self) -> Path:
        return self.buffer_path or self.state_dir / "buffer.sqlite"

    @property
    def config_cache(self) -> Path:
        return self.state_dir / "device-config.json"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"


def _parse(key: str, raw: str, kind: str, where: str) -> object:
    raw = raw.strip()
    try:
        if kind == "int":
            return int(raw, 0)
        if kind == "float":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        if kind == "optint":
            return None if raw.lower() in ("", "none", "off") else int(raw, 0)
        if kind == "optfloat":
            if raw.lower() in ("", "none", "off"):
                return None
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return int(value) if value.is_integer() else value
        if kind == "path":
            return Path(raw).expanduser() if raw else None
        if kind == "addresses":
            values = tuple(int(part.strip(), 0) for part in raw.split(",") if part.strip())
            if not values or any(not 0x03 <= v <= 0x77 for v in values):
                raise ValueError
            return values
    except ValueError:
        expected = {
            "int": "an integer",
            "optint": "an integer or 'none'",
            "optfloat": "a number or 'none'",
            "float": "a number",
            "addresses": "a comma-separated list of I2C addresses such as 0x77, 0x76",
        }.get(kind, kind)
        raise SettingsError(f"{where}: '{key}' = {raw!r} is not {expected}") from None
    return raw


_KINDS = {
    "state_dir": "path",
    "buffer_path": "path",
    "device_token_file": "path",
    "buffer_max_points": "int",
    "sync_interval": "float",
    "batch_size": "int",
    "drain_batch_size": "int",
    "write_concurrency": "int",
    "flush_interval": "float",
    "http_timeout": "float",
    "retry_initial": "float",
    "retry_max": "float",
    "flush_deadline": "float",
    "i2c_addresses": "addresses",
    "sensor_reinit_after": "int",
    "led_pin": "optint",
    "button_pin": "optint",
    "clock_min_year": "int",
    "clock_wait_max": "float",
    "measurement_interval_override": "optfloat",
    "configuration_refresh_override": "optint",
    "removed_retry": "float",
    "health_interval": "float",
    "status_interval": "float",
}
_CHOICES = {
    "sensor": SENSOR_CHOICES,
    "fallback": FALLBACK_CHOICES,
    "buffer_sync": SYNC_CHOICES,
    "http_compression": COMPRESSION_CHOICES,
    "clock_check": CLOCK_CHOICES,
}
_KNOWN = {f.name for f in fields(Settings)}


def _env_name(key: str) -> str:
    return ENV_ALIASES.get(key, f"IOT_AGENT_{key.upper()}")


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    required: bool = False,
) -> Settings:
    """Read settings from `path` (default /etc/iot-agent/agent.ini) and `env`.

    A missing file is fine when it is the default and the environment provides the rest;
    `required=True` (an explicit --config) makes it an error.
    """
    env = os.environ if env is None else env
    path = path or DEFAULT_CONFIG_PATH
    file_values: dict[str, str] = {}
    if path.exists():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with path.open(encoding="utf-8") as fh:
                parser.read_file(fh)
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: cannot parse: {exc}") from None
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
        if not parser.has_section(SECTION):
            raise SettingsError(f"{path}: no [{SECTION}] section")
        for key, value in parser.items(SECTION):
            if key not in _KNOWN:
                raise SettingsError(f"{path}: [{SECTION}] unknown key '{key}'")
            file_values[key] = value
    elif required:
        raise SettingsError(f"{path}: no such file")

    values: dict[str, object] = {}
    for key in _KNOWN:
        env_name = _env_name(key)
        if env.get(env_name, "") != "":
            raw, where = env[env_name], f"environment variable {env_name}"
        elif key in file_values:
            raw, where = file_values[key], f"{path} [{SECTION}]"
        else:
            continue
        if key in _CHOICES:
            raw = raw.strip().lower()
            if raw not in _CHOICES[key]:
                raise SettingsError(
                    f"{where}: '{key}' = {raw!r}; choose one of {', '.join(_CHOICES[key])}"
                )
            values[key] = raw
        else:
            values[key] = _parse(key, raw, _KINDS.get(key, "str"), where)

    source = f"{path} [{SECTION}]" if path.exists() else "environment"
    for key in ("center_url", "device_id"):
        if not values.get(key):
            raise SettingsError(
                f"{source}: '{key}' is not set (or set environment variable {_env_name(key)})"
            )
    url = str(values["center_url"]).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"{source}: 'center_url' = {url!r} must start with http:// or https://")
    values["center_url"] = url
    try:
        contract.validate_device_id(values["device_id"])
    except contract.InvalidDeviceId as exc:
        raise SettingsError(f"{source}: 'device_id': {exc}") from None

    if not values.get("device_token"):
        token_file = values.get("device_token_file")
        if token_file is None:
            raise SettingsError(
                f"{source}: neither 'device_token' nor 'device_token_file' is set "
                f"(or set {_env_name('device_token')}); run iot-provision first"
            )
        try:
            values["device_token"] = Path(str(token_file)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"{source}: 'device_token_file' {token_file}: {exc.strerror}"
            ) from None
        if not values["device_token"]:
            raise SettingsError(f"{source}: 'device_token_file' {token_file} is empty")

    for key in (
        "buffer_max_points",
        "batch_size",
        "drain_batch_size",
        "write_concurrency",
        "sensor_reinit_after",
    ):
        if key in values and int(values[key]) < 1:  # type: ignore[call-overload]
            raise SettingsError(f"{source}: '{key}' must be at least 1")
    override = values.get("measurement_interval_override")
    if override is not None and not 0.01 <= float(override) <= 86400:  # type: ignore[arg-type]
        raise SettingsError(
            f"{source}: 'measurement_interval_override' must be between 0.01 and 86400 seconds"
        )
    key = "configuration_refresh_override"
    if values.get(key) is not None and not 1 <= int(values[key]) <= 86400:  # type: ignore[call-overload]
        raise SettingsError(f"{source}: '{key}' must be between 1 and 86400 seconds")
    for key, kind in _KINDS.items():
        if kind == "float" and key in values and float(values[key]) < 0:  # type: ignore[arg-type]
            raise SettingsError(f"{source}: '{key}' must not be negative")
    if values.get("state_dir") is None:
        values.pop("state_dir", None)
    return Settings(**values)  # type: ignore[arg-type]
