"""Server settings: `config.ini` ([APP] section, as InfluxDB's IoT tutorial uses), overridden
by environment variables of the same names. A missing or malformed setting stops start-up with
a message that names the setting and the file: the server never runs half-configured.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

SECTION = "APP"
DEFAULT_CONFIG = "config.ini"


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and where."""


def _positive_int(name: str, raw: str, lo: int = 1, hi: int = 86400) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of seconds, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float_in(name: str, raw: str, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _url(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")) or len(raw) < 10:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return raw.rstrip("/")


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Everything the server needs; names match config.ini keys and environment variables."""

    INFLUX_URL: str
    INFLUX_TOKEN: str = field(repr=False)
    INFLUX_ORG: str
    SECRET_KEY: str = field(repr=False)
    INFLUX_BUCKET: str = "iot_center"
    INFLUX_BUCKET_AUTH: str = "iot_center_devices"
    # The InfluxDB URL devices should write to, when it differs from the server's own view.
    DEVICE_INFLUX_URL: str = ""
    # Lets provisioning register devices; empty disables enrollment.
    ENROLLMENT_TOKEN: str = field(default="", repr=False)
    MEASUREMENT_INTERVAL: int = 60
    CONFIGURATION_REFRESH: int = 3600
    DEFAULT_LAT: float = 50.0872
    DEFAULT_LON: float = 14.4211
    TELEMETRY_RETENTION_DAYS: int = 30
    # Reference behaviour for old firmware: unknown ids self-register on GET without a credential.
    OPEN_REGISTRATION: bool = False
    # Sign-in: InfluxDB users through its sign-in API; ADMIN_USER/ADMIN_PASSWORD_HASH optional.
    ADMIN_USER: str = ""
    ADMIN_PASSWORD_HASH: str = field(default="", repr=False)
    # A device counts as offline after this many missed measurement intervals.
    OFFLINE_AFTER_INTERVALS: int = 3
    # How long a worker may answer a device from its copy of the device's record (0: never).
    # A removed device may read its configuration this long after removal, in other workers;
    # its InfluxDB token is revoked at once regardless.
    DEVICE_CACHE_SECONDS: int = 30
    # Pages (home, devices, fleet map) may show a device list this many seconds old, read by
    # the same worker: listing costs InfluxDB about 0.2 ms per device (2 s at 10,000). Changes
    # made by the signed-in user show at once; other changes within this time. 0: always fresh.
    LIST_CACHE_SECONDS: int = 10
    source: str = ""

    @property
    def device_influx_url(self) -> str:
        return self.DEVICE_INFLUX_URL or self.INFLUX_URL

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
    ) -> Settings:
        """Read `path` (if it exists, or if it was named explicitly) and the environment."""
        env = dict(os.environ if environ is None else environ)
        explicit = path is not None or "IOT_CENTER_CONFIG" in env
        cfg_path = Path(path or env.get("IOT_CENTER_CONFIG") or DEFAULT_CONFIG)
        raw: dict[str, str] = {}
        if cfg_path.exists():
            parser = configparser.ConfigParser(interpolation=None)
            parser.optionxform = str  # type: ignore[assignment,method-assign]  (keep key case)
            try:
                parser.read(cfg_path, encoding="utf-8")
            except (configparser.Error, UnicodeDecodeError) as e:
                raise ConfigError(f"{cfg_path}: cannot parse: {e}") from None
            if not parser.has_section(SECTION):
                raise ConfigError(f"{cfg_path}: no [{SECTION}] section")
            known = {f.name for f in fields(cls)} - {"source"}
            for key, value in parser.items(SECTION):
                if key.upper() not in known:
                    raise ConfigError(f"{cfg_path}: unknown setting {key!r} in [{SECTION}]")
                raw[key.upper()] = value.strip()
        elif explicit:
            raise ConfigError(f"{cfg_path}: configuration file not found")
        where = str(cfg_path) if cfg_path.exists() else "the environment"
        for f in fields(cls):
            if f.name in env and f.name != "source":
                raw[f.name] = env[f.name]
        try:
            return cls._from_raw(raw, where)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    @classmethod
    def _from_raw(cls, raw: dict[str, str], where: str) -> Settings:
        for required in ("INFLUX_URL", "INFLUX_TOKEN", "INFLUX_ORG", "SECRET_KEY"):
            if not raw.get(required):
                raise ConfigError(
                    f"{required} is missing (set it in [{SECTION}] or the environment)"
                )
        if len(raw["SECRET_KEY"]) < 16:
            raise ConfigError("SECRET_KEY must be at least 16 characters (signs sessions)")
        values: dict[str, object] = {"source": where}
        for f in fields(cls):
            if f.name == "source" or f.name not in raw:
                continue
            text = raw[f.name]
            if f.name in ("INFLUX_URL",) or (f.name == "DEVICE_INFLUX_URL" and text):
                values[f.name] = _url(f.name, text)
            elif f.name in ("MEASUREMENT_INTERVAL", "CONFIGURATION_REFRESH"):
                values[f.name] = _positive_int(f.name, text)
            elif f.name == "TELEMETRY_RETENTION_DAYS":
                values[f.name] = _positive_int(f.name, text, 1, 36500)
            elif f.name in ("DEVICE_CACHE_SECONDS", "LIST_CACHE_SECONDS"):
                values[f.name] = _positive_int(f.name, text, 0, 3600)
            elif f.name == "OFFLINE_AFTER_INTERVALS":
                values[f.name] = _positive_int(f.name, text, 1, 1000)
            elif f.name == "DEFAULT_LAT":
                values[f.name] = _float_in(f.name, text, -90, 90)
            elif f.name == "DEFAULT_LON":
                values[f.name] = _float_in(f.name, text, -180, 180)
            elif f.name == "OPEN_REGISTRATION":
                values[f.name] = _bool(f.name, text)
            elif f.name in ("INFLUX_BUCKET", "INFLUX_BUCKET_AUTH", "INFLUX_ORG"):
                if not text or len(text) > 255 or text.startswith("_"):
                    raise ConfigError(f"{f.name} must be a bucket/org name, got {text!r}")
                values[f.name] = text
            else:
                values[f.name] = text
        if values.get("INFLUX_BUCKET", "iot_center") == values.get(
            "INFLUX_BUCKET_AUTH", "iot_center_devices"
        ):
            raise ConfigError(
                "INFLUX_BUCKET and INFLUX_BUCKET_AUTH must differ (tokens live there)"
            )
        return cls(**values)  # type: ignore[arg-type]
