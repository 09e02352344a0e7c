"""Talks to the IoT Center: fetches this device's configuration and keeps the last good copy.

The configuration (InfluxDB URL, org, bucket, token, measurement interval, position) lives on
the server so it can change without touching the Pi. The copy on disk (mode 0600: it holds
the InfluxDB token) lets the agent start and keep measuring when the server is unreachable.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from agent import contract
from agent.contract import DeviceConfig

log = logging.getLogger(__name__)


class CenterError(Exception):
    """The IoT Center did not give us a configuration; subclasses say why."""


class CenterUnavailable(CenterError):
    """Network error, timeout, 5xx or an unreadable answer: try again later."""


class DeviceRemoved(CenterError):
    """404: the server does not know this device (deleted by an admin, or never registered)."""


class CredentialRefused(CenterError):
    """401/403: the device token was revoked or replaced; the device must be re-provisioned."""


@dataclass(frozen=True)
class CachedConfig:
    config: DeviceConfig
    fetched_at: float  # Unix time of the fetch that produced it


class CenterClient:
    """GET /api/env/<id> with `Authorization: Token <device token>`."""

    def __init__(
        self,
        center_url: str,
        device_id: str,
        device_token: str,
        cache_path: Path,
        *,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.center_url = center_url.rstrip("/")
        self.device_id = contract.validate_device_id(device_id)
        self._token = device_token
        self.cache_path = Path(cache_path)
        self.timeout = timeout
        self.session = session or requests.Session()

    @property
    def env_url(self) -> str:
        return f"{self.center_url}/api/env/{quote(self.device_id, safe='')}"

    def fetch(self) -> DeviceConfig:
        """Ask the server; raise a CenterError subclass saying what went wrong."""
        try:
            resp = self.session.get(
                self.env_url,
                headers={"Authorization": f"Token {self._token}", "Accept": "application/json"},
                timeout=(min(5.0, self.timeout), self.timeout),
            )
        except requests.RequestException as exc:
            raise CenterUnavailable(
                f"cannot reach the IoT Center at {self.center_url}: {type(exc).__name__}"
            ) from None
        if resp.status_code == 404:
            raise DeviceRemoved(
                f"the IoT Center at {self.center_url} does not know device '{self.device_id}' "
                "(removed by an administrator, or never registered): data stays buffered; "
                "re-provision the device to resume"
            )
        if resp.status_code in (401, 403):
            raise CredentialRefused(
                f"the IoT Center refused this device's token (HTTP {resp.status_code}): it was "
                "revoked or replaced; data stays buffered; re-provision the device to resume"
            )
        if resp.status_code != 200:
            raise CenterUnavailable(
                f"the IoT Center answered HTTP {resp.status_code} for {self.env_url}"
            )
        try:
            config = DeviceConfig.from_dict(resp.json())
        except ValueError as exc:  # JSON error or InvalidDeviceConfig
            raise CenterUnavailable(
                f"the IoT Center sent an unusable configuration: {exc}"
            ) from None
        if config.id != self.device_id:
            raise CenterUnavailable(
                f"the IoT Center sent the configuration of '{config.id}', not '{self.device_id}'"
            )
        return config

    def save(self, config: DeviceConfig, fetched_at: float | None = None) -> None:
        """Write the last good configuration atomically, readable by the owner only."""
        doc = {"fetchedAt": fetched_at or time.time(), "config": config.to_dict()}
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".device-config.", dir=self.cache_path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.cache_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_cached(self) -> CachedConfig | None:
        """The saved configuration, or None (with a log line) if absent or unusable."""
        return load_cached(self.cache_path, self.device_id)


def load_cached(path: Path, device_id: str | None = None) -> CachedConfig | None:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        config = DeviceConfig.from_dict(doc["config"])
        fetched_at = float(doc["fetchedAt"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("saved device configuration %s is unusable (%s); ignoring it", path, exc)
        return None
    if device_id is not None and config.id != device_id:
        log.warning(
            "saved device configuration %s is for '%s', not '%s'; ignoring it",
            path,
            config.id,
            device_id,
        )
        return None
    return CachedConfig(config, fetched_at)
