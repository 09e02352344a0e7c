"""The systemd units pass `systemd-analyze verify` and say what the design needs.

`systemd-analyze verify` checks that every ExecStart binary exists and is executable. The
binaries live in venvs under /opt that a test machine does not have, so the test copies each
unit into a temporary directory with only the `/opt/` prefix of its paths pointing at
executable stubs there; every other line is verified exactly as shipped. Verify exits 0 on
mere warnings (an unknown key is "ignored"), so its output must also be empty.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.settings import Settings

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
NAMES = ("iot-agent.service", "iot-provision.service", "iot-center.service")

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def stubbed(tmp_path: Path, name: str, text: str | None = None) -> Path:
    """A copy of the unit whose /opt/... executables are stubs under tmp_path."""
    text = (UNITS / name).read_text() if text is None else text
    opt = tmp_path / "opt"
    rewritten = text.replace("/opt/", f"{opt}/")
    for venv in ("iot-agent", "iot-center"):
        bindir = opt / venv / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        for program in ("iot-agent", "iot-provision", "gunicorn"):
            stub = bindir / program
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    unit = tmp_path / "units" / name
    unit.parent.mkdir(exist_ok=True)
    unit.write_text(rewritten)
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_systemd
@pytest.mark.parametrize("name", NAMES)
def test_unit_verifies_cleanly(tmp_path: Path, name: str) -> None:
    result = verify(stubbed(tmp_path, name))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


@needs_systemd
def test_verify_as_used_here_does_catch_mistakes(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key or a missing binary is reported."""
    text = (UNITS / "iot-agent.service").read_text()
    typo = verify(stubbed(tmp_path, "iot-agent.service", text.replace("ProtectHome", "ProtectHom")))
    assert "Unknown key" in typo.stderr
    missing = verify(UNITS / "iot-agent.service")  # the real /opt path does not exist here
    assert missing.returncode != 0 and "is not executable" in missing.stderr


def service(name: str) -> dict[str, list[str]]:
    """Section [Service] (and [Unit]) as key -> every value (keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


def seconds(text: str) -> float:
    units = {"s": 1, "sec": 1, "min": 60, "ms": 0.001}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_agent_unit() -> None:
    unit = service("iot-agent.service")
    one = {k: v[-1] for k, v in unit.items()}
    assert one["Service.Type"] == "notify"
    assert seconds(one["Service.WatchdogSec"]) > 0
    assert one["Service.Restart"] == "on-failure"
    assert one["Service.StateDirectory"] == "iot-agent"
    assert one["Service.ConfigurationDirectory"] == "iot-agent"
    assert one["Service.User"] == "iot-agent"
    assert one["Service.SupplementaryGroups"].split() == ["i2c", "gpio"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
    }.items():
        assert one[f"Service.{key}"] == value
    allowed = unit["Service.DeviceAllow"]
    assert "/dev/i2c-1 rw" in allowed and "char-gpiochip rw" in allowed
    # The stop timeout leaves the agent its whole flush deadline, with room to spare.
    assert seconds(one["Service.TimeoutStopSec"]) >= Settings.flush_deadline + 15
    assert "--config /etc/iot-agent/agent.ini run" in one["Service.ExecStart"]


def test_provision_unit() -> None:
    one = {k: v[-1] for k, v in service("iot-provision.service").items()}
    assert one["Service.Type"] == "oneshot"
    assert one["Service.RemainAfterExit"] == "yes"
    assert one["Unit.ConditionPathExists"] == "!/var/lib/iot-agent/provisioned"
    after = one["Unit.After"].split()
    assert "network-online.target" in after and "time-sync.target" in after
    # Codes that waiting cannot fix are not restarted (see provisioning/errors.py).
    from provisioning import errors

    prevented = {int(code) for code in one["Service.RestartPreventExitStatus"].split()}
    assert prevented == {errors.EXIT_BOOT_CONFIG, errors.EXIT_DEVICE_ID}


def test_server_unit() -> None:
    one = {k: v[-1] for k, v in service("iot-center.service").items()}
    assert "gunicorn" in one["Service.ExecStart"]
    assert "'iot_center:create_app()'" in one["Service.ExecStart"]
    assert (
        "IOT_CENTER_CONFIG=/etc/iot-center/config.ini"
        in service("iot-center.service")["Service.Environment"]
    )
    assert one["Service.ProtectSystem"] == "strict" and one["Service.NoNewPrivileges"] == "yes"


@needs_systemd
@pytest.mark.parametrize(
    ("name", "limit"), [("iot-agent.service", 3.0), ("iot-center.service", 3.0)]
)
def test_hardening_exposure(tmp_path: Path, name: str, limit: float) -> None:
    """`systemd-analyze security` scores the sandbox (0 best .. 10 worst)."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(stubbed(tmp_path, name))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline")
    last = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    assert last, result.stdout + result.stderr
    score = float(last[0].split(":")[1].split()[0])
    assert score <= limit, result.stdout
