"""The IoT Center JSON API against a real server process and a real influxd."""

from __future__ import annotations

import time

import pytest
import requests
import yaml

from agent.contract import CONFIG_FIELDS, DeviceConfig
from tests.conftest import CenterServer, flux_rows

pytestmark = pytest.mark.integration

INJECTIONS = [
    'dev"',
    "dev\nx",
    'x") |> drop(columns: ["_value"]) |> yield(name: "y',
    "dev 1",
    "dev,1",
    "dev=1",
    "a" * 1000,
    "",
    "dév",
    "dev/../x",
]


def tok(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def write_lp(
    center: CenterServer, token: str, lines: str, bucket: str | None = None
) -> requests.Response:
    return requests.post(
        f"{center.influx.url}/api/v2/write",
        params={
            "org": center.influx.org,
            "bucket": bucket or center.buckets.telemetry,
            "precision": "s",
        },
        data=lines,
        headers=tok(token),
        timeout=10,
    )


def test_register_gives_a_complete_configuration_once(center: CenterServer) -> None:
    cfg = center.register("pi-kitchen")
    assert list(cfg) == list(CONFIG_FIELDS)
    parsed = DeviceConfig.from_dict(cfg)
    assert parsed.id == "pi-kitchen"
    assert parsed.newlyRegistered is True
    assert parsed.influx_bucket == center.buckets.telemetry
    assert parsed.influx_url == center.influx.url
    assert parsed.measurement_interval == 1
    assert len(parsed.influx_token) > 20
    assert "bucket=" + center.buckets.telemetry in parsed.write_endpoint

    again = requests.post(
        f"{center.url}/api/devices",
        json={"deviceId": "pi-kitchen"},
        headers=center.admin(),
        timeout=10,
    )
    assert again.status_code == 409
    assert "already registered" in again.json()["message"]


def test_device_reads_its_own_config_in_json_and_yaml(center: CenterServer) -> None:
    cfg = center.register("pi-1")
    r = requests.get(f"{center.url}/api/env/pi-1", headers=tok(cfg["influx_token"]), timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["influx_token"] == cfg["influx_token"]
    assert body["newlyRegistered"] is False
    assert r.headers["Cache-Control"] == "no-store"
    y = requests.get(
        f"{center.url}/api/env/pi-1",
        headers={**tok(cfg["influx_token"]), "Accept": "text/plain"},
        timeout=10,
    )
    assert y.headers["Content-Type"].startswith("text/plain")
    assert yaml.safe_load(y.text)["influx_token"] == cfg["influx_token"]


def test_credentials_are_checked_on_the_config_endpoint(center: CenterServer) -> None:
    a = center.register("dev-a")
    center.register("dev-b")
    assert requests.get(f"{center.url}/api/env/dev-b", timeout=10).status_code == 401
    assert (
        requests.get(f"{center.url}/api/env/dev-b", headers=tok("nonsense"), timeout=10).status_code
        == 401
    )
    other = requests.get(f"{center.url}/api/env/dev-b", headers=tok(a["influx_token"]), timeout=10)
    assert other.status_code == 403
    assert "another device" in other.json()["message"]
    assert a["influx_token"] not in other.text
    # The admin sees any device's configuration.
    admin = requests.get(f"{center.url}/api/env/dev-b", headers=center.admin(), timeout=10)
    assert admin.status_code == 200 and admin.json()["id"] == "dev-b"


def test_enrollment_registers_unknown_ids_on_get_but_reads_nothing(center: CenterServer) -> None:
    r = requests.get(
        f"{center.url}/api/env/new-pi", headers=tok(center.enrollment_token), timeout=10
    )
    assert r.status_code == 200
    assert r.json()["newlyRegistered"] is True
    again = requests.get(
        f"{center.url}/api/env/new-pi", headers=tok(center.enrollment_token), timeout=10
    )
    assert again.status_code == 409
    for path in ("/api/devices", "/api/devices/new-pi", "/api/devices/new-pi/measurements"):
        assert (
            requests.get(
                center.url + path, headers=tok(center.enrollment_token), timeout=10
            ).status_code
            == 403
        )


def test_device_token_writes_telemetry_and_nothing_else(center: CenterServer) -> None:
    cfg = center.register("pi-scope")
    token = cfg["influx_token"]
    now = int(time.time())
    ok = write_lp(
        center,
        token,
        f"environment,clientId=pi-scope Temperature=21.5,Humidity=40,Pressure=1000 {now}",
    )
    assert ok.status_code == 204, ok.text
    # It cannot write the devices bucket, the default bucket, or read anything.
    assert write_lp(
        center, token, f'deviceauth,deviceId=evil key="x" {now}', center.buckets.devices
    ).status_code in (401, 403, 404)
    assert write_lp(
        center, token, f"environment,clientId=x Temperature=1 {now}", "iot_center"
    ).status_code in (401, 403, 404)
    for bucket in (center.buckets.devices, center.buckets.telemetry):
        q = requests.post(
            f"{center.influx.url}/api/v2/query",
            params={"org": center.influx.org},
            json={"query": f'from(bucket: "{bucket}") |> range(start: 0)', "type": "flux"},
            headers=tok(token),
            timeout=10,
        )
        assert q.status_code in (401, 403, 404), q.text
    auths = requests.get(
        f"{center.influx.url}/api/v2/authorizations", headers=tok(token), timeout=10
    )
    assert auths.status_code in (401, 403) or auths.json().get("authorizations") == []
    # The authorization itself: exactly one permission, write on the telemetry bucket by id.
    listed = requests.get(
        f"{center.influx.url}/api/v2/authorizations", headers=center.admin(), timeout=10
    ).json()
    mine = [a for a in listed["authorizations"] if a["description"] == "IoT Center: pi-scope"]
    assert len(mine) == 1
    perms = mine[0]["permissions"]
    assert perms == [
        {
            "action": "write",
            "resource": {
                **perms[0]["resource"],
                "type": "buckets",
                "id": center.buckets.telemetry_id,
            },
        }
    ]
    # And the point is there, readable through the API.
    last = requests.get(
        f"{center.url}/api/devices/pi-scope/measurements/last", headers=center.admin(), timeout=10
    )
    assert last.json()["fields"]["Temperature"]["value"] == 21.5


def test_list_and_get_never_show_tokens_and_know_last_seen(center: CenterServer) -> None:
    a = center.register("pi-a")
    b = center.register("pi-b")
    write_lp(
        center, a["influx_token"], f"environment,clientId=pi-a Temperature=20 {int(time.time())}"
    )
    r = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=10)
    assert r.status_code == 200
    devices = {d["deviceId"]: d for d in r.json()["devices"]}
    assert set(devices) == {"pi-a", "pi-b"}
    assert devices["pi-a"]["lastSeen"] is not None
    assert devices["pi-b"]["lastSeen"] is None
    assert devices["pi-a"]["createdAt"].endswith("Z")
    for t in (a["influx_token"], b["influx_token"]):
        assert t not in r.text
    one = requests.get(f"{center.url}/api/devices/pi-a", headers=center.admin(), timeout=10)
    assert one.status_code == 200 and a["influx_token"] not in one.text
    assert (
        requests.get(
            f"{center.url}/api/devices/nope", headers=center.admin(), timeout=10
        ).status_code
        == 404
    )
    for t in (a["influx_token"], b["influx_token"]):
        assert t not in center.log()


def test_remove_revokes_the_token_and_optionally_the_data(center: CenterServer) -> None:
    keep = center.register("pi-keep")
    drop = center.register("pi-drop")
    now = int(time.time())
    for cfg in (keep, drop):
        assert (
            write_lp(
                center,
                cfg["influx_token"],
                f"environment,clientId={cfg['id']} Temperature=20 {now}",
            ).status_code
            == 204
        )

    r = requests.delete(f"{center.url}/api/devices/pi-keep", headers=center.admin(), timeout=10)
    assert r.status_code == 204
    r = requests.delete(
        f"{center.url}/api/devices/pi-drop?data=true", headers=center.admin(), timeout=10
    )
    assert r.status_code == 204
    assert (
        requests.delete(
            f"{center.url}/api/devices/pi-drop", headers=center.admin(), timeout=10
        ).status_code
        == 404
    )

    for cfg in (keep, drop):
        assert (
            write_lp(
                center, cfg["influx_token"], f"environment,clientId={cfg['id']} Temperature=1 {now}"
            ).status_code
            == 401
        )
        gone = requests.get(
            f"{center.url}/api/env/{cfg['id']}", headers=tok(cfg["influx_token"]), timeout=10
        )
        assert gone.status_code == 404 and "not registered" in gone.json()["message"]
    rows = flux_rows(
        center.influx,
        "from(bucket: p_b) |> range(start: -1h) "
        '|> filter(fn: (r) => r._measurement == "environment")',
        {"p_b": center.buckets.telemetry},
    )
    assert {r["clientId"] for r in rows} == {"pi-keep"}
    assert (
        requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=10).json()[
            "devices"
        ]
        == []
    )


