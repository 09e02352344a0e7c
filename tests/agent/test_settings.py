"""agent.ini + environment: precedence, defaults and error messages that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import SettingsError, load

BASE = """[agent]
center_url = http://center.local:5000/
device_id = pi-kitchen
device_token = tok
"""


def ini(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.ini"
    path.write_text(text)
    return path


def test_minimal_file_and_defaults(tmp_path):
    s = load(ini(tmp_path, BASE + "state_dir = " + str(tmp_path) + "\n"), env={})
    assert s.center_url == "http://center.local:5000"
    assert s.device_id == "pi-kitchen" and s.device_token == "tok"
    assert s.buffer_file == tmp_path / "buffer.sqlite"
    assert s.config_cache == tmp_path / "device-config.json"
    assert s.i2c_addresses == (0x77, 0x76)
    assert s.fallback == "auto" and s.flush_deadline == 20.0 and s.led_pin is None


def test_environment_overrides_file(tmp_path):
    env = {
        "IOT_CENTER_URL": "https://other:8443",
        "IOT_DEVICE_ID": "pi-2",
        "IOT_DEVICE_TOKEN": "envtok",
        "IOT_BUFFER_PATH": str(tmp_path / "x.db"),
        "IOT_AGENT_LED_PIN": "17",
        "IOT_AGENT_FALLBACK": "Never",
        "IOT_AGENT_I2C_ADDRESSES": "0x76",
    }
    s = load(ini(tmp_path, BASE), env=env)
    assert (s.center_url, s.device_id, s.device_token) == ("https://other:8443", "pi-2", "envtok")
    assert s.buffer_file == tmp_path / "x.db"
    assert s.led_pin == 17 and s.fallback == "never" and s.i2c_addresses == (0x76,)


def test_environment_alone_without_a_file(tmp_path):
    env = {"IOT_CENTER_URL": "http://c", "IOT_DEVICE_ID": "d", "IOT_DEVICE_TOKEN": "t"}
    assert load(tmp_path / "absent.ini", env=env).device_id == "d"


def test_token_from_file_as_provisioning_writes_it(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret\n")
    text = BASE.replace("device_token = tok", f"device_token_file = {token}")
    assert load(ini(tmp_path, text), env={}).device_token == "secret"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (BASE + "led_pin = seventeen\n", {}, r"agent.ini \[agent\]: 'led_pin' = 'seventeen'"),
        (BASE + "colour = red\n", {}, r"agent.ini: \[agent\] unknown key 'colour'"),
        (BASE + "fallback = maybe\n", {}, r"'fallback' = 'maybe'; choose one of auto, virtual"),
        (BASE + "flush_deadline = -1\n", {}, r"'flush_deadline' must not be negative"),
        (BASE + "i2c_addresses = 0x99\n", {}, r"'i2c_addresses'.*I2C addresses"),
        (BASE + "batch_size = 0\n", {}, r"'batch_size' must be at least 1"),
        (BASE.replace("pi-kitchen", "pi kitchen"), {}, r"'device_id': device id contains ' '"),
        (BASE.replace("http://", "ftp://"), {}, r"'center_url' .* must start with http"),
        ("[agent]\ndevice_id = d\ndevice_token = t\n", {}, r"'center_url' is not set .*IOT_CENTER"),
        (BASE.replace("device_token = tok", ""), {}, r"neither 'device_token' nor"),
        (BASE.replace("device_token = tok", "device_token_file = /nonexistent/tok"), {},
         r"'device_token_file' /nonexistent/tok: No such file"),
        ("[other]\n", {}, r"no \[agent\] section"),
        ("not ini at all", {}, r"agent.ini: cannot parse"),
        (BASE, {"IOT_AGENT_HTTP_TIMEOUT": "soon"},
         r"environment variable IOT_AGENT_HTTP_TIMEOUT: 'http_timeout' = 'soon' is not a number"),
    ],
)  # fmt: skip
def test_errors_name_file_and_key(tmp_path, text, env, message):
    with pytest.raises(SettingsError, match=message):
        load(ini(tmp_path, text), env=env)


def test_explicit_config_must_exist(tmp_path):
    with pytest.raises(SettingsError, match=r"absent.ini: no such file"):
        load(tmp_path / "absent.ini", env={}, required=True)


def test_fractional_measurement_interval(tmp_path):
    """50 readings/s is a setting (0.02), not a subclass; whole seconds stay ints."""
    path = ini(tmp_path, BASE + "measurement_interval_override = 0.02\n")
    assert load(path, env={}).measurement_interval_override == 0.02
    env = {"IOT_AGENT_MEASUREMENT_INTERVAL_OVERRIDE": "1"}
    got = load(path, env=env).measurement_interval_override
    assert got == 1 and isinstance(got, int)
    assert load(ini(tmp_path, BASE + "measurement_interval_override = none\n"), env={})
    for bad in ("0.001", "0", "-1", "86401"):
        with pytest.raises(SettingsError, match=r"between 0.01 and 86400 seconds"):
            load(path, env={"IOT_AGENT_MEASUREMENT_INTERVAL_OVERRIDE": bad})
    with pytest.raises(SettingsError, match=r"is not a number or 'none'"):
        load(path, env={"IOT_AGENT_MEASUREMENT_INTERVAL_OVERRIDE": "nan"})
