"""Provisioning failures: each names its cause in words and has its own exit code.

The exit code lets systemd (`RestartPreventExitStatus=`) and scripts tell the causes apart;
the message is what a person reads on the console or in `journalctl -u iot-provision`.
"""

from __future__ import annotations

# Exit codes of `iot-provision`. 0 is success (or "already provisioned"), 2 is a usage error
# (argparse's own), 130 is Ctrl-C. Each failure class below has one of its own.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BOOT_CONFIG = 3
EXIT_DEVICE_ID = 4
EXIT_NO_NETWORK = 5
EXIT_CLOCK = 6
EXIT_ENROLLMENT_TOKEN = 7
EXIT_ID_REFUSED = 8
EXIT_SERVER = 9
EXIT_INSTALL = 10
EXIT_START = 11
EXIT_INTERRUPTED = 130


class ProvisioningError(Exception):
    """A failure a person can act on; `cause` is a short label, str(self) the details."""

    exit_code = 1
    cause = "provisioning failed"

    def __str__(self) -> str:
        detail = super().__str__()
        return f"{self.cause}: {detail}" if detail else self.cause


class BootConfigError(ProvisioningError):
    exit_code = EXIT_BOOT_CONFIG
    cause = "boot configuration unusable"


class DeviceIdError(ProvisioningError):
    exit_code = EXIT_DEVICE_ID
    cause = "no usable device id"


class NetworkError(ProvisioningError):
    exit_code = EXIT_NO_NETWORK
    cause = "no network / server unreachable"


class ClockError(ProvisioningError):
    exit_code = EXIT_CLOCK
    cause = "clock not set"


class EnrollmentTokenError(ProvisioningError):
    exit_code = EXIT_ENROLLMENT_TOKEN
    cause = "wrong enrollment token"


class IdRefusedError(ProvisioningError):
    exit_code = EXIT_ID_REFUSED
    cause = "server refused the id"


class ServerError(ProvisioningError):
    exit_code = EXIT_SERVER
    cause = "unexpected answer from IoT Center"


class InstallError(ProvisioningError):
    exit_code = EXIT_INSTALL
    cause = "could not save the device configuration"


class StartError(ProvisioningError):
    exit_code = EXIT_START
    cause = "could not start the agent"
