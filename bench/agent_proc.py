"""The bare-interpreter baseline of the footprint benchmark: `python -m bench.agent_proc baseline`
imports only what the agent depends on, then idles.

(The agent itself runs as `iot-agent run` at every rate: measurement_interval_override takes
fractional seconds, so 50 readings/s is IOT_AGENT_MEASUREMENT_INTERVAL_OVERRIDE=0.02.)
"""

from __future__ import annotations

import sys
import time


def baseline() -> int:
    import json  # noqa: F401
    import logging  # noqa: F401
    import sqlite3  # noqa: F401
    import threading  # noqa: F401

    import requests  # noqa: F401
    import tenacity  # noqa: F401

    print("ready", flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "baseline":
        return baseline()
    raise SystemExit("usage: python -m bench.agent_proc baseline")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
