"""Boot config parsing and removal of the enrollment token."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.bootconfig import find_boot_config, read_boot_config, remove_enrollment_token
from provisioning.errors import BootConfigError

FULL = """\
# Written by the person who flashed the card.
[iot-center]
url = https://iot.example.com/
enrollment_token = s3cret-enroll
device_id_prefix = pi-
# device_id = greenhouse-1

[agent]
led_pin = 17
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_parse_full(tmp_path: Path) -> None:
    config = read_boot_config(write(tmp_path / "iot-center.ini", FULL))
    assert config.url == "https://iot.example.com"  # trailing slash gone
    assert config.enrollment_token == "s3cret-enroll"
    assert config.device_id is None
    assert config.device_id_prefix == "pi-"


def test_quotes_and_bom_from_windows_editors(tmp_path: Path) -> None:
    path = tmp_path / "iot-center.ini"
    path.write_bytes(
        "\ufeff[iot-center]\r\nurl = \"http://10.0.0.5:5000\"\r\nenrollment_token = 'tok'\r\n"
        "device_id = shed\r\n".encode()
    )
    config = read_boot_config(path)
    assert (config.url, config.enrollment_token, config.device_id) == (
        "http://10.0.0.5:5000",
        "tok",
        "shed",
    )


def test_firmware_location_first_then_legacy(tmp_path: Path) -> None:
    legacy = write(tmp_path / "boot/iot-center.ini", FULL)
    assert find_boot_config(tmp_path) == legacy
    current = write(tmp_path / "boot/firmware/iot-center.ini", FULL)
    assert find_boot_config(tmp_path) == current


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(BootConfigError, match=r"boot/firmware/iot-center.ini or .*boot/iot"):
        find_boot_config(tmp_path)
    with pytest.raises(BootConfigError, match="does not exist"):
        find_boot_config(tmp_path, str(tmp_path / "nope.ini"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[other]\nurl = http://x\n", "no \\[iot-center\\] section"),
        ("[iot-center]\nenrollment_token = t\n", "no 'url'"),
        ("[iot-center]\nurl = iot.example.com\n", "must be the IoT Center address"),
        ("[iot-center]\nurl = <server url>\n", "must be the IoT Center address"),
        ("[iot-center]\nurl = http://x\nenrollment_token = CHANGE_ME\n", "still the placeholder"),
        ("[iot-center]\nurl = http://x\nurl = http://y\n", "not a valid INI file"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BootConfigError, match=message):
        read_boot_config(write(tmp_path / "iot-center.ini", text))


def test_token_removed_everything_else_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "iot-center.ini", FULL)
    assert remove_enrollment_token(path) is True
    text = path.read_text()
    assert "s3cret" not in text and "enrollment_token" not in text
    assert text == FULL.replace("enrollment_token = s3cret-enroll\n", "")
    config = read_boot_config(path)
    assert config.enrollment_token is None and config.url == "https://iot.example.com"
    assert remove_enrollment_token(path) is False  # nothing left to remove
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["iot-center.ini"]  # no temp files left


def test_token_removal_only_in_our_section_and_with_continuations(tmp_path: Path) -> None:
    text = (
        "[other]\nenrollment_token = not-ours\n"
        "[iot-center]\nurl = http://x\nENROLLMENT_TOKEN: first\n  continued\nafter = 1\n"
    )
    path = write(tmp_path / "iot-center.ini", text)
    assert remove_enrollment_token(path)
    assert (
        path.read_text()
        == "[other]\nenrollment_token = not-ours\n[iot-center]\nurl = http://x\nafter = 1\n"
    )
