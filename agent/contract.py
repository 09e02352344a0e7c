"""What the agent and the IoT Center server agree on, defined once and imported by both.

Names follow the Node.js IoT Center so that firmware written for it (ESP32, ESP8266 and its
Python client) works with this server too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- Device ids -------------------------------------------------------------------------

DEVICE_ID_MAX = 64
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEVICE_ID_RULE = "1 to 64 characters from letters, digits, '-', '_' and '.' (not '.' or '..' alone)"


class InvalidDeviceId(ValueError):
    """A device id that breaks the rule; the message says what is wrong and what is allowed."""


def validate_device_id(value: object) -> str:
    """Return `value` if it is a valid device id, else raise InvalidDeviceId saying why."""
    if not isinstance(value, str):
        raise InvalidDeviceId(f"device id must be a string ({DEVICE_ID_RULE})")
    if not value:
        raise InvalidDeviceId(f"device id is empty; use {DEVICE_ID_RULE}")
    if len(value) > DEVICE_ID_MAX:
        raise InvalidDeviceId(
            f"device id is {len(value)} characters long; the limit is {DEVICE_ID_MAX}"
        )
    if not DEVICE_ID_PATTERN.fullmatch(value):
        bad = sorted({c for c in value if not re.fullmatch(r"[A-Za-z0-9._-]", c)})
        shown = ", ".join(repr(c) for c in bad[:5])
        raise InvalidDeviceId(f"device id contains {shown}; use {DEVICE_ID_RULE}")
    if value in (".", ".."):
        # As a URL path segment these are dot segments that clients and proxies normalise
        # away, so /api/env/.. could never reach the device.
        raise InvalidDeviceId(
            f"device id {value!r} is not addressable in a URL; use {DEVICE_ID_RULE}"
        )
    return value


# --- Telemetry data model ---------------------------------------------------------------

MIN_MEASUREMENT_INTERVAL = 0.01  # seconds: 100 readings/s at most
MEASUREMENT = "environment"
HEALTH_MEASUREMENT = "agent"
TAG_CLIENT_ID = "clientId"
TAG_DEVICE = "device"
SENSOR_TAGS = ("TemperatureSensor", "HumiditySensor", "PressureSensor")
FIELD_TEMPERATURE = "Temperature"
FIELD_HUMIDITY = "Humidity"
FIELD_PRESSURE = "Pressure"
FIELD_LAT = "Lat"
FIELD_LON = "Lon"
TELEMETRY_FIELDS = (FIELD_TEMPERATURE, FIELD_HUMIDITY, FIELD_PRESSURE, FIELD_LAT, FIELD_LON)

DEVICE_KIND_PI = "raspberrypi"
DEVICE_KIND_VIRTUAL = "virtual"
SENSOR_REAL = "bme280"
SENSOR_VIRTUAL = "virtual_bme280"

# Plausible ranges of a BME280 reading; anything outside is a bad read, not weather.
TEMPERATURE_RANGE = (-40.0, 85.0)
HUMIDITY_RANGE = (0.0, 100.0)
PRESSURE_RANGE = (300.0, 1100.0)

# --- Device registry (devices bucket) ---------------------------------------------------

DEVICE_AUTH_MEASUREMENT = "deviceauth"
TAG_DEVICE_ID = "deviceId"

# --- Device configuration (GET /api/env/<id>) -------------------------------------------

CONFIG_FIELDS = (
    "influx_url",
    "influx_org",
    "influx_token",
    "influx_bucket",
    "id",
    "default_lat",
    "default_lon",
    "measurement_interval",
    "newlyRegistered",
    "createdAt",
    "updatedAt",
    "serverTime",
    "configuration_refresh",
    "write_endpoint",
)


class InvalidDeviceConfig(ValueError):
    """A device configuration document that lacks a field or has one of the wrong type."""


@dataclass(frozen=True)
class DeviceConfig:
    """The configuration IoT Center serves to a device; field names are the wire names."""

    influx_url: str
    influx_org: str
    influx_token: str
    influx_bucket: str
    id: str
    default_lat: float
    default_lon: float
    measurement_interval: float  # seconds between readings (an int unless fractional)
    newlyRegistered: bool
    createdAt: str
    updatedAt: str
    serverTime: str
    configuration_refresh: int  # seconds between configuration fetches
    write_endpoint: str  # path on influx_url that accepts line protocol

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in CONFIG_FIELDS}

    @classmethod
    def from_dict(cls, data: object) -> DeviceConfig:
        """Parse and check a configuration document, naming the first bad field."""
        if not isinstance(data, dict):
            raise InvalidDeviceConfig("device configuration must be a JSON object")
        types: dict[str, tuple[type, ...]] = {
            "influx_url": (str,),
            "influx_org": (str,),
            "influx_token": (str,),
            "influx_bucket": (str,),
            "id": (str,),
            "default_lat": (int, float),
            "default_lon": (int, float),
            "measurement_interval": (int, float),
            "newlyRegistered": (bool,),
            "createdAt": (str,),
            "updatedAt": (str,),
            "serverTime": (str,),
            "configuration_refresh": (int, float),
            "write_endpoint": (str,),
        }
        values: dict[str, object] = {}
        for name, allowed in types.items():
            if name not in data:
                raise InvalidDeviceConfig(f"device configuration lacks '{name}'")
            value = data[name]
            if isinstance(value, bool) and bool not in allowed:
                raise InvalidDeviceConfig(f"device configuration field '{name}' has the wrong type")
            if not isinstance(value, allowed):
                raise InvalidDeviceConfig(f"device configuration field '{name}' has the wrong type")
            values[name] = value
        validate_device_id(values["id"])
        # A fractional measurement interval (down to 0.01 s: 100 readings/s) is honoured;
        # whole seconds stay ints, as the IoT Center sends them.
        interval = float(values["measurement_interval"])  # type: ignore[arg-type]
        if not MIN_MEASUREMENT_INTERVAL <= interval <= 86400:
            raise InvalidDeviceConfig(
                f"'measurement_interval' must be between {MIN_MEASUREMENT_INTERVAL} and 86400 "
                "seconds"
            )
        values["measurement_interval"] = int(interval) if interval.is_integer() else interval
        if not 1 <= values["configuration_refresh"] <= 86400:  # type: ignore[operator]
            raise InvalidDeviceConfig("'configuration_refresh' must be between 1 and 86400 seconds")
        values["configuration_refresh"] = int(values["configuration_refresh"])  # type: ignore[call-overload]
        for name in ("default_lat", "default_lon"):
            values[name] = float(values[name])  # type: ignore[arg-type]
        if not -90 <= values["default_lat"] <= 90 or not -180 <= values["default_lon"] <= 180:  # type: ignore[operator]
            raise InvalidDeviceConfig("default_lat/default_lon are not a position on Earth")
        if not str(values["influx_url"]).startswith(("http://", "https://")):
            raise InvalidDeviceConfig("influx_url must start with http:// or https://")
        return cls(**values)  # type: ignore[arg-type]
