"""The pages. Each one reads InfluxDB through the services the app factory built; lists are
one query each (never one per device), read at most every LIST_CACHE_SECONDS per worker, and
the devices table is shown a page at a time, so a fleet of thousands stays quick to browse."""

from __future__ import annotations

import logging
import platform
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import flask
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)

from agent import contract
from iot_center import __version__
from iot_center.auth import note_registry_change
from iot_center.influx import InfluxUnavailable, translate_errors
from iot_center.pages import assets, security
from iot_center.registry import Device, DeviceExists, DeviceNotFound

log = logging.getLogger("iot_center.pages")
bp = Blueprint("pages", __name__)

PUBLIC_ENDPOINTS = frozenset({"pages.login", "pages.vendor"})
RANGES = {  # range picker: query value -> (Flux start, label)
    "5m": ("-5m", "5 minutes"),
    "1h": ("-1h", "1 hour"),
    "6h": ("-6h", "6 hours"),
    "24h": ("-24h", "24 hours"),
    "7d": ("-7d", "7 days"),
    "30d": ("-30d", "30 days"),
}
DEFAULT_RANGE = "1h"

LOCATIONS_FLUX = """
from(bucket: p_bucket)
  |> range(start: p_since)
  |> filter(fn: (r) => r._measurement == p_measurement and (r._field == "Lat" or r._field == "Lon"))
  |> last()
  |> keep(columns: ["_time", "_field", "_value", "clientId"])
"""

throttle = security.LoginThrottle()
_missing_logged: set[str] = set()


def services() -> Any:
    return current_app.extensions["iot_center"]


# --- every page: sign-in and CSRF -----------------------------------------------------------


@bp.before_request
def _guard():
    if request.method == "POST" and not security.csrf_valid(request.form.get(security.CSRF_FIELD)):
        log.warning("refused %s %s: missing or wrong CSRF token", request.method, request.path)
        abort(
            400,
            "This form was not sent by this page or has expired (no valid CSRF token). "
            "Reload the page and try again.",
        )
    if request.endpoint not in PUBLIC_ENDPOINTS and not session.get("user"):
        if request.method == "GET":
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        return redirect(url_for("pages.login"))
    return None


