"""The agent as its own process for the footprint benchmark: `python -m bench.agent_proc SECONDS`.

Exactly `iot-agent run` (same settings from the environment, same logging, same Agent), except
that the measurement interval is SECONDS, which may be fractional (50 readings/s = 0.02):
agent settings only take whole seconds (measurement_interval_override is an integer), so this
subclass overrides the one property the main loop reads.
`python -m bench.agent_proc baseline` instead imports only what the agent depends on, then
idles: the bare-interpreter baseline.
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
    if argv[0] == "baseline":
        return baseline()
    interval = float(argv[0])
    from agent.cli import _setup_logging
    from agent.loop import Agent
    from agent.settings import load

    class FractionalAgent(Agent):
        @property
        def measurement_interval(self) -> float:  # type: ignore[override]
            return interval

    _setup_logging(False)
    agent = FractionalAgent(load(None))
    agent.install_signal_handlers()
    return agent.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
