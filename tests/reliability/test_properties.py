"""Property-based tests (hypothesis) against the live server: device ids, JSON bodies, query
ranges and Authorization headers. Whatever comes in, the answer is a clear 2xx/4xx JSON
answer (never a 5xx, never a traceback) and no other record changes."""

from __future__ import annotations

import re
import string
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import CenterServer
from tests.reliability.helpers import SOAK, report

pytestmark = pytest.mark.integration

ID_RULE = re.compile(r"[A-Za-z0-9._-]{1,64}")
ID_CHARS = string.ascii_letters + string.digits + "._-"
EXAMPLES = 1000 if SOAK else 150
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not SOAK,
)

ids = st.one_of(
    st.text(alphabet=ID_CHARS, min_size=1, max_size=64),
    st.text(alphabet=ID_CHARS, min_size=65, max_size=80),
    st.text(min_size=0, max_size=70),
    st.text(alphabet=ID_CHARS + ' "\\\n\r\t,=/|()', min_size=1, max_size=20),
)


def clean(r: requests.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    if r.status_code >= 400:
        body = r.json()
        assert body["error"] and body["message"], body


def sentinel_state(center: CenterServer, token: str) -> tuple:
    one = requests.get(f"{center.url}/api/devices/pi-sentinel", headers=center.admin(), timeout=10)
    env = requests.get(
        f"{center.url}/api/env/pi-sentinel", headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert one.status_code == 200 and env.status_code == 200
    cfg = env.json()
    return one.json()["createdAt"], one.json()["updatedAt"], cfg["influx_token"]


def test_device_ids_accepted_iff_they_match_the_rule(center: CenterServer) -> None:
    sentinel = center.register("pi-sentinel")
    before = sentinel_state(center, sentinel["influx_token"])
    seen: set[str] = {"pi-sentinel"}
    stats = {"accepted": 0, "refused": 0}
    s = requests.Session()

    @PROFILE
    @given(device_id=ids)
    @example(device_id="a" * 64)
    @example(device_id="-")
    def check(device_id: str) -> None:
        if set(device_id) == {"."}:
            return  # refused since 3eca2d1; see test_dot_only_ids_are_refused_or_reachable
        r = s.post(
            f"{center.url}/api/devices",
            json={"deviceId": device_id},
            headers=center.admin(),
            timeout=15,
        )
        clean(r)
        if ID_RULE.fullmatch(device_id) and set(device_id) != {"."}:
            assert r.status_code == (409 if device_id in seen else 201), (device_id, r.text)
            seen.add(device_id)
            stats["accepted"] += 1
            got = s.get(
                f"{center.url}/api/devices/{quote(device_id, safe='')}",
                headers=center.admin(),
                timeout=15,
            )
            clean(got)
            assert got.status_code == 200 and got.json()["deviceId"] == device_id, (
                device_id,
                got.status_code,
                got.text[:200],
            )
        else:
            assert r.status_code == 400 and r.json()["error"] == "invalid_device_id", (
                device_id,
                r.text,
            )
            stats["refused"] += 1
            for method, path in (
                ("GET", "/api/devices/"),
                ("GET", "/api/env/"),
                ("DELETE", "/api/devices/"),
            ):
                rr = s.request(
                    method,
                    center.url + path + quote(device_id, safe=""),
                    headers=center.admin(),
                    timeout=15,
                )
                clean(rr)

    check()
    assert sentinel_state(center, sentinel["influx_token"]) == before
    listed = {
        d["deviceId"]
        for d in requests.get(
            f"{center.url}/api/devices", headers=center.admin(), timeout=15
        ).json()["devices"]
    }
    assert listed == seen
    report("property: device ids", examples=EXAMPLES, **stats, server_5xx=0)


@pytest.mark.parametrize("device_id", [".", ".."])
def test_dot_only_ids_are_refused_or_reachable(center: CenterServer, device_id: str) -> None:
    r = requests.post(
        f"{center.url}/api/devices",
        json={"deviceId": device_id},
        headers=center.admin(),
        timeout=15,
    )
    clean(r)
    if r.status_code == 400:
        return
    token = r.json()["influx_token"]
    env = requests.get(
        f"{center.url}/api/env/{device_id}", headers={"Authorization": f"Token {token}"}, timeout=15
    )
    assert env.status_code == 200, (env.status_code, env.text[:200])
    gone = requests.delete(
        f"{center.url}/api/devices/{device_id}", headers=center.admin(), timeout=15
    )
    assert gone.status_code == 204


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"deviceId": json_values}, optional={"replace": json_values}),
    st.fixed_dictionaries(
        {"deviceId": st.text(alphabet=ID_CHARS, min_size=1, max_size=10)},
        optional={"replace": st.booleans(), "x": json_values},
    ),
)


