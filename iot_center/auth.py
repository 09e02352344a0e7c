"""Who is calling: an admin, the enrollment credential, a device, or nobody.

All API credentials travel as `Authorization: Token <token>` (InfluxDB's convention; `Bearer`
is accepted too). Browsers are admins through a signed-in session instead.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from enum import Enum
from functools import wraps
from typing import Any

from flask import current_app, request, session

from iot_center.errors import ApiError


class Role(Enum):
    ANONYMOUS = "anonymous"
    ADMIN = "admin"
    ENROLLMENT = "enrollment"
    TOKEN = "token"  # noqa: S105 - some other token: maybe a device's, checked against its record


@dataclass(frozen=True)
class Caller:
    role: Role
    token: str = ""


def presented_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return ""


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def current_caller() -> Caller:
    settings = current_app.extensions["iot_center"].settings
    token = presented_token()
    if token:
        if _same(token, settings.INFLUX_TOKEN):
            return Caller(Role.ADMIN, token)
        if _same(token, settings.ENROLLMENT_TOKEN):
            return Caller(Role.ENROLLMENT, token)
        return Caller(Role.TOKEN, token)
    if session.get("user"):
        return Caller(Role.ADMIN)
    return Caller(Role.ANONYMOUS)


def note_registry_change() -> None:
    """Stamp a signed-in user's session with the time they changed the registry, so that no
    worker shows them a device list read before their change (see `DeviceRegistry.list`)."""
    if session.get("user"):
        session["registry_changed"] = time.time()


def require(*roles: Role):
    """Decorator: the caller must hold one of `roles`, else 401 (no credential) or 403."""

    def decorate(view: Any) -> Any:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller = current_caller()
            if caller.role not in roles:
                if caller.role is Role.ANONYMOUS:
                    raise ApiError(
                        401,
                        "unauthorized",
                        "Missing credential: send 'Authorization: Token <token>'.",
                    )
                if caller.role is Role.TOKEN:
                    raise ApiError(
                        401, "unauthorized", "The token is not valid for this operation."
                    )
                raise ApiError(403, "forbidden", "This credential may not do that.")
            return view(*args, **kwargs)

        return wrapper

    return decorate
