"""Nobody is let in: anonymous callers, device tokens and the enrollment token get exactly
what docs/API.md grants and nothing more; tokens show up in no list, log line or page (the
configuration page fetches its token with the session, it is not in the HTML); sessions and
forms are protected (HttpOnly + SameSite cookie, CSRF, security headers)."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.conftest import CenterServer
from tests.reliability.helpers import report

pytestmark = pytest.mark.integration

# Public on purpose: the login page and its assets, the health check, the API description.
PUBLIC = {"static", "pages.login", "pages.vendor", "health", "api.openapi_description"}


def tok(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def app_routes(center: CenterServer) -> list[tuple[str, str, str]]:
    """(method, path, endpoint) of every route the real app has, from its own url_map."""
    from iot_center.app import create_app

    app = create_app(config=center.config_path)
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", "pi-sec").replace(f"<path:{arg}>", "x.js")
            out.append((method, path, rule.endpoint))
    return out


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def signed_in(center: CenterServer) -> requests.Session:
    s = requests.Session()
    page = s.get(f"{center.url}/login", timeout=10)
    r = s.post(
        f"{center.url}/login",
        data={
            "username": center.influx.user,
            "password": center.influx.password,
            "csrf_token": csrf_of(page.text),
        },
        allow_redirects=False,
        timeout=15,
    )
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    return s


def test_every_route_refuses_anonymous_access(center: CenterServer) -> None:
    center.register("pi-sec")
    routes = app_routes(center)
    checked = 0
    for method, path, endpoint in routes:
        if endpoint in PUBLIC:
            continue
        r = requests.request(
            method,
            center.url + path,
            allow_redirects=False,
            timeout=15,
            json={"deviceId": "pi-anon"},
        )
        checked += 1
        if path.startswith("/api/"):
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers.get("WWW-Authenticate", "").startswith("Token")
        else:  # a page: back to the sign-in (a form POST without CSRF is refused first)
            assert r.status_code in (302, 303, 400, 401), (method, path, r.status_code)
            if r.status_code in (302, 303):
                assert "/login" in r.headers["Location"], (path, r.headers["Location"])
    # Nothing was registered or removed by anyone anonymous.
    devices = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=10).json()
    assert [d["deviceId"] for d in devices["devices"]] == ["pi-sec"]
    report("security: anonymous", routes_checked=checked, let_in=0)


def test_device_token_reads_nothing_and_writes_only_telemetry(center: CenterServer) -> None:
    a = center.register("pi-a")
    center.register("pi-b")
    t = a["influx_token"]
    iurl, org = center.influx.url, center.influx.org
    now = int(time.time())
    buckets = requests.get(
        f"{iurl}/api/v2/buckets?limit=100", headers=center.admin(), timeout=10
    ).json()["buckets"]
    names = [b["name"] for b in buckets]
    refused = 0
    for name in names:  # every bucket of the org, system buckets included
        q = requests.post(
            f"{iurl}/api/v2/query",
            params={"org": org},
            headers=tok(t),
            json={"query": f'from(bucket: "{name}") |> range(start: 0)', "type": "flux"},
            timeout=10,
        )
        assert q.status_code in (401, 403, 404), (name, q.status_code, q.text[:200])
        refused += 1
        if name != center.buckets.telemetry:
            w = requests.post(
                f"{iurl}/api/v2/write",
                params={"org": org, "bucket": name, "precision": "s"},
                data=f"environment,clientId=pi-a Temperature=1 {now}",
                headers=tok(t),
                timeout=10,
            )
            assert w.status_code in (401, 403, 404), (name, w.status_code)
            refused += 1
    # No listing of anything that matters, no deletes, no new buckets or tokens.
    for method, path, body in (
        ("GET", "/api/v2/authorizations", None),
        ("GET", "/api/v2/users", None),
        ("POST", "/api/v2/buckets", {"orgID": center.influx.org_id, "name": "evil"}),
        ("POST", "/api/v2/authorizations", {"orgID": center.influx.org_id, "permissions": []}),
    ):
        r = requests.request(method, iurl + path, json=body, headers=tok(t), timeout=10)
        listed = (r.json().get("authorizations") or r.json().get("users")) if r.ok else None
        assert r.status_code in (400, 401, 403, 404) or not listed, (path, r.status_code, r.text)
        refused += 1
    lb = requests.get(f"{iurl}/api/v2/buckets", headers=tok(t), timeout=10)
    assert lb.status_code in (401, 403) or lb.json().get("buckets") == [], lb.text[:300]
    # Its own telemetry bucket: write yes.
    ok = requests.post(
        f"{iurl}/api/v2/write",
        params={"org": org, "bucket": center.buckets.telemetry, "precision": "s"},
        data=f"environment,clientId=pi-a Temperature=1 {now}",
        headers=tok(t),
        timeout=10,
    )
    assert ok.status_code == 204
    # The IoT Center: its own configuration only.
    assert requests.get(f"{center.url}/api/env/pi-b", headers=tok(t), timeout=10).status_code == 403
    for method, path in (
        ("GET", "/api/devices"),
        ("GET", "/api/devices/pi-a"),
        ("GET", "/api/devices/pi-a/measurements"),
        ("GET", "/api/devices/pi-a/measurements/last"),
        ("DELETE", "/api/devices/pi-b"),
        ("POST", "/api/devices"),
        ("GET", "/api/routes"),
    ):
        r = requests.request(
            method,
            center.url + path,
            headers=tok(t),
            json={"deviceId": "pi-c", "replace": True},
            timeout=10,
        )
        assert r.status_code in (401, 403), (method, path, r.status_code)
        refused += 1
    report("security: device token", refused=refused, let_in=0)


@pytest.mark.xfail(
    strict=True,
    reason="FINDING (InfluxDB permission model, iot_center/registry.py _create_authorization): "
    "write on a bucket also grants InfluxDB's delete API, so any device token can delete every "
    "device's telemetry in the shared bucket (and write points tagged with another clientId)",
)
def test_device_token_cannot_delete_telemetry(center: CenterServer) -> None:
    a = center.register("pi-a")
    b = center.register("pi-b")
    iurl, org = center.influx.url, center.influx.org
    now = int(time.time())
    requests.post(
        f"{iurl}/api/v2/write",
        params={"org": org, "bucket": center.buckets.telemetry, "precision": "s"},
        data=f"environment,clientId=pi-b Temperature=1 {now}",
        headers=tok(b["influx_token"]),
        timeout=10,
    ).raise_for_status()
    r = requests.post(
        f"{iurl}/api/v2/delete",
        params={"org": org, "bucket": center.buckets.telemetry},
        json={
            "start": "1970-01-01T00:00:00Z",
            "stop": "2100-01-01T00:00:00Z",
            "predicate": 'clientId="pi-b"',
        },
        headers=tok(a["influx_token"]),
        timeout=10,
    )
    assert r.status_code in (401, 403, 404), r.status_code


def test_enrollment_token_registers_but_reads_and_removes_nothing(center: CenterServer) -> None:
    center.register("pi-e")
    e = center.enrollment_token
    for method, path in (
        ("GET", "/api/devices"),
        ("GET", "/api/devices/pi-e"),
        ("GET", "/api/devices/pi-e/measurements"),
        ("GET", "/api/devices/pi-e/measurements/last"),
        ("DELETE", "/api/devices/pi-e"),
        ("GET", "/api/routes"),
    ):
        r = requests.request(method, center.url + path, headers=tok(e), timeout=10)
        assert r.status_code == 403, (method, path, r.status_code)
    env = requests.get(f"{center.url}/api/env/pi-e", headers=tok(e), timeout=10)
    assert env.status_code == 409 and "influx_token" not in env.text  # no token for a known id
    q = requests.post(
        f"{center.influx.url}/api/v2/query",
        params={"org": center.influx.org},
        headers=tok(e),
        json={
            "query": f'from(bucket: "{center.buckets.telemetry}") |> range(start: 0)',
            "type": "flux",
        },
        timeout=10,
    )
    assert q.status_code == 401


def test_tokens_appear_in_no_list_log_line_or_page(center: CenterServer) -> None:
    a = center.register("pi-t1")
    b = requests.post(
        f"{center.url}/api/devices",
        json={"deviceId": "pi-t1", "replace": True},
        headers=tok(center.enrollment_token),
        timeout=10,
    ).json()
    c = requests.get(
        f"{center.url}/api/env/pi-t2", headers=tok(center.enrollment_token), timeout=10
    ).json()
    requests.get(f"{center.url}/api/env/pi-t1", headers=tok(b["influx_token"]), timeout=10)
    requests.get(f"{center.url}/api/env/pi-t1", headers=tok(a["influx_token"]), timeout=10)  # 401
    requests.get(f"{center.url}/api/env/pi-t1", headers=tok(c["influx_token"]), timeout=10)  # 403
    s = signed_in(center)
    page = s.get(f"{center.url}/devices", timeout=10)
    r = s.post(
        f"{center.url}/devices",
        data={"device_id": "pi-web", "csrf_token": csrf_of(page.text)},
        timeout=15,
    )
    assert r.status_code == 200 and "pi-web" in r.text
    web_token = s.get(f"{center.url}/api/env/pi-web", timeout=10).json()["influx_token"]
    secrets_ = {
        "device token (replaced)": a["influx_token"],
        "device token": b["influx_token"],
        "device token (enrolled on GET)": c["influx_token"],
        "device token (web)": web_token,
        "admin token": center.admin_token,
        "enrollment token": center.enrollment_token,
        "admin password": center.influx.password,
    }
    views = {
        "GET /api/devices": requests.get(
            f"{center.url}/api/devices", headers=center.admin(), timeout=10
        ).text,
        "GET /api/devices/pi-t1": requests.get(
            f"{center.url}/api/devices/pi-t1", headers=center.admin(), timeout=10
        ).text,
    }
    for path in (
        "/",
        "/devices",
        "/devices/pi-t1",
        "/devices/pi-t1/config",
        "/devices/pi-web/config",
        "/devices/pi-t1/remove",
        "/map",
        "/buckets",
        "/about",
    ):
        r = s.get(center.url + path, timeout=15)
        assert r.status_code == 200, (path, r.status_code)
        views[f"page {path}"] = r.text
        for k, v in {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}.items():
            assert r.headers.get(k) == v, (path, k)
        assert "frame-ancestors 'none'" in r.headers.get("Content-Security-Policy", ""), path
        assert "script-src 'self'" in r.headers["Content-Security-Policy"], path
        assert r.headers.get("Referrer-Policy"), path
    time.sleep(0.5)  # let the log catch up
    views["server log"] = center.log()
    leaks = [
        (what, where)
        for what, secret in secrets_.items()
        for where, text in views.items()
        if secret and secret in text
    ]
    report("security: token leaks", secrets=len(secrets_), places=len(views), leaks=len(leaks))
    assert leaks == []


def test_session_cookie_csrf_and_headers(center: CenterServer) -> None:
    s = requests.Session()
    page = s.get(f"{center.url}/login", timeout=10)
    r = s.post(
        f"{center.url}/login",
        allow_redirects=False,
        timeout=15,
        data={
            "username": center.influx.user,
            "password": center.influx.password,
            "csrf_token": csrf_of(page.text),
        },
    )
    cookie = r.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and re.search(r"SameSite=(Lax|Strict)", cookie), cookie
    # A sign-in form without the page's CSRF token is refused even with the right password.
    other = requests.post(
        f"{center.url}/login",
        allow_redirects=False,
        timeout=15,
        data={"username": center.influx.user, "password": center.influx.password},
    )
    assert (other.status_code == 400 and "Set-Cookie" not in other.headers) or (
        "session" not in other.headers.get("Set-Cookie", "") or other.status_code == 400
    )
    # Page forms: CSRF enforced.
    no = s.post(f"{center.url}/devices", data={"device_id": "pi-csrf"}, timeout=15)
    assert no.status_code == 400
    bad = s.post(
        f"{center.url}/devices", data={"device_id": "pi-csrf", "csrf_token": "x"}, timeout=15
    )
    assert bad.status_code == 400
    # The JSON API with a session (no token) must carry the CSRF header to change anything.
    api = s.post(f"{center.url}/api/devices", json={"deviceId": "pi-csrf"}, timeout=15)
    assert api.status_code == 403 and api.json()["error"] == "csrf_failed"
    assert (
        requests.get(
            f"{center.url}/api/devices/pi-csrf", headers=center.admin(), timeout=10
        ).status_code
        == 404
    )
    devices_page = s.get(f"{center.url}/devices", timeout=10)
    good = s.post(
        f"{center.url}/devices",
        timeout=15,
        allow_redirects=False,
        data={"device_id": "pi-csrf", "csrf_token": csrf_of(devices_page.text)},
    )
    assert good.status_code in (302, 303)
    # Removing through a page: CSRF too.
    rm = s.post(f"{center.url}/devices/pi-csrf/remove", data={}, timeout=15)
    assert rm.status_code == 400
    assert (
        requests.get(
            f"{center.url}/api/devices/pi-csrf", headers=center.admin(), timeout=10
        ).status_code
        == 200
    )
