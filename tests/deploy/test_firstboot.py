"""The Raspberry Pi first-boot files: cloud-init (late 2025 images on) and firstrun.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from provisioning.bootconfig import BootConfigError, read_boot_config

RPI = Path(__file__).resolve().parents[2] / "deploy" / "rpi"


def test_user_data_enables_i2c_and_places_the_boot_config(tmp_path: Path) -> None:
    text = (RPI / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert data["rpi"]["interfaces"]["i2c"] is True  # cc_raspberry_pi
    files = {f["path"]: f for f in data["write_files"]}
    ini = files["/boot/firmware/iot-center.ini"]
    assert ini["permissions"] == "0600"
    # The placeholders are refused by iot-provision until someone fills them in.
    path = tmp_path / "iot-center.ini"
    path.write_text(ini["content"])
    with pytest.raises(BootConfigError, match="url"):
        read_boot_config(path)
    path.write_text(
        ini["content"].replace("REPLACE_ME_WITH_THE_IOT_CENTER_URL", "https://iot.example.com")
    )
    with pytest.raises(BootConfigError, match="placeholder"):
        read_boot_config(path)
    install = " ".join(" ".join(c) if isinstance(c, list) else c for c in data["runcmd"])
    assert "install-pi.sh" in install and "--start" in install


def test_network_config_and_meta_data_parse() -> None:
    network = yaml.safe_load((RPI / "network-config").read_text())["network"]
    assert network["version"] == 2 and "eth0" in network["ethernets"]
    meta = yaml.safe_load((RPI / "meta-data").read_text())
    assert meta["instance-id"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_firstrun_in_a_throwaway_root(tmp_path: Path) -> None:
    boot = tmp_path / "boot/firmware"
    boot.mkdir(parents=True)
    cmdline = "console=tty1 root=PARTUUID=1234-02 rootwait"
    (boot / "cmdline.txt").write_text(
        f"{cmdline} systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
        "systemd.unit=kernel-command-line.target\n"
    )
    script = boot / "firstrun.sh"
    shutil.copy(RPI / "firstrun.sh", script)
    result = subprocess.run(
        ["bash", str(script)],
        env={**os.environ, "FIRSTRUN_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (boot / "cmdline.txt").read_text() == cmdline + "\n"
    assert not script.exists()
    assert "dtparam=i2c_arm=on" in (boot / "config.txt").read_text()
    assert "[iot-center]" in (boot / "iot-center.ini").read_text()
    unit = tmp_path / "etc/systemd/system/iot-install.service"
    assert "install-pi.sh" in unit.read_text()
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants/iot-install.service"
    assert os.readlink(wants) == "/etc/systemd/system/iot-install.service"
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr
