"""Progress lines a person can follow on the console or in `journalctl -u iot-provision`.

Plain lines on stdout, flushed at once (systemd's journal takes them as they come), each
prefixed with the program name so they stand out among the boot messages.
"""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, prefix: str = "iot-provision") -> None:
        self._stream = stream
        self.prefix = prefix
        self.lines: list[str] = []  # what was said, for tests and for the final summary

    def say(self, message: str) -> None:
        self.lines.append(message)
        stream = self._stream if self._stream is not None else sys.stdout
        print(f"{self.prefix}: {message}", file=stream, flush=True)


def describe_wait(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s"
