"""What provisioning leaves on disk: modes, owners, agent.ini the agent can read, the marker."""

from __future__ import annotations

import configparser
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from agent import settings as agent_settings
from provisioning import install
from provisioning.errors import InstallError, StartError


def layout(tmp_path: Path) -> install.Layout:
    return install.Layout(config_dir=tmp_path / "etc/iot-agent", state_dir=tmp_path / "state")


def test_credential_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "etc/iot-agent/device-token"
    old = os.umask(0)
    try:
        install.save_credential(path, "tok-123\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "tok-123\n"
    install.save_credential(path, "tok-456")  # replaced atomically, mode kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "tok-456\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["device-token"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_credential_owned_by_the_service_user(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    owner = install.service_owner("nobody")
    assert owner == install.Owner(nobody.pw_uid, nobody.pw_gid, "nobody")
    target = layout(tmp_path)
    install.install(
        target, center_url="http://c:5000", device_id="d1", token="t", owner=owner, extras={}
    )
    info = target.token_file.stat()
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert target.state_dir.stat().st_uid == nobody.pw_uid


def test_no_owner_when_the_user_does_not_exist() -> None:
    assert install.service_owner("no-such-user-iot-test") is None


def test_agent_ini_is_read_by_the_agent(tmp_path: Path) -> None:
    target = layout(tmp_path)
    install.install(
        target,
        center_url="http://center:5000",
        device_id="pi-10000000a1b2c3d4",
        token="device-token-value",
        owner=None,
        extras={"led_pin": "17"},
    )
    assert stat.S_IMODE(target.agent_config.stat().st_mode) == 0o644
    assert "device-token-value" not in target.agent_config.read_text()
    loaded = agent_settings.load(target.agent_config, env={}, required=True)
    assert loaded.center_url == "http://center:5000"
    assert loaded.device_id == "pi-10000000a1b2c3d4"
    assert loaded.device_token == "device-token-value"
    assert loaded.state_dir == target.state_dir
    assert loaded.led_pin == 17


def test_registration_config_seeds_the_agents_saved_copy(tmp_path: Path) -> None:
    from agent.center import load_cached
    from agent.contract import DeviceConfig

    config = DeviceConfig(
        influx_url="http://influx:8086",
        influx_org="org",
        influx_token="device-token-value",
        influx_bucket="iot_center",
        id="d1",
        default_lat=50.0,
        default_lon=14.0,
        measurement_interval=60,
        newlyRegistered=True,
        createdAt="2026-01-01T00:00:00Z",
        updatedAt="2026-01-01T00:00:00Z",
        serverTime="2026-01-01T00:00:00Z",
        configuration_refresh=3600,
        write_endpoint="/api/v2/write?org=org&bucket=iot_center&precision=ns",
    )
    target = layout(tmp_path)
    install.install(
        target,
        center_url="http://center:5000",
        device_id="d1",
        token=config.influx_token,
        owner=None,
        config=config,
    )
    settings = agent_settings.load(target.agent_config, env={}, required=True)
    cached = load_cached(settings.config_cache, "d1")
    assert cached is not None and cached.config == config
    assert stat.S_IMODE(settings.config_cache.stat().st_mode) == 0o600


def test_agent_extras_from_boot_config(tmp_path: Path) -> None:
    path = tmp_path / "iot-center.ini"
    path.write_text(
        "[iot-center]\nurl = http://x\n[agent]\nled_pin = 17\nbutton_pin = 27\n"
        "device_id = ignored\ncenter_url = ignored\n"
    )
    assert install.agent_extras(path) == {"led_pin": "17", "button_pin": "27"}
    path.write_text("[iot-center]\nurl = http://x\n[agent]\nled_pinn = 17\n")
    with pytest.raises(InstallError, match="unknown key 'led_pinn'"):
        install.agent_extras(path)
    path.write_text("[iot-center]\nurl = http://x\n")
    assert install.agent_extras(path) == {}


def test_marker_round_trip(tmp_path: Path) -> None:
    marker = tmp_path / "provisioned"
    assert install.read_marker(marker) is None
    install.write_marker(marker, device_id="d1", center_url="http://c", replaced=True)
    record = install.read_marker(marker)
    assert record is not None
    assert record["deviceId"] == "d1" and record["reprovisioned"] is True
    marker.write_text("garbage")
    assert install.read_marker(marker) == {}  # still "provisioned"


def test_unwritable_target_is_an_install_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InstallError, match="cannot write"):
        install.save_credential(blocker / "sub" / "device-token", "t")


def test_agent_ini_section_is_the_agents() -> None:
    text = install.agent_ini(
        center_url="http://c", device_id="d", token_file=Path("/t"), state_dir=Path("/s")
    )
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser.sections() == [agent_settings.SECTION]


def test_start_agent_enables_then_queues_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(install.shutil, "which", lambda name: f"/usr/bin/{name}")
    install.start_agent(run=run)
    assert calls == [
        ["systemctl", "enable", "iot-agent.service"],
        ["systemctl", "restart", "--no-block", "iot-agent.service"],
    ]


def test_start_agent_failure_names_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            command, 1, "", "Failed to enable unit: Unit file iot-agent.service does not exist.\n"
        )

    monkeypatch.setattr(install.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(StartError, match="does not exist"):
        install.start_agent(run=run)
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    with pytest.raises(StartError, match="systemctl not found"):
        install.start_agent(run=run)
