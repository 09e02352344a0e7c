"""The installers in a throwaway root: complete, idempotent, with --help.

`--prefix DIR` makes them work under DIR (accounts with useradd/groupadd --prefix, units
enabled offline with systemctl --root); `--no-venv` leaves out pip, which needs the network
and minutes; the venv step itself is plain `python -m venv` + `pip install`.
"""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the installers create users: run as root"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("useradd", "groupadd", "usermod", "systemctl")),
        reason="needs useradd, groupadd, usermod and systemctl",
    ),
]


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner and content (or link target)."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        else:
            out[rel] = (
                "file",
                stat.S_IMODE(info.st_mode),
                info.st_uid,
                info.st_gid,
                path.read_bytes(),
            )
    return out


def accounts(root: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    users = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/group").read_text().splitlines()
    }
    return users, groups


@pytest.mark.parametrize("script", ["install-pi.sh", "install-server.sh"])
def test_help(script: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout and "--prefix" in result.stdout
    bad = run(script, "--bogus")
    assert bad.returncode != 0 and "unknown option: --bogus" in bad.stderr


def test_pi_installer_in_a_throwaway_root_is_idempotent(tmp_path: Path) -> None:
    first = run("install-pi.sh", "--prefix", str(tmp_path), "--no-venv")
    assert first.returncode == 0, first.stdout + first.stderr
    after_first = tree(tmp_path)

    users, groups = accounts(tmp_path)
    agent = users["iot-agent"]
    assert agent[6] == "/usr/sbin/nologin" and agent[5] == "/var/lib/iot-agent"
    assert int(agent[2]) < 1000  # a system user
    for group in ("i2c", "gpio"):
        assert "iot-agent" in groups[group][3].split(",")

    units = tmp_path / "etc/systemd/system"
    for name in ("iot-agent.service", "iot-provision.service"):
        assert (units / name).read_bytes() == (DEPLOY / "systemd" / name).read_bytes()
        assert stat.S_IMODE((units / name).stat().st_mode) == 0o644
    wants = units / "multi-user.target.wants"
    assert (
        os.readlink(wants / "iot-provision.service") == "/etc/systemd/system/iot-provision.service"
    )
    assert not (wants / "iot-agent.service").exists()  # iot-provision enables it, later
    assert os.readlink(tmp_path / "usr/local/bin/iot-agent") == "/opt/iot-agent/bin/iot-agent"
    state = tmp_path / "var/lib/iot-agent"
    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    assert state.stat().st_uid == int(agent[2])

    second = run("install-pi.sh", "--prefix", str(tmp_path), "--no-venv")
    assert second.returncode == 0, second.stdout + second.stderr
    assert tree(tmp_path) == after_first
    assert "created" not in second.stdout and "installed" not in second.stdout


def test_pi_installer_writes_the_boot_config_when_asked(tmp_path: Path) -> None:
    (tmp_path / "boot/firmware").mkdir(parents=True)
    result = run(
        "install-pi.sh",
        "--prefix",
        str(tmp_path),
        "--no-venv",
        "--url",
        "http://10.0.0.5:5000",
        "--enrollment-token",
        "tok",
    )
    assert result.returncode == 0, result.stderr
    ini = tmp_path / "boot/firmware/iot-center.ini"
    parser = configparser.ConfigParser()
    parser.read(ini)
    assert dict(parser["iot-center"]) == {"url": "http://10.0.0.5:5000", "enrollment_token": "tok"}
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    half = run("install-pi.sh", "--prefix", str(tmp_path), "--no-venv", "--url", "http://x")
    assert half.returncode != 0 and "go together" in half.stderr


def test_server_installer_in_a_throwaway_root_is_idempotent(tmp_path: Path) -> None:
    first = run("install-server.sh", "--prefix", str(tmp_path), "--no-venv", "--no-assets")
    assert first.returncode == 0, first.stdout + first.stderr
    after_first = tree(tmp_path)

    users, groups = accounts(tmp_path)
    assert "iot-center" in users
    config = tmp_path / "etc/iot-center/config.ini"
    info = config.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == (0, int(groups["iot-center"][2]))
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(config)
    secret = parser["APP"]["SECRET_KEY"]
    assert len(secret) >= 32 and "replace" not in secret
    assert (
        os.readlink(tmp_path / "etc/systemd/system/multi-user.target.wants/iot-center.service")
        == "/etc/systemd/system/iot-center.service"
    )

    second = run("install-server.sh", "--prefix", str(tmp_path), "--no-venv", "--no-assets")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "keeping /etc/iot-center/config.ini" in second.stdout
    assert tree(tmp_path) == after_first  # the SECRET_KEY in particular is not regenerated


def test_server_config_template_is_what_the_server_reads(tmp_path: Path) -> None:
    from iot_center.settings import Settings

    settings = Settings.load(DEPLOY / "config.ini.example", environ={})
    assert settings.INFLUX_BUCKET != settings.INFLUX_BUCKET_AUTH
    text = (DEPLOY / "config.ini.example").read_text()
    for key in (
        "INFLUX_URL",
        "INFLUX_TOKEN",
        "INFLUX_ORG",
        "INFLUX_BUCKET",
        "INFLUX_BUCKET_AUTH",
        "DEVICE_INFLUX_URL",
        "ENROLLMENT_TOKEN",
        "SECRET_KEY",
        "MEASUREMENT_INTERVAL",
        "CONFIGURATION_REFRESH",
        "DEFAULT_LAT",
        "DEFAULT_LON",
        "ADMIN_USER",
        "ADMIN_PASSWORD_HASH",
    ):
        assert key in text