def test_json_bodies_are_accepted_only_when_well_formed(center: CenterServer) -> None:
    sentinel = center.register("pi-sentinel")
    before = sentinel_state(center, sentinel["influx_token"])
    s = requests.Session()
    codes: dict[int, int] = {}

    @PROFILE
    @given(
        body=bodies,
        raw=st.booleans(),
        ctype=st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
        ),
    )
    def check(body: object, raw: bool, ctype: str) -> None:
        import json as _json

        if raw:
            r = s.post(
                f"{center.url}/api/devices",
                data=_json.dumps(body).encode(),
                headers={**center.admin(), "Content-Type": ctype},
                timeout=15,
            )
        else:
            r = s.post(f"{center.url}/api/devices", json=body, headers=center.admin(), timeout=15)
        clean(r)
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
        well_formed = (
            isinstance(body, dict)
            and set(body) <= {"deviceId", "replace"}
            and isinstance(body.get("deviceId"), str)
            and ID_RULE.fullmatch(body["deviceId"]) is not None
            and isinstance(body.get("replace", False), bool)
            and (not raw or ctype == "application/json")
        )
        if well_formed:
            assert r.status_code in (200, 201, 409), (body, r.text)
        else:
            assert r.status_code in (400, 409, 415), (body, raw, ctype, r.status_code, r.text)
            if body == {"deviceId": "pi-sentinel", "replace": True}:
                return
        if isinstance(body, dict) and body.get("deviceId") == "pi-sentinel":
            return
        assert sentinel_state(center, sentinel["influx_token"]) == before

    check()
    report("property: JSON bodies", examples=EXAMPLES, status_codes=dict(sorted(codes.items())))


_DUR = re.compile(r"(\d{1,6})(s|m|h|d|w)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def expect_range_ok(start: str | None, window: str | None) -> bool:
    """An independent statement of the documented rule (docs/API.md, iot_center/openapi.yaml)."""
    start = start or "-1h"  # an empty parameter means the default
    if not start.startswith("-"):
        return False
    m = _DUR.fullmatch(start[1:])
    if not m:
        return False
    span = int(m.group(1)) * _UNIT[m.group(2)]
    if not 60 <= span <= 366 * 86400:
        return False
    if not window:
        return True
    w = _DUR.fullmatch(window)
    if not w:
        return False
    win = int(w.group(1)) * _UNIT[w.group(2)]
    return 1 <= win <= span and span / win <= 10_000


durations = st.builds(
    lambda sign, n, unit: f"{sign}{n}{unit}",
    st.sampled_from(["-", "", "+", "--"]),
    st.integers(min_value=0, max_value=10_000_000),
    st.sampled_from([*list("smhdwy"), "ms", "mo", ""]),
)
range_values = st.one_of(st.none(), durations, st.text(max_size=20))


def test_query_ranges_are_200_or_400_as_the_rule_says(center: CenterServer) -> None:
    center.register("pi-range")
    s = requests.Session()
    stats = {"200": 0, "400": 0}

    @PROFILE
    @given(start=range_values, window=range_values)
    @example(start="-1h", window="1m")
    @example(start="-366d", window=None)
    @example(start="-1m", window="1s")
    def check(start: str | None, window: str | None) -> None:
        params = {k: v for k, v in (("start", start), ("window", window)) if v is not None}
        r = s.get(
            f"{center.url}/api/devices/pi-range/measurements",
            params=params,
            headers=center.admin(),
            timeout=30,
        )
        clean(r)
        want = 200 if expect_range_ok(start, window) else 400
        assert r.status_code == want, (params, r.status_code, r.text[:300])
        stats[str(want)] += 1

    check()
    report("property: query ranges", examples=EXAMPLES, **stats)


def test_any_authorization_header_is_401_or_403_never_5xx(center: CenterServer) -> None:
    center.register("pi-auth")
    s = requests.Session()

    @PROFILE
    @given(
        value=st.one_of(
            # HTTP drops a value's outer whitespace (requests refuses to send it), so strip it.
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(
                str.strip
            ),
            st.builds(
                lambda sch, t: f"{sch} {t}",
                st.sampled_from(["Token", "Bearer", "token", "Basic"]),
                st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
            ),
        )
    )
    def check(value: str) -> None:
        for method, path in (
            ("GET", "/api/devices"),
            ("GET", "/api/env/pi-auth"),
            ("POST", "/api/devices"),
            ("DELETE", "/api/devices/pi-auth"),
        ):
            r = s.request(
                method,
                center.url + path,
                headers={"Authorization": value},
                json={"deviceId": "x"},
                timeout=15,
            )
            clean(r)
            assert r.status_code in (401, 403), (value, path, r.status_code)

    check()
    assert (
        requests.get(
            f"{center.url}/api/devices/pi-auth", headers=center.admin(), timeout=10
        ).status_code
        == 200
    )
