"""One environment reading, as the agent buffers it and the server stores it."""

from __future__ import annotations

from dataclasses import dataclass

from agent import contract


class OutOfRange(ValueError):
    """A reading outside what a BME280 can measure: a bad read, not weather."""


@dataclass(frozen=True)
class Reading:
    temperature: float  # °C
    humidity: float  # %RH
    pressure: float  # hPa

    def check(self) -> Reading:
        """Return self if every value is in the sensor's range, else raise OutOfRange."""
        for name, value, (low, high) in (
            ("temperature", self.temperature, contract.TEMPERATURE_RANGE),
            ("humidity", self.humidity, contract.HUMIDITY_RANGE),
            ("pressure", self.pressure, contract.PRESSURE_RANGE),
        ):
            if not (low <= value <= high):  # also false for NaN
                raise OutOfRange(f"{name} {value!r} outside {low}..{high}")
        return self
