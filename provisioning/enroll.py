"""Exchange the shared enrollment token for this device's own credential.

`POST {url}/api/devices` with `{"deviceId": id}` and `Authorization: Token <enrollment token>`:
- 201: registered; the answer is the device configuration, with the device token (this once);
- 409: the id is already registered (a re-flashed Pi, or an earlier run that did not finish):
  ask again with `"replace": true`, which issues a new token and revokes the old one (200);
- 401/403: wrong enrollment token; 400: the server refused the id (its message is shown);
- network errors, 429 and 5xx (503: the server cannot reach InfluxDB): wait and try again.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from agent.contract import DeviceConfig, InvalidDeviceConfig
from provisioning.errors import (
    EnrollmentTokenError,
    IdRefusedError,
    NetworkError,
    ServerError,
)
from provisioning.progress import Progress
from provisioning.retry import Backoff, Deadline, TryAgain, retry_until

REGISTER_PATH = "/api/devices"
HTTP_TIMEOUT = (5.0, 30.0)  # connect, read


@dataclass(frozen=True)
class Enrollment:
    config: DeviceConfig
    replaced: bool  # True when an existing registration was re-provisioned (new token)

    @property
    def token(self) -> str:
        return self.config.influx_token


def _message(response: requests.Response) -> str:
    """The server's own words: the `message` of its JSON error, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    text = response.text.strip()
    return text[:200] if text else f"HTTP {response.status_code}"


def register_once(
    session: requests.Session, url: str, device_id: str, token: str, *, replace: bool
) -> requests.Response:
    """One POST; raises TryAgain for causes that waiting can fix, else returns the answer."""
    body: dict[str, object] = {"deviceId": device_id}
    if replace:
        body["replace"] = True
    try:
        response = session.post(
            url + REGISTER_PATH,
            json=body,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
    except requests.ConnectionError as error:
        raise TryAgain(f"cannot reach {url} ({_short(error)})", NetworkError()) from error
    except requests.Timeout as error:
        raise TryAgain(f"{url} did not answer in time", NetworkError()) from error
    except requests.RequestException as error:
        raise TryAgain(f"request to {url} failed ({_short(error)})", NetworkError()) from error
    status = response.status_code
    if status == 429 or status >= 500:
        raise TryAgain(
            f"IoT Center answered {status}: {_message(response)}",
            ServerError(f"IoT Center kept answering {status}"),
        )
    return response


def _short(error: BaseException) -> str:
    """The innermost reason of a requests error, without the urllib3 object dump."""
    reason: BaseException = error
    while True:
        inner = reason.args[0] if reason.args and isinstance(reason.args[0], Exception) else None
        inner = getattr(reason, "reason", None) or inner
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = str(reason)
    # urllib3 puts "<connection object at 0x...>: " before the useful part.
    return text.split(">: ", 1)[-1] if ">: " in text else text


def _config(response: requests.Response, url: str) -> DeviceConfig:
    try:
        return DeviceConfig.from_dict(response.json())
    except ValueError as error:  # includes InvalidDeviceConfig and JSON errors
        detail = str(error) if isinstance(error, InvalidDeviceConfig) else "not JSON"
        raise ServerError(
            f"{url}{REGISTER_PATH} answered {response.status_code} with an unusable device "
            f"configuration ({detail}); is this an IoT Center for Python server?"
        ) from error


def _final(response: requests.Response, url: str, device_id: str) -> Enrollment | None:
    """Turn a non-transient answer into an Enrollment, an error, or None for 409."""
    status = response.status_code
    if status in (200, 201):
        return Enrollment(_config(response, url), replaced=status == 200)
    if status == 409:
        return None
    if status in (401, 403):
        raise EnrollmentTokenError(
            f"{url} refused it ({status}: {_message(response)}); "
            "check enrollment_token in the boot config against the server's ENROLLMENT_TOKEN"
        )
    if status == 400:
        raise IdRefusedError(_message(response) + f" (device id {device_id!r})")
    if status == 404:
        raise ServerError(f"{url}{REGISTER_PATH} does not exist (404); is the url right?")
    raise ServerError(f"{url}{REGISTER_PATH} answered {status}: {_message(response)}")


def enroll(
    url: str,
    device_id: str,
    enrollment_token: str,
    *,
    deadline: Deadline,
    progress: Progress,
    backoff: Backoff = Backoff(),  # noqa: B008
    session: requests.Session | None = None,
) -> Enrollment:
    """Register `device_id` (re-provisioning it if it exists), retrying until `deadline`."""
    own_session = session is None
    http = session or requests.Session()
    try:
        progress.say(f"registering device {device_id!r} with {url}")

        def attempt(replace: bool) -> Enrollment | None:
            return _final(
                register_once(http, url, device_id, enrollment_token, replace=replace),
                url,
                device_id,
            )

        result = retry_until(
            lambda: attempt(False),
            what="registration",
            deadline=deadline,
            progress=progress,
            backoff=backoff,
        )
        if result is None:
            progress.say(
                f"device {device_id!r} is already registered (a re-flashed device?): "
                "re-provisioning it; its old token will be revoked"
            )
            result = retry_until(
                lambda: attempt(True),
                what="re-provisioning",
                deadline=deadline,
                progress=progress,
                backoff=backoff,
            )
            if result is None:
                raise ServerError(f"{url} answered 409 even with replace=true")
        if result.config.id != device_id:
            raise ServerError(
                f"asked to register {device_id!r} but the server answered for {result.config.id!r}"
            )
        verb = "re-provisioned (new token)" if result.replaced else "registered"
        progress.say(f"device {device_id!r} {verb}; telemetry goes to {result.config.influx_url}")
        return result
    finally:
        if own_session:
            http.close()
