"""The agent's own health, written as telemetry next to the readings (measurement `agent`).

A fleet dashboard can then show which Pis are buffering, dropping or failing to read, and how
hot they run, from the same InfluxDB; `iot-agent status` shows the same numbers locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent import contract
from agent.lineprotocol import Point, device_tags

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """SoC temperature in °C (the Pi's thermal zone reports millidegrees), None if absent."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Health:
    buffer_depth: int
    readings: int
    written: int
    dropped: int
    rejected: int
    write_errors: int
    sensor_errors: int
    uptime_s: float
    cpu_temperature: float | None = None

    def point(self, device_id: str, time_ns: int) -> Point:
        fields: dict[str, float | int] = {
            "buffer_depth": self.buffer_depth,
            "readings": self.readings,
            "written": self.written,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "write_errors": self.write_errors,
            "sensor_errors": self.sensor_errors,
            "uptime_s": round(float(self.uptime_s), 1),
        }
        if self.cpu_temperature is not None:
            fields["cpu_temperature"] = float(self.cpu_temperature)
        return Point(contract.HEALTH_MEASUREMENT, fields, time_ns, device_tags(device_id))