def test_reflashed_device_reprovisions_and_old_token_stops(center: CenterServer) -> None:
    first = center.register("pi-flash")
    r = requests.post(
        f"{center.url}/api/devices",
        json={"deviceId": "pi-flash", "replace": True},
        headers=tok(center.enrollment_token),
        timeout=10,
    )
    assert r.status_code == 200
    second = r.json()
    assert second["influx_token"] != first["influx_token"]
    assert second["createdAt"] == first["createdAt"]
    now = int(time.time())
    assert (
        write_lp(
            center, first["influx_token"], f"environment,clientId=pi-flash Temperature=1 {now}"
        ).status_code
        == 401
    )
    assert (
        write_lp(
            center, second["influx_token"], f"environment,clientId=pi-flash Temperature=1 {now}"
        ).status_code
        == 204
    )
    assert (
        requests.get(
            f"{center.url}/api/env/pi-flash", headers=tok(first["influx_token"]), timeout=10
        ).status_code
        == 401
    )


@pytest.mark.parametrize("bad", INJECTIONS)
def test_hostile_device_ids_are_400_and_change_nothing(center: CenterServer, bad: str) -> None:
    center.register("pi-safe")
    before = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=10).json()
    r = requests.post(
        f"{center.url}/api/devices", json={"deviceId": bad}, headers=center.admin(), timeout=10
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_device_id"
    assert "Traceback" not in r.text
    if bad and "/" not in bad:
        for method, path in (
            ("GET", f"/api/env/{bad}"),
            ("GET", f"/api/devices/{bad}/measurements"),
            ("DELETE", f"/api/devices/{bad}"),
        ):
            rr = requests.request(
                method, center.url + requests.utils.quote(path), headers=center.admin(), timeout=10
            )
            assert rr.status_code in (400, 404), (path, rr.status_code, rr.text)
            assert rr.status_code < 500
    after = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=10).json()
    assert after == before


