"""Server settings: config.ini plus environment, with errors that name the setting and file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from iot_center.settings import ConfigError, Settings

GOOD = {
    "INFLUX_URL": "http://127.0.0.1:8086",
    "INFLUX_TOKEN": "admin-token",
    "INFLUX_ORG": "iot",
    "SECRET_KEY": "0123456789abcdef0123",
}


def write_ini(path: Path, values: dict[str, str], section: str = "APP") -> Path:
    path.write_text(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def test_file_values_and_environment_override(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "config.ini", {**GOOD, "MEASUREMENT_INTERVAL": "30"})
    s = Settings.load(ini, environ={"MEASUREMENT_INTERVAL": "10", "INFLUX_ORG": "other"})
    assert s.MEASUREMENT_INTERVAL == 10
    assert s.INFLUX_ORG == "other"
    assert s.INFLUX_BUCKET == "iot_center"
    assert s.device_influx_url == "http://127.0.0.1:8086"
    assert "admin-token" not in repr(s)
    assert s.source == str(ini)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"INFLUX_TOKEN": ""}, "INFLUX_TOKEN is missing"),
        ({"INFLUX_URL": "localhost:8086"}, "INFLUX_URL must be an http:// or https:// URL"),
        ({"MEASUREMENT_INTERVAL": "soon"}, "MEASUREMENT_INTERVAL must be a whole number"),
        ({"MEASUREMENT_INTERVAL": "0"}, "MEASUREMENT_INTERVAL must be between 1 and 86400"),
        ({"DEFAULT_LAT": "91"}, "DEFAULT_LAT must be between -90 and 90"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 16 characters"),
        ({"OPEN_REGISTRATION": "maybe"}, "OPEN_REGISTRATION must be true or false"),
        ({"INFLUX_BUCKET_AUTH": "iot_center"}, "must differ"),
        ({"INFLUX_BUKET": "typo"}, "unknown setting 'INFLUX_BUKET'"),
    ],
)
def test_bad_settings_name_the_setting_and_the_file(tmp_path: Path, change, message) -> None:
    values = {k: v for k, v in {**GOOD, **change}.items() if v != ""}
    ini = write_ini(tmp_path / "config.ini", values)
    with pytest.raises(ConfigError) as e:
        Settings.load(ini, environ={})
    assert message in str(e.value)
    assert str(ini) in str(e.value)


def test_missing_section_or_file_or_garbage(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \[APP\] section"):
        Settings.load(write_ini(tmp_path / "a.ini", GOOD, section="app"), environ={})
    with pytest.raises(ConfigError, match="configuration file not found"):
        Settings.load(tmp_path / "missing.ini", environ={})
    bad = tmp_path / "bad.ini"
    bad.write_bytes(b"\xff\xfe[APP\nINFLUX_URL")
    with pytest.raises(ConfigError, match="cannot parse"):
        Settings.load(bad, environ={})


def test_environment_alone_is_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config.ini here
    s = Settings.load(environ=dict(GOOD))
    assert s.source == "the environment"


def test_cli_refuses_to_start_half_configured(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "config.ini", {**GOOD, "INFLUX_URL": "nope"})
    out = subprocess.run(
        [sys.executable, "-m", "iot_center.cli", "--config", str(ini), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert (
        "configuration error" in out.stderr
        and "INFLUX_URL" in out.stderr
        and str(ini) in out.stderr
    )
    assert "Traceback" not in out.stderr


def test_cli_help_explains_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "iot_center.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    for word in ("run", "setup", "simulate", "INFLUX_URL", "config.ini"):
        assert word in out.stdout


def test_device_cache_seconds_is_checked(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "config.ini", {**GOOD, "DEVICE_CACHE_SECONDS": "0"})
    assert Settings.load(ini, environ={}).DEVICE_CACHE_SECONDS == 0
    ini = write_ini(tmp_path / "config.ini", {**GOOD, "DEVICE_CACHE_SECONDS": "-5"})
    with pytest.raises(ConfigError, match="DEVICE_CACHE_SECONDS must be between 0 and 3600"):
        Settings.load(ini, environ={})
