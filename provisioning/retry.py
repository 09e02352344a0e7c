"""Retry with exponential backoff until a deadline, saying what happens at every attempt.

Every waiting step of provisioning (network, clock, enrollment) runs through `retry_until`:
an attempt either returns, raises `TryAgain` (a transient cause: no route yet, server down,
clock not synchronised) or raises a `ProvisioningError` (a cause that waiting cannot fix,
like a wrong enrollment token), which ends the wait at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

from provisioning.errors import ProvisioningError
from provisioning.progress import Progress, describe_wait

T = TypeVar("T")


class TryAgain(Exception):
    """A transient failure; `give_up` is the error raised if the deadline passes."""

    def __init__(self, reason: str, give_up: ProvisioningError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.give_up = give_up


@dataclass
class Deadline:
    """A point in monotonic time after which waiting stops; `seconds=0` never expires."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    start: float = field(init=False)

    def __post_init__(self) -> None:
        self.start = self.clock()

    @property
    def unlimited(self) -> bool:
        return self.seconds <= 0

    def remaining(self) -> float:
        if self.unlimited:
            return float("inf")
        return max(0.0, self.start + self.seconds - self.clock())

    def expired(self) -> bool:
        return not self.unlimited and self.remaining() <= 0

    def elapsed(self) -> float:
        return self.clock() - self.start


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: `initial`, doubling, never more than `maximum`."""

    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 1.0


def retry_until(
    attempt: Callable[[], T],
    *,
    what: str,
    deadline: Deadline,
    progress: Progress,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `attempt` until it succeeds, a permanent error happens, or `deadline` passes."""

    def wait(state: tenacity.RetryCallState) -> float:
        # initial, 2x, 4x, ... plus jitter (devices rebooted together do not retry together),
        # capped, and never past the deadline: the last attempt happens right at it.
        exponent = min(state.attempt_number - 1, 32)
        pause = backoff.initial * 2**exponent + random.uniform(0, backoff.jitter)
        return max(0.0, min(pause, backoff.maximum, deadline.remaining()))

    def stop(state: tenacity.RetryCallState) -> bool:
        return deadline.expired()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = error.reason if isinstance(error, TryAgain) else str(error)
        pause = state.next_action.sleep if state.next_action else 0.0
        if deadline.unlimited:
            limit = "no time limit"
        else:
            limit = f"giving up in {describe_wait(deadline.remaining())}"
        progress.say(
            f"{what}: attempt {state.attempt_number} failed: {reason}; "
            f"next try in {describe_wait(pause)} ({limit})"
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TryAgain),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except TryAgain as last:
        error = last.give_up
        attempts = retrying.statistics.get("attempt_number", 1)
        error.args = (
            f"{last.reason} (gave up after {attempts} attempt"
            f"{'s' if attempts != 1 else ''} in {describe_wait(deadline.elapsed())})",
        )
        raise error from None


__all__ = ["Backoff", "Deadline", "ProvisioningError", "TryAgain", "retry_until"]