@pytest.mark.parametrize(
    "body",
    [
        None,
        "not json",
        [],
        {"deviceId": 5},
        {"deviceId": "ok", "replace": "yes"},
        {"deviceId": "ok", "extra": 1},
        {},
    ],
)
def test_malformed_bodies_are_400(center: CenterServer, body) -> None:
    kwargs = {"data": body} if isinstance(body, str) or body is None else {"json": body}
    r = requests.post(f"{center.url}/api/devices", headers=center.admin(), timeout=10, **kwargs)
    assert r.status_code == 400, r.text
    assert r.json()["message"]


@pytest.mark.parametrize(
    "query",
    [
        "start=1h",
        "start=-0m",
        "start=-400d",
        "start=-1h&window=0s",
        "start=-1h&window=2h",
        "start=-30d&window=1s",
        "start=-1h) |> drop(",
        "window=-1m",
    ],
)
def test_bad_ranges_are_400(center: CenterServer, query: str) -> None:
    center.register("pi-range")
    r = requests.get(
        f"{center.url}/api/devices/pi-range/measurements?{query}",
        headers=center.admin(),
        timeout=10,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_range"


def test_measurements_are_aggregated_over_the_range(center: CenterServer) -> None:
    cfg = center.register("pi-agg")
    now = int(time.time()) // 60 * 60
    lines = "\n".join(
        f"environment,clientId=pi-agg Temperature={20 + (i % 2)},Humidity=50,Pressure=1000 "
        f"{now - 600 + i * 10}"
        for i in range(60)
    )
    assert write_lp(center, cfg["influx_token"], lines).status_code == 204
    r = requests.get(
        f"{center.url}/api/devices/pi-agg/measurements?start=-1h&window=1m",
        headers=center.admin(),
        timeout=10,
    )
    assert r.status_code == 200
    temps = r.json()["fields"]["Temperature"]
    assert 9 <= len(temps) <= 11  # ten minutes of data in one-minute windows
    assert all(
        v == pytest.approx(20.5) for _, v in temps[1:-1]
    )  # 6 points a minute, half 20, half 21


def test_influxdb_down_gives_503_and_recovers(center: CenterServer, restarted) -> None:
    center.register("pi-down")
    center.influx.kill()
    for path in ("/api/devices", "/health"):
        r = requests.get(center.url + path, headers=center.admin(), timeout=30)
        assert r.status_code == 503, (path, r.text)
        assert "InfluxDB" in r.json().get("message", "") + str(r.json().get("influxdb", ""))
    center.influx.launch()
    r = requests.get(f"{center.url}/api/devices", headers=center.admin(), timeout=10)
    assert r.status_code == 200
    assert [d["deviceId"] for d in r.json()["devices"]] == ["pi-down"]
    assert requests.get(f"{center.url}/health", timeout=10).status_code == 200


def test_open_registration_mode_registers_without_credential_and_warns(
    center: CenterServer,
) -> None:
    center.stop()
    center.extra["OPEN_REGISTRATION"] = "true"
    center.start()
    r = requests.get(f"{center.url}/api/env/legacy-esp32", timeout=10)
    assert r.status_code == 200 and r.json()["newlyRegistered"] is True
    log = center.log()
    assert "OPEN REGISTRATION IS ON" in log
    assert "registered without a credential" in log
    assert r.json()["influx_token"] not in log


def test_routes_and_health(center: CenterServer) -> None:
    h = requests.get(f"{center.url}/health", timeout=10)
    assert h.status_code == 200 and h.json()["influxdb"]["version"].startswith("v2.")
    assert h.headers["X-Content-Type-Options"] == "nosniff"
    routes = requests.get(f"{center.url}/api/routes", headers=center.admin(), timeout=10)
    assert routes.status_code == 200
    assert "buckets" in routes.json()["routes"]
    assert requests.get(f"{center.url}/api/routes", timeout=10).status_code == 401


def test_openapi_description_is_served(center: CenterServer) -> None:
    r = requests.get(f"{center.url}/api/openapi.yaml", timeout=10)
    assert r.status_code == 200
    spec = yaml.safe_load(r.text)
    assert spec["openapi"].startswith("3.")
    assert "/api/env/{deviceId}" in spec["paths"] or any("/env/" in p for p in spec["paths"])


def test_concurrent_registrations_of_one_id_leave_one_device_and_one_token(
    center: CenterServer, tmp_path
) -> None:
    """A double-submitted form or provisioning retries racing, through two server processes
    on the same InfluxDB: the first record written wins and every loser revokes its token, so
    no valid token exists that the registry does not know."""
    from concurrent.futures import ThreadPoolExecutor

    other = CenterServer(influx=center.influx, buckets=center.buckets, workdir=tmp_path / "b")
    other.workdir.mkdir()
    other.enrollment_token = center.enrollment_token
    other.start()
    try:

        def post(i: int) -> requests.Response:
            return requests.post(
                f"{(center, other)[i % 2].url}/api/devices",
                json={"deviceId": "pi-race"},
                headers=center.admin(),
                timeout=30,
            )

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(8)))
    finally:
        other.stop()
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1 and codes.count(409) == 7, codes
    winner = next(r.json() for r in answers if r.status_code == 201)
    listed = requests.get(
        f"{center.influx.url}/api/v2/authorizations", headers=center.admin(), timeout=10
    ).json()["authorizations"]
    mine = [a for a in listed if a["description"] == "IoT Center: pi-race"]
    assert len(mine) == 1
    # (InfluxDB 2.9 redacts tokens in listings; the winner's token working proves it is this one.)
    env = requests.get(
        f"{center.url}/api/env/pi-race", headers=tok(winner["influx_token"]), timeout=10
    )
    assert env.status_code == 200, env.text


def test_warm_device_cache_still_checks_every_token(center: CenterServer) -> None:
    a = center.register("pi-warm-a")
    b = center.register("pi-warm-b")
    for _ in range(3):  # warm this worker's copy of both records
        for cfg in (a, b):
            r = requests.get(
                f"{center.url}/api/env/{cfg['id']}", headers=tok(cfg["influx_token"]), timeout=10
            )
            assert r.status_code == 200
    url = f"{center.url}/api/env/pi-warm-b"
    assert requests.get(url, headers=tok(a["influx_token"]), timeout=10).status_code == 403
    assert requests.get(url, headers=tok(b["influx_token"] + "x"), timeout=10).status_code == 401
    assert requests.get(url, timeout=10).status_code == 401
    requests.delete(f"{center.url}/api/devices/pi-warm-b", headers=center.admin(), timeout=10)
    assert requests.get(url, headers=tok(b["influx_token"]), timeout=10).status_code == 404
