"""How the writer classifies InfluxDB answers, and bisects or splits batches (no HTTP peer:
`send` is replaced by a scripted InfluxDB stand-in at the Python level)."""

from __future__ import annotations

import threading
import time

import pytest

from agent.buffer import Buffer
from agent.contract import DeviceConfig
from agent.writer import (
    BadPoints,
    NeedsConfig,
    Retryable,
    Target,
    TooLarge,
    Writer,
    classify,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (400, {}, BadPoints, None),
        (422, {}, BadPoints, None),
        (413, {}, TooLarge, None),
        (401, {}, NeedsConfig, None),
        (403, {}, NeedsConfig, None),
        (404, {}, NeedsConfig, None),
        (429, {"Retry-After": "7"}, Retryable, 7.0),
        (503, {"retry-after": "30"}, Retryable, 30.0),
        (500, {}, Retryable, None),
        (502, {}, Retryable, None),
        (418, {}, Retryable, None),  # unknown: keep the data and retry, never drop
    ],
)
def test_classify(status, headers, kind, retry_after):
    with pytest.raises(kind) as info:
        classify(status, headers, '{"code":"x","message":"why it failed"}')
    assert type(info.value) is kind
    assert "why it failed" in str(info.value)
    if isinstance(info.value, Retryable):
        assert info.value.retry_after == retry_after


def test_success_is_quiet():
    assert classify(204) is None


def test_retry_after_forms():
    now = 1_000_000.0
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after("999999", now) == 3600.0
    assert parse_retry_after("Mon, 12 Jan 1970 13:46:50 GMT", now) == pytest.approx(10.0)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None) is None


def test_target_from_config_hides_token():
    cfg = DeviceConfig(
        "http://influx:8086/", "iot", "SECRET", "b", "d", 0.0, 0.0, 60, False, "", "", "",
        3600, "/api/v2/write?org=iot&bucket=b&precision=ns",
    )  # fmt: skip
    t = Target.from_config(cfg)
    assert t.write_url == "http://influx:8086/api/v2/write?org=iot&bucket=b&precision=ns"
    assert "SECRET" not in repr(t)


class ScriptedInflux:
    """Plays InfluxDB's part for `Writer.send`: stores good lines, answers like the real one."""

    def __init__(self, max_lines: int = 10**9, fail_first: list[Exception] | None = None):
        self.stored: set[str] = set()
        self.calls: list[int] = []
        self.max_lines = max_lines
        self.fail_first = list(fail_first or [])

    def __call__(self, body, target):
        lines = body.decode().split("\n")
        self.calls.append(len(lines))
        if self.fail_first:
            raise self.fail_first.pop(0)
        if len(lines) > self.max_lines:
            raise TooLarge("too large", 413)
        if any("bad" in line for line in lines):
            raise BadPoints("unable to parse", 400)
        self.stored.update(lines)


def make_writer(tmp_path, influx, **kw) -> tuple[Writer, Buffer]:
    buf = Buffer(tmp_path / "b.sqlite")
    w = Writer(buf, lambda: Target("http://x/api/v2/write", "t"), retry_initial=0.01,
               retry_max=0.05, **kw)  # fmt: skip
    w.send = influx  # type: ignore[method-assign]
    return w, buf


def test_bad_points_are_isolated_and_the_rest_written(tmp_path):
    influx = ScriptedInflux()
    w, buf = make_writer(tmp_path, influx, batch_size=100)
    good = [f"m v={i} {i}" for i in range(37)]
    buf.append([*good[:10], "m bad=1 1", *good[10:30], "m bad=2 2", *good[30:]])
    assert w.flush_once() == 39
    assert influx.stored == set(good)
    assert buf.depth() == 0
    assert buf.counters()["rejected"] == 2 and buf.counters()["written"] == 37
    assert len(influx.calls) < 39  # bisection, not one request per point


def test_too_large_batches_are_split(tmp_path):
    influx = ScriptedInflux(max_lines=8)
    w, buf = make_writer(tmp_path, influx, batch_size=50)
    buf.append([f"m v={i} {i}" for i in range(50)])
    w.flush_once()
    assert len(influx.stored) == 50 and buf.depth() == 0
    assert influx.calls[0] == 50 and min(influx.calls) >= 6  # halves, not single points


def test_transient_failures_are_retried_then_acked(tmp_path):
    refreshes = []
    influx = ScriptedInflux(
        fail_first=[Retryable("down"), Retryable("busy", 503, 0.0), NeedsConfig("401", 401)]
    )
    w, buf = make_writer(tmp_path, influx, on_needs_config=lambda: refreshes.append(1))
    buf.append(["m v=1 1"])
    w.flush_once()
    assert influx.stored == {"m v=1 1"} and buf.depth() == 0
    assert w.stats.write_errors == 3 and not w.stats.failing
    assert refreshes == [1]  # 401 asked for a configuration refresh first


