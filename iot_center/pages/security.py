"""Sign-in and form safety for the pages: credential checks, CSRF tokens, login backoff.

- Credentials are checked against InfluxDB's own users (`POST /api/v2/signin` with HTTP basic
  auth; 204 means valid), or against ADMIN_USER + ADMIN_PASSWORD_HASH (a werkzeug hash) when
  those are configured.
- Every page form carries the session's CSRF token in a hidden field; every POST to a page is
  refused (400) unless the field matches (`hmac.compare_digest`). The JSON API is exempt when
  the caller sends a `Token` header; a browser session mutating the API must send the token
  in `X-CSRF-Token`.
- Repeated wrong passwords are slowed down per user name and per client address: each failure
  costs a short delay, and after one the next attempt must wait 1, 2, 4, ... up to 300 s. The
  counters live in memory, per worker process: several workers each keep their own (an
  attacker spreading tries over N workers gets N times the rate, still exponentially slowed).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import requests
from flask import session
from werkzeug.security import check_password_hash

log = logging.getLogger("iot_center.pages")

CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return token


def csrf_valid(presented: str | None) -> bool:
    expected = session.get(CSRF_KEY)
    return (
        bool(expected)
        and bool(presented)
        and hmac.compare_digest(str(presented).encode(), str(expected).encode())
    )


# --- credentials --------------------------------------------------------------------------


class SignInUnavailable(Exception):
    """InfluxDB could not be asked whether the credentials are right."""


def check_credentials(settings, username: str, password: str) -> bool:
    """True if `username`/`password` is a configured admin or an InfluxDB user."""
    if not username or not password:
        return False
    if (
        settings.ADMIN_USER
        and settings.ADMIN_PASSWORD_HASH
        and hmac.compare_digest(username.encode(), settings.ADMIN_USER.encode())
    ):
        try:
            if check_password_hash(settings.ADMIN_PASSWORD_HASH, password):
                return True
        except ValueError:  # a malformed hash in the config
            log.error("ADMIN_PASSWORD_HASH is not a werkzeug password hash")
    try:
        resp = requests.post(
            f"{settings.INFLUX_URL}/api/v2/signin",
            auth=(username, password),
            timeout=10,
        )
    except requests.RequestException as e:
        raise SignInUnavailable(f"InfluxDB is unreachable: {type(e).__name__}") from e
    if resp.status_code == 204:
        return True
    if resp.status_code >= 500:
        raise SignInUnavailable(f"InfluxDB answered HTTP {resp.status_code} to the sign-in")
    return False


# --- backoff --------------------------------------------------------------------------------

FAILURE_DELAY = 0.5  # seconds every failed attempt costs its sender
MAX_WAIT = 300.0
FORGET_AFTER = 900.0  # a key with no failure for this long starts again from zero


@dataclass
class _Record:
    failures: int
    last: float


class LoginThrottle:
    """Failed sign-ins per key (user name, client address), kept in this process's memory."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()
        self.max_keys = max_keys

    @staticmethod
    def wait_for(failures: int) -> float:
        return 0.0 if failures <= 0 else min(2.0 ** (failures - 1), MAX_WAIT)

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds until `keys` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        with self._lock:
            for key in keys:
                rec = self._records.get(key)
                if rec and now - rec.last < FORGET_AFTER:
                    wait = max(wait, rec.last + self.wait_for(rec.failures) - now)
        return max(wait, 0.0)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._records) >= self.max_keys:
                self._prune(now)
            for key in keys:
                rec = self._records.get(key)
                if rec is None or now - rec.last >= FORGET_AFTER:
                    rec = self._records[key] = _Record(0, now)
                rec.failures += 1
                rec.last = now

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def _prune(self, now: float) -> None:
        stale = [k for k, r in self._records.items() if now - r.last >= FORGET_AFTER]
        for k in stale:
            del self._records[k]
        if len(self._records) >= self.max_keys:  # still full: forget the oldest half
            for k, _ in sorted(self._records.items(), key=lambda kv: kv[1].last)[
                : self.max_keys // 2
            ]:
                del self._records[k]
