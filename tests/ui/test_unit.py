"""Pieces of the UI without InfluxDB: the error page for an unexpected failure, the login
backoff arithmetic, the redirect target check, the asset allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_center.pages import assets
from iot_center.pages.security import LoginThrottle
from iot_center.settings import Settings


@pytest.fixture
def app():
    from iot_center.app import create_app

    settings = Settings(
        INFLUX_URL="http://127.0.0.1:9",
        INFLUX_TOKEN="t",
        INFLUX_ORG="o",
        SECRET_KEY="unit-test-secret-key-123",
    )
    app = create_app(settings=settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    return app


def test_unexpected_error_is_a_friendly_500_without_traceback(app) -> None:
    client = app.test_client()
    with client.session_transaction() as s:
        s["user"] = "tester"
    r = client.get("/boom")
    assert r.status_code == 500
    html = r.get_data(as_text=True)
    assert "Something went wrong" in html
    assert 'data-status="500"' in html
    assert "secret internals" not in html
    assert "Traceback" not in html


def test_signed_in_api_posts_need_the_csrf_header(app) -> None:
    client = app.test_client()
    with client.session_transaction() as s:
        s["user"] = "tester"
        s["csrf"] = "known"
    r = client.post("/api/devices", json={"deviceId": "x"})
    assert r.status_code == 403
    assert r.get_json()["error"] == "csrf_failed"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/devices", "/devices"),
        ("/devices/x?range=1h", "/devices/x?range=1h"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ],
)
def test_next_stays_on_the_site(app, target: str, expected: str) -> None:
    from iot_center.pages.views import safe_next

    with app.test_request_context("/"):
        assert safe_next(target) == expected


def test_backoff_doubles_per_failure_and_resets_on_success() -> None:
    t = LoginThrottle()
    keys = ["user:a", "ip:1"]
    assert t.retry_after(keys, now=0) == 0
    t.failed(keys, now=100)
    assert t.retry_after(keys, now=100) == pytest.approx(1)
    t.failed(keys, now=101)
    t.failed(keys, now=103)
    assert t.retry_after(keys, now=103) == pytest.approx(4)
    assert t.retry_after(["ip:1"], now=106) == pytest.approx(1)
    assert t.retry_after(keys, now=108) == 0
    for i in range(20):
        t.failed(["user:b"], now=200 + i)
    assert t.retry_after(["user:b"], now=219) == pytest.approx(300)
    t.succeeded(keys)
    assert t.retry_after(keys, now=108) == 0


def test_backoff_memory_is_bounded() -> None:
    t = LoginThrottle(max_keys=100)
    for i in range(1000):
        t.failed([f"user:{i}"], now=float(i))
    assert len(t._records) <= 100


def test_allow_list_points_into_installed_packages(tmp_path: Path) -> None:
    root = assets.REPO / "node_modules"
    if not root.is_dir():
        pytest.fail("node_modules is missing: run `npm ci` in the repository")
    assert assets.missing_assets(root) == []
    assert set(assets.missing_assets(tmp_path)) == set(assets.VENDOR_FILES)
    assert all(".." not in name and not name.startswith("/") for name in assets.VENDOR_FILES)
