"""The pages over real HTTP against a real server and influxd: sign-in, CSRF, forms, headers,
error pages, and that no device token ever reaches a list."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.conftest import CenterServer
from tests.ui.conftest import Browser, csrf_of

PAGES = ["/", "/devices", "/map", "/buckets", "/about"]


@pytest.mark.parametrize("path", [*PAGES, "/devices/x1", "/devices/x1/config"])
def test_pages_need_sign_in(browser: Browser, path: str) -> None:
    r = browser.get(path, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/login?next=")


def test_sign_in_with_the_influxdb_user_and_out(browser: Browser) -> None:
    r = browser.get("/devices")
    assert r.url.endswith("/login?next=/devices")
    assert "Sign in" in r.text
    r = browser.login(next="/devices")
    assert r.status_code == 302
    assert r.headers["Location"] == "/devices"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    page = browser.get("/")
    assert page.status_code == 200
    assert browser.center.influx.user in page.text
    assert 'data-influx-health="pass"' in page.text
    # Sign out: a POST with the CSRF token.
    r = browser.post_form("/logout", {}, page="/", allow_redirects=False)
    assert r.status_code == 302
    assert browser.get("/", allow_redirects=False).status_code == 302


def test_next_cannot_leave_the_site(browser: Browser) -> None:
    r = browser.login(next="//evil.example/")
    assert r.headers["Location"] == "/"


def test_wrong_password_is_refused_and_slowed(browser: Browser) -> None:
    t0 = time.monotonic()
    r = browser.login(password="wrong-password")
    took = time.monotonic() - t0
    assert r.status_code == 401
    assert "Wrong user name or password" in r.text
    assert took >= 0.5
    # At once again, even with the right password: wait first.
    r = browser.login()
    assert r.status_code == 429
    assert "Try again in" in r.text
    assert int(r.headers["Retry-After"]) >= 1
    time.sleep(1.1)
    r = browser.login()
    assert r.status_code == 302
    # A second failure in a row doubles the wait (unknown users count too).
    other = Browser(browser.center)
    assert other.login(user="nobody", password="x" * 9).status_code == 401
    time.sleep(1.1)
    assert other.login(user="nobody", password="y" * 9).status_code == 401
    time.sleep(1.1)
    r = other.login(user="nobody", password="z" * 9)
    assert r.status_code == 429


def test_configured_admin_with_a_hashed_password(center: CenterServer) -> None:
    from werkzeug.security import generate_password_hash

    center.stop()
    center.extra.update(
        ADMIN_USER="operator", ADMIN_PASSWORD_HASH=generate_password_hash("s3cret-pass")
    )
    center.start()
    b = Browser(center)
    assert b.login(user="operator", password="s3cret-pass").status_code == 302
    assert b.get("/").status_code == 200
    b2 = Browser(center)
    assert b2.login(user="operator", password="not-it-at-all").status_code == 401


def test_posts_without_csrf_token_are_refused(signed_in: Browser, browser: Browser) -> None:
    r = signed_in.post(signed_in.url("/devices"), data={"device_id": "no-csrf"}, timeout=15)
    assert r.status_code == 400
    assert "CSRF" in r.text
    r = signed_in.post(
        signed_in.url("/devices"), data={"device_id": "bad", "csrf_token": "forged"}, timeout=15
    )
    assert r.status_code == 400
    assert "no-csrf" not in signed_in.get("/devices").text
    # The login form too.
    r = browser.post(
        browser.url("/login"),
        data={"username": browser.center.influx.user, "password": browser.center.influx.password},
        timeout=15,
        allow_redirects=False,
    )
    assert r.status_code == 400
    # A signed-in browser changing things through the JSON API needs the token in a header.
    r = signed_in.post(signed_in.url("/api/devices"), json={"deviceId": "via-api"}, timeout=15)
    assert r.status_code == 403
    assert r.json()["error"] == "csrf_failed"
    token = csrf_of(signed_in.get("/devices").text)
    r = signed_in.post(
        signed_in.url("/api/devices"),
        json={"deviceId": "via-api"},
        headers={"X-CSRF-Token": token},
        timeout=15,
    )
    assert r.status_code == 201
    # ... while a Token header needs none.
    r = requests.delete(
        f"{signed_in.center.url}/api/devices/via-api", headers=signed_in.center.admin(), timeout=15
    )
    assert r.status_code == 204


def test_register_and_remove_through_the_forms(signed_in: Browser, center: CenterServer) -> None:
    r = signed_in.post_form("/devices", {"device_id": "kitchen-pi"})
    assert r.status_code == 200
    assert r.url.endswith("/devices/kitchen-pi/config")
    assert "Device kitchen-pi registered" in r.text
    token = requests.get(
        f"{center.url}/api/env/kitchen-pi", headers=center.admin(), timeout=15
    ).json()["influx_token"]
    assert token
    assert token not in r.text  # the configuration page masks it until revealed
    assert "center_url = " + center.url in r.text
    # Listed, with its links, without its token.
    page = signed_in.get("/devices").text
    assert 'data-device-id="kitchen-pi"' in page
    assert 'href="/devices/kitchen-pi"' in page
    assert 'href="/devices/kitchen-pi/config"' in page
    for path in [*PAGES, "/devices/kitchen-pi", "/devices/kitchen-pi/remove"]:
        assert token not in signed_in.get(path).text, path
    # Invalid and duplicate ids get a message in the form.
    r = signed_in.post_form("/devices", {"device_id": "bad id!"})
    assert r.status_code == 400
    assert "is-invalid" in r.text
    assert "device id contains" in r.text.lower()
    r = signed_in.post_form("/devices", {"device_id": "kitchen-pi"})
    assert r.status_code == 409
    assert "already registered" in r.text
    # Remove: a confirmation page with the 'delete data' option, then the form post.
    confirm = signed_in.get("/devices/kitchen-pi/remove")
    assert 'name="delete_data"' in confirm.text
    r = signed_in.post_form(
        "/devices/kitchen-pi/remove", {"delete_data": "on"}, page="/devices/kitchen-pi/remove"
    )
    assert r.status_code == 200
    assert "kitchen-pi removed" in r.text
    assert 'data-device-id="kitchen-pi"' not in r.text
    r = requests.get(
        f"{center.url}/api/env/kitchen-pi",
        headers={"Authorization": f"Token {token}"},
        timeout=15,
    )
    assert r.status_code in (401, 404)


def test_device_pages_show_state_and_data_links(signed_in: Browser, center: CenterServer) -> None:
    center.register("dash-1")
    page = signed_in.get("/devices/dash-1")
    assert page.status_code == 200
    assert 'data-series-url="/api/devices/dash-1/measurements"' in page.text
    assert 'id="chart-temperature"' in page.text
    # The JSON API the dashboard uses accepts the session.
    r = signed_in.get("/api/devices/dash-1/measurements?start=-1h")
    assert r.status_code == 200
    assert r.json()["fields"] == {}
    assert signed_in.get("/devices/dash-1?range=30d").status_code == 200
    fleet = signed_in.get("/map").text
    assert "dash-1" in fleet
    assert 'id="fleet-data"' in fleet


def test_buckets_and_about(signed_in: Browser, center: CenterServer) -> None:
    page = signed_in.get("/buckets").text
    assert center.buckets.telemetry in page
    assert center.buckets.devices in page
    assert "30 days" in page
    assert "forever" in page
    about = signed_in.get("/about").text
    assert center.influx.url in about
    assert re.search(r"data-influx-version>v?2\.", about)
    assert "/api/v2/query" in about


def test_security_headers_on_pages(signed_in: Browser) -> None:
    for path in ["/", "/devices", "/login", "/nope"]:
        r = signed_in.get(path)
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "<script>" not in r.text  # every script is a file
        assert " style=" not in r.text


def test_error_pages_in_the_layout(signed_in: Browser, browser: Browser) -> None:
    r = signed_in.get("/no/such/page")
    assert r.status_code == 404
    assert 'data-status="404"' in r.text
    assert "navbar" in r.text
    r = signed_in.get("/devices/not-registered")
    assert r.status_code == 404
    assert "not-registered" in r.text
    r = signed_in.get("/devices/bad%20id")
    assert r.status_code == 400
    assert "Traceback" not in r.text
    assert browser.get("/missing").status_code == 404  # also when signed out


def test_influxdb_down_gives_a_friendly_503(signed_in: Browser, center: CenterServer, restarted):
    center.influx.kill()
    try:
        r = signed_in.get("/devices")
        assert r.status_code == 503
        assert "InfluxDB is not answering" in r.text
        home = signed_in.get("/")
        assert home.status_code == 200
        assert 'data-influx-health="fail"' in home.text
        b = Browser(center)
        r = b.login()
        assert r.status_code == 503
        assert "Cannot check the password" in r.text
    finally:
        center.influx.launch()
    assert signed_in.get("/devices").status_code == 200


def test_vendor_assets_are_allow_listed(browser: Browser) -> None:
    r = browser.get("/vendor/bootstrap/dist/css/bootstrap.min.css")
    assert r.status_code == 200
    assert "text/css" in r.headers["Content-Type"]
    assert browser.get("/vendor/chart.js/dist/chart.umd.min.js").status_code == 200
    assert browser.get("/vendor/bootstrap/package.json").status_code == 404
    assert browser.get("/vendor/../pyproject.toml").status_code == 404
    login = browser.get("/login").text
    for src in re.findall(r'(?:src|href)="(/(?:vendor|static)/[^"]+)"', login):
        assert browser.get(src).status_code == 200, src


def test_missing_assets_still_render_the_page(
    center: CenterServer, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    center.stop()
    monkeypatch.setenv("IOT_CENTER_ASSETS", str(tmp_path / "empty"))
    center.start()
    b = Browser(center)
    page = b.get("/login")
    assert page.status_code == 200
    assert "npm ci" in page.text
    assert b.get("/vendor/bootstrap/dist/css/bootstrap.min.css").status_code == 404
    assert "front-end assets missing" in center.log()


def test_a_fleet_is_browsed_a_page_at_a_time(signed_in: Browser, center: CenterServer) -> None:
    """Records written straight into the devices bucket (no authorizations needed to list)."""
    n = 250
    now = time.time_ns()
    lines = "\n".join(
        f'deviceauth,deviceId=fleet-{i:03d} key="auth{i}",token="secret-token-{i:03d}",'
        f'createdAt="2026-01-01T00:00:00Z",updatedAt="2026-01-01T00:00:00Z" {now}'
        for i in range(n)
    )
    r = requests.post(
        f"{center.influx.url}/api/v2/write",
        params={"org": center.influx.org, "bucket": center.buckets.devices, "precision": "ns"},
        data=lines,
        headers={"Authorization": f"Token {center.influx.token}"},
        timeout=30,
    )
    assert r.status_code == 204, r.text

    def listed(html: str) -> list[str]:
        return re.findall(r'<tr data-device-id="([^"]+)"', html)

    t0 = time.monotonic()
    page = signed_in.get("/devices")
    took = time.monotonic() - t0
    assert page.status_code == 200
    assert listed(page.text) == [f"fleet-{i:03d}" for i in range(100)]
    assert "250 devices · showing 1\u2013100" in page.text
    assert "secret-token-" not in page.text
    assert (
        'href="/devices?page=3"' in page.text and 'href="/devices?page=2" rel="next"' in page.text
    )
    assert listed(signed_in.get("/devices?page=3").text) == [
        f"fleet-{i:03d}" for i in range(200, 250)
    ]
    assert listed(signed_in.get("/devices?page=99").text)[-1] == "fleet-249"  # the last page
    assert listed(signed_in.get("/devices?page=x").text)[0] == "fleet-000"
    # Find by id (any case) and by state, across all pages; links keep the search.
    found = signed_in.get("/devices?q=LEET-24&state=never").text
    assert listed(found) == [f"fleet-{i}" for i in range(240, 250)]
    assert "10 of 250 devices" in found and 'value="LEET-24"' in found
    assert listed(signed_in.get("/devices?state=online").text) == []
    assert "No device matches" in signed_in.get("/devices?q=nothing-like-it").text
    bad = signed_in.get("/devices", params={"q": '"><script>x</script>', "state": "evil"})
    assert bad.status_code == 200 and "<script>x</script>" not in bad.text
    print(f"/devices with {n} devices: {took * 1000:.0f} ms")
    fleet = signed_in.get("/map")
    assert fleet.status_code == 200
    assert "secret-token-" not in fleet.text
