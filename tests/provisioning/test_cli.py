"""`iot-provision` without a server: the marker, and failures that end before any HTTP."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import cli, errors, install
from provisioning.progress import Progress


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def device_root(tmp_path: Path, *, url: str | None = None, extra: str = "") -> Path:
    root = tmp_path / "root"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/machine-id").write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    url = url or f"http://127.0.0.1:{free_port()}"
    (root / "boot/firmware/iot-center.ini").write_text(
        f"[iot-center]\nurl = {url}\nenrollment_token = enroll-me\n{extra}"
    )
    return root


def provision(*argv: str) -> tuple[int, list[str]]:
    progress = Progress(io.StringIO())
    code = cli.main(list(argv), progress=progress)
    return code, progress.lines


def test_help_lists_options_and_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provisioning", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for word in ("--root", "--boot-config", "--no-start", "--force", "--timeout", "exit codes"):
        assert word in result.stdout


def test_marker_means_already_provisioned(tmp_path: Path) -> None:
    root = device_root(tmp_path)
    install.write_marker(
        root / "var/lib/iot-agent/provisioned", device_id="d1", center_url="x", replaced=False
    )
    code, lines = provision("--root", str(root))
    assert code == 0
    assert "already provisioned as 'd1'" in lines[0]
    # The boot config still has its token: say so, but leave it (the person may want --force).
    assert "still holds an enrollment token" in lines[1]
    assert "enrollment_token" in (root / "boot/firmware/iot-center.ini").read_text()


def test_force_without_token_explains(tmp_path: Path) -> None:
    root = device_root(tmp_path)
    ini = root / "boot/firmware/iot-center.ini"
    ini.write_text("[iot-center]\nurl = http://127.0.0.1:1\n")
    install.write_marker(
        root / "var/lib/iot-agent/provisioned", device_id="d1", center_url="x", replaced=False
    )
    code, lines = provision("--root", str(root), "--force")
    assert code == errors.EXIT_BOOT_CONFIG
    assert "has no enrollment_token" in lines[-1] and "put the server's" in lines[-1]


def test_no_boot_config(tmp_path: Path) -> None:
    code, lines = provision("--root", str(tmp_path))
    assert code == errors.EXIT_BOOT_CONFIG
    assert lines[-1].startswith("failed: boot configuration unusable: no ")


def test_invalid_device_id(tmp_path: Path) -> None:
    root = device_root(tmp_path, extra="device_id = kitchen sink\n")
    code, lines = provision("--root", str(root))
    assert code == errors.EXIT_DEVICE_ID
    assert "no usable device id" in lines[-1] and "' '" in lines[-1]


def test_server_unreachable_gives_up_after_timeout(tmp_path: Path) -> None:
    root = device_root(tmp_path)
    code, lines = provision("--root", str(root), "--timeout", "2", "--max-backoff", "0.5")
    assert code == errors.EXIT_NO_NETWORK
    assert any("network: attempt 1 failed: cannot connect" in line for line in lines)
    assert lines[-1].startswith("failed: no network / server unreachable: cannot connect")
    assert not (root / "var/lib/iot-agent/provisioned").exists()
    assert "enroll-me" in (root / "boot/firmware/iot-center.ini").read_text()


def test_unresolvable_host(tmp_path: Path) -> None:
    root = device_root(tmp_path, url="http://iot-center.invalid:5000")
    code, lines = provision("--root", str(root), "--timeout", "1", "--max-backoff", "0.5")
    assert code == errors.EXIT_NO_NETWORK
    assert "cannot resolve iot-center.invalid" in lines[-1]


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--timeout", "-3"])
    assert caught.value.code == errors.EXIT_USAGE
    assert "must be 0 or more seconds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--clock-floor", "soon"])


def test_exit_codes_are_distinct() -> None:
    codes = [
        value
        for name, value in vars(errors).items()
        if name.startswith("EXIT_") and name != "EXIT_OK"
    ]
    assert len(codes) == len(set(codes))
    classes = [
        errors.BootConfigError,
        errors.DeviceIdError,
        errors.NetworkError,
        errors.ClockError,
        errors.EnrollmentTokenError,
        errors.IdRefusedError,
        errors.ServerError,
        errors.InstallError,
        errors.StartError,
    ]
    assert len({c.exit_code for c in classes}) == len(classes)
