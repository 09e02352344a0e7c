"""`iot-provision` against a real IoT Center (real server process, real influxd).

Each test builds a device tree in a temporary root (boot partition, /etc/machine-id, a Pi
serial) and runs the same code a Pi runs at first power-on, with `--root` and `--no-start`.
Nothing fakes HTTP: the only peer is the server from tests/conftest.py (`center`).
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from agent import settings as agent_settings
from agent.center import load_cached
from provisioning import cli, enroll, errors
from provisioning.errors import IdRefusedError
from provisioning.progress import Progress
from provisioning.retry import Backoff, Deadline, TryAgain

pytestmark = pytest.mark.integration

SERIAL = "10000000feedc0de"


def flash(root: Path, center, *, token: str | None = None, serial: str = SERIAL) -> Path:
    """A freshly flashed SD card + Pi: boot config with the enrollment token, a serial."""
    boot = root / "boot/firmware"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "iot-center.ini").write_text(
        "# placed by the person who flashed the card\n"
        "[iot-center]\n"
        f"url = {center.url}\n"
        f"enrollment_token = {token if token is not None else center.enrollment_token}\n"
        "device_id_prefix = pi-\n"
    )
    serial_file = root / "sys/firmware/devicetree/base/serial-number"
    serial_file.parent.mkdir(parents=True, exist_ok=True)
    serial_file.write_bytes(serial.encode() + b"\0")
    return root


def provision(root: Path, *extra: str) -> tuple[int, list[str]]:
    progress = Progress(io.StringIO())
    code = cli.main(
        ["--root", str(root), "--no-start", "--clock", "floor", "--timeout", "60", *extra],
        progress=progress,
    )
    return code, progress.lines


def device_token(root: Path) -> str:
    return (root / "etc/iot-agent/device-token").read_text().strip()


def env_status(center, device_id: str, token: str) -> int:
    return requests.get(
        f"{center.url}/api/env/{device_id}",
        headers={"Authorization": f"Token {token}"},
        timeout=15,
    ).status_code


def influx_write_status(config: dict, token: str) -> int:
    """Write one point straight to InfluxDB with a device token, as the agent would."""
    return requests.post(
        config["influx_url"] + config["write_endpoint"],
        data=f"environment,clientId={config['id']} Temperature=21.5",
        headers={"Authorization": f"Token {token}"},
        timeout=15,
    ).status_code


def device_config(center, device_id: str, token: str) -> dict:
    r = requests.get(
        f"{center.url}/api/env/{device_id}",
        headers={"Authorization": f"Token {token}"},
        timeout=15,
    )
    assert r.status_code == 200, r.text
    return r.json()


def snapshot(root: Path) -> dict[str, tuple[bytes, int, float]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_first_run_registers_saves_and_cleans_up(center, tmp_path: Path) -> None:
    root = flash(tmp_path / "pi", center)
    code, lines = provision(root)
    assert code == 0, lines
    device_id = f"pi-{SERIAL}"
    assert f"device id '{device_id}'" in "\n".join(lines)
    assert lines[-1] == f"done: device '{device_id}' is provisioned"

    token_file = root / "etc/iot-agent/device-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = device_token(root)
    # The saved token is the device's own credential: it reads its configuration ...
    config = device_config(center, device_id, token)
    assert config["id"] == device_id
    # ... and writes telemetry to InfluxDB.
    assert influx_write_status(config, token) == 204

    # The agent can start from what was written.
    settings = agent_settings.load(root / "etc/iot-agent/agent.ini", env={}, required=True)
    assert (settings.center_url, settings.device_id, settings.device_token) == (
        center.url,
        device_id,
        token,
    )
    assert settings.state_dir == root / "var/lib/iot-agent"
    # ... and has the device configuration before its first fetch.
    cached = load_cached(settings.config_cache, device_id)
    assert cached is not None and cached.config.influx_token == token

    boot = (root / "boot/firmware/iot-center.ini").read_text()
    assert center.enrollment_token not in boot and "enrollment_token" not in boot
    assert "# placed by the person who flashed the card" in boot
    assert (root / "var/lib/iot-agent/provisioned").is_file()

    listed = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=15)
    assert [d["deviceId"] for d in listed.json()["devices"]] == [device_id]


def test_second_run_changes_nothing(center, tmp_path: Path) -> None:
    root = flash(tmp_path / "pi", center)
    assert provision(root)[0] == 0
    before = snapshot(root)
    token = device_token(root)
    code, lines = provision(root)
    assert code == 0
    assert "already provisioned" in lines[0]
    assert snapshot(root) == before
    assert env_status(center, f"pi-{SERIAL}", token) == 200  # the token was not rotated


def test_reflashed_device_gets_a_new_token_and_the_old_one_is_refused(
    center, tmp_path: Path
) -> None:
    first = flash(tmp_path / "first-flash", center)
    assert provision(first)[0] == 0
    old_token = device_token(first)
    device_id = f"pi-{SERIAL}"
    config = device_config(center, device_id, old_token)

    # Same Pi (same serial), new SD card: no marker, no credential, a fresh boot config.
    second = flash(tmp_path / "second-flash", center)
    code, lines = provision(second)
    assert code == 0, lines
    assert any("already registered" in line and "re-provisioning" in line for line in lines)
    assert any("re-provisioned (new token)" in line for line in lines)
    new_token = device_token(second)
    assert new_token != old_token

    assert env_status(center, device_id, new_token) == 200
    assert env_status(center, device_id, old_token) == 401
    assert influx_write_status(config, new_token) == 204
    assert influx_write_status(config, old_token) == 401
    listed = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=15)
    assert [d["deviceId"] for d in listed.json()["devices"]] == [device_id]


def test_force_reprovisions_on_the_same_card(center, tmp_path: Path) -> None:
    root = flash(tmp_path / "pi", center)
    assert provision(root)[0] == 0
    old_token = device_token(root)
    # The token is gone from the boot partition: --force says what to do.
    code, lines = provision(root, "--force")
    assert code == errors.EXIT_BOOT_CONFIG and "put the server's ENROLLMENT_TOKEN back" in lines[-1]
    flash(root, center)  # the person puts it back
    code, lines = provision(root, "--force")
    assert code == 0, lines
    assert device_token(root) != old_token
    assert env_status(center, f"pi-{SERIAL}", old_token) == 401


def test_wrong_enrollment_token(center, tmp_path: Path) -> None:
    root = flash(tmp_path / "pi", center, token="not-the-enrollment-token")
    code, lines = provision(root)
    assert code == errors.EXIT_ENROLLMENT_TOKEN
    assert lines[-1].startswith("failed: wrong enrollment token:")
    assert "ENROLLMENT_TOKEN" in lines[-1]
    # Nothing saved, nothing removed, no retry loop: waiting cannot fix a wrong token.
    assert not (root / "etc").exists() and not (root / "var").exists()
    assert "not-the-enrollment-token" in (root / "boot/firmware/iot-center.ini").read_text()
    assert not any("attempt" in line for line in lines)


def test_server_refuses_an_id(center) -> None:
    # The CLI checks ids before sending them; the server checks again and says why.
    with pytest.raises(IdRefusedError) as caught:
        enroll.enroll(
            center.url,
            "bad id with spaces",
            center.enrollment_token,
            deadline=Deadline(30),
            progress=Progress(io.StringIO()),
        )
    assert str(caught.value).startswith("server refused the id:")
    assert caught.value.exit_code == errors.EXIT_ID_REFUSED


def test_server_down_then_up(center, tmp_path: Path) -> None:
    root = flash(tmp_path / "pi", center)
    center.stop()
    log = tmp_path / "provision.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provisioning",
                "--root",
                str(root),
                "--no-start",
                "--clock",
                "floor",
                "--timeout",
                "120",
                "--max-backoff",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while "attempt 2 failed" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        center.start()
        assert process.wait(60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "server down or unreachable" in text
    assert "network is up" in text and "is provisioned" in text
    assert env_status(center, f"pi-{SERIAL}", device_token(root)) == 200


def test_clock_not_synchronised_gives_up_and_registers_nothing(center, tmp_path: Path) -> None:
    root = flash(tmp_path / "pi", center)
    code, lines = provision(root, "--clock-floor", "2999-01-01", "--timeout", "3")
    assert code == errors.EXIT_CLOCK
    assert lines[-1].startswith("failed: clock not set:")
    assert any("no real-time clock" in line for line in lines)
    r = requests.get(f"{center.url}/api/devices/pi-{SERIAL}", headers=center.admin(), timeout=15)
    assert r.status_code == 404
    assert "enrollment_token" in (root / "boot/firmware/iot-center.ini").read_text()


def test_clock_set_while_waiting_then_registers(center, tmp_path: Path) -> None:
    root = flash(tmp_path / "pi", center)
    checks = []

    def clock_check() -> str:
        checks.append(time.monotonic())
        if len(checks) < 3:
            raise TryAgain("the clock says 1970-01-01 00:00:42 UTC", errors.ClockError())
        return "clock synchronised by NTP (test)"

    progress = Progress(io.StringIO())
    code = cli.main(
        ["--root", str(root), "--no-start", "--timeout", "60", "--max-backoff", "0.2"],
        progress=progress,
        clock_check=clock_check,
    )
    assert code == 0, progress.lines
    assert len(checks) == 3
    waits = [line for line in progress.lines if line.startswith("clock: attempt")]
    assert len(waits) == 2 and "1970-01-01" in waits[0]
    # Registration happened only after the clock was set.
    order = [i for i, line in enumerate(progress.lines) if "registering device" in line]
    assert order and order[0] > progress.lines.index(waits[-1])


def test_enroll_backoff_unit_is_the_same_as_cli(center) -> None:
    # 503-style retries are exercised against a stopped server in test_server_down_then_up;
    # here the plain path through the library call, as `make demo` uses it.
    result = enroll.enroll(
        center.url,
        "demo-virtual-1",
        center.enrollment_token,
        deadline=Deadline(30),
        progress=Progress(io.StringIO()),
        backoff=Backoff(maximum=1),
    )
    assert result.replaced is False and result.config.id == "demo-virtual-1"
    again = enroll.enroll(
        center.url,
        "demo-virtual-1",
        center.enrollment_token,
        deadline=Deadline(30),
        progress=Progress(io.StringIO()),
    )
    assert again.replaced is True and again.token != result.token


def test_the_agent_runs_from_what_provisioning_wrote(center, tmp_path: Path) -> None:
    """The same hand-over as on a Pi, with the virtual sensor: provision, start the real
    agent with the written agent.ini, and see its readings arrive in InfluxDB."""
    from tests.conftest import flux_rows

    root = flash(tmp_path / "pi", center)
    ini = root / "boot/firmware/iot-center.ini"
    ini.write_text(ini.read_text() + "[agent]\nsensor = virtual\nclock_check = off\n")
    code, lines = provision(root)
    assert code == 0, lines
    config = root / "etc/iot-agent/agent.ini"
    assert "sensor = virtual" in config.read_text()
    log = tmp_path / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOT_", "NOTIFY_SOCKET"))}
    with log.open("w") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "--config", str(config), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    device_id = f"pi-{SERIAL}"
    query = (
        f'from(bucket: "{center.buckets.telemetry}") |> range(start: -1h) '
        '|> filter(fn: (r) => r._measurement == "environment" and r._field == "Temperature")'
        f' |> filter(fn: (r) => r.clientId == "{device_id}")'
    )
    try:
        deadline = time.monotonic() + 60
        rows: list[dict] = []
        while not rows:
            assert agent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(1)
            rows = flux_rows(center.influx, query)
        assert rows[0]["device"] == "virtual"
        agent.terminate()
        assert agent.wait(30) == 0, log.read_text()  # a clean SIGTERM stop, as under systemd
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
