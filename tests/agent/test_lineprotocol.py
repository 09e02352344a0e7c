"""Line protocol escaping per the InfluxDB 2 reference, including hostile strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.contract import InvalidDeviceId
from agent.lineprotocol import LineProtocolError, Point, device_tags, encode

T = 1_764_000_000_123_456_789


def test_plain_point_with_sorted_tags_and_ns_timestamp():
    p = Point("environment", {"Temperature": 21.5, "n": 3, "ok": True, "s": "x"}, T,
              {"device": "virtual", "clientId": "pi-1"})  # fmt: skip
    assert encode(p) == (
        f'environment,clientId=pi-1,device=virtual Temperature=21.5,n=3i,ok=true,s="x" {T}'
    )


@pytest.mark.parametrize(
    ("point", "line"),
    [
        (Point("my measurement,x", {"v": 1.0}, 1), r"my\ measurement\,x v=1.0 1"),
        (Point("m=eq", {"v": 1.0}, 1), "m=eq v=1.0 1"),  # '=' needs no escape in a measurement
        (Point("m", {"v": 1.0}, 1, {"tag key": "a,b=c d"}), r"m,tag\ key=a\,b\=c\ d v=1.0 1"),
        (Point("m", {"field,key=x y": 1.0}, 1), r"m field\,key\=x\ y=1.0 1"),
        (Point("m", {"s": 'say "hi" \\ bye'}, 1), r'm s="say \"hi\" \\ bye" 1'),
        (Point("m", {"s": "a,b=c d"}, 1), 'm s="a,b=c d" 1'),  # strings need only " and \
        (Point("m", {"v": 1e-05}, -5), "m v=1e-05 -5"),
        (Point("m", {"v": -(2**63)}, 1), f"m v={-(2**63)}i 1"),
        (Point("m", {"v": False}, 1), "m v=false 1"),
        (Point("m", {"v": 1.0}, 1, {"t": "a\\b"}), "m,t=a\\b v=1.0 1"),  # unambiguous backslash
        (Point("caf\u00e9", {"\u00b0C": 1.0}, 1, {"k": "\u6771\u4eac"}),
         "caf\u00e9,k=\u6771\u4eac \u00b0C=1.0 1"),
    ],
)  # fmt: skip
def test_escaping(point, line):
    assert encode(point) == line


@pytest.mark.parametrize(
    ("point", "why"),
    [
        (Point("m", {"v": 1.0}, 1, {"t": "evil\nm2 v=666 1"}), "control character"),
        (Point("m", {"v": 1.0}, 1, {"t": "x\r"}), "control character"),
        (Point("m", {"s": "two\nlines"}, 1), "newline"),
        (Point("m", {"v": float("nan")}, 1), "finite"),
        (Point("m", {"v": float("inf")}, 1), "finite"),
        (Point("m", {"v": 2**63}, 1), "64 bits"),
        (Point("m", {}, 1), "no fields"),
        (Point("", {"v": 1.0}, 1), "measurement is empty"),
        (Point("#comment", {"v": 1.0}, 1), "comment"),
        (Point("m", {"v": 1.0}, 1, {"t": ""}), "empty"),
        (Point("m", {"v": 1.0}, 1, {"t": "ends\\"}), "backslash"),
        (Point("m", {"v": 1.0}, 1, {"t": "a\\,b"}), "backslash"),
        (Point("m", {"v": 1.0}, 1, {"_field": "x"}), "reserved"),
        (Point("m", {"time": 1.0}, 1), "reserved"),
        (Point("m", {"v": [1]}, 1), "unsupported"),
        (Point("m", {"v": 1.0}, 1.5), "nanoseconds"),
        (Point("m", {"v": 1.0}, True), "nanoseconds"),
        (Point("m", {"v": 1.0}, 2**63), "range"),
    ],
)  # fmt: skip
def test_refuses_what_it_cannot_write_unambiguously(point, why):
    with pytest.raises(LineProtocolError, match=why):
        encode(point)


def test_device_tags_validate_the_id():
    assert device_tags("pi-1", device="virtual") == {"clientId": "pi-1", "device": "virtual"}
    for hostile in ("pi 1", "a,b=c", 'x" or 1=1', "x\n", "", "a" * 65):
        with pytest.raises(InvalidDeviceId):
            device_tags(hostile)


def _unescape_key(text: str) -> str:
    return text.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    return parts


@given(st.text(min_size=1, max_size=30).filter(lambda s: s != "time" and not s.startswith("_")))
def test_any_tag_value_round_trips_or_is_refused(value):
    """Parse like InfluxDB does (skip escaped pairs, then unescape): same value back."""
    try:
        line = encode(Point("m", {"v": 1.0}, 1, {"k": value}))
    except LineProtocolError:
        assert any(ord(c) < 32 or c == "\x7f" for c in value) or "\\" in value
        return
    head = _split_unescaped(line, " ")
    assert len(head) == 3, line
    key_part = _split_unescaped(head[0], ",")
    assert len(key_part) == 2
    assert _unescape_key(key_part[1].split("=", 1)[1]) == value
