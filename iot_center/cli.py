"""`iot-center`: run the server, prepare InfluxDB, simulate devices."""

from __future__ import annotations

import argparse
import sys
import time

from iot_center.settings import ConfigError, Settings

EPILOG = """settings come from the [APP] section of the config file (default ./config.ini,
or $IOT_CENTER_CONFIG); environment variables of the same names override it.
Required: INFLUX_URL, INFLUX_TOKEN, INFLUX_ORG, SECRET_KEY. See deploy/config.ini.example."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iot-center",
        description="IoT Center: register Raspberry Pi sensors, serve their configuration, "
        "and show their telemetry from InfluxDB 2.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="PATH", help="config.ini to read (default ./config.ini)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="serve the dashboard and API (development server; use gunicorn in production)"
    )
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=5000, help="port (default 5000)")

    setup = sub.add_parser(
        "setup", help="onboard InfluxDB if fresh and create missing buckets (safe to repeat)"
    )
    setup.add_argument("--username", help="first admin user, only used on a fresh InfluxDB")
    setup.add_argument("--password", help="that user's password (8+ characters)")

    sim = sub.add_parser("simulate", help="write realistic virtual BME280 telemetry for a device")
    sim.add_argument("device_id", help="device to simulate (registered first if unknown)")
    sim.add_argument("--backfill", metavar="SPAN", help="write history first, e.g. 1h, 7d, 30d")
    sim.add_argument(
        "--interval", default="1m", metavar="STEP", help="time between points (default 1m)"
    )
    sim.add_argument("--follow", action="store_true", help="keep writing live points until Ctrl-C")
    sim.add_argument("--lat", type=float, help="latitude (default DEFAULT_LAT)")
    sim.add_argument("--lon", type=float, help="longitude (default DEFAULT_LON)")
    sim.add_argument("--wander", action="store_true", help="move the position in a slow loop")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(args.config)
    except ConfigError as e:
        print(f"iot-center: configuration error: {e}", file=sys.stderr)
        return 2
    if args.command == "run":
        from iot_center.app import create_app

        app = create_app(settings=settings)
        print(
            f"IoT Center on http://{args.host}:{args.port}/ (InfluxDB {settings.INFLUX_URL})",
            flush=True,
        )
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
        return 0
    if args.command == "setup":
        from iot_center.setup_influx import setup_influxdb

        setup_influxdb(settings, args.username, args.password)
        return 0
    if args.command == "simulate":
        return simulate(settings, args)
    return 2


def simulate(settings: Settings, args: argparse.Namespace) -> int:
    from agent.contract import InvalidDeviceId, validate_device_id
    from iot_center.influx import Influx, InfluxUnavailable
    from iot_center.registry import DeviceRegistry
    from iot_center.simulate import Simulator, virtual_points
    from iot_center.telemetry import BadRange, parse_duration

    try:
        device_id = validate_device_id(args.device_id)
        step = parse_duration(args.interval, "--interval").total_seconds()
        span = parse_duration(args.backfill, "--backfill") if args.backfill else None
    except (InvalidDeviceId, BadRange) as e:
        print(f"iot-center simulate: {e}", file=sys.stderr)
        return 2
    lat = settings.DEFAULT_LAT if args.lat is None else args.lat
    lon = settings.DEFAULT_LON if args.lon is None else args.lon
    influx = Influx(settings)
    try:
        registry = DeviceRegistry(influx)
        device = registry.get(device_id, with_token=True)
        if device is None:
            device, _ = registry.register(device_id)
            print(f"registered device {device_id}", file=sys.stderr)
        sim = Simulator(
            settings.INFLUX_URL, settings.INFLUX_ORG, settings.INFLUX_BUCKET, device.token or ""
        )
        try:
            if span:
                n = sim.backfill(device_id, span, step, lat, lon, args.wander, not args.quiet)
                print(
                    f"wrote {n:,} points for {device_id} over the last {args.backfill}",
                    file=sys.stderr,
                )
            if args.follow:
                print(f"writing a point every {args.interval}; Ctrl-C stops", file=sys.stderr)
                while True:
                    now = time.time()
                    sim.write(
                        list(
                            virtual_points(
                                device_id, now - step + 1e-3, now, step, lat, lon, args.wander
                            )
                        )
                    )
                    time.sleep(step)
        except KeyboardInterrupt:
            pass
        finally:
            sim.close()
    except InfluxUnavailable as e:
        print(f"iot-center simulate: {e}", file=sys.stderr)
        return 1
    finally:
        influx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
