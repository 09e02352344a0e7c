"""The provisioning settings placed on the boot partition before first power-on.

The file is an INI file any computer can write to the SD card (the boot partition is FAT):

    [iot-center]
    url = https://iot.example.com
    enrollment_token = <shared enrollment secret of the IoT Center server>
    # device_id = greenhouse-1      (optional: otherwise derived from the Pi's serial number)
    # device_id_prefix = pi-        (optional: put before a derived id)

Raspberry Pi OS from Bookworm on mounts the boot partition at /boot/firmware; older releases
at /boot. Both are looked at, in that order. After a successful registration the enrollment
token is removed from the file (`remove_enrollment_token`), so a lost SD card does not give
away the secret that lets anyone register devices.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import BootConfigError
from provisioning.paths import under

SECTION = "iot-center"
BOOT_CONFIG_PATHS = ("/boot/firmware/iot-center.ini", "/boot/iot-center.ini")
TOKEN_KEY = "enrollment_token"  # noqa: S105 (a key name, not a secret)
PLACEHOLDER = re.compile(r"^(?:<.*>|CHANGE[-_ ]?ME.*|REPLACE[-_ ]?ME.*|\.\.\.)$", re.IGNORECASE)


@dataclass(frozen=True)
class BootConfig:
    path: Path
    url: str
    enrollment_token: str | None
    device_id: str | None
    device_id_prefix: str

    @property
    def has_token(self) -> bool:
        return bool(self.enrollment_token)


def find_boot_config(root: str | os.PathLike[str] = "/", explicit: str | None = None) -> Path:
    """The boot config file to use: `explicit` if given, else the first that exists."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise BootConfigError(f"{path} does not exist")
        return path
    candidates = [under(root, p) for p in BOOT_CONFIG_PATHS]
    for path in candidates:
        if path.is_file():
            return path
    looked = " or ".join(str(p) for p in candidates)
    raise BootConfigError(
        f"no {looked}; put one on the boot partition with [{SECTION}] url and enrollment_token"
    )


def _value(section: configparser.SectionProxy, key: str) -> str | None:
    raw = section.get(key, fallback="").strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1].strip()
    return raw or None


def read_boot_config(path: Path) -> BootConfig:
    """Parse the boot config, saying which key is missing or malformed."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    try:
        text = path.read_text(encoding="utf-8-sig")  # Windows editors add a BOM
        parser.read_string(text, source=str(path))
    except (OSError, UnicodeDecodeError) as error:
        raise BootConfigError(f"cannot read {path}: {error}") from error
    except configparser.Error as error:
        raise BootConfigError(f"{path} is not a valid INI file: {error}") from error
    if not parser.has_section(SECTION):
        raise BootConfigError(f"{path} has no [{SECTION}] section")
    section = parser[SECTION]
    url = _value(section, "url")
    if url is None:
        raise BootConfigError(f"{path} has no 'url' (the IoT Center address) in [{SECTION}]")
    if PLACEHOLDER.match(url) or not url.startswith(("http://", "https://")):
        raise BootConfigError(
            f"'url' in {path} must be the IoT Center address starting with http:// or "
            f"https://, not {url!r}"
        )
    token = _value(section, TOKEN_KEY)
    if token is not None and PLACEHOLDER.match(token):
        raise BootConfigError(
            f"'{TOKEN_KEY}' in {path} is still the placeholder {token!r}; "
            "put the server's ENROLLMENT_TOKEN there"
        )
    device_id = _value(section, "device_id")
    prefix = _value(section, "device_id_prefix") or ""
    return BootConfig(
        path=path,
        url=url.rstrip("/"),
        enrollment_token=token,
        device_id=device_id,
        device_id_prefix=prefix,
    )


_SECTION_LINE = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_TOKEN_LINE = re.compile(rf"^\s*{TOKEN_KEY}\s*[=:]", re.IGNORECASE)
_CONTINUATION = re.compile(r"^[ \t]+\S")


def remove_enrollment_token(path: Path) -> bool:
    """Rewrite `path` without the enrollment token, keeping every other line and comment.

    Returns True if a token line was removed. The new file replaces the old one atomically
    (a power cut leaves either the old or the new file, never half of one).
    """
    text = path.read_text(encoding="utf-8-sig")
    kept: list[str] = []
    in_section = False
    removing = False
    removed = False
    for line in text.splitlines(keepends=True):
        match = _SECTION_LINE.match(line)
        if match:
            in_section = match.group("name").strip() == SECTION
            removing = False
        elif removing and _CONTINUATION.match(line):
            continue  # a multi-line value continues the removed key
        else:
            removing = False
            if in_section and _TOKEN_LINE.match(line):
                removing = removed = True
                continue
        kept.append(line)
    if not removed:
        return False
    _atomic_write(path, "".join(kept))
    return True


def _atomic_write(path: Path, content: str) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):  # FAT has no modes; keep whatever it gives
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (FAT on some kernels) refuse fsync on a directory
    finally:
        os.close(fd)
