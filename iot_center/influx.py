"""The server's one connection to InfluxDB: a single `InfluxDBClient` per process.

Everything that talks to InfluxDB goes through `Influx`, which turns "InfluxDB is down" into
`InfluxUnavailable` (a 503 with a message) and caches the ids of the org and buckets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from iot_center.settings import Settings


class InfluxUnavailable(Exception):
    """InfluxDB cannot be reached or answered with a server error."""


class InfluxRefused(Exception):
    """InfluxDB refused a request for a reason the caller should report (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Map client and network errors to InfluxUnavailable / InfluxRefused with context."""
    try:
        yield
    except ApiException as e:
        status = int(e.status or 0)
        if status >= 500 or status == 0:
            raise InfluxUnavailable(f"InfluxDB failed to {what}: HTTP {status}") from e
        raise InfluxRefused(status, f"InfluxDB refused to {what}: HTTP {status}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise InfluxUnavailable(f"InfluxDB is unreachable ({what}): {type(e).__name__}") from e


class Influx:
    """Owns the InfluxDBClient; close() it on shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = InfluxDBClient(
            url=settings.INFLUX_URL,
            token=settings.INFLUX_TOKEN,
            org=settings.INFLUX_ORG,
            timeout=10_000,
            retries=False,
            connection_pool_maxsize=32,
        )
        self.query_api = self.client.query_api()
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)
        self.delete_api = self.client.delete_api()
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # --- ids, resolved once and cached (they never change for a name) ---------------------

    def org_id(self) -> str:
        return self._cached("org", self._lookup_org_id)

    def bucket_id(self, name: str) -> str:
        return self._cached(f"bucket:{name}", lambda: self._lookup_bucket_id(name))

    def _cached(self, key: str, lookup: Any) -> str:
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        value = lookup()
        with self._lock:
            self._ids[key] = value
        return value

    def _lookup_org_id(self) -> str:
        with translate_errors("look up the organization"):
            orgs = self.client.organizations_api().find_organizations(org=self.settings.INFLUX_ORG)
        if not orgs:
            raise InfluxUnavailable(f"organization {self.settings.INFLUX_ORG!r} not found")
        return orgs[0].id

    def _lookup_bucket_id(self, name: str) -> str:
        with translate_errors(f"look up bucket {name}"):
            bucket = self.client.buckets_api().find_bucket_by_name(name)
        if bucket is None:
            raise InfluxUnavailable(f"bucket {name!r} not found; run `iot-center setup`")
        return bucket.id

    # --- queries --------------------------------------------------------------------------

    def query(self, flux: str, params: dict[str, Any], what: str) -> list[Any]:
        """Run a Flux query whose user values arrive only through `params`.

        The client sends each parameter as a Flux option in the request's `extern` AST (never
        as query text); a key `x` is the identifier `p_x` in the query, a prefix that keeps
        parameters apart from Flux's own names.
        """
        extern = {f"p_{k}": v for k, v in params.items()}
        with translate_errors(what):
            return list(self.query_api.query(flux, params=extern, org=self.settings.INFLUX_ORG))

    def health(self) -> tuple[bool, str, str]:
        """(ok, message, version) of InfluxDB."""
        try:
            h = self.client.health()
        except Exception as e:  # the health check must answer, whatever failed
            return False, f"InfluxDB is unreachable: {type(e).__name__}", ""
        if h.status != "pass":
            return False, f"InfluxDB is unhealthy or unreachable: {h.message}", h.version or ""
        return True, h.message or "", h.version or ""
