"""Flux and line-protocol injection through every user-controlled value (path ids, JSON
fields, query parameters, headers, the sign-in form): afterwards InfluxDB holds exactly what it
held before — no new bucket, measurement, series, authorization or record."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import CenterServer
from tests.reliability.helpers import influx_snapshot, measurements_in, report

pytestmark = pytest.mark.integration

PAYLOADS = [
    '") |> drop(columns: ["_value"]) |> yield(name: "x',
    '" or r._measurement != "',
    'x" or true or "',
    "pi-a\nenvironment,clientId=evil Temperature=99 1",
    "pi-a evil=1",
    "pi-a,clientId=evil Temperature=1",
    'deviceauth,deviceId=evil key="k",token="t"',
    '_measurement="deviceauth" OR deviceId="pi-a"',
    'import "influxdata/influxdb/v1"\nbuckets()',
    '" |> to(bucket: "stolen") |> yield(name: "',
    "${jndi:ldap://x}",
    "pi-a\x00",
    "../../api/v2/buckets",
    '-1h) |> to(bucket: "stolen"',
    '1m) |> map(fn: (r) => ({r with _measurement: "evil"})',
]


def test_injection_through_every_user_value_changes_nothing(center: CenterServer) -> None:
    a = center.register("pi-a")
    requests.post(
        f"{center.influx.url}/api/v2/write",
        params={"org": center.influx.org, "bucket": center.buckets.telemetry, "precision": "s"},
        data=f"environment,clientId=pi-a Temperature=21 {int(time.time())}",
        headers={"Authorization": f"Token {a['influx_token']}"},
        timeout=10,
    ).raise_for_status()
    before = influx_snapshot(center)
    s = requests.Session()
    admin = center.admin()
    tried = 0
    statuses: dict[int, int] = {}

    def call(method: str, path: str, **kw) -> None:
        nonlocal tried
        r = s.request(method, center.url + path, timeout=30, **kw)
        tried += 1
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (method, path, kw, r.status_code, r.text[:300])
        assert "Traceback" not in r.text

    q = requests.utils.quote
    for p in PAYLOADS:
        pid = q(p, safe="")
        for method, path in (
            ("GET", f"/api/devices/{pid}"),
            ("DELETE", f"/api/devices/{pid}"),
            ("DELETE", f"/api/devices/pi-a?data={q(p)}"),
            ("GET", f"/api/env/{pid}"),
            ("GET", f"/api/devices/{pid}/measurements"),
            ("GET", f"/api/devices/{pid}/measurements/last"),
        ):
            call(method, path, headers=admin)
        call("GET", "/api/devices/pi-a/measurements", params={"start": p}, headers=admin)
        call(
            "GET",
            "/api/devices/pi-a/measurements",
            params={"start": "-1h", "window": p},
            headers=admin,
        )
        call("POST", "/api/devices", json={"deviceId": p}, headers=admin)
        call("POST", "/api/devices", json={"deviceId": "pi-a", "replace": p}, headers=admin)
        call("POST", "/api/devices", json={p: "x"}, headers=admin)
        # Tokens reach Flux too (who owns this token?): as a parameter, never as text.
        token_header = "Token " + p.replace("\n", " ").replace("\x00", "")
        call("GET", "/api/env/pi-a", headers={"Authorization": token_header})
        call("GET", "/api/devices", headers={"Authorization": token_header})
        call(
            "GET",
            "/api/env/pi-a",
            headers={**admin, "Accept": p.replace("\n", " ").replace("\x00", "")},
        )
        # The sign-in form (user names go to InfluxDB's sign-in API).
        call("POST", "/login", data={"username": p, "password": p})
    after = influx_snapshot(center)
    assert after == before
    assert measurements_in(center, center.buckets.telemetry) == {"environment"}
    assert measurements_in(center, center.buckets.devices) == {"deviceauth"}
    # pi-a still works with its own token, and its data is intact.
    env = s.get(
        f"{center.url}/api/env/pi-a",
        headers={"Authorization": f"Token {a['influx_token']}"},
        timeout=10,
    )
    assert env.status_code == 200
    report(
        "injection",
        payloads=len(PAYLOADS),
        requests=tried,
        statuses=dict(sorted(statuses.items())),
        influxdb_changes=0,
    )
