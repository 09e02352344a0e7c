"""The web UI in a real browser: Playwright for Python driving Debian's Chromium, headless,
against a real server and influxd. Screenshots of the main pages go to test-artifacts/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, CenterServer

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Headless Chromium, or a failure that says how to get it (never a silent skip)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is not installed: pip install playwright", False)
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's Chromium "
            "(apt-get install -y chromium); `playwright install` cannot download browsers here",
            False,
        )
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    except Exception as e:
        pw.stop()
        pytest.fail(f"Chromium at {CHROMIUM} did not start: {e}", False)
    yield browser
    browser.close()
    pw.stop()


class Problems(list):
    """Console errors and failed requests seen by a page (CSP violations show up here)."""

    def watch(self, page) -> None:
        page.on(
            "console",
            lambda m: self.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.append(f"page error: {e}"))
        page.on(
            "response",
            lambda r: (
                self.append(f"HTTP {r.status} {r.url}")
                if r.status >= 400 and ("/vendor/" in r.url or "/static/" in r.url)
                else None
            ),
        )


def new_page(chromium, viewport: dict, problems: Problems):
    context = chromium.new_context(viewport=viewport, service_workers="block")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems.watch(page)
    return context, page


def sign_in(page, center: CenterServer) -> None:
    page.goto(center.url + "/")
    assert "/login" in page.url
    page.get_by_label("User name").fill(center.influx.user)
    page.get_by_label("Password").fill(center.influx.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(center.url + "/")


def shot(page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def simulate(center: CenterServer, device_id: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "iot_center.cli",
            "--config",
            str(center.config_path),
            "simulate",
            device_id,
            "--backfill",
            "2h",
            "--interval",
            "1m",
            "--quiet",
        ],
        check=True,
        timeout=120,
        cwd=center.workdir,
    )


def chart_points(page) -> dict[str, int]:
    return page.evaluate(
        """() => Object.fromEntries(
            [...document.querySelectorAll('canvas[data-field]')].map(c => [
                c.dataset.field,
                Math.min(Number(c.dataset.points), Chart.getChart(c).data.datasets[0].data.length),
            ]))"""
    )


def wait_loaded(page, range_key: str) -> None:
    page.wait_for_selector(
        f'#dashboard[data-range="{range_key}"]'
        ':is([data-state="ready"], [data-state="empty"], [data-state="error"])'
    )
    state = page.locator("#dashboard").get_attribute("data-state")
    assert state != "error", page.locator("#load-error").inner_text()


def test_a_person_manages_a_device_end_to_end(
    chromium, center: CenterServer, artifacts: Path
) -> None:
    problems = Problems()
    context, page = new_page(chromium, DESKTOP, problems)

    # An unauthenticated visit goes to the sign-in page, and back after signing in.
    page.goto(center.url + "/devices")
    assert re.search(r"/login\?next=/devices$", page.url)
    shot(page, artifacts, "login-desktop")
    page.get_by_label("User name").fill(center.influx.user)
    page.get_by_label("Password").fill(center.influx.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(center.url + "/devices")

    # Register a device through the form; its configuration page masks the token.
    page.get_by_label("Device id").fill("browser-pi")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(re.compile(r"/devices/browser-pi/config$"))
    token_el = page.locator("#token-value")
    assert "•" in token_el.inner_text()
    page.get_by_role("button", name="Reveal").click()
    page.wait_for_selector('#config-root[data-revealed="true"]')
    token = token_el.inner_text()
    assert len(token) > 20
    assert "•" not in token
    assert token in page.locator("#agent-ini").inner_text()
    page.get_by_role("button", name="Hide").click()
    page.wait_for_selector('#config-root[data-revealed="false"]')
    assert token not in page.content()
    shot(page, artifacts, "config-desktop")

    # Listed on the devices page, without its token.
    page.goto(center.url + "/devices")
    row = page.locator('tr[data-device-id="browser-pi"]')
    assert row.count() == 1
    assert token not in page.content()

    # The virtual device writes two hours of data; the dashboard draws it.
    simulate(center, "browser-pi")
    page.goto(center.url + "/devices")
    shot(page, artifacts, "devices-desktop")
    row.get_by_role("link", name="browser-pi", exact=True).click()
    page.wait_for_url(re.compile(r"/devices/browser-pi$"))
    wait_loaded(page, "1h")
    points = chart_points(page)
    assert points["Temperature"] >= 30, points
    assert points["Humidity"] >= 30 and points["Pressure"] >= 30, points
    assert page.locator('[data-tile="Temperature"] [data-value]').inner_text() != "\u2013"
    page.wait_for_selector('#device-map[data-land="loaded"]')
    page.wait_for_timeout(300)
    dash = shot(page, artifacts, "dashboard-desktop")
    readme_shot = REPO / "docs" / "screenshots" / "dashboard.png"
    if not readme_shot.exists() or os.environ.get("UPDATE_SCREENSHOTS") == "1":
        readme_shot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dash, readme_shot)  # committed; refreshed only when asked

    # Change the range: the URL, the active button and the charts follow.
    page.get_by_role("link", name="Last 6 hours").click()
    wait_loaded(page, "6h")
    assert page.url.endswith("?range=6h")
    assert "active" in (page.get_by_role("link", name="Last 6 hours").get_attribute("class") or "")
    assert chart_points(page)["Temperature"] >= 30
    page.get_by_role("link", name="Last 30 days").click()
    wait_loaded(page, "30d")
    assert chart_points(page)["Temperature"] >= 1

    # Fleet map, buckets, about.
    page.goto(center.url + "/map")
    page.wait_for_selector('#fleet-map[data-markers="1"]')
    page.wait_for_selector('#fleet-map[data-land="loaded"]')
    shot(page, artifacts, "map-desktop")
    page.goto(center.url + "/buckets")
    assert page.get_by_text(center.buckets.telemetry).count() >= 1
    shot(page, artifacts, "buckets-desktop")
    page.goto(center.url + "/about")
    shot(page, artifacts, "about-desktop")
    page.goto(center.url + "/")
    shot(page, artifacts, "home-desktop")

    # Phone width: the same pages, collapsed navigation.
    phone_ctx, phone = new_page(chromium, PHONE, problems)
    sign_in(phone, center)
    shot(phone, artifacts, "home-phone")
    phone.get_by_role("button", name="Toggle navigation").click()
    phone.get_by_role("navigation", name="Main").get_by_role("link", name="Devices").click()
    phone.wait_for_url(center.url + "/devices")
    shot(phone, artifacts, "devices-phone")
    phone.goto(center.url + "/devices/browser-pi")
    wait_loaded(phone, "1h")
    phone.wait_for_selector('#device-map[data-land="loaded"]')
    assert chart_points(phone)["Pressure"] >= 30
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide on a {PHONE['width']}px phone"
    shot(phone, artifacts, "dashboard-phone")
    phone.goto(center.url + "/map")
    phone.wait_for_selector('#fleet-map[data-markers="1"]')
    shot(phone, artifacts, "map-phone")
    phone_ctx.close()

    # Remove it, with its data, after the confirmation.
    page.goto(center.url + "/devices")
    page.get_by_role("link", name="Remove browser-pi").click()
    page.get_by_label("Also delete all of its telemetry").check()
    page.get_by_role("button", name="Remove browser-pi").click()
    page.wait_for_url(center.url + "/devices")
    assert page.get_by_text("browser-pi removed").count() == 1
    assert page.locator('tr[data-device-id="browser-pi"]').count() == 0

    # Sign out: the pages need signing in again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(center.url + "/")
    assert "/login" in page.url
    context.close()
    assert not problems, problems


def test_empty_dashboard_and_refused_forms(chromium, center: CenterServer, artifacts) -> None:
    problems = Problems()
    context, page = new_page(chromium, DESKTOP, problems)
    sign_in(page, center)
    center.register("quiet-pi")
    page.goto(center.url + "/devices/quiet-pi?range=5m")
    wait_loaded(page, "5m")
    assert page.locator("#dashboard").get_attribute("data-state") == "empty"
    assert page.locator("#empty-state").is_visible()
    assert page.locator("#device-state").inner_text() == "no data yet"
    assert "quiet-pi has not sent any measurements yet" in page.locator("#empty-title").inner_text()
    shot(page, artifacts, "dashboard-empty-desktop")

    # A form posted without the CSRF token is refused.
    with page.expect_response(re.compile(r"/devices$")) as answer:
        page.evaluate(
            """() => {
                const f = document.createElement('form');
                f.method = 'post';
                f.action = '/devices';
                const i = document.createElement('input');
                i.name = 'device_id';
                i.value = 'forged-pi';
                f.appendChild(i);
                document.body.appendChild(f);
                f.submit();
            }"""
        )
    assert answer.value.status == 400
    page.wait_for_selector('[data-status="400"]')
    assert "CSRF" in page.locator(".error-message").inner_text()
    shot(page, artifacts, "error-400-desktop")
    page.goto(center.url + "/devices")
    assert page.locator('tr[data-device-id="forged-pi"]').count() == 0
    page.goto(center.url + "/no-such-page")
    shot(page, artifacts, "error-404-desktop")
    context.close()
    assert not [p for p in problems if "HTTP 4" not in p and "status of 4" not in p], problems
