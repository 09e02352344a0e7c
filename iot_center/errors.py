"""Every failure answers with a clear message and the right status, never a traceback.

JSON for the API (`{"error": code, "message": text}`); the HTML pages get the same
information in the site's layout (see `pages`)."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from agent.contract import InvalidDeviceId
from iot_center.influx import InfluxRefused, InfluxUnavailable

log = logging.getLogger("iot_center")


class ApiError(Exception):
    """An error the client caused or should know about; becomes a JSON answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def wants_json() -> bool:
    path = request.path
    return (
        path.startswith(("/api/", "/health")) or request.accept_mimetypes.best == "application/json"
    )


def error_response(status: int, code: str, message: str) -> Response | tuple:
    if wants_json():
        resp = jsonify(error=code, message=message)
        resp.status_code = status
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Token realm="iot-center"'
        return resp
    try:
        html = render_template("error.html", status=status, code=code, message=message)
    except Exception:  # templates are part of the UI; the API works without them
        html = f"<h1>{status}</h1><p>{message}</p>"
    return html, status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return error_response(e.status, e.code, e.message)

    @app.errorhandler(InvalidDeviceId)
    def _bad_id(e: InvalidDeviceId):
        return error_response(400, "invalid_device_id", str(e))

    @app.errorhandler(InfluxUnavailable)
    def _influx_down(e: InfluxUnavailable):
        log.warning("503: %s", e)
        return error_response(503, "influxdb_unavailable", str(e))

    @app.errorhandler(InfluxRefused)
    def _influx_refused(e: InfluxRefused):
        log.warning("InfluxDB refused: %s", e)
        return error_response(502, "influxdb_refused", str(e))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        return error_response(e.code or 500, code, e.description or e.name)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Unexpected server error; see the server log.")
