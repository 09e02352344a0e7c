"""`iot-provision`: turn a freshly flashed device into a registered one, once.

Runs at first power-on from iot-provision.service and is safe to run again by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from provisioning import bootconfig, clock, enroll, errors, identity, install, network
from provisioning.paths import AGENT_UNIT, CONFIG_DIR, SERVICE_USER, STATE_DIR, under
from provisioning.progress import Progress
from provisioning.retry import Backoff, Deadline

DESCRIPTION = """\
Provision this device for IoT Center: derive its id, wait for the network and a synchronised
clock, register with the server using the enrollment token from the boot partition, save the
device credential and the agent configuration, remove the enrollment token from the boot
partition, and start the agent. Runs once (a marker records success); run again with --force.

Boot config (first found of /boot/firmware/iot-center.ini, /boot/iot-center.ini):
  [iot-center]
  url = https://iot.example.com
  enrollment_token = <the server's ENROLLMENT_TOKEN>
  device_id = <optional; default: the Pi's serial number, else /etc/machine-id>
  device_id_prefix = <optional, e.g. pi->
  [agent]
  led_pin = 17        (optional: any other agent.ini key, copied as is)
"""

EPILOG = f"""\
exit codes:
  0   provisioned, or already provisioned
  2   bad command line
  {errors.EXIT_BOOT_CONFIG}   boot config missing or incomplete
  {errors.EXIT_DEVICE_ID}   no usable device id
  {errors.EXIT_NO_NETWORK}   no network / server unreachable (after --timeout)
  {errors.EXIT_CLOCK}   clock not set (after --timeout)
  {errors.EXIT_ENROLLMENT_TOKEN}   wrong enrollment token
  {errors.EXIT_ID_REFUSED}   server refused the id
  {errors.EXIT_SERVER}   unexpected answer from the server
  {errors.EXIT_INSTALL}  could not write the credential, agent config or marker
  {errors.EXIT_START}  could not enable/start {AGENT_UNIT}
  130 interrupted