def test_retry_after_is_honoured(tmp_path):
    influx = ScriptedInflux(fail_first=[Retryable("throttled", 429, 0.3)])
    w, buf = make_writer(tmp_path, influx)
    buf.append(["m v=1 1"])
    t0 = time.monotonic()
    w.flush_once()
    assert time.monotonic() - t0 >= 0.3


def test_finish_keeps_unsent_points_on_disk(tmp_path):
    influx = ScriptedInflux(fail_first=[Retryable("down")] * 10**6)
    w, buf = make_writer(tmp_path, influx)
    buf.append(["m v=1 1", "m v=2 2"])
    w.start()
    t0 = time.monotonic()
    assert w.finish(0.5) is False
    assert time.monotonic() - t0 < 3
    assert buf.depth() == 2


def test_backoff_grows_with_jitter_and_is_capped(tmp_path):
    buf = Buffer(tmp_path / "b.sqlite")
    w = Writer(buf, lambda: None, retry_initial=1.0, retry_max=60.0)

    class State:
        def __init__(self, n):
            self.attempt_number = n
            self.outcome = None

    waits = [w._wait(State(n)) for n in range(1, 15)]
    assert 0.5 <= waits[0] <= 1.0
    assert all(w_ <= 60.0 for w_ in waits)
    assert max(waits) >= 30.0  # reaches the cap region
    assert len({round(x, 6) for x in waits[8:]}) > 1  # jittered, not a fixed value


def test_stale_kick_does_not_cut_retry_after(tmp_path):
    influx = ScriptedInflux(fail_first=[Retryable("throttled", 429, 0.6)])
    w, buf = make_writer(tmp_path, influx)
    buf.append(["m v=1 1"])
    w.kick()  # e.g. an unchanged configuration applied just before
    t0 = time.monotonic()
    threading.Timer(0.2, w.kick).start()  # a kick during the wait, same target
    w.flush_once()
    assert time.monotonic() - t0 >= 0.6
    assert influx.stored == {"m v=1 1"}


def test_kick_cuts_own_backoff_short(tmp_path):
    influx = ScriptedInflux(fail_first=[Retryable("down")])
    buf = Buffer(tmp_path / "b.sqlite")
    w = Writer(buf, lambda: Target("http://x/api/v2/write", "t"), retry_initial=20, retry_max=40)
    w.send = influx  # type: ignore[method-assign]
    buf.append(["m v=1 1"])
    threading.Timer(0.3, w.kick).start()  # the button
    t0 = time.monotonic()
    w.flush_once()
    assert time.monotonic() - t0 < 5


def test_caught_up_writer_batches_readings_per_flush_interval(tmp_path):
    influx = ScriptedInflux()
    w, buf = make_writer(tmp_path, influx, flush_interval=0.5)
    w.start()
    for i in range(20):  # 40 readings/s
        buf.append(f"m v={i} {i}")
        w.notify_data()
        time.sleep(0.025)
    time.sleep(0.6)
    assert w.finish(2)
    assert len(influx.stored) == 20
    assert len(influx.calls) <= 4, influx.calls  # ~1 request per 0.5 s, not 20


def test_backlog_drains_with_requests_in_flight_over_disjoint_ranges(tmp_path):
    sent: list[str] = []
    lock = threading.Lock()
    active = [0, 0]  # now, most at once

    def influx(body, target):
        lines = body.decode().split("\n")
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
            if any("bad" in line for line in lines):
                raise BadPoints("unable to parse", 400)
            sent.extend(lines)

    w, buf = make_writer(tmp_path, influx, batch_size=100, drain_batch_size=1000, concurrency=3)
    good = [f"m v={i} {i}" for i in range(12_000)]
    buf.append([*good[:5000], "m bad=1 1", *good[5000:]])
    total = 0
    while n := w.flush_once():
        total += n
    assert total == 12_001 and buf.depth() == 0
    assert sorted(sent) == sorted(good)  # each point stored once, none lost
    assert active[1] >= 2  # requests overlapped
    assert buf.counters()["written"] == 12_000 and buf.counters()["rejected"] == 1


def test_caught_up_is_one_request_and_large_bodies_are_gzipped(tmp_path):
    import gzip

    posts = []

    class Session:
        def post(self, url, data, headers, timeout):
            posts.append((data, headers))

            class R:
                status_code, headers, text = 204, {}, ""

            return R()

    buf = Buffer(tmp_path / "b.sqlite")
    w = Writer(buf, lambda: Target("http://x/api/v2/write", "t"), session=Session(), batch_size=500)
    buf.append("m v=1 1")
    assert w.flush_once() == 1
    assert posts[-1] == (b"m v=1 1", posts[-1][1]) and "Content-Encoding" not in posts[-1][1]
    lines = [f"environment,clientId=pi-1 Temperature={i}.5 {i}" for i in range(500)]
    buf.append(lines)
    assert w.flush_once() == 500 and len(posts) == 2
    assert posts[-1][1]["Content-Encoding"] == "gzip"
    assert gzip.decompress(posts[-1][0]).decode() == "\n".join(lines)
    w.compress = False
    buf.append(lines)
    w.flush_once()
    assert "Content-Encoding" not in posts[-1][1]
