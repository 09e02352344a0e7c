"""`iot-center simulate`: realistic virtual BME280 telemetry written with the device's own token.

Uses the same generator as the agent's virtual sensor (`agent.sensors.virtual`), so a
backfill and a live virtual device draw the same curves. Points are tagged as virtual so
nobody mistakes them for real air.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from agent import contract
from agent.sensors.virtual import VirtualWeather
from iot_center.influx import translate_errors

BATCH = 5000


def virtual_points(
    device_id: str, start: float, stop: float, interval: float, lat: float, lon: float, wander: bool
) -> Iterator[Point]:
    weather = VirtualWeather(device_id)
    t = math.ceil(start / interval) * interval
    while t <= stop:
        r = weather.at(t)
        la, lo = lat, lon
        if wander:  # a slow loop of a few hundred metres, like a sensor on a vehicle or a person
            la += 0.003 * math.sin(t / 3600)
            lo += 0.005 * math.cos(t / 3600)
        p = Point(contract.MEASUREMENT).tag(contract.TAG_CLIENT_ID, device_id)
        p = p.tag(contract.TAG_DEVICE, contract.DEVICE_KIND_VIRTUAL)
        for tag in contract.SENSOR_TAGS:
            p = p.tag(tag, contract.SENSOR_VIRTUAL)
        p = (
            p.field(contract.FIELD_TEMPERATURE, r.temperature)
            .field(contract.FIELD_HUMIDITY, r.humidity)
            .field(contract.FIELD_PRESSURE, r.pressure)
            .field(contract.FIELD_LAT, float(la))
            .field(contract.FIELD_LON, float(lo))
            .time(int(t * 1e9), WritePrecision.NS)
        )
        yield p
        t += interval


class Simulator:
    """Writes a device's virtual telemetry through its own token (write-only on telemetry)."""

    def __init__(self, influx_url: str, org: str, bucket: str, token: str) -> None:
        self.client = InfluxDBClient(url=influx_url, token=token, org=org, timeout=30_000)
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)
        self.bucket = bucket

    def close(self) -> None:
        self.client.close()

    def write(self, points: list[Point]) -> None:
        with translate_errors("accept the simulated points"):
            self.write_api.write(
                bucket=self.bucket, record=points, write_precision=WritePrecision.NS
            )

    def backfill(
        self,
        device_id: str,
        span: timedelta,
        interval: float,
        lat: float,
        lon: float,
        wander: bool = False,
        progress: bool = True,
    ) -> int:
        stop = time.time()
        start = stop - span.total_seconds()
        first = math.ceil(start / interval) * interval
        total = int((stop - first) // interval) + 1
        written = 0
        batch: list[Point] = []
        began = time.monotonic()
        for p in virtual_points(device_id, start, stop, interval, lat, lon, wander):
            batch.append(p)
            if len(batch) >= BATCH:
                self.write(batch)
                written += len(batch)
                batch = []
                if progress:
                    _bar(written, total, began)
        if batch:
            self.write(batch)
            written += len(batch)
        if progress:
            _bar(written, total, began)
            print(file=sys.stderr)
        return written


def _bar(done: int, total: int, began: float) -> None:
    frac = min(1.0, done / max(total, 1))
    rate = done / max(time.monotonic() - began, 1e-6)
    filled = int(frac * 30)
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:>9,}/{total:,} points "
        f"{frac * 100:5.1f}% {rate:,.0f} pts/s"
    )
    sys.stderr.flush()
