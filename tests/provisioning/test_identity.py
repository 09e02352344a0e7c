"""Device id derivation from fake root trees (device tree, cpuinfo, machine-id)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.errors import DeviceIdError
from provisioning.identity import derive_device_id, machine_id, pi_serial

PI_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41

Hardware\t: BCM2835
Revision\t: c03111
Serial\t\t: 10000000A1B2C3D4
Model\t\t: Raspberry Pi 4 Model B Rev 1.1
"""
X86_CPUINFO = "processor\t: 0\nflags\t\t: fpu vme serialize sse\n"
MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4\n"


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for path, content in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return root


def test_devicetree_serial_wins_and_loses_its_nul(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "/sys/firmware/devicetree/base/serial-number": b"10000000a1b2c3d4\x00",
            "/proc/cpuinfo": PI_CPUINFO.replace("A1B2", "FFFF"),
            "/etc/machine-id": MACHINE_ID,
        },
    )
    identity = derive_device_id(tmp_path)
    assert identity.device_id == "10000000a1b2c3d4"
    assert identity.source == "/sys/firmware/devicetree/base/serial-number"


def test_cpuinfo_serial_when_no_devicetree(tmp_path: Path) -> None:
    tree(tmp_path, {"/proc/cpuinfo": PI_CPUINFO, "/etc/machine-id": MACHINE_ID})
    identity = derive_device_id(tmp_path, prefix="pi-")
    assert identity.device_id == "pi-10000000a1b2c3d4"
    assert "cpuinfo" in identity.source


def test_same_pi_gives_same_id_from_either_source(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", {"/sys/firmware/devicetree/base/serial-number": b"10000000a1b2c3d4\0"})
    b = tree(tmp_path / "b", {"/proc/cpuinfo": PI_CPUINFO})
    assert derive_device_id(a).device_id == derive_device_id(b).device_id


def test_x86_cpuinfo_has_no_serial_line_and_falls_back_to_machine_id(tmp_path: Path) -> None:
    # "serialize" in the flags must not be taken for a Serial line.
    tree(tmp_path, {"/proc/cpuinfo": X86_CPUINFO, "/etc/machine-id": MACHINE_ID})
    assert pi_serial(tmp_path) is None
    identity = derive_device_id(tmp_path, prefix="lab-")
    assert identity.device_id == "lab-3d1219c7c4c5404aaa1f6d2a48adfda4"
    assert identity.source == "/etc/machine-id"


def test_all_zero_serial_is_not_a_serial(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "/sys/firmware/devicetree/base/serial-number": b"0000000000000000\0",
            "/proc/cpuinfo": "Serial\t\t: 0000000000000000\n",
            "/etc/machine-id": MACHINE_ID,
        },
    )
    assert derive_device_id(tmp_path).source == "/etc/machine-id"


@pytest.mark.parametrize("content", ["", "uninitialized\n", "0" * 32 + "\n", "not-hex\n"])
def test_unusable_machine_id(tmp_path: Path, content: str) -> None:
    tree(tmp_path, {"/etc/machine-id": content})
    assert machine_id(tmp_path) is None
    with pytest.raises(DeviceIdError, match="set device_id in the boot config"):
        derive_device_id(tmp_path)


def test_nothing_at_all_names_what_it_looked_at(tmp_path: Path) -> None:
    with pytest.raises(DeviceIdError) as caught:
        derive_device_id(tmp_path)
    message = str(caught.value)
    assert message.startswith("no usable device id")
    assert "serial-number" in message and "cpuinfo" in message and "machine-id" in message


def test_explicit_id_wins_and_gets_no_prefix(tmp_path: Path) -> None:
    tree(tmp_path, {"/proc/cpuinfo": PI_CPUINFO})
    identity = derive_device_id(tmp_path, explicit="greenhouse-1", prefix="pi-")
    assert identity.device_id == "greenhouse-1"
    assert identity.source == "explicit device_id"


@pytest.mark.parametrize("bad", ["green house", "a/b", "x" * 65, "é"])
def test_explicit_id_is_validated_by_the_shared_rule(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DeviceIdError, match="explicit device_id"):
        derive_device_id(tmp_path, explicit=bad)


def test_bad_prefix_is_named(tmp_path: Path) -> None:
    tree(tmp_path, {"/proc/cpuinfo": PI_CPUINFO})
    with pytest.raises(DeviceIdError, match="prefix 'my pi:'"):
        derive_device_id(tmp_path, prefix="my pi:")
