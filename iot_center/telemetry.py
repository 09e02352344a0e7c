"""Reading a device's telemetry back: aggregated series for charts and the latest values.

Ranges and windows are parsed here into `timedelta`s and handed to Flux as parameters, so a
request can only ever ask for a duration. The query keeps the shape
`range |> filter |> aggregateWindow(fn: mean)` that InfluxDB pushes down to storage, which
is what keeps a 30-day chart quick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agent import contract
from iot_center.influx import Influx

_DURATION = re.compile(r"(\d{1,6})(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_RANGE = timedelta(days=366)
MIN_RANGE = timedelta(minutes=1)
TARGET_POINTS = 500  # per field: plenty for a chart, cheap to send

AGGREGATE_FLUX = """
from(bucket: p_bucket)
  |> range(start: p_start)
  |> filter(fn: (r) => r._measurement == p_measurement and r.clientId == p_deviceId)
  |> filter(fn: (r) => r._field == "Temperature" or r._field == "Humidity"
                       or r._field == "Pressure" or r._field == "Lat" or r._field == "Lon")
  |> aggregateWindow(every: p_window, fn: mean, createEmpty: false)
"""

LAST_FLUX = """
from(bucket: p_bucket)
  |> range(start: p_start)
  |> filter(fn: (r) => r._measurement == p_measurement and r.clientId == p_deviceId)
  |> filter(fn: (r) => r._field == "Temperature" or r._field == "Humidity"
                       or r._field == "Pressure" or r._field == "Lat" or r._field == "Lon")
  |> last()
"""


class BadRange(ValueError):
    """A range or window the API does not accept; the message says what would be."""


def parse_duration(text: str, what: str) -> timedelta:
    match = _DURATION.fullmatch(text or "")
    if not match:
        raise BadRange(f"{what} must look like 30s, 5m, 1h, 7d or 2w, got {text[:40]!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_start(text: str) -> timedelta:
    """'-1h' -> 1 hour (a relative start, the only kind the API takes)."""
    if not text or not text.startswith("-"):
        raise BadRange(f"start must be a relative duration such as -1h or -7d, got {text[:40]!r}")
    span = parse_duration(text[1:], "start")
    if not MIN_RANGE <= span <= MAX_RANGE:
        raise BadRange("start must be between -1m and -366d")
    return span


def auto_window(span: timedelta) -> timedelta:
    """A window that gives about TARGET_POINTS points, rounded to a readable step."""
    steps = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 86400]
    want = span.total_seconds() / TARGET_POINTS
    for s in steps:
        if s >= want:
            return timedelta(seconds=s)
    return timedelta(seconds=steps[-1])


@dataclass(frozen=True)
class Query:
    span: timedelta
    window: timedelta

    @classmethod
    def parse(cls, start: str | None, window: str | None) -> Query:
        span = parse_start(start or "-1h")
        win = parse_duration(window, "window") if window else auto_window(span)
        if win < timedelta(seconds=1) or win > span:
            raise BadRange("window must be at least 1s and no longer than the range")
        if span / win > 10_000:
            raise BadRange("window too small for the range: at most 10000 points per field")
        return cls(span, win)


class Telemetry:
    def __init__(self, influx: Influx) -> None:
        self.influx = influx
        self.settings = influx.settings

    def _params(self, device_id: str, span: timedelta) -> dict[str, Any]:
        return {
            "bucket": self.settings.INFLUX_BUCKET,
            "start": -span,
            "measurement": contract.MEASUREMENT,
            "deviceId": contract.validate_device_id(device_id),
        }

    def series(self, device_id: str, query: Query) -> dict[str, Any]:
        params = self._params(device_id, query.span) | {"window": query.window}
        tables = self.influx.query(AGGREGATE_FLUX, params, "read telemetry")
        fields: dict[str, list[tuple[float, float]]] = {}
        for t in tables:
            for rec in t.records:
                fields.setdefault(rec.get_field(), []).append(
                    (rec.get_time().timestamp(), rec.get_value())
                )
        return {
            "deviceId": device_id,
            "start": f"-{int(query.span.total_seconds())}s",
            "window": f"{int(query.window.total_seconds())}s",
            "fields": {
                name: [[ts * 1000, round(v, 3)] for ts, v in sorted(points)]
                for name, points in fields.items()
            },
        }

    def last(self, device_id: str, within: timedelta = timedelta(days=366)) -> dict[str, Any]:
        tables = self.influx.query(LAST_FLUX, self._params(device_id, within), "read last values")
        latest: dict[str, Any] = {}
        for t in tables:
            for rec in t.records:
                name = rec.get_field()
                if name not in latest or rec.get_time() > latest[name].get_time():
                    latest[name] = rec
        values = {
            name: {
                "value": rec.get_value(),
                "time": rec.get_time().isoformat().replace("+00:00", "Z"),
            }
            for name, rec in latest.items()
        }
        return {"deviceId": device_id, "fields": values}
