"""The web UI: Jinja pages on top of the JSON API, for a signed-in person.

`init_app(app)` (called by the app factory) registers the pages blueprint, the `/vendor/`
route for the npm front-end packages, the template helpers, and the CSRF check for browser
sessions that change things through the JSON API. See docs/UI.md.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, request, session

from iot_center import __version__
from iot_center.auth import presented_token
from iot_center.errors import error_response
from iot_center.pages import assets, security
from iot_center.pages.views import bp

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def init_app(app: Flask) -> None:
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=12))
    directory = assets.assets_dir()
    app.extensions["iot_center_assets"] = {
        "dir": directory,
        "missing": assets.check_assets(directory),
    }
    app.register_blueprint(bp)

    @app.context_processor
    def _globals():
        from flask import url_for

        def vendor(name: str) -> str:
            return url_for("pages.vendor", name=assets.VENDOR[name])

        return {
            "csrf_token": security.csrf_token,
            "csrf_field": security.CSRF_FIELD,
            "vendor": vendor,
            "app_version": __version__,
            "assets_missing": bool(app.extensions["iot_center_assets"]["missing"]),
            "signed_in_user": session.get("user"),
        }

    @app.before_request
    def _api_csrf():
        """A browser session (not a Token header) that changes state must prove its origin."""
        if (
            request.path.startswith("/api/")
            and request.method not in SAFE_METHODS
            and not presented_token()
            and session.get("user")
            and not security.csrf_valid(request.headers.get(security.CSRF_HEADER))
        ):
            return error_response(
                403,
                "csrf_failed",
                f"A signed-in browser must send the page's CSRF token in {security.CSRF_HEADER}.",
            )
        return None
