"""Status LED patterns and the button, on gpiozero's mock pin factory."""

from __future__ import annotations

import itertools
import time

import pytest

gpiozero = pytest.importorskip("gpiozero")
from gpiozero import Device  # noqa: E402
from gpiozero.pins.mock import MockFactory  # noqa: E402

from agent.led import PATTERNS, Pattern, State, StatusLight  # noqa: E402

LED_PIN, BUTTON_PIN = 17, 27
FAST = {
    **PATTERNS,
    State.HEALTHY: Pattern(0.02, 0.2),
    State.WRITE_FAILING: Pattern(0.02, 0.02),
    State.STARTING: Pattern(0.1, 0.1),
}


@pytest.fixture
def factory():
    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = previous


def transitions(pin, seconds: float) -> list[tuple[float, bool]]:
    pin.clear_states()
    time.sleep(seconds)
    return [(s.timestamp, s.state) for s in pin.states[1:]]


def test_steady_on_when_sensor_missing_and_off_when_stopped(factory):
    light = StatusLight(LED_PIN, patterns=FAST)
    pin = factory.pin(LED_PIN)
    light.set(State.SENSOR_MISSING)
    assert pin.state is True
    assert transitions(pin, 0.15) == []  # steady
    light.set(State.STOPPED)
    assert pin.state is False
    light.close()


def test_fast_blink_when_writes_fail(factory):
    light = StatusLight(LED_PIN, patterns=FAST)
    pin = factory.pin(LED_PIN)
    light.set(State.WRITE_FAILING)
    changes = transitions(pin, 0.3)
    assert len(changes) >= 6  # ~25 Hz toggling
    light.close()


def test_heartbeat_when_healthy_is_mostly_off(factory):
    light = StatusLight(LED_PIN, patterns=FAST)
    pin = factory.pin(LED_PIN)
    light.set(State.HEALTHY)
    pin.clear_states()
    time.sleep(0.7)
    states = pin.states
    on_time = sum(b.timestamp for a, b in itertools.pairwise(states) if a.state and not b.state)
    assert 2 <= sum(1 for s in states if s.state) <= 5  # a short flash per period
    assert on_time < 0.25  # lit a small fraction of the time
    light.close()


def test_default_patterns_distinguish_every_state():
    assert PATTERNS[State.HEALTHY].on_time < PATTERNS[State.HEALTHY].off_time
    assert PATTERNS[State.WRITE_FAILING].off_time <= 0.2
    assert PATTERNS[State.SENSOR_MISSING].on_time is None and PATTERNS[State.SENSOR_MISSING].lit
    assert not PATTERNS[State.STOPPED].lit
    assert len({PATTERNS[s] for s in State}) == len(State)


def test_same_state_does_not_restart_the_pattern(factory):
    light = StatusLight(LED_PIN, patterns=FAST)
    pin = factory.pin(LED_PIN)
    light.set(State.SENSOR_MISSING)
    pin.clear_states()
    light.set(State.SENSOR_MISSING)
    assert len(pin.states) == 1
    light.close()


def test_button_press_calls_back(factory):
    pressed = []
    light = StatusLight(LED_PIN, BUTTON_PIN, on_press=lambda: pressed.append(time.monotonic()))
    button = factory.pin(BUTTON_PIN)
    button.drive_low()  # pressed: pulled-up input goes low
    deadline = time.monotonic() + 1
    while not pressed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(pressed) == 1
    button.drive_high()
    light.close()


def test_no_pins_is_a_no_op():
    light = StatusLight()
    assert not light.active
    light.set(State.WRITE_FAILING)  # nothing to drive, nothing raised
    light.close()


def test_gpio_unavailable_degrades_to_no_op(monkeypatch, caplog):
    previous = Device.pin_factory

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("no GPIO here")

    Device.pin_factory = Broken()
    try:
        light = StatusLight(LED_PIN)
        assert not light.active
        light.set(State.HEALTHY)
    finally:
        Device.pin_factory = previous
    assert "status LED/button disabled" in caplog.text