examples:
  sudo iot-provision                       # what iot-provision.service runs
  sudo iot-provision --force               # register again (needs the enrollment token back)
  iot-provision --root /tmp/dev1 --no-start --clock none   # a throwaway device tree
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iot-provision",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="treat DIR as / for every default path (tests, demos, preparing an image); "
        "with a root other than / the agent is not started (default: /)",
    )
    parser.add_argument(
        "--boot-config",
        metavar="PATH",
        help="the boot config file (default: ROOT/boot/firmware/iot-center.ini, "
        "else ROOT/boot/iot-center.ini)",
    )
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        help=f"where agent.ini and the device token go (default: ROOT{CONFIG_DIR})",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"the agent's state directory, holds the 'provisioned' marker "
        f"(default: ROOT{STATE_DIR})",
    )
    parser.add_argument(
        "--device-id", metavar="ID", help="use this device id (overrides the boot config)"
    )
    parser.add_argument(
        "--no-start", action="store_true", help=f"do not enable and start {AGENT_UNIT}"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="provision even if the marker says it was done (issues a new device token)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=900.0,
        metavar="S",
        help="give up waiting for the network, the clock and the server after S seconds "
        "in all; 0 waits forever (default: 900)",
    )
    parser.add_argument(
        "--max-backoff",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="longest pause between two attempts (default: 30)",
    )
    parser.add_argument(
        "--clock",
        choices=clock.MODES,
        default="auto",
        help="auto: wait for NTP (timedatectl) and the floor date; floor: only the floor "
        "date; none: do not check (default: auto)",
    )
    parser.add_argument(
        "--clock-floor",
        type=_floor,
        default=clock.DEFAULT_FLOOR,
        metavar="DATE",
        help=f"a clock before this date is not set (default: {clock.DEFAULT_FLOOR:%Y-%m-%d})",
    )
    parser.add_argument(
        "--user",
        default=SERVICE_USER,
        help=f"service user that owns the credential, when run as root (default: {SERVICE_USER})",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _floor(text: str):  # -> datetime
    try:
        return clock.parse_floor(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2025-11-01") from None


def run(
    args: argparse.Namespace,
    progress: Progress,
    *,
    clock_check: Callable[[], str] | None = None,
    start: Callable[[], None] = install.start_agent,
) -> int:
    root = args.root
    layout = install.Layout(
        config_dir=Path(args.config_dir) if args.config_dir else under(root, CONFIG_DIR),
        state_dir=Path(args.state_dir) if args.state_dir else under(root, STATE_DIR),
    )

    marker = install.read_marker(layout.marker)
    if marker is not None and not args.force:
        who = marker.get("deviceId", "?")
        when = marker.get("provisionedAt", "?")
        progress.say(
            f"already provisioned as {who!r} at {when} (marker {layout.marker}); "
            "nothing to do. --force registers again."
        )
        try:
            path = bootconfig.find_boot_config(root, args.boot_config)
            if bootconfig.read_boot_config(path).has_token:
                progress.say(
                    f"warning: {path} still holds an enrollment token; remove it "
                    "(or run with --force to provision again, which removes it)"
                )
        except errors.BootConfigError:
            pass
        return errors.EXIT_OK
    if marker is not None:
        progress.say(f"--force: provisioning again although {layout.marker} exists")

    path = bootconfig.find_boot_config(root, args.boot_config)
    config = bootconfig.read_boot_config(path)
    progress.say(f"boot config {path}: server {config.url}")
    if not config.has_token:
        raise errors.BootConfigError(
            f"{path} has no enrollment_token (it is removed after a successful provisioning; "
            "put the server's ENROLLMENT_TOKEN back to provision again)"
        )
    assert config.enrollment_token is not None

    device = identity.derive_device_id(
        root, explicit=args.device_id or config.device_id, prefix=config.device_id_prefix
    )
    progress.say(f"device id {device.device_id!r} (from {device.source})")
    extras = install.agent_extras(path)

    deadline = Deadline(args.timeout)
    backoff = Backoff(maximum=max(args.max_backoff, 0.1), initial=min(1.0, args.max_backoff))
    network.wait_for_server(config.url, deadline=deadline, progress=progress, backoff=backoff)
    if clock_check is None:
        mode, floor = args.clock, args.clock_floor

        def clock_check() -> str:
            return clock.check_clock(mode=mode, floor=floor)

    progress.say("waiting for the clock to be set")
    clock.wait_for_clock(deadline=deadline, progress=progress, check=clock_check, backoff=backoff)

    result = enroll.enroll(
        config.url,
        device.device_id,
        config.enrollment_token,
        deadline=deadline,
        progress=progress,
        backoff=backoff,
    )

    owner = install.service_owner(args.user)
    install.install(
        layout,
        center_url=config.url,
        device_id=device.device_id,
        token=result.token,
        owner=owner,
        extras=extras,
        config=result.config,
    )
    owned = f", owned by {owner.name}" if owner else ""
    progress.say(f"device token saved to {layout.token_file} (mode 0600{owned})")
    progress.say(f"agent configuration written to {layout.agent_config}")
    install.write_marker(
        layout.marker,
        device_id=device.device_id,
        center_url=config.url,
        replaced=result.replaced,
    )
    try:
        removed = bootconfig.remove_enrollment_token(path)
    except OSError as error:
        raise errors.InstallError(
            f"registered, but could not remove the enrollment token from {path}: {error}; "
            "remove it by hand"
        ) from error
    if removed:
        progress.say(f"enrollment token removed from {path}")

    if args.no_start:
        progress.say(f"not starting {AGENT_UNIT} (--no-start)")
    elif os.path.realpath(root) != "/":
        progress.say(
            f"not starting {AGENT_UNIT}: --root is {root}; run the agent with "
            f"iot-agent --config {layout.agent_config} run"
        )
    else:
        start()
        progress.say(f"{AGENT_UNIT} enabled and started; follow it with journalctl -u iot-agent -f")
    progress.say(f"done: device {device.device_id!r} is provisioned")
    return errors.EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
    clock_check: Callable[[], str] | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    progress = progress or Progress()
    try:
        return run(args, progress, clock_check=clock_check)
    except errors.ProvisioningError as error:
        progress.say(f"failed: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        progress.say("interrupted")
        return errors.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
