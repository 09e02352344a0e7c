"""hardware.md quotes the agent's and provisioning's own messages: keep them in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioning import errors

REPO = Path(__file__).resolve().parents[2]
HARDWARE = (REPO / "hardware.md").read_text()
AGENT_SOURCE = "\n".join(p.read_text() for p in sorted((REPO / "agent").rglob("*.py")))

AGENT_MESSAGES = [
    "I2C is not enabled",
    "is the agent's user in the 'i2c' group?",
    "no device answers at I2C address",
    "is a BMP280 (chip id",
    "is not a BME280 (",
    "I2C error while probing address",
    "gave an impossible value",
    "BME280 reads failed in a row; re-initialising the sensor",
    "the hardware libraries are not installed",
    "no I2C bus that Adafruit Blinka supports",
    "waiting for the clock before measuring",
    "cannot reach the IoT Center at",
    "refused this device's token",
    "does not know device",
    "no reading from",
]


@pytest.mark.parametrize("fragment", AGENT_MESSAGES)
def test_agent_message_is_documented_as_the_agent_says_it(fragment: str) -> None:
    # The agent's source may split a message over lines/f-strings; compare without that.
    flat = re.sub(r'"\s*\n\s*f?"', "", AGENT_SOURCE)
    assert fragment in flat, f"the agent no longer says {fragment!r}: update hardware.md"
    assert fragment in HARDWARE, f"hardware.md does not explain {fragment!r}"


def test_provisioning_causes_and_exit_codes_are_documented() -> None:
    for cls in (
        errors.BootConfigError,
        errors.DeviceIdError,
        errors.NetworkError,
        errors.ClockError,
        errors.EnrollmentTokenError,
        errors.IdRefusedError,
        errors.ServerError,
        errors.InstallError,
        errors.StartError,
    ):
        assert f"`{cls.cause}` ({cls.exit_code})" in HARDWARE, cls.__name__


def test_wiring_picture_is_linked_and_shows_the_pins() -> None:
    assert "](docs/wiring.svg)" in HARDWARE
    svg = (REPO / "docs/wiring.svg").read_text()
    labels = ("1 · 3V3", "3 · SDA", "5 · SCL", "9 · GND", "11 · GPIO17", "13 · GPIO27", "330 Ω")
    for label in labels:
        assert label in svg
