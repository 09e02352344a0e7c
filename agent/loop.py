"""The service: read on schedule, buffer first, let the writer drain, keep config fresh.

Threads: the main thread reads the sensor every `measurement_interval` seconds and does the
housekeeping (health points, status file, buffer sync, LED, watchdog); the writer thread
drains the buffer to InfluxDB; the config thread fetches the device configuration every
`configuration_refresh` seconds (sooner when InfluxDB refuses the token) and applies it
without a restart. A reading is stamped when it is read and committed to the buffer before
anything tries to send it, so no network or server trouble can lose it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent import __version__, clock, contract, systemd
from agent.buffer import Buffer
from agent.center import (
    CenterClient,
    CenterUnavailable,
    CredentialRefused,
    DeviceRemoved,
)
from agent.contract import DeviceConfig
from agent.health import Health, cpu_temperature
from agent.led import State, StatusLight
from agent.lineprotocol import Point, device_tags
from agent.sensors import Sensor, SensorTags, open_sensor
from agent.sensors.bme280 import I2CUnavailable, SensorError, SensorNotFound, WrongChip
from agent.sensors.reading import OutOfRange, Reading
from agent.settings import Settings
from agent.writer import Target, Writer

log = logging.getLogger(__name__)

MISSING_SENSOR_ERRORS = (I2CUnavailable, SensorNotFound, WrongChip)


@dataclass
class CenterState:
    """What the IoT Center last told us, for status output and the LED."""

    state: str = "unknown"  # ok | unreachable | removed | refused | unknown
    message: str | None = None
    config_source: str | None = None  # "center" or "saved copy"
    config_fetched_at: float | None = None


def reading_point(device_id: str, reading: Reading, kind: str, config: DeviceConfig, t_ns: int):
    """The `environment` point for one reading, tagged per the contract."""
    return Point(
        contract.MEASUREMENT,
        {
            contract.FIELD_TEMPERATURE: float(reading.temperature),
            contract.FIELD_HUMIDITY: float(reading.humidity),
            contract.FIELD_PRESSURE: float(reading.pressure),
            contract.FIELD_LAT: float(config.default_lat),
            contract.FIELD_LON: float(config.default_lon),
        },
        t_ns,
        device_tags(device_id, **SensorTags.for_kind(kind).as_tags()),
    )


class Agent:
    def __init__(self, settings: Settings, sensor: Sensor | None = None) -> None:
        self.settings = settings
        self.device_id = contract.validate_device_id(settings.device_id)
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()  # main loop: re-plan now (new interval, button)
        self._refresh_now = threading.Event()
        self._have_config = threading.Event()
        self._lock = threading.Lock()
        self.config: DeviceConfig | None = None
        self._target: Target | None = None
        self.center_state = CenterState()
        self.sensor: Sensor | None = sensor
        self.sensor_errors = 0
        self.sensor_missing = False
        self.last_sensor_error: str | None = None
        self.last_reading_at: float | None = None
        self.lost_readings = 0  # read but could not be buffered (disk full)
        self.state = "starting"
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.buffer = Buffer(settings.buffer_file, settings.buffer_max_points, settings.buffer_sync)
        self.center = CenterClient(
            settings.center_url,
            self.device_id,
            settings.device_token,
            settings.config_cache,
            timeout=settings.http_timeout,
        )
        self.writer = Writer(
            self.buffer,
            self.target,
            batch_size=settings.batch_size,
            drain_batch_size=settings.drain_batch_size,
            concurrency=settings.write_concurrency,
            compress=settings.http_compression == "gzip",
            flush_interval=settings.flush_interval,
            timeout=settings.http_timeout,
            retry_initial=settings.retry_initial,
            retry_max=settings.retry_max,
            on_needs_config=self.request_refresh,
        )
        self.light = StatusLight(
            settings.led_pin, settings.button_pin, on_press=self.button_pressed
        )
        self._watchdog = systemd.watchdog_interval()
        self._last_ping = 0.0
        self._config_thread: threading.Thread | None = None
        self._guard_errors: dict[str, str] = {}

    # --- configuration ------------------------------------------------------------------

    def target(self) -> Target | None:
        with self._lock:
            return self._target

    @property
    def measurement_interval(self) -> float:
        if self.settings.measurement_interval_override:
            return self.settings.measurement_interval_override
        return self.config.measurement_interval if self.config else 60

    @property
    def configuration_refresh(self) -> int:
        if self.settings.configuration_refresh_override:
            return self.settings.configuration_refresh_override
        return self.config.configuration_refresh if self.config else 3600

    def apply(self, config: DeviceConfig, source: str, fetched_at: float) -> None:
        """Use a configuration from now on; log what changed (never the token itself)."""
        with self._lock:
            old = self.config
            old_target = self._target
            self.config = config
            self._target = Target.from_config(config)
            target_changed = self._target != old_target
            self.center_state.config_source = source
            self.center_state.config_fetched_at = fetched_at
        if old is None:
            log.info(
                "device configuration from %s: InfluxDB %s, org %s, bucket %s, "
                "measurement every %g s, refresh every %d s",
                source,
                config.influx_url,
                config.influx_org,
                config.influx_bucket,
                config.measurement_interval,
                config.configuration_refresh,
            )
        else:
            changes = [
                f"{name} {getattr(old, name)!r} -> {getattr(config, name)!r}"
                for name in (
                    "influx_url",
                    "influx_org",
                    "influx_bucket",
                    "write_endpoint",
                    "measurement_interval",
                    "configuration_refresh",
                    "default_lat",
                    "default_lon",
                )
                if getattr(old, name) != getattr(config, name)
            ]
            if old.influx_token != config.influx_token:
                changes.append("InfluxDB token replaced")
            if changes:
                log.info("device configuration changed: %s", "; ".join(changes))
        self._have_config.set()
        if target_changed:
            self.writer.kick()  # a new token or URL may fix a failing write right away
        if old is None or old.measurement_interval != config.measurement_interval:
            self._wake.set()  # a new interval re-plans the next reading

    def refresh_once(self) -> float:
        """Fetch the configuration once; return seconds until the next attempt."""
        try:
            config = self.center.fetch()
        except DeviceRemoved as exc:
            return self._center_problem("removed", str(exc), self.settings.removed_retry)
        except CredentialRefused as exc:
            return self._center_problem("refused", str(exc), self.settings.removed_retry)
        except CenterUnavailable as exc:
            source = self.center_state.config_source
            suffix = f"; running on the {source}" if source else "; no configuration yet"
            delay = min(60.0, float(self.configuration_refresh)) if self.config else 10.0
            return self._center_problem(
                "unreachable", f"{exc}{suffix}", delay, level=logging.WARNING
            )
        now = time.time()
        try:
            self.center.save(config, now)
        except OSError as exc:
            log.error("cannot save the device configuration to %s: %s", self.center.cache_path, exc)
        if self.center_state.state not in ("ok", "unknown"):
            log.info("the IoT Center answers again (was %s)", self.center_state.state)
        self.center_state.state, self.center_state.message = "ok", None
        self.apply(config, "center", now)
        return float(self.configuration_refresh)

    def _center_problem(self, state: str, message: str, delay: float, level=logging.ERROR) -> float:
        if self.center_state.state != state or self.center_state.message != message:
            log.log(level, "%s; next try in %.0f s", message, delay)
        self.center_state.state, self.center_state.message = state, message
        return delay

    def _config_loop(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.refresh_once()
            except Exception:
                log.exception("configuration refresh failed unexpectedly")
                delay = 60.0
            self._refresh_now.wait(delay)
            self._refresh_now.clear()

    def request_refresh(self) -> None:
        self._refresh_now.set()

    def button_pressed(self) -> None:
        log.info("button pressed: sending now and refreshing the configuration")
        self.request_refresh()
        self.writer.kick()

    # --- measuring ----------------------------------------------------------------------

    def read_once(self) -> bool:
        """Read, stamp and buffer one reading; False if nothing was published this cycle."""
        assert self.sensor is not None and self.config is not None
        try:
            reading = self.sensor.read()
        except (SensorError, OutOfRange) as exc:
            self.sensor_errors += 1
            self.sensor_missing = isinstance(exc, MISSING_SENSOR_ERRORS)
            if str(exc) != self.last_sensor_error:
                log.error("sensor: %s", exc)
            self.last_sensor_error = str(exc)
            return False
        t_ns = time.time_ns()
        self.sensor_missing = False
        self.last_sensor_error = None
        point = reading_point(self.device_id, reading, self.sensor.kind, self.config, t_ns)
        try:
            self.buffer.append(point.encode(), counter="readings")
        except sqlite3.Error as exc:
            self.lost_readings += 1
            log.error("cannot store a reading in the buffer %s: %s", self.buffer.path, exc)
            return False
        self.last_reading_at = t_ns / 1e9
        self.writer.notify_data()
        return True

    def write_health(self) -> None:
        counters = self.buffer.counters()
        health = Health(
            buffer_depth=self.buffer.depth(),
            readings=counters["readings"],
            written=counters["written"],
            dropped=counters["dropped"],
            rejected=counters["rejected"],
            write_errors=self.writer.stats.write_errors,
            sensor_errors=self.sensor_errors,
            uptime_s=time.monotonic() - self._started_mono,
            cpu_temperature=cpu_temperature(),
        )
        try:
            self.buffer.append(health.point(self.device_id, time.time_ns()).encode())
        except sqlite3.Error as exc:  # readings matter more; say it once, no traceback
            log.warning("health point not buffered: %s", exc)
            return
        self.writer.notify_data()

    # --- status -------------------------------------------------------------------------

    def led_state(self) -> State:
        if self.state in ("starting", "waiting"):
            return State.STARTING
        if self.state == "stopped":
            return State.STOPPED
        if self.sensor_missing:
            return State.SENSOR_MISSING
        if self.writer.stats.failing or self.center_state.state in ("removed", "refused"):
            return State.WRITE_FAILING
        return State.HEALTHY

    def status(self) -> dict[str, object]:
        counters = self.buffer.counters()
        stats = self.writer.stats
        target = self.target()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "state": self.state,
            "updatedAt": time.time(),
            "startedAt": self.started_at,
            "deviceId": self.device_id,
            "sensor": self.sensor.describe() if self.sensor else None,
            "sensorKind": self.sensor.kind if self.sensor else None,
            "sensorMissing": self.sensor_missing,
            "lastSensorError": self.last_sensor_error,
            "lastReadingAt": self.last_reading_at,
            "bufferPath": str(self.buffer.path),
            "bufferDepth": self.buffer.depth(),
            "counters": {
                **counters,
                "write_errors": stats.write_errors,
                "sensor_errors": self.sensor_errors,
                "lost_readings": self.lost_readings,
            },
            "writeFailing": stats.failing,
            "lastWriteError": stats.last_error,
            "lastWriteErrorAt": stats.last_error_at,
            "lastWriteAt": stats.last_success_at,
            "influxWriteUrl": target.write_url if target else None,
            "measurementInterval": self.measurement_interval if self.config else None,
            "center": {
                "url": self.settings.center_url,
                "state": self.center_state.state,
                "message": self.center_state.message,
                "configSource": self.center_state.config_source,
                "configFetchedAt": self.center_state.config_fetched_at,
            },
        }

    def write_status(self) -> None:
        write_json_atomic(self.settings.status_file, self.status())
        self.light.set(self.led_state())
        systemd.notify(f"STATUS={self.status_line()}")

    def status_line(self) -> str:
        parts = [self.state, f"buffer {self.buffer.depth()}"]
        if self.sensor_missing:
            parts.append("sensor missing")
        if self.writer.stats.failing:
            parts.append("writes failing")
        if self.center_state.state not in ("ok", "unknown"):
            parts.append(f"IoT Center {self.center_state.state}")
        return ", ".join(parts)

    # --- lifecycle ----------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        if not self._stop.is_set():
            log.info("stop requested: no more readings; flushing the buffer")
        self._stop.set()
        self._wake.set()
        self._refresh_now.set()

    def _ping(self) -> None:
        now = time.monotonic()
        if self._watchdog and now - self._last_ping >= self._watchdog:
            systemd.notify("WATCHDOG=1")
            self._last_ping = now

    def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds` while pinging the watchdog; False once stopping."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            self._ping()
            left = end - time.monotonic()
            if left <= 0:
                return True
            self._stop.wait(min(left, self._watchdog or left))
        return False

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code."""
        s = self.settings
        log.info(
            "iot-agent %s starting: device %s, IoT Center %s, buffer %s (%d points waiting)",
            __version__,
            self.device_id,
            s.center_url,
            self.buffer.path,
            self.buffer.depth(),
        )
        self.light.set(State.STARTING)
        cached = self.center.load_cached()
        if cached is not None:
            self.apply(cached.config, "saved copy", cached.fetched_at)
        self.writer.start()
        self._config_thread = threading.Thread(target=self._config_loop, name="config", daemon=True)
        self._config_thread.start()
        systemd.notify("READY=1", "STATUS=starting")
        self.write_status()

        self.state = "waiting"
        waited = 0.0
        while not self._have_config.is_set() and not self._stop.is_set():
            if waited % 60 == 0:
                log.warning(
                    "waiting for the device configuration: no saved copy and the IoT Center "
                    "has not answered yet"
                )
            self.pause(1.0)
            waited += 1
        if not self._stop.is_set():
            clock.wait_for_clock(s.clock_check, s.clock_min_year, s.clock_wait_max, self.pause)
        if not self._stop.is_set() and self.sensor is None:
            self.sensor = open_sensor(
                self.device_id, s.sensor, s.fallback, s.i2c_addresses, s.sensor_reinit_after
            )
            log.info(
                "measuring with %s every %g s", self.sensor.describe(), self.measurement_interval
            )
        if not self._stop.is_set():
            self.state = "running"
            self._main_loop()
        return self.shutdown()

    def _main_loop(self) -> None:
        s = self.settings
        now = time.monotonic()
        interval = self.measurement_interval
        next_read, next_health, next_status, next_sync = now, now + 5.0, now, now + s.sync_interval
        while not self._stop.is_set():
            now = time.monotonic()
            if self.measurement_interval != interval:
                next_read = next_read - interval + self.measurement_interval
                interval = self.measurement_interval
                log.info("measurement interval is now %g s", interval)
            if now >= next_read:
                self._guard(self.read_once)
                next_read += interval
                if next_read <= now:  # fell behind (suspend, slow disk): do not burst
                    next_read = now + interval
            if s.health_interval and now >= next_health:
                self._guard(self.write_health)
                next_health = now + s.health_interval
            if now >= next_status:
                self._guard(self.write_status)
                next_status = now + s.status_interval
            if now >= next_sync:  # "full" mode needs no fsync, but this bounds the WAL too
                self._guard(self.buffer.sync)
                next_sync = now + s.sync_interval
            self._ping()
            timeout = min(next_read, next_status, next_sync) - time.monotonic()
            if self._watchdog:
                timeout = min(timeout, self._watchdog)
            self._wake.wait(max(0.0, timeout))
            self._wake.clear()

    def _guard(self, fn) -> None:
        """Housekeeping must not stop the readings. Expected trouble (disk full, permissions)
        gets one log line per distinct message; anything else is a bug and gets a traceback."""
        name = getattr(fn, "__name__", str(fn))
        try:
            fn()
        except (OSError, sqlite3.Error) as exc:
            message = f"{name}: {exc}"
            if self._guard_errors.get(name) != message:
                log.error("%s failed: %s", name, exc)
            self._guard_errors[name] = message
        except Exception:
            log.exception("%s failed", name)
        else:
            self._guard_errors.pop(name, None)

    def shutdown(self) -> int:
        self._stop.set()
        self._refresh_now.set()
        self.state = "stopping"
        depth = self.buffer.depth()
        systemd.notify("STOPPING=1", f"STATUS=flushing {depth} buffered points")
        drained = self.writer.finish(self.settings.flush_deadline)
        left = self.buffer.depth()
        if drained:
            log.info("stopped: every buffered point was delivered")
        else:
            log.warning(
                "stopped with %d points still buffered in %s; they will be sent at next start",
                left,
                self.buffer.path,
            )
        self.state = "stopped"
        self._guard(self.write_status)
        self.buffer.close()
        if self.sensor is not None:
            self.sensor.close()
        self.light.close()
        return 0


def write_json_atomic(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
