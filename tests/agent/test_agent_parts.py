"""Clock, sd_notify, saved configuration, health and the loop's pieces, without network."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent import clock, contract, systemd
from agent.center import CenterClient, CenterUnavailable, load_cached
from agent.contract import DeviceConfig, InvalidDeviceConfig
from agent.health import Health, cpu_temperature
from agent.led import State
from agent.loop import Agent, reading_point
from agent.sensors.bme280 import SensorNotFound
from agent.sensors.reading import Reading
from agent.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def config(**over) -> DeviceConfig:
    base = dict(
        influx_url="http://127.0.0.1:9", influx_org="iot", influx_token="INFLUX-SECRET",
        influx_bucket="iot_center", id="pi-1", default_lat=50.08, default_lon=14.42,
        measurement_interval=60, newlyRegistered=False, createdAt="c", updatedAt="u",
        serverTime="s", configuration_refresh=3600,
        write_endpoint="/api/v2/write?org=iot&bucket=iot_center&precision=ns",
    )  # fmt: skip
    base.update(over)
    return DeviceConfig(**base)


# --- clock ------------------------------------------------------------------------------


def test_clock_floor_and_sync():
    pauses = []

    def pause(s):
        pauses.append(s)
        return len(pauses) < 3

    t2024 = time.mktime((2024, 6, 1, 0, 0, 0, 0, 0, 0))
    t2026 = time.mktime((2026, 6, 1, 0, 0, 0, 0, 0, 0))
    assert clock.wait_for_clock("off", 2025, 0, pause, now=lambda: 0.0)
    assert clock.wait_for_clock("floor", 2025, 0, pause, now=lambda: t2026)
    # A 2024 clock is never trusted, however long we wait; stopping ends the wait.
    assert not clock.wait_for_clock("floor", 2025, 0, pause, now=lambda: t2024)
    assert len(pauses) == 3
    # Not synchronised: wait, then proceed after wait_max with a plausible clock.
    pauses.clear()
    assert clock.wait_for_clock(
        "auto", 2025, 0, pause, now=lambda: t2026, synchronised=lambda: False
    )
    assert clock.wait_for_clock("auto", 2025, 1e9, pause, now=lambda: t2026,
                                synchronised=lambda: True)  # fmt: skip
    assert clock.kernel_synchronised() in (True, False, None)


# --- systemd ----------------------------------------------------------------------------


def test_sd_notify_sends_datagrams(tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        assert systemd.notify("READY=1", "STATUS=hello", env={"NOTIFY_SOCKET": str(path)})
        assert srv.recv(100) == b"READY=1\nSTATUS=hello"
    assert not systemd.notify("READY=1", env={})
    assert not systemd.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_watchdog_interval():
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}) is None


# --- saved configuration ----------------------------------------------------------------


def test_saved_config_is_private_and_round_trips(tmp_path):
    client = CenterClient("http://127.0.0.1:9", "pi-1", "devtok", tmp_path / "s" / "cfg.json")
    client.save(config(), fetched_at=123.0)
    mode = stat.S_IMODE(os.stat(client.cache_path).st_mode)
    assert mode == 0o600
    cached = client.load_cached()
    assert cached.config == config() and cached.fetched_at == 123.0
    assert load_cached(client.cache_path, "other-device") is None


def test_unusable_saved_config_is_ignored(tmp_path, caplog):
    path = tmp_path / "cfg.json"
    path.write_text('{"config": {"id": "pi-1"}, "fetchedAt": 1}')
    assert load_cached(path) is None
    assert "unusable" in caplog.text


def test_unreachable_center_is_reported_without_the_token(tmp_path):
    client = CenterClient("http://127.0.0.1:9", "pi-1", "DEVICE-SECRET", tmp_path / "c.json",
                          timeout=2)  # fmt: skip
    with pytest.raises(CenterUnavailable) as info:
        client.fetch()
    assert "DEVICE-SECRET" not in str(info.value)


# --- health -----------------------------------------------------------------------------


def test_health_point(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert cpu_temperature(zone) == 48.3
    assert cpu_temperature(tmp_path / "none") is None
    h = Health(3, 10, 7, 0, 1, 2, 4, 12.34, 48.3)
    line = h.point("pi-1", 5).encode()
    assert line.startswith("agent,clientId=pi-1 buffer_depth=3i,readings=10i,written=7i")
    assert "cpu_temperature=48.3" in line and line.endswith(" 5")


# --- loop pieces ------------------------------------------------------------------------


def test_reading_point_tags_follow_the_contract():
    r = Reading(21.5, 40.25, 1001.5)
    virtual = reading_point("pi-1", r, "virtual", config(), 7).encode()
    assert virtual == (
        "environment,HumiditySensor=virtual_bme280,PressureSensor=virtual_bme280,"
        "TemperatureSensor=virtual_bme280,clientId=pi-1,device=virtual "
        "Temperature=21.5,Humidity=40.25,Pressure=1001.5,Lat=50.08,Lon=14.42 7"
    )
    real = reading_point("pi-1", r, "bme280", config(), 7).encode()
    assert "TemperatureSensor=bme280" in real and "device=raspberrypi" in real
    assert set(contract.TELEMETRY_FIELDS) <= {
        f.split("=")[0] for f in real.split(" ")[1].split(",")
    }


class FlakySensor:
    kind = "bme280"

    def __init__(self):
        self.fail = False

    def describe(self):
        return "test sensor"

    def read(self):
        if self.fail:
            raise SensorNotFound("no device answers at I2C address 0x77 or 0x76")
        return Reading(20.0, 50.0, 1000.0)

    def close(self):
        pass


def make_agent(tmp_path, **over) -> Agent:
    s = Settings(center_url="http://127.0.0.1:9", device_id="pi-1", device_token="DEVICE-SECRET",
                 state_dir=tmp_path, http_timeout=1, **over)  # fmt: skip
    return Agent(s, sensor=FlakySensor())


def test_read_once_buffers_first_and_counts_sensor_errors(tmp_path):
    agent = make_agent(tmp_path)
    agent.apply(config(), "saved copy", 1.0)
    assert agent.read_once()
    (entry,) = agent.buffer.peek(10)
    assert entry.line.startswith("environment,") and "clientId=pi-1" in entry.line
    assert agent.buffer.counters()["readings"] == 1
    agent.state = "running"
    assert agent.led_state() is State.HEALTHY
    agent.sensor.fail = True
    assert not agent.read_once()
    assert agent.sensor_errors == 1 and agent.sensor_missing
    assert agent.led_state() is State.SENSOR_MISSING
    assert agent.buffer.depth() == 1  # nothing published for the failed cycle
    agent.writer.stats.failing = True
    agent.sensor.fail = False
    agent.read_once()
    assert agent.led_state() is State.WRITE_FAILING
    agent.buffer.close()


def test_config_changes_apply_without_restart(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    agent = make_agent(tmp_path)
    agent.apply(config(), "saved copy", 1.0)
    assert agent.measurement_interval == 60
    agent.apply(config(measurement_interval=5, influx_token="NEW-SECRET", influx_bucket="b2"),
                "center", 2.0)  # fmt: skip
    assert agent.measurement_interval == 5
    assert agent.target().token == "NEW-SECRET"
    assert "InfluxDB token replaced" in caplog.text and "NEW-SECRET" not in caplog.text
    assert "influx_bucket 'iot_center' -> 'b2'" in caplog.text
    agent.buffer.close()


def test_status_file_has_no_secrets(tmp_path):
    agent = make_agent(tmp_path, measurement_interval_override=2)
    agent.apply(config(), "saved copy", 1.0)
    agent.read_once()
    agent.write_status()
    text = (tmp_path / "status.json").read_text()
    status = json.loads(text)
    assert status["bufferDepth"] == 1 and status["measurementInterval"] == 2
    assert "SECRET" not in text
    agent.buffer.close()


def test_refresh_once_when_center_is_unreachable_keeps_the_saved_copy(tmp_path):
    agent = make_agent(tmp_path)
    agent.apply(config(), "saved copy", 1.0)
    delay = agent.refresh_once()
    assert 0 < delay <= 60
    assert agent.center_state.state == "unreachable"
    assert agent.config == config()
    agent.buffer.close()


# --- CLI --------------------------------------------------------------------------------


def run_cli(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
        timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_cli_help_lists_commands():
    out = run_cli("--help").stdout
    for word in ("run", "read", "status", "--config", "IOT_CENTER_URL"):
        assert word in out


def test_cli_read_prints_the_sensor(tmp_path):
    res = run_cli("read", env={"IOT_CENTER_URL": "http://127.0.0.1:9", "IOT_DEVICE_ID": "pi-1",
                               "IOT_DEVICE_TOKEN": "t", "IOT_AGENT_SENSOR": "virtual",
                               "IOT_STATE_DIR": str(tmp_path)})  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "virtual BME280" in res.stdout and "temperature:" in res.stdout


def test_cli_settings_error_is_one_clear_line(tmp_path):
    bad = tmp_path / "agent.ini"
    bad.write_text("[agent]\ncenter_url = http://x\ndevice_id = d\ndevice_token = t\nled_pin = x\n")
    res = run_cli("--config", str(bad), "status")
    assert res.returncode == 2
    assert f"{bad} [agent]: 'led_pin' = 'x' is not an integer" in res.stderr
    assert "Traceback" not in res.stderr


def test_agent_never_imports_server_or_hardware_libraries():
    code = (
        "import sys, agent.cli, agent.loop, agent.writer, agent.center, agent.sensors.bme280, "
        "agent.led\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'influxdb_client', 'board', 'busio', 'adafruit_bme280', 'gpiozero')]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr


def test_clock_falls_back_when_adjtimex_is_forbidden(monkeypatch, tmp_path):
    """Under systemd's ProtectClock= adjtimex fails: timesyncd's flag file answers instead."""
    monkeypatch.setattr(clock, "kernel_synchronised", lambda: None)
    flag = tmp_path / "synchronized"
    monkeypatch.setattr(clock, "TIMESYNC_FLAG", flag)
    flag.touch()
    assert clock.synchronised() is True
    flag.unlink()
    monkeypatch.setenv("PATH", str(tmp_path))  # no timedatectl either: nobody knows
    assert clock.synchronised() is None


def test_server_interval_may_be_fractional():
    data = config().to_dict()
    assert DeviceConfig.from_dict({**data, "measurement_interval": 0.5}).measurement_interval == 0.5
    whole = DeviceConfig.from_dict({**data, "measurement_interval": 60.0}).measurement_interval
    assert whole == 60 and isinstance(whole, int)
    for bad in (0.001, 0, 86401):
        with pytest.raises(InvalidDeviceConfig, match="measurement_interval"):
            DeviceConfig.from_dict({**data, "measurement_interval": bad})


def test_main_loop_reads_at_a_fractional_interval(tmp_path):
    """0.02 s = 50 readings/s: about 25 readings in half a second (loose: a busy machine)."""
    agent = make_agent(tmp_path, measurement_interval_override=0.02, health_interval=0)
    agent.apply(config(), "saved copy", 1.0)
    assert agent.measurement_interval == 0.02
    loop = threading.Thread(target=agent._main_loop)
    loop.start()
    time.sleep(0.5)
    agent._stop.set()
    agent._wake.set()
    loop.join(5)
    n = agent.buffer.counters()["readings"]
    agent.buffer.close()
    assert 5 <= n <= 40, n
