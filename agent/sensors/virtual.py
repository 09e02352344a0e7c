"""A virtual BME280: plausible weather for demos and laptops, never mistaken for real air.

Values are a smooth function of time and the device id, not noise: a daily temperature cycle
(warmest mid-afternoon), humidity moving against it, pressure drifting over days. The same
generator backs the server's `iot-center simulate` and the agent's fallback sensor, so a
backfill and a live virtual device draw the same curves.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from agent.sensors.reading import Reading

DAY = 86400.0


def _seed(device_id: str) -> float:
    digest = hashlib.sha256(device_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


@dataclass(frozen=True)
class VirtualWeather:
    """Deterministic weather for one device: `at(t)` gives the reading at Unix time t."""

    device_id: str
    mean_temperature: float = 21.0
    daily_swing: float = 4.0

    def at(self, t: float) -> Reading:
        s = _seed(self.device_id)
        phase = s * 2 * math.pi
        day = 2 * math.pi * ((t % DAY) / DAY)
        # Peak at about 15:00 local-ish time, plus a slower multi-day drift and a wobble.
        daily = math.sin(day - 1.3 * math.pi / 2 + phase * 0.05)
        drift = math.sin(2 * math.pi * t / (5.3 * DAY) + phase)
        wobble = (
            math.sin(2 * math.pi * t / 1700.0 + phase * 3) * 0.15
            + math.sin(2 * math.pi * t / 311.0 + phase * 7) * 0.05
        )
        temperature = self.mean_temperature + s * 3 + self.daily_swing * daily + drift + wobble
        humidity = 45.0 + s * 10 - 12.0 * daily - 3 * drift + wobble * 4
        pressure = 1013.0 + 9.0 * math.sin(2 * math.pi * t / (3.7 * DAY) + phase) + wobble
        return Reading(
            temperature=round(temperature, 2),
            humidity=round(min(100.0, max(0.0, humidity)), 2),
            pressure=round(pressure, 2),
        )


class VirtualSensor:
    """The agent-facing sensor interface over VirtualWeather."""

    kind = "virtual"

    def __init__(self, device_id: str, clock=None) -> None:
        import time

        self._weather = VirtualWeather(device_id)
        self._clock = clock or time.time

    def describe(self) -> str:
        return "virtual BME280 (simulated weather)"

    def read(self) -> Reading:
        return self._weather.at(self._clock()).check()

    def close(self) -> None:
        pass
