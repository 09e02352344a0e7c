"""Sensors the agent can read: a real BME280 over I2C, or a virtual one.

`open_sensor` picks one from the settings `sensor` (auto, bme280, virtual) and `fallback`
(what to do when the BME280 cannot be opened): `virtual` switches to the virtual sensor,
`never` keeps retrying the real one (publishing nothing meanwhile), `auto` falls back only on a
machine that is not a Raspberry Pi (a laptop) and never on a Pi, where a missing sensor is a
fault to fix rather than a reason to publish simulated air.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent import contract
from agent.sensors.reading import Reading

log = logging.getLogger(__name__)


class Sensor(Protocol):
    kind: str  # "bme280" or "virtual"

    def describe(self) -> str: ...
    def read(self) -> Reading: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class SensorTags:
    """How a sensor's points are tagged, so simulated air is never mistaken for real."""

    device: str
    sensor: str

    @classmethod
    def for_kind(cls, kind: str) -> SensorTags:
        if kind == "virtual":
            return cls(contract.DEVICE_KIND_VIRTUAL, contract.SENSOR_VIRTUAL)
        return cls(contract.DEVICE_KIND_PI, contract.SENSOR_REAL)

    def as_tags(self) -> dict[str, str]:
        return {
            contract.TAG_DEVICE: self.device,
            **{tag: self.sensor for tag in contract.SENSOR_TAGS},
        }


def open_sensor(
    device_id: str,
    sensor: str = "auto",
    fallback: str = "auto",
    addresses: tuple[int, ...] = (0x77, 0x76),
    reinit_after: int = 3,
    *,
    i2c_factory: Callable[[], object] | None = None,
    on_pi: Callable[[], bool] | None = None,
) -> Sensor:
    """Return the sensor to read, logging why when it is the virtual one."""
    from agent.sensors.bme280 import BME280Sensor, SensorError, board_i2c, is_raspberry_pi
    from agent.sensors.virtual import VirtualSensor

    if sensor == "virtual":
        log.info("using the virtual sensor (sensor = virtual)")
        return VirtualSensor(device_id)
    real = BME280Sensor(addresses, i2c_factory or board_i2c, reinit_after)
    try:
        real.open()
        return real
    except SensorError as exc:
        allowed = fallback == "virtual" or (
            fallback == "auto" and sensor == "auto" and not (on_pi or is_raspberry_pi)()
        )
        if allowed:
            log.warning(
                "no BME280 (%s); using the virtual sensor, its points are tagged %s=%s",
                exc,
                contract.TAG_DEVICE,
                contract.DEVICE_KIND_VIRTUAL,
            )
            return VirtualSensor(device_id)
        log.error("no BME280 (%s); will retry every reading, publishing nothing meanwhile", exc)
        return real
