"""InfluxDB line protocol, encoded by hand so the agent needs no influxdb-client.

Every point carries an explicit nanosecond timestamp: a batch that is sent twice (the answer
was lost, the agent was killed before deleting it from the buffer) overwrites the same points
instead of duplicating them.

Escaping follows the InfluxDB 2 line protocol reference: measurement names escape comma and
space; tag keys, tag values and field keys escape comma, equals sign and space; string field
values escape double quote and backslash. What the format cannot carry unambiguously (newlines,
control characters, a backslash right before a character that would need escaping or at the end
of a name) is refused with LineProtocolError rather than silently altered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent import contract

FieldValue = float | int | bool | str

_MEASUREMENT_SPECIALS = ", "
_KEY_SPECIALS = ", ="
_RESERVED_KEYS = frozenset({"_measurement", "_field", "time"})
# Timestamps InfluxDB accepts (int64 nanoseconds, roughly 1677..2262).
_MIN_NS = -(2**63) + 2
_MAX_NS = 2**63 - 1


class LineProtocolError(ValueError):
    """A point that cannot be written as line protocol; the message names the bad part."""


def _check_identifier(what: str, value: str, specials: str) -> None:
    if not isinstance(value, str):
        raise LineProtocolError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise LineProtocolError(f"{what} is empty")
    for i, ch in enumerate(value):
        if ord(ch) < 32 or ch == "\x7f":
            raise LineProtocolError(f"{what} {value!r} contains a control character")
        if ch == "\\":
            nxt = value[i + 1] if i + 1 < len(value) else ""
            if nxt == "" or nxt in specials or nxt == "\\":
                raise LineProtocolError(
                    f"{what} {value!r} has a backslash that line protocol would misread"
                )


def escape_measurement(name: str) -> str:
    _check_identifier("measurement", name, _MEASUREMENT_SPECIALS)
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} starts with '#' (a comment line)")
    return name.replace(",", "\\,").replace(" ", "\\ ")


def escape_key(what: str, name: str) -> str:
    """Escape a tag key, tag value or field key."""
    _check_identifier(what, name, _KEY_SPECIALS)
    return name.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def format_field_value(key: str, value: FieldValue) -> str:
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise LineProtocolError(f"field {key!r} integer {value} does not fit in 64 bits")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field {key!r} is {value!r}; InfluxDB stores finite numbers")
        return repr(value)
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise LineProtocolError(f"field {key!r} string contains a newline")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise LineProtocolError(f"field {key!r} has unsupported type {type(value).__name__}")


@dataclass(frozen=True)
class Point:
    """One point: measurement, tags, fields and an explicit timestamp in nanoseconds."""

    measurement: str
    fields: Mapping[str, FieldValue]
    time_ns: int
    tags: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        return encode(self)


def encode(point: Point) -> str:
    """Return the point as one line of line protocol (no trailing newline)."""
    parts = [escape_measurement(point.measurement)]
    for key in sorted(point.tags):  # sorted tags are what InfluxDB handles fastest
        value = point.tags[key]
        if key in _RESERVED_KEYS:
            raise LineProtocolError(f"tag key {key!r} is reserved by InfluxDB")
        parts.append(f"{escape_key('tag key', key)}={escape_key(f'tag {key!r} value', value)}")
    if not point.fields:
        raise LineProtocolError(f"point {point.measurement!r} has no fields")
    fields = []
    for key, value in point.fields.items():
        if key in _RESERVED_KEYS:
            raise LineProtocolError(f"field key {key!r} is reserved by InfluxDB")
        fields.append(f"{escape_key('field key', key)}={format_field_value(key, value)}")
    if isinstance(point.time_ns, bool) or not isinstance(point.time_ns, int):
        raise LineProtocolError("timestamp must be an integer number of nanoseconds")
    if not _MIN_NS <= point.time_ns <= _MAX_NS:
        raise LineProtocolError(f"timestamp {point.time_ns} is outside InfluxDB's range")
    return f"{','.join(parts)} {','.join(fields)} {point.time_ns}"


def device_tags(device_id: str, **extra: str) -> dict[str, str]:
    """Tags that identify a device's point; the id is checked against the contract first."""
    return {contract.TAG_CLIENT_ID: contract.validate_device_id(device_id), **extra}
