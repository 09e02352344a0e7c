"""Delivers buffered line protocol to InfluxDB's /api/v2/write, retrying until it lands.

Failure classes (like Telegraf's, but nothing is dropped for being late):
- network errors, 5xx, 429 and other unexpected answers: retried forever with exponential
  backoff, equal jitter and a cap (an outage of days drains when the network returns);
  `Retry-After` on 429/503 (and any 5xx that sends it) is honoured instead of the backoff;
- 401/403 (token refused) and 404 (bucket or org gone): retried too, but first the loop is asked
  to refresh the device configuration, which may carry a new token, URL or bucket;
- 400/422 (malformed point, field type conflict): the batch is bisected until the bad points are
  isolated; those are logged and dropped, the rest are written;
- 413 (request too large): the batch is split in halves.

Steady state (the buffer holds at most `batch_size` points) is one request at a time. While
draining a backlog, up to `concurrency` requests of `drain_batch_size` points are in flight
over disjoint id ranges (each retried and bisected on its own, acked by id as it succeeds): one
request keeps InfluxDB busy on about one core. Bodies over 16 KB are gzip-compressed
(`Content-Encoding: gzip`) unless `compress` is off.

Points are acked in the buffer only after a 2xx. A batch re-sent after a lost answer overwrites
the same points (explicit timestamps), so delivery is at least once and storage exactly once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import email.utils
import gzip
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    wait_exponential,
    wait_random_exponential,
)

from agent.buffer import Batch, Buffer, BufferClosed
from agent.contract import DeviceConfig

log = logging.getLogger(__name__)

RETRY_AFTER_MAX = 3600.0  # a server asking for more than an hour is probably confused
# Bodies smaller than this (a caught-up agent's readings, ~60 points) are sent as they are:
# compressing them saves little and costs CPU on every request; a backlog is compressed.
GZIP_MIN_BYTES = 16 * 1024


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def give_back_memory() -> None:
    """Return the heap a drain used to the OS. Its request bodies (megabytes, freed in several
    threads' malloc arenas) otherwise partly stay in the process's RSS: after draining 500,000
    readings the agent held 45-54 MB without this, 40 MB with it (32.6 MB caught up)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@dataclass(frozen=True)
class Target:
    """Where and as whom to write; rebuilt whenever the device configuration changes."""

    write_url: str
    token: str

    @classmethod
    def from_config(cls, config: DeviceConfig) -> Target:
        base = config.influx_url.rstrip("/") + "/"
        return cls(urljoin(base, config.write_endpoint.lstrip("/")), config.influx_token)

    def __repr__(self) -> str:  # never show the token
        return f"Target({self.write_url!r})"

    @property
    def host(self) -> str:
        return urlsplit(self.write_url).netloc


class WriteError(Exception):
    """An attempt that did not store the batch."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Retryable(WriteError):
    """Try the same batch again later (after `retry_after` seconds if the server said so)."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class NeedsConfig(Retryable):
    """InfluxDB refused the token (401/403) or lacks the bucket (404): refresh config first."""


class BadPoints(WriteError):
    """400/422: something in the batch is malformed or conflicts with stored types."""


class TooLarge(WriteError):
    """413: the request body is over InfluxDB's limit."""


class Stopped(Exception):
    """The writer was told to stop (or its shutdown deadline passed) while retrying."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])[:300]
    return body.strip()[:300]


def classify(status: int, headers: dict[str, str] | None = None, body: str = "") -> None:
    """Raise the WriteError that an InfluxDB answer means; return quietly on success."""
    if 200 <= status < 300:
        return
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    detail = _message(body)
    said = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in (400, 422):
        raise BadPoints(f"InfluxDB rejected points ({said})", status)
    if status == 413:
        raise TooLarge(f"InfluxDB says the batch is too large ({said})", status)
    if status in (401, 403):
        raise NeedsConfig(f"InfluxDB refused the device token ({said})", status)
    if status == 404:
        raise NeedsConfig(f"InfluxDB has no such bucket or org ({said})", status)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 429:
        raise Retryable(f"InfluxDB is throttling writes ({said})", status, retry_after)
    if status >= 500:
        raise Retryable(f"InfluxDB failed ({said})", status, retry_after)
    raise Retryable(f"unexpected answer from InfluxDB ({said})", status, retry_after)


@dataclass
class WriterStats:
    """What the writer has been through since start; read by status, health and the LED."""

    write_errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    failing: bool = False


class Writer:
    """Drains the buffer in batches on its own thread; see the module docstring for policy."""

    def __init__(
        self,
        buffer: Buffer,
        target: Callable[[], Target | None],
        *,
        batch_size: int = 1000,
        drain_batch_size: int = 10000,
        concurrency: int = 4,
        compress: bool = True,
        flush_interval: float = 1.0,
        timeout: float = 10.0,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        on_needs_config: Callable[[], None] = lambda: None,
        session: requests.Session | None = None,
    ) -> None:
        self.buffer = buffer
        self._target = target
        self.batch_size = batch_size
        self.drain_batch_size = max(batch_size, drain_batch_size)
        self.concurrency = max(1, concurrency)
        self.compress = compress
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()  # per sending thread: did the server say how long
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.on_needs_config = on_needs_config
        self.session = session or requests.Session()
        self.stats = WriterStats()
        # Equal jitter: half the exponential step is fixed, half random, all capped.
        self._backoff = wait_exponential(multiplier=retry_initial / 2, max=retry_max / 2) + (
            wait_random_exponential(multiplier=retry_initial / 2, max=retry_max / 2)
        )
        self._stop = threading.Event()  # stop now (used when the deadline passes)
        self._wake = threading.Event()  # cut a backoff short (button, shutdown, new config)
        self._data = threading.Event()  # new points were buffered
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None

    # --- one HTTP request ---------------------------------------------------------------

    def send(self, body: bytes, target: Target | None) -> None:
        """POST one body of line protocol (UTF-8, lines joined by newlines); raise what the
        answer means (see `classify`)."""
        if target is None:
            raise Retryable("no device configuration yet: do not know where to write")
        timeout = self.timeout
        if self._deadline is not None:
            timeout = max(0.5, min(timeout, self._deadline - time.monotonic()))
        headers = {
            "Authorization": f"Token {target.token}",
            "Content-Type": "text/plain; charset=utf-8",
        }
        if self.compress and len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self.session.post(
                target.write_url, data=body, headers=headers, timeout=(min(5.0, timeout), timeout)
            )
        except requests.RequestException as exc:
            raise Retryable(
                f"cannot reach InfluxDB at {target.host}: {type(exc).__name__}"
            ) from None
        classify(resp.status_code, dict(resp.headers), resp.text)

    # --- retry policy -------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        self._local.server_said_wait = isinstance(exc, Retryable) and exc.retry_after is not None
        if self._local.server_said_wait:
            return exc.retry_after  # type: ignore[union-attr]
        return self._backoff(state)

    def _should_stop(self, state: RetryCallState) -> bool:
        return self._stop.is_set() or (
            self._deadline is not None and time.monotonic() >= self._deadline
        )

    def _sleep(self, seconds: float) -> None:
        """Wait out a backoff. A kick (button, new target) cuts our own backoff short, but a
        server's Retry-After only yields to a changed target or to shutdown."""
        end = time.monotonic() + seconds
        target = self._target()
        while not self._stop.is_set():
            left = end - time.monotonic()
            if self._deadline is not None:
                left = min(left, self._deadline - time.monotonic())
            if left <= 0:
                return
            woke = self._wake.wait(left)
            self._wake.clear()
            if not woke:
                return
            server_said_wait = getattr(self._local, "server_said_wait", False)
            if not server_said_wait or self._deadline is not None or self._target() != target:
                return

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.stats.write_errors += 1
        self.stats.last_error = str(exc)
        self.stats.last_error_at = time.time()
        self.stats.failing = True
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "write of %d point(s) failed (attempt %d): %s; retrying in %.1f s",
            getattr(state, "batch_len", 0),
            state.attempt_number,
            exc,
            wait,
        )
        if isinstance(exc, NeedsConfig):
            self.on_needs_config()

    def _send_retrying(self, batch: Batch) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(Retryable),
            wait=self._wait,
            stop=self._should_stop,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
        )
        try:
            for attempt in retrying:
                self._wake.clear()  # only kicks from now on may cut the next wait
                with attempt:
                    attempt.retry_state.batch_len = batch.count  # type: ignore[attr-defined]
                    self.send(batch.body, self._target())
        except RetryError as exc:
            raise Stopped(str(exc.last_attempt.exception())) from None
        self.stats.failing = False
        self.stats.last_success_at = time.time()

    # --- batches ------------------------------------------------------------------------

    def _deliver(self, batch: Batch) -> None:
        try:
            self._send_retrying(batch)
        except (BadPoints, TooLarge) as exc:
            self.stats.write_errors += 1
            self.stats.last_error = str(exc)
            self.stats.last_error_at = time.time()
            halves = self.buffer.split(batch) if batch.count > 1 else None
            if halves is None:
                log.error(
                    "dropping a point InfluxDB will not take (%s): %.300s", exc, batch.lines[0]
                )
                self.buffer.reject_batch(batch)
                return
            log.info("%s; splitting the batch of %d to find the culprit", exc, batch.count)
            for half in halves:
                if half is not None:
                    self._deliver(half)
            return
        self.buffer.ack_batch(batch)

    def flush_once(self) -> int:
        """Deliver (or drop as malformed) the oldest points; return how many, 0 if empty.

        Up to `batch_size` waiting: one request. More (a backlog): `_drain`."""
        if self.concurrency == 1 and self.drain_batch_size == self.batch_size:
            batch = self.buffer.peek_batch(self.batch_size)
        else:
            batch = self.buffer.peek_batch(self.batch_size + 1)
            if batch is not None and batch.count > self.batch_size:
                return self._drain()
        if batch is None:
            return 0
        self._deliver(batch)
        return batch.count

    def _drain(self) -> int:
        """Keep up to `concurrency` requests of `drain_batch_size` in flight, each over its
        own id range (read after the last one handed out, so no point is in two requests),
        until the backlog is down to one short batch. Each is delivered with the full policy
        (retry, bisect, split) and acked by id when stored. The first error (stop, buffer
        closed) is raised once every request in flight has ended."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="writer-send")
        inflight: set[Future] = set()
        after: int | None = None
        total = 0
        more = True
        error: BaseException | None = None
        try:
            while True:
                while more and error is None and len(inflight) < self.concurrency:
                    chunk = self.buffer.peek_batch(self.drain_batch_size, after=after)
                    if chunk is None:
                        more = False
                        break
                    after = chunk.last
                    total += chunk.count
                    inflight.add(self._pool.submit(self._deliver, chunk))
                    more = chunk.count == self.drain_batch_size
                if not inflight:
                    break
                done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                for f in done:
                    if error is None and f.exception() is not None:
                        error = f.exception()
        finally:
            for f in inflight:  # an error in this thread: let the others finish first
                f.exception()
            give_back_memory()
        if error is not None:
            raise error
        return total

    # --- thread -------------------------------------------------------------------------

    def run(self) -> None:
        """Drain until stopped; after finish(), until empty or the deadline."""
        while not self._stop.is_set():
            if self._deadline is not None and time.monotonic() >= self._deadline:
                break
            try:
                sent = self.flush_once()
            except (Stopped, BufferClosed):
                break
            except sqlite3.OperationalError as exc:  # disk full while acking: sent again later
                log.error("buffer: %s; retrying in 5 s (points already sent will overwrite)", exc)
                self._stop.wait(5)
                continue
            except Exception:  # a bug must not kill the thread that keeps data flowing
                log.exception("writer failed unexpectedly; retrying in 5 s")
                self._stop.wait(5)
                continue
            if sent:
                if sent < self.batch_size and self._deadline is None and self.flush_interval:
                    # Caught up: let the next readings gather for flush_interval, so a fast
                    # sensor costs one request per interval, not one per reading. A kick
                    # (button, shutdown) ends the pause.
                    self._wake.wait(self.flush_interval)
                    self._wake.clear()
                continue
            if self._deadline is not None:
                break  # shutting down and nothing left
            self._data.wait(self.flush_interval or 1.0)
            self._data.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="writer", daemon=True)
        self._thread.start()

    def notify_data(self) -> None:
        self._data.set()

    def kick(self) -> None:
        """Send now: cut any backoff short (the button; a refreshed configuration)."""
        self._wake.set()
        self._data.set()

    def finish(self, deadline_seconds: float) -> bool:
        """Flush for at most deadline_seconds, then stop; True if the buffer was drained."""
        self._deadline = time.monotonic() + deadline_seconds
        self.kick()
        if self._thread is not None:
            self._thread.join(deadline_seconds + 1.0)
            if self._thread.is_alive():
                self._stop.set()
                self._wake.set()
                self._thread.join(self.timeout + 1.0)
        return self.buffer.depth() == 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._data.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1.0)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
