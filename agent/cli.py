"""`iot-agent`: run the service, take one reading, or show what the running agent is doing."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from agent import __version__
from agent.settings import DEFAULT_CONFIG_PATH, Settings, SettingsError, load

EPILOG = """\
commands:
  run     the service (what systemd starts): read the sensor on schedule, buffer every
          reading on disk, deliver it to InfluxDB, refresh the device configuration
  read    take one reading and print it with the sensor that gave it (checks the wiring)
  status  print the running agent's state: buffer depth, counters, last error, config age

settings come from the [agent] section of the config file, overridden by environment
variables (IOT_CENTER_URL, IOT_DEVICE_ID, IOT_DEVICE_TOKEN, IOT_BUFFER_PATH, IOT_STATE_DIR,
IOT_AGENT_<KEY>); see docs/AGENT.md.
"""


def _setup_logging(verbose: bool) -> None:
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journal:  # journald adds its own timestamps
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iot-agent",
        description="IoT Center edge agent: BME280 (or virtual) readings to InfluxDB, "
        "never losing a reading it managed to take.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"agent settings file (default: {DEFAULT_CONFIG_PATH}, optional)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"iot-agent {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{run,read,status}", required=True)
    sub.add_parser("run", help="run the service until SIGTERM")
    r = sub.add_parser("read", help="print one reading and which sensor gave it")
    r.add_argument("--json", action="store_true", help="print JSON")
    st = sub.add_parser("status", help="print the running agent's state")
    st.add_argument("--json", action="store_true", help="print the raw status JSON")
    return p


def _load(args: argparse.Namespace) -> Settings:
    return load(args.config, required=args.config is not None)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.loop import Agent

    agent = Agent(_load(args))
    agent.install_signal_handlers()
    return agent.run()


def cmd_read(args: argparse.Namespace) -> int:
    from agent.sensors import SensorTags, open_sensor
    from agent.sensors.bme280 import SensorError
    from agent.sensors.reading import OutOfRange

    try:
        s = _load(args)
        device_id, sensor_opt, fallback, addresses, reinit = (
            s.device_id,
            s.sensor,
            s.fallback,
            s.i2c_addresses,
            s.sensor_reinit_after,
        )
    except SettingsError as exc:
        if args.config is not None:
            raise
        logging.info("no usable settings (%s); probing the sensor with defaults", exc)
        device_id, sensor_opt, fallback, addresses, reinit = (
            "iot-agent-read",
            "auto",
            "auto",
            (
                0x77,
                0x76,
            ),
            1,
        )
    sensor = open_sensor(device_id, sensor_opt, fallback, addresses, reinit)
    try:
        reading = sensor.read()
    except (SensorError, OutOfRange) as exc:
        print(f"no reading from {sensor.describe()}: {exc}", file=sys.stderr)
        return 1
    finally:
        sensor.close()
    tags = SensorTags.for_kind(sensor.kind)
    if args.json:
        print(
            json.dumps(
                {
                    "sensor": sensor.describe(),
                    "device": tags.device,
                    "sensorTag": tags.sensor,
                    "temperature": reading.temperature,
                    "humidity": reading.humidity,
                    "pressure": reading.pressure,
                }
            )
        )
    else:
        print(f"sensor:      {sensor.describe()} (tagged {tags.sensor}, device={tags.device})")
        print(f"temperature: {reading.temperature:.2f} °C")
        print(f"humidity:    {reading.humidity:.2f} %RH")
        print(f"pressure:    {reading.pressure:.2f} hPa")
    return 0


def _ago(t: object, now: float) -> str:
    if not isinstance(t, (int, float)):
        return "never"
    seconds = max(0.0, now - t)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_status(args: argparse.Namespace) -> int:
    from agent.buffer import read_counters
    from agent.center import load_cached

    s = _load(args)
    now = time.time()
    try:
        status = json.loads(s.status_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        status = None
    except (OSError, ValueError) as exc:
        print(f"cannot read {s.status_file}: {exc}", file=sys.stderr)
        status = None
    live = read_counters(s.buffer_file)
    cached = load_cached(s.config_cache, s.device_id)
    if args.json:
        print(json.dumps({"status": status, "buffer": live and {"depth": live[0], **live[1]}}))
        return 0 if status else 1
    running = bool(status) and status.get("state") != "stopped" and _pid_alive(status.get("pid"))
    print(f"device:          {s.device_id}")
    if status is None:
        print(f"agent:           no status file at {s.status_file} (never ran here?)")
    else:
        state = (
            status.get("state") if running else f"not running (last state {status.get('state')})"
        )
        print(
            f"agent:           {state}, pid {status.get('pid')}, "
            f"status written {_ago(status.get('updatedAt'), now)}"
        )
        print(
            f"sensor:          {status.get('sensor')}"
            + (" - MISSING" if status.get("sensorMissing") else "")
        )
        if status.get("lastSensorError"):
            print(f"sensor error:    {status['lastSensorError']}")
        print(f"last reading:    {_ago(status.get('lastReadingAt'), now)}")
        print(
            f"last write:      {_ago(status.get('lastWriteAt'), now)}"
            + (" - WRITES FAILING" if status.get("writeFailing") else "")
        )
        if status.get("lastWriteError"):
            print(
                f"last write error: {status['lastWriteError']} "
                f"({_ago(status.get('lastWriteErrorAt'), now)})"
            )
        center = status.get("center") or {}
        print(
            f"IoT Center:      {center.get('url')}: {center.get('state')}"
            + (f" - {center['message']}" if center.get("message") else "")
        )
    if live is not None:
        depth, counters = live
        print(f"buffer:          {depth} points waiting in {s.buffer_file}")
        extra = (status or {}).get("counters", {})
        print(
            "counters:        "
            + ", ".join(
                f"{k} {v}"
                for k, v in {
                    **counters,
                    "write_errors": extra.get("write_errors", 0),
                    "sensor_errors": extra.get("sensor_errors", 0),
                }.items()
            )
        )
    else:
        print(f"buffer:          none yet at {s.buffer_file}")
    if cached is not None:
        c = cached.config
        print(
            f"configuration:   fetched {_ago(cached.fetched_at, now)}; InfluxDB {c.influx_url}, "
            f"bucket {c.influx_bucket}, every {c.measurement_interval} s"
        )
    else:
        print("configuration:   no saved copy yet")
    return 0 if running else 3


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return {"run": cmd_run, "read": cmd_read, "status": cmd_status}[args.command](args)
    except SettingsError as exc:
        print(f"iot-agent: settings error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # state dir not writable, and the like: one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"iot-agent: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