def safe_next(target: str | None) -> str:
    """Only a path on this site (never another host) is a place to go after signing in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("pages.home")


# --- helpers ----------------------------------------------------------------------------------


def offline_after() -> timedelta:
    s = services().settings
    return timedelta(seconds=s.OFFLINE_AFTER_INTERVALS * s.MEASUREMENT_INTERVAL)


def state_of(last_seen: datetime | None, now: datetime) -> str:
    if last_seen is None:
        return "never"
    return "online" if now - last_seen <= offline_after() else "offline"


DEVICES_PER_PAGE = 100


def registered_devices() -> list[Device]:
    """The device list, from this worker's recent copy unless the signed-in user changed the
    registry after that copy was read (see `note_registry_change`)."""
    return services().registry.list(
        max_age=services().settings.LIST_CACHE_SECONDS,
        changed_since=float(session.get("registry_changed", 0.0)),
    )


def device_rows(devices: list[Device]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "id": d.device_id,
            "created_at": parse_time(d.created_at),
            "last_seen": d.last_seen,
            "state": state_of(d.last_seen, now),
        }
        for d in devices
    ]


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    out = {"total": len(rows), "online": 0, "offline": 0, "never": 0}
    for r in rows:
        out[r["state"]] += 1
    return out


def registered_or_404(device_id: str) -> Device:
    contract.validate_device_id(device_id)
    device = services().registry.get(device_id)
    if device is None:
        abort(404, f"No device {device_id} is registered. It may have been removed.")
    return device


# --- sign-in ----------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = request.values.get("next", "")
    if request.method == "GET":
        if session.get("user"):
            return redirect(safe_next(next_url))
        return render_template("login.html", next_url=next_url, username="")
    username = request.form.get("username", "").strip()[:256]
    password = request.form.get("password", "")[:1024]
    keys = [f"user:{username.lower()}", f"ip:{request.remote_addr}"]

    def again(message: str, status: int, **headers: str):
        resp = flask.make_response(
            render_template("login.html", next_url=next_url, username=username, error=message),
            status,
        )
        resp.headers.update(headers)
        return resp

    wait = throttle.retry_after(keys)
    if wait > 0:
        seconds = max(1, round(wait + 0.49))
        return again(
            f"Too many failed sign-ins. Try again in {seconds} second{'s' * (seconds != 1)}.",
            429,
            **{"Retry-After": str(seconds)},
        )
    try:
        ok = security.check_credentials(services().settings, username, password)
    except security.SignInUnavailable as e:
        log.warning("sign-in of %r not checked: %s", username, e)
        return again(f"Cannot check the password right now: {e}. Try again shortly.", 503)
    if not ok:
        throttle.failed(keys)
        log.warning("failed sign-in for %r from %s", username, request.remote_addr)
        time.sleep(security.FAILURE_DELAY)
        return again("Wrong user name or password.", 401)
    throttle.succeeded(keys)
    session.clear()  # a fresh session (and CSRF token) for the signed-in user
    session["user"] = username
    session.permanent = True
    security.csrf_token()
    log.info("%r signed in from %s", username, request.remote_addr)
    return redirect(safe_next(next_url))


@bp.post("/logout")
def logout():
    user = session.get("user")
    session.clear()
    log.info("%r signed out", user)
    flash("You are signed out.", "info")
    return redirect(url_for("pages.login"))


# --- home -----------------------------------------------------------------------------------


@bp.get("/")
def home():
    influx = services().influx
    ok, message, version = influx.health()
    rows: list[dict[str, Any]] = []
    problem = ""
    if ok:
        try:
            rows = device_rows(registered_devices())
        except InfluxUnavailable as e:
            problem = str(e)
    return render_template(
        "home.html",
        now=datetime.now(UTC),
        health={"ok": ok, "message": message, "version": version},
        counts=counts(rows),
        problem=problem,
        settings=services().settings,
        offline_after=offline_after(),
    )


# --- devices --------------------------------------------------------------------------------


def render_devices(status: int = 200, form_error: str = "", form_value: str = ""):
    rows = device_rows(registered_devices())
    query = request.args.get("q", "").strip()[:64]
    state = request.args.get("state", "")
    if state not in ("online", "offline", "never"):
        state = ""
    shown = [
        r
        for r in rows
        if (not query or query.lower() in r["id"].lower()) and (not state or r["state"] == state)
    ]
    pages = max(1, -(-len(shown) // DEVICES_PER_PAGE))
    try:
        page = min(max(1, int(request.args.get("page", "1"))), pages)
    except ValueError:
        page = 1
    first = (page - 1) * DEVICES_PER_PAGE
    return (
        render_template(
            "devices.html",
            rows=shown[first : first + DEVICES_PER_PAGE],
            counts=counts(rows),
            matching=len(shown),
            first=first,
            page=page,
            pages=pages,
            query=query,
            state=state,
            form_error=form_error,
            form_value=form_value,
            offline_after=offline_after(),
            rule=contract.DEVICE_ID_RULE,
        ),
        status,
    )


@bp.get("/devices")
def devices():
    return render_devices()


@bp.post("/devices")
def register():
    device_id = request.form.get("device_id", "").strip()
    try:
        contract.validate_device_id(device_id)
    except contract.InvalidDeviceId as e:
        return render_devices(400, str(e)[:300].capitalize(), device_id[:100])
    try:
        services().registry.register(device_id)
    except DeviceExists:
        return render_devices(
            409,
            f"Device {device_id} is already registered. Open its configuration, or remove it "
            "first to register it again.",
            device_id,
        )
    note_registry_change()
    log.info("device %s registered by %r (web)", device_id, session.get("user"))
    flash(
        f"Device {device_id} registered. Reveal its token below to configure the device.",
        "success",
    )
    return redirect(url_for("pages.device_config", device_id=device_id))


@bp.get("/devices/<device_id>/remove")
def confirm_remove(device_id: str):
    device = registered_or_404(device_id)
    return render_template("remove.html", device=device)


@bp.post("/devices/<device_id>/remove")
def remove(device_id: str):
    contract.validate_device_id(device_id)
    delete_data = request.form.get("delete_data") in ("on", "true", "1")
    try:
        services().registry.remove(device_id, delete_data=delete_data)
    except DeviceNotFound:
        abort(404, f"No device {device_id} is registered. It may have been removed already.")
    note_registry_change()
    log.info(
        "device %s removed by %r (web; telemetry %s)",
        device_id,
        session.get("user"),
        "deleted" if delete_data else "kept",
    )
    flash(
        f"Device {device_id} removed; its token no longer works"
        + (" and its data was deleted." if delete_data else ". Its data was kept."),
        "success",
    )
    return redirect(url_for("pages.devices"))


@bp.get("/devices/<device_id>/config")
def device_config(device_id: str):
    from iot_center.api import device_config as config_document

    device = registered_or_404(device_id)
    config = config_document(device, newly_registered=False)  # no token: masked below
    config["influx_token"] = ""
    return render_template(
        "config.html",
        device=device,
        config=config,
        center_url=request.host_url.rstrip("/"),
    )


@bp.get("/devices/<device_id>")
def dashboard(device_id: str):
    device = registered_or_404(device_id)
    selected = request.args.get("range", DEFAULT_RANGE)
    if selected not in RANGES:
        selected = DEFAULT_RANGE
    s = services().settings
    return render_template(
        "dashboard.html",
        device=device,
        ranges=RANGES,
        selected=selected,
        settings=s,
        offline_after=offline_after(),
    )


# --- fleet map ------------------------------------------------------------------------------


def fleet() -> list[dict[str, Any]]:
    """Every registered device with its last known position: three queries in all."""
    s = services().settings
    devices = registered_devices()
    tables = services().influx.query(
        LOCATIONS_FLUX,
        {
            "bucket": s.INFLUX_BUCKET,
            "since": timedelta(days=-s.TELEMETRY_RETENTION_DAYS),
            "measurement": contract.MEASUREMENT,
        },
        "read the devices' last positions",
    )
    where: dict[str, dict[str, float]] = {}
    for t in tables:
        for rec in t.records:
            cid = rec.values.get("clientId")
            if cid:
                where.setdefault(cid, {})[rec.get_field()] = float(rec.get_value())
    now = datetime.now(UTC)
    out = []
    for d in devices:
        pos = where.get(d.device_id, {})
        out.append(
            {
                "id": d.device_id,
                "lat": pos.get("Lat"),
                "lon": pos.get("Lon"),
                "state": state_of(d.last_seen, now),
                "lastSeen": d.last_seen.isoformat().replace("+00:00", "Z") if d.last_seen else None,
                "url": url_for("pages.dashboard", device_id=d.device_id),
            }
        )
    return out


@bp.get("/map")
def fleet_map():
    devices = fleet()
    placed = [d for d in devices if d["lat"] is not None and d["lon"] is not None]
    return render_template(
        "map.html",
        devices=devices,
        placed=placed,
        unplaced=[d for d in devices if d not in placed],
        counts=counts(devices),
        settings=services().settings,
    )


# --- buckets, about ---------------------------------------------------------------------------


@bp.get("/buckets")
def buckets():
    s = services().settings
    with translate_errors("list the buckets"):
        found = services().influx.client.buckets_api().find_buckets(org=s.INFLUX_ORG, limit=100)
    rows = []
    for b in sorted(found.buckets or [], key=lambda b: (b.type != "user", b.name)):
        every = b.retention_rules[0].every_seconds if b.retention_rules else 0
        rows.append(
            {
                "name": b.name,
                "id": b.id,
                "type": b.type,
                "retention": humanize_seconds(every) if every else "forever",
                "description": b.description or "",
                "created": b.created_at,
                "role": "telemetry"
                if b.name == s.INFLUX_BUCKET
                else "devices"
                if b.name == s.INFLUX_BUCKET_AUTH
                else "",
            }
        )
    return render_template("buckets.html", rows=rows, settings=s)


def humanize_seconds(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' * (n != 1)}"
    return f"{seconds} s"


def flatten_routes(routes: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(routes, dict):
        for key, value in routes.items():
            name = prefix if key == "_self" else f"{prefix}.{key}" if prefix else key
            out += flatten_routes(value, name)
    elif isinstance(routes, str):
        out.append((prefix, routes))
    return out


@bp.get("/about")
def about():
    s = services().settings
    ok, message, version = services().influx.health()
    routes: list[tuple[str, str]] = []
    routes_error = ""
    if ok:
        try:
            routes = sorted(flatten_routes(services().influx_routes()), key=lambda r: r[1])
        except Exception as e:  # the page still shows the rest
            log.warning("could not list InfluxDB routes: %s", e)
            routes_error = str(e)
    return render_template(
        "about.html",
        version=__version__,
        health={"ok": ok, "message": message, "version": version},
        settings=s,
        routes=routes,
        routes_error=routes_error,
        python=platform.python_version(),
        flask_version=_version("flask"),
        influx_client_version=_version("influxdb-client"),
        offline_after=offline_after(),
    )


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# --- front-end packages ----------------------------------------------------------------------


@bp.get("/vendor/<path:name>")
def vendor(name: str):
    if name not in assets.VENDOR_FILES:
        abort(404, "No such front-end file.")
    directory = current_app.extensions["iot_center_assets"]["dir"]
    if not (directory / name).is_file():
        if name not in _missing_logged:
            _missing_logged.add(name)
            log.error("front-end file missing: %s (run `npm ci`, or set IOT_CENTER_ASSETS)", name)
        return Response(f"missing front-end file: {name}\n", 404, mimetype="text/plain")
    return send_from_directory(directory, name, max_age=86400)


# --- template filters -------------------------------------------------------------------------


@bp.app_template_filter("ago")
def ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@bp.app_template_filter("iso")
def iso(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


@bp.app_template_filter("utc")
def utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


@bp.app_template_filter("duration")
def duration(value: timedelta) -> str:
    return humanize_seconds(int(value.total_seconds()))
