"""The Flask app factory (gunicorn: `iot_center:create_app()`)."""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from typing import Any

from flask import Flask, jsonify

from iot_center.errors import register_error_handlers
from iot_center.influx import Influx, translate_errors
from iot_center.registry import DeviceRegistry
from iot_center.settings import Settings
from iot_center.telemetry import Telemetry

log = logging.getLogger("iot_center")


@dataclass
class Services:
    """What the views need, built once per process and kept on the app (no module globals)."""

    settings: Settings
    influx: Influx
    registry: DeviceRegistry
    telemetry: Telemetry

    def influx_routes(self) -> dict[str, Any]:
        from influxdb_client.service.routes_service import RoutesService

        with translate_errors("list its API routes"):
            routes = RoutesService(self.influx.client.api_client).get_routes()
        return {k: v for k, v in routes.to_dict().items() if v}


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
}


def create_app(
    config: str | os.PathLike[str] | None = None, settings: Settings | None = None
) -> Flask:
    """Build the app from `settings`, or from `config` (a config.ini path) and the environment."""
    settings = settings or Settings.load(config)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  (keep the contract's field order)
    influx = Influx(settings)
    atexit.register(influx.close)
    app.extensions["iot_center"] = Services(
        settings=settings,
        influx=influx,
        registry=DeviceRegistry(influx),
        telemetry=Telemetry(influx),
    )
    if settings.OPEN_REGISTRATION:
        log.warning(
            "OPEN REGISTRATION IS ON: any client can register a device and read an unknown "
            "device's configuration, token included, without a credential. Use only for old "
            "firmware on a trusted network."
        )

    from iot_center import api

    app.register_blueprint(api.bp)
    register_error_handlers(app)

    try:
        from iot_center import pages
    except ImportError:  # the pages arrive with the web UI
        pages = None  # type: ignore[assignment]
    if pages is not None:
        pages.init_app(app)

    @app.get("/health")
    def health():
        ok, message, version = influx.health()
        body = {
            "status": "pass" if ok else "fail",
            "influxdb": {
                "status": "pass" if ok else "fail",
                "message": message,
                "version": version,
            },
        }
        return jsonify(body), 200 if ok else 503

    @app.after_request
    def _headers(resp):
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    return app
