"""The device registry. All state lives in InfluxDB:

- one `deviceauth` point per change in the devices bucket (tag `deviceId`; fields `key` = the
  InfluxDB authorization id, `token`, `createdAt`, `updatedAt`), read back with `last()`;
- one InfluxDB authorization per device, described `IoT Center: <id>`, whose only permission is
  write on the telemetry bucket (by id), so a device token can write telemetry and nothing else.

InfluxDB returns a token only when it is created, which is why the token is stored here.
Device ids reach Flux only as query parameters. The delete API takes a predicate string, not
parameters; ids are validated against `[A-Za-z0-9._-]{1,64}` before they get anywhere near it,
so no quote or operator can be in one.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from influxdb_client import Authorization, Permission, PermissionResource, Point, WritePrecision
from influxdb_client.rest import ApiException

from agent import contract
from iot_center.influx import Influx, InfluxRefused, translate_errors

DEVICE_FLUX = """
from(bucket: p_bucket)
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "deviceauth" and r.deviceId == p_deviceId)
  |> last()
"""

# Two small fields per device, merged into one table: the client parses one table of rows,
# not three tables per device.
LIST_FLUX = """
from(bucket: p_bucket)
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "deviceauth"
                       and (r._field == "createdAt" or r._field == "updatedAt"))
  |> last()
  |> keep(columns: ["deviceId", "_field", "_value"])
  |> group()
"""

OWNER_OF_CREDENTIAL_FLUX = """
from(bucket: p_bucket)
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "deviceauth" and r._field == "token")
  |> last()
  |> filter(fn: (r) => r._value == p_token)
"""

CONTENDERS_FLUX = """
from(bucket: p_bucket)
  |> range(start: p_since)
  |> filter(fn: (r) => r._measurement == "deviceauth" and r.deviceId == p_deviceId)
"""

LAST_SEEN_FLUX = """
from(bucket: p_bucket)
  |> range(start: p_since)
  |> filter(fn: (r) => r._measurement == p_measurement and r._field == "Temperature")
  |> last()
  |> keep(columns: ["_time", "clientId"])
  |> group()
"""

# One device's: reads its own series only, however large the fleet.
LAST_SEEN_ONE_FLUX = """
from(bucket: p_bucket)
  |> range(start: p_since)
  |> filter(fn: (r) => r._measurement == p_measurement and r.clientId == p_clientId
                       and r._field == "Temperature")
  |> last()
  |> keep(columns: ["_time", "clientId"])
  |> group()
