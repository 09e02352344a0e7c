"""Status LED and button through gpiozero, so a person can see the agent's state at a glance.

- heartbeat (short flash every 2 s): healthy, data flowing;
- fast blink: writes to InfluxDB are failing (data is being kept in the buffer);
- steady on: the sensor is missing or failing;
- slow blink: starting (waiting for the clock or the first configuration);
- off: stopped.

The optional button forces an immediate send and configuration refresh. Without pins
configured (a laptop), or without GPIO access, both are silent no-ops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)


class State(Enum):
    STARTING = "starting"
    HEALTHY = "healthy"
    WRITE_FAILING = "write_failing"
    SENSOR_MISSING = "sensor_missing"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Pattern:
    """on/off seconds of a blink; None means steady (lit or not)."""

    on_time: float | None
    off_time: float | None
    lit: bool = True


PATTERNS = {
    State.STARTING: Pattern(0.5, 0.5),
    State.HEALTHY: Pattern(0.1, 1.9),
    State.WRITE_FAILING: Pattern(0.1, 0.1),
    State.SENSOR_MISSING: Pattern(None, None, lit=True),
    State.STOPPED: Pattern(None, None, lit=False),
}


class StatusLight:
    """Shows a State on an LED; set() only touches the LED when the state changes."""

    def __init__(
        self,
        led_pin: int | None = None,
        button_pin: int | None = None,
        on_press: Callable[[], None] | None = None,
        patterns: dict[State, Pattern] | None = None,
    ) -> None:
        self.patterns = patterns or PATTERNS
        self.state: State | None = None
        self._led = None
        self._button = None
        if led_pin is None and button_pin is None:
            return
        try:
            from gpiozero import LED, Button

            if led_pin is not None:
                self._led = LED(led_pin)
            if button_pin is not None:
                self._button = Button(button_pin, pull_up=True, bounce_time=0.05)
                if on_press is not None:
                    self._button.when_pressed = lambda *_: on_press()
        except Exception as exc:  # no GPIO here (laptop, container, permissions)
            log.warning("status LED/button disabled: %s: %s", type(exc).__name__, exc)
            self.close()

    @property
    def active(self) -> bool:
        return self._led is not None or self._button is not None

    def set(self, state: State) -> None:
        if state == self.state:
            return
        self.state = state
        if self._led is None:
            return
        pattern = self.patterns[state]
        if pattern.on_time is None:
            if pattern.lit:
                self._led.on()
            else:
                self._led.off()
        else:
            self._led.blink(on_time=pattern.on_time, off_time=pattern.off_time, background=True)

    def close(self) -> None:
        for dev in (self._led, self._button):
            if dev is not None:
                try:
                    dev.close()
                except Exception as exc:
                    log.debug("closing GPIO device failed: %s", exc)
        self._led = self._button = None
