"""The JSON API: device registry, device configuration endpoint, telemetry. See docs/API.md."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from flask import Blueprint, Response, current_app, jsonify, request

from agent import contract
from iot_center.auth import Role, current_caller, note_registry_change, require
from iot_center.errors import ApiError
from iot_center.registry import Device, DeviceExists, DeviceNotFound
from iot_center.telemetry import BadRange, Query

log = logging.getLogger("iot_center.api")
bp = Blueprint("api", __name__, url_prefix="/api")


def services() -> Any:
    return current_app.extensions["iot_center"]


def device_config(device: Device, newly_registered: bool) -> dict[str, Any]:
    """The configuration document a device receives (token included)."""
    s = services().settings
    return contract.DeviceConfig(
        influx_url=s.device_influx_url,
        influx_org=s.INFLUX_ORG,
        influx_token=device.token or "",
        influx_bucket=s.INFLUX_BUCKET,
        id=device.device_id,
        default_lat=s.DEFAULT_LAT,
        default_lon=s.DEFAULT_LON,
        measurement_interval=s.MEASUREMENT_INTERVAL,
        newlyRegistered=newly_registered,
        createdAt=device.created_at,
        updatedAt=device.updated_at,
        serverTime=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        configuration_refresh=s.CONFIGURATION_REFRESH,
        write_endpoint=(
            f"/api/v2/write?org={quote(s.INFLUX_ORG, safe='')}"
            f"&bucket={quote(s.INFLUX_BUCKET, safe='')}&precision=ns"
        ),
    ).to_dict()


def config_response(config: dict[str, Any], status: int = 200) -> Response:
    """JSON by default; YAML for `Accept: text/plain`, as the Node.js IoT Center does."""
    best = request.accept_mimetypes.best_match(["application/json", "text/plain"])
    if (
        best == "text/plain"
        and request.accept_mimetypes["text/plain"] > request.accept_mimetypes["application/json"]
    ):
        resp = Response(yaml.safe_dump(config, sort_keys=False), mimetype="text/plain")
    else:
        resp = jsonify(config)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def json_body(allowed: set[str]) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(
            400, "invalid_body", f"Unknown field(s): {', '.join(sorted(unknown))[:200]}."
        )
    return body


def checked_id(device_id: str) -> str:
    return contract.validate_device_id(device_id)


# --- registry -------------------------------------------------------------------------------


@bp.post("/devices")
@require(Role.ADMIN, Role.ENROLLMENT)
def register_device():
    body = json_body({"deviceId", "replace"})
    device_id = checked_id(body.get("deviceId"))  # type: ignore[arg-type]
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        raise ApiError(400, "invalid_body", "'replace' must be true or false.")
    try:
        device, created = services().registry.register(device_id, replace=replace)
    except DeviceExists:
        raise ApiError(
            409,
            "device_exists",
            f'Device {device_id} is already registered; send "replace": true to issue it a '
            "new token (its old token stops working).",
        ) from None
    note_registry_change()
    log.info(
        "device %s %s by %s",
        device_id,
        "registered" if created else "re-provisioned",
        current_caller().role.value,
    )
    return config_response(device_config(device, newly_registered=created), 201 if created else 200)


@bp.get("/devices")
@require(Role.ADMIN)
def list_devices():
    return jsonify(devices=[d.public() for d in services().registry.list()])


@bp.get("/devices/<device_id>")
@require(Role.ADMIN)
def get_device(device_id: str):
    device = services().registry.get(checked_id(device_id))
    if device is None:
        raise ApiError(404, "not_found", f"Device {device_id} is not registered.")
    seen = services().registry.last_seen(device_id=device_id).get(device_id)
    return jsonify(Device(**{**device.__dict__, "last_seen": seen}).public())


@bp.delete("/devices/<device_id>")
@require(Role.ADMIN)
def delete_device(device_id: str):
    data = request.args.get("data", "false").lower()
    if data not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_parameter", "'data' must be true or false.")
    try:
        services().registry.remove(checked_id(device_id), delete_data=data in ("true", "1"))
        note_registry_change()
    except DeviceNotFound:
        raise ApiError(404, "not_found", f"Device {device_id} is not registered.") from None
    log.info(
        "device %s removed (telemetry %s)",
        device_id,
        "deleted" if data in ("true", "1") else "kept",
    )
    return "", 204


# --- device configuration -------------------------------------------------------------------


@bp.get("/env/<device_id>")
def device_env(device_id: str):
    """The device configuration endpoint (Node.js IoT Center compatible)."""
    checked_id(device_id)
    reg = services().registry
    settings = services().settings
    caller = current_caller()
    if caller.role is Role.ANONYMOUS and not settings.OPEN_REGISTRATION:
        raise ApiError(
            401, "unauthorized", "Missing credential: send 'Authorization: Token <device token>'."
        )
    if caller.role is Role.TOKEN:
        return device_reads_own_config(device_id, caller.token)
    device = reg.get(device_id, with_token=True)
    if caller.role is Role.ADMIN:
        if device is None:
            raise ApiError(404, "not_found", f"Device {device_id} is not registered.")
        return config_response(device_config(device, False))
    if caller.role is Role.ENROLLMENT or (
        caller.role is Role.ANONYMOUS and settings.OPEN_REGISTRATION
    ):
        if device is None:
            device, _ = reg.register(device_id)
            if caller.role is Role.ANONYMOUS:
                log.warning(
                    "OPEN REGISTRATION: device %s registered without a credential", device_id
                )
            else:
                log.info("device %s registered through enrollment", device_id)
            return config_response(device_config(device, True))
        if caller.role is Role.ANONYMOUS:
            log.warning(
                "OPEN REGISTRATION: configuration of %s served without a credential", device_id
            )
            return config_response(device_config(device, False))
        raise ApiError(
            409,
            "device_exists",
            f"Device {device_id} is already registered; POST /api/devices with "
            '"replace": true to re-provision it.',
        )


def device_reads_own_config(device_id: str, token: str) -> Response:
    """A device token: the common case, answered from the worker's recent copy of the record
    when the token matches it; anything else is decided on a fresh read."""
    reg = services().registry
    device = reg.get_recent(device_id)
    if device is not None and reg.token_matches(device, token):
        return config_response(device_config(device, False))
    device = reg.get_fresh(device_id)
    if device is None:
        raise ApiError(
            404, "not_registered", f"Device {device_id} is not registered (was it removed?)."
        )
    if reg.token_matches(device, token):
        return config_response(device_config(device, False))
    if reg.device_for_token(token):
        raise ApiError(403, "forbidden", "This token belongs to another device.")
    raise ApiError(401, "unauthorized", "The token is not valid for this device.")


# --- telemetry ------------------------------------------------------------------------------


@bp.get("/devices/<device_id>/measurements")
@require(Role.ADMIN)
def measurements(device_id: str):
    checked_id(device_id)
    try:
        query = Query.parse(request.args.get("start"), request.args.get("window"))
    except BadRange as e:
        raise ApiError(400, "invalid_range", str(e)) from None
    return jsonify(services().telemetry.series(device_id, query))


@bp.get("/devices/<device_id>/measurements/last")
@require(Role.ADMIN)
def last_measurement(device_id: str):
    return jsonify(services().telemetry.last(checked_id(device_id)))


@bp.get("/openapi.yaml")
def openapi_description():
    """The OpenAPI description of this API (public, like any API reference)."""
    text = (Path(__file__).with_name("openapi.yaml")).read_text(encoding="utf-8")
    return Response(text, mimetype="application/yaml")


@bp.get("/routes")
@require(Role.ADMIN)
def influx_routes():
    """InfluxDB's own API routes, through the client (the tutorial's 'list API endpoints')."""
    return jsonify(routes=services().influx_routes())