"""


RECENT_MAX = 20_000  # device records a worker keeps for device requests


class DeviceExists(Exception):
    pass


class DeviceNotFound(Exception):
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Device:
    """A registered device as stored in the devices bucket. `token` is None unless asked for."""

    device_id: str
    auth_id: str
    created_at: str
    updated_at: str
    token: str | None = None
    last_seen: datetime | None = None
    record_time: datetime | None = None  # when the current record was written

    def public(self) -> dict[str, Any]:
        """The device without its token, for lists and pages."""
        return {
            "deviceId": self.device_id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "lastSeen": self.last_seen.isoformat().replace("+00:00", "Z")
            if self.last_seen
            else None,
        }


class DeviceRegistry:
    def __init__(self, influx: Influx) -> None:
        self.influx = influx
        self.settings = influx.settings
        # Registrations are rare: one at a time per process. Between processes (gunicorn
        # workers, several servers) the first record written wins; see `register`.
        self._register_lock = threading.Lock()
        # Device records recently read for device requests: (when read, record with token).
        self._recent: dict[str, tuple[float, Device]] = {}
        self._recent_lock = threading.Lock()
        # The last full listing: (wall-clock time its reading began, devices), and when this
        # worker last changed the registry; a listing begun before that is never reused (one
        # read concurrently with a change may finish after it). See `list`.
        self._listing: tuple[float, list[Device]] | None = None
        self._changed_at = 0.0

    @property
    def _devices_bucket(self) -> str:
        return self.settings.INFLUX_BUCKET_AUTH

    # --- reads ----------------------------------------------------------------------------

    def get(self, device_id: str, with_token: bool = False) -> Device | None:
        contract.validate_device_id(device_id)
        tables = self.influx.query(
            DEVICE_FLUX,
            {"bucket": self._devices_bucket, "deviceId": device_id},
            "read a device record",
        )
        records = [rec for t in tables for rec in t.records]
        values = {rec.get_field(): rec.get_value() for rec in records}
        if not values.get("key") or not values.get("token"):
            return None
        return Device(
            device_id=device_id,
            auth_id=str(values["key"]),
            created_at=str(values.get("createdAt", "")),
            updated_at=str(values.get("updatedAt", values.get("createdAt", ""))),
            token=str(values["token"]) if with_token else None,
            record_time=max(rec.get_time() for rec in records),
        )

    def get_recent(self, device_id: str) -> Device | None:
        """The device's record with token, from this worker's copy if younger than
        DEVICE_CACHE_SECONDS: devices fetch their configuration often, and a Flux query per
        request is what limits that endpoint. Callers fall back to `get` on a mismatch."""
        ttl = self.settings.DEVICE_CACHE_SECONDS
        now = time.monotonic()
        with self._recent_lock:
            hit = self._recent.get(device_id)
        if hit and now - hit[0] < ttl:
            return hit[1]
        return self.get_fresh(device_id)

    def get_fresh(self, device_id: str) -> Device | None:
        device = self.get(device_id, with_token=True)
        with self._recent_lock:
            if device is None or not self.settings.DEVICE_CACHE_SECONDS:
                self._recent.pop(device_id, None)
            else:
                if len(self._recent) >= RECENT_MAX:
                    self._recent.pop(next(iter(self._recent)))  # oldest inserted
                self._recent[device_id] = (time.monotonic(), device)
        return device

    def forget(self, device_id: str) -> None:
        with self._recent_lock:
            self._recent.pop(device_id, None)
            self._changed_at = time.time()

    def list(
        self, with_last_seen: bool = True, max_age: float = 0.0, changed_since: float = 0.0
    ) -> list[Device]:
        """Every registered device, sorted by id, with when each last sent telemetry.

        Reading the list costs InfluxDB one series per device and field (about 0.2 ms per
        device), so pages may accept this worker's copy: `max_age` seconds old at most, and
        read after `changed_since` (a `time.time()` at which the caller knows the registry
        changed, such as its own registration in another worker). A change made through this
        worker retires the copy at once."""
        if max_age > 0 and with_last_seen:
            with self._recent_lock:
                hit, changed = self._listing, max(changed_since, self._changed_at)
            if hit and hit[0] > changed and time.time() - hit[0] < max_age:
                return hit[1]
        began = time.time()
        devices = self._read_list(with_last_seen)
        if with_last_seen:
            with self._recent_lock:
                self._listing = (began, devices)
        return devices

    def _read_list(self, with_last_seen: bool) -> list[Device]:
        tables = self.influx.query(
            LIST_FLUX, {"bucket": self._devices_bucket}, "list the registered devices"
        )
        rows: dict[str, dict[str, str]] = {}
        for t in tables:
            for rec in t.records:
                rows.setdefault(rec.values["deviceId"], {})[rec.get_field()] = str(rec.get_value())
        seen = self.last_seen() if with_last_seen else {}
        # A listing carries no authorization id: nothing that shows a list needs it.
        devices = [
            Device(
                device_id=dev_id,
                auth_id="",
                created_at=v.get("createdAt", ""),
                updated_at=v.get("updatedAt", v.get("createdAt", "")),
                last_seen=seen.get(dev_id),
            )
            for dev_id, v in rows.items()
        ]
        return sorted(devices, key=lambda d: d.device_id)

    def last_seen(
        self, days: int | None = None, device_id: str | None = None
    ) -> dict[str, datetime]:
        """Time of the last telemetry point per device (or of one device), within the
        telemetry retention."""
        since = timedelta(days=-(days or self.settings.TELEMETRY_RETENTION_DAYS))
        params: dict[str, Any] = {
            "bucket": self.settings.INFLUX_BUCKET,
            "since": since,
            "measurement": contract.MEASUREMENT,
        }
        if device_id is not None:
            contract.validate_device_id(device_id)
            params["clientId"] = device_id
        tables = self.influx.query(
            LAST_SEEN_FLUX if device_id is None else LAST_SEEN_ONE_FLUX,
            params,
            "find when devices last reported",
        )
        seen: dict[str, datetime] = {}
        for t in tables:
            for rec in t.records:
                cid = rec.values.get("clientId")
                if cid and (cid not in seen or rec.get_time() > seen[cid]):
                    seen[cid] = rec.get_time()
        return seen

    def device_for_token(self, token: str) -> str | None:
        """Which device a token belongs to (to tell 'another device' from 'no device')."""
        tables = self.influx.query(
            OWNER_OF_CREDENTIAL_FLUX,
            {"bucket": self._devices_bucket, "token": token},
            "check a token",
        )
        for t in tables:
            for rec in t.records:
                return rec.values.get("deviceId")
        return None

    def token_matches(self, device: Device, presented: str) -> bool:
        return device.token is not None and hmac.compare_digest(
            device.token.encode(), presented.encode()
        )

    # --- changes --------------------------------------------------------------------------

    def register(self, device_id: str, replace: bool = False) -> tuple[Device, bool]:
        """Register `device_id`, or with `replace` issue a new token for an existing one.

        Returns (device with token, created). The old authorization of a replaced device is
        deleted, so its old token stops working at once.
        """
        contract.validate_device_id(device_id)
        with self._register_lock:
            try:
                return self._register(device_id, replace)
            finally:
                self.forget(device_id)

    def _register(self, device_id: str, replace: bool) -> tuple[Device, bool]:
        existing = self.get(device_id)
        if existing and not replace:
            raise DeviceExists(device_id)
        auth = self._create_authorization(device_id)
        now = now_iso()
        created_at = existing.created_at if existing else now
        try:
            written = self._write_record(device_id, auth.id, auth.token, created_at, now)
            winner = self._race_winner(device_id, existing)
            if winner and winner.get("key") != auth.id:
                # Someone registered the same id at the same moment and wrote first. Overwrite
                # our record (same series and time) with theirs, since deletes racing with
                # writes are not reliable in InfluxDB, and revoke our token, so that no valid
                # token exists that the registry does not know.
                self._write_record(
                    device_id,
                    str(winner["key"]),
                    str(winner.get("token", "")),
                    str(winner.get("createdAt", created_at)),
                    str(winner.get("updatedAt", now)),
                    at=written,
                )
                self._delete_authorization(auth.id)
                raise DeviceExists(device_id)
        except DeviceExists:
            raise
        except Exception:
            self._delete_authorization(auth.id)  # leave no orphan token behind
            raise
        if existing:
            self._delete_authorization(existing.auth_id)
        device = Device(device_id, auth.id, created_at, now, token=auth.token)
        return device, existing is None

    def remove(self, device_id: str, delete_data: bool = False) -> None:
        self.forget(device_id)
        existing = self.get(device_id)
        if existing is None:
            raise DeviceNotFound(device_id)
        self._delete_authorization(existing.auth_id)
        self._delete_series(
            self._devices_bucket, contract.DEVICE_AUTH_MEASUREMENT, "deviceId", device_id
        )
        if delete_data:
            for measurement in (contract.MEASUREMENT, contract.HEALTH_MEASUREMENT):
                self._delete_series(
                    self.settings.INFLUX_BUCKET, measurement, contract.TAG_CLIENT_ID, device_id
                )

    # --- InfluxDB operations --------------------------------------------------------------

    def _create_authorization(self, device_id: str) -> Any:
        org_id = self.influx.org_id()
        bucket_id = self.influx.bucket_id(self.settings.INFLUX_BUCKET)
        permission = Permission(
            action="write",
            resource=PermissionResource(type="buckets", id=bucket_id, org_id=org_id),
        )
        with translate_errors("create the device's authorization"):
            return self.influx.client.authorizations_api().create_authorization(
                authorization=Authorization(
                    org_id=org_id,
                    permissions=[permission],
                    description=f"IoT Center: {device_id}",
                )
            )

    def _delete_authorization(self, auth_id: str) -> None:
        if not auth_id:
            return
        try:
            with translate_errors("revoke the device's authorization"):
                self.influx.client.authorizations_api().delete_authorization(auth_id)
        except InfluxRefused as e:
            if e.status != 404:  # already gone is what we wanted
                raise
        except ApiException as e:  # pragma: no cover - translate_errors maps these
            if e.status != 404:
                raise

    def _race_winner(self, device_id: str, existing: Device | None) -> dict[str, Any] | None:
        """The first record written after the one this change started from (first one wins)."""
        since = (
            existing.record_time + timedelta(microseconds=1)
            if existing and existing.record_time
            else datetime(1970, 1, 1, tzinfo=UTC)
        )
        tables = self.influx.query(
            CONTENDERS_FLUX,
            {"bucket": self._devices_bucket, "deviceId": device_id, "since": since},
            "check for a concurrent registration",
        )
        by_time: dict[datetime, dict[str, Any]] = {}
        for t in tables:
            for rec in t.records:
                by_time.setdefault(rec.get_time(), {})[rec.get_field()] = rec.get_value()
        return by_time[min(by_time)] if by_time else None

    def _write_record(
        self,
        device_id: str,
        auth_id: str,
        token: str,
        created_at: str,
        updated_at: str,
        at: datetime | None = None,
    ) -> datetime:
        # Microsecond timestamps survive the round trip through the client (which parses
        # times to datetime), so a record can later be rewritten at its exact time.
        written = at or datetime.now(UTC)
        point = (
            Point(contract.DEVICE_AUTH_MEASUREMENT)
            .tag(contract.TAG_DEVICE_ID, device_id)
            .field("key", auth_id)
            .field("token", token)
            .field("createdAt", created_at)
            .field("updatedAt", updated_at)
            .time(written, WritePrecision.US)
        )
        with translate_errors("store the device record"):
            self.influx.write_api.write(
                bucket=self._devices_bucket, record=point, write_precision=WritePrecision.US
            )
        return written

    def _delete_series(self, bucket: str, measurement: str, tag: str, device_id: str) -> None:
        contract.validate_device_id(device_id)  # the predicate below relies on it
        predicate = f'_measurement="{measurement}" AND {tag}="{device_id}"'
        with translate_errors(f"delete {measurement} data"):
            self.influx.delete_api.delete(
                start="1970-01-01T00:00:00Z",
                stop=(datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                predicate=predicate,
                bucket=bucket,
                org=self.settings.INFLUX_ORG,
            )
