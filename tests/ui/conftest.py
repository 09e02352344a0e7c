"""Helpers for the web UI tests: a requests.Session that signs in through the login form."""

from __future__ import annotations

import re

import pytest
import requests

from tests.conftest import CenterServer

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


class Browser(requests.Session):
    """A requests session bound to one IoT Center, with form helpers."""

    def __init__(self, center: CenterServer) -> None:
        super().__init__()
        self.center = center

    def url(self, path: str) -> str:
        return self.center.url + path

    def get(self, path: str, **kw):  # type: ignore[override]
        kw.setdefault("timeout", 30)
        return super().get(self.url(path) if path.startswith("/") else path, **kw)

    def post_form(self, path: str, data: dict, page: str | None = None, **kw):
        """POST `data` to `path` with the CSRF token taken from `page` (default: `path`)."""
        html = self.get(page or path).text
        kw.setdefault("timeout", 30)
        return self.post(self.url(path), data={"csrf_token": csrf_of(html), **data}, **kw)

    def login(self, user: str | None = None, password: str | None = None, **kw):
        return self.post_form(
            "/login",
            {
                "username": user or self.center.influx.user,
                "password": password or self.center.influx.password,
                **kw,
            },
            allow_redirects=False,
        )


@pytest.fixture
def browser(center: CenterServer) -> Browser:
    """Not signed in."""
    return Browser(center)


@pytest.fixture
def signed_in(center: CenterServer) -> Browser:
    b = Browser(center)
    r = b.login()
    assert r.status_code == 302, r.text[:500]
    return b
