"""5. Pages: the devices list with 1,000 devices, and one device's dashboard data over 30 days
of 10-second readings and over 1 hour.

- GET /api/devices with the admin token (JSON) and, if the web UI is there, GET /devices as a
  browser signed in through the /login form (CSRF token from the page, InfluxDB's admin user);
- GET /api/devices/<id>/measurements?start=-30d and ?start=-1h for a device with 30 days of
  10 s readings (259,200 points of 5 fields, written as the agent encodes them).

Every device has a few minutes of recent readings too, so the list has last-seen times to find.
Each request is repeated sequentially (one client, keep-alive); time to first byte is until
the status line and headers are in, total until the last body byte. Beside each, the Flux
queries the server makes for it, POSTed to influxd directly (the limit).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import requests

from bench.common import (
    Ctx,
    flux_body,
    flux_request,
    log,
    median,
    reading_lines,
    write_lines,
)

NAME = "pages"
DASH_DEVICE = "dash-30d"


def timings(session: requests.Session, method: str, url: str, reps: int, **kw) -> dict[str, float]:
    ttfb, total, size, status = [], [], 0, 0
    for i in range(reps + 1):
        t0 = time.perf_counter()
        r = session.request(method, url, stream=True, timeout=120, **kw)
        t1 = time.perf_counter()
        body = r.content
        t2 = time.perf_counter()
        status, size = r.status_code, len(body)
        if i:  # the first is a warm-up
            ttfb.append((t1 - t0) * 1000)
            total.append((t2 - t0) * 1000)
    return {
        "ttfb_ms": median(ttfb),
        "total_ms": median(total),
        "p90_total_ms": sorted(total)[int(0.9 * (len(total) - 1))],
        "bytes": size,
        "status": status,
    }


def direct(
    ctx: Ctx, session: requests.Session, queries: list[tuple[str, dict]], reps: int
) -> float:
    """Median total ms of running `queries` one after another against influxd."""
    influx = ctx.influx
    reqs = [flux_request(influx, flux_body(influx, q, p)) for q, p in queries]
    totals = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        for _, path, headers, body in reqs:
            r = session.post(influx.url + path, data=body, headers=headers, timeout=120)
            r.raise_for_status()
        if i:
            totals.append((time.perf_counter() - t0) * 1000)
    return median(totals)


def backfill(w, device_id: str, days: float, interval: float = 10.0) -> int:
    n = int(days * 86400 / interval)
    start = time.time() - days * 86400 + interval
    lines = list(reading_lines(device_id, start, n, interval))
    write_lines(w.influx, w.telemetry, lines, batch=20_000, threads=2)
    return n


def sign_in(w) -> requests.Session | None:
    s = requests.Session()
    r = s.get(f"{w.url}/login", timeout=30)
    m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', r.text) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', r.text
    )
    if r.status_code != 200 or not m:
        return None
    r = s.post(
        f"{w.url}/login",
        data={
            "csrf_token": m.group(1),
            "username": w.influx.user,
            "password": w.influx.password,
            "next": "/devices",
        },
        timeout=30,
        allow_redirects=False,
    )
    return s if r.status_code in (302, 303) else None


def prepare(ctx: Ctx, w, devices: int) -> None:
    w.ensure_devices(devices)
    if not getattr(w, "fleet_telemetry", False):
        log(f"pages: recent readings for {len(w.devices)} devices")
        w.recent_telemetry([d for d, _ in w.devices])
        w.fleet_telemetry = True
    if not getattr(w, "dash_backfilled", False):
        log("pages: backfilling 30 days of 10 s readings for one device")
        w.dash_points = backfill(w, DASH_DEVICE, 30)
        w.dash_backfilled = True


def run(ctx: Ctx) -> None:
    from agent import contract
    from iot_center.registry import LAST_SEEN_FLUX, LIST_FLUX
    from iot_center.telemetry import AGGREGATE_FLUX, Query

    w = ctx.world()
    prepare(ctx, w, 1000)
    reps = ctx.pick(5, 15)
    s = requests.Session()
    s.headers.update(w.admin)
    results: dict[str, dict] = {}
    lim: dict[str, float] = {}

    log("pages: /api/devices")
    results["devices_json"] = timings(s, "GET", f"{w.url}/api/devices", reps)
    list_queries = [
        (LIST_FLUX, {"bucket": w.devices_bucket}),
        (
            LAST_SEEN_FLUX,
            {
                "bucket": w.telemetry,
                "since": timedelta(days=-30),
                "measurement": contract.MEASUREMENT,
            },
        ),
    ]
    lim["devices_json"] = direct(ctx, s, list_queries, reps)
    list_ms = direct(ctx, s, list_queries[:1], reps)
    seen_ms = direct(ctx, s, list_queries[1:], reps)
    ctx.emit(NAME, "page_devices_influx_parts", list_flux_ms=list_ms, last_seen_flux_ms=seen_ms)

    browser = sign_in(w)
    if browser is not None:
        log("pages: /devices (HTML, signed in)")
        results["devices_html"] = timings(browser, "GET", f"{w.url}/devices", reps)
        lim["devices_html"] = lim["devices_json"]
    for start in ("-30d", "-1h"):
        log(f"pages: dashboard data start={start}")
        key = f"dashboard_{start.lstrip('-')}"
        results[key] = timings(
            s, "GET", f"{w.url}/api/devices/{DASH_DEVICE}/measurements?start={start}", reps
        )
        q = Query.parse(start, None)
        lim[key] = direct(
            ctx,
            s,
            [
                (
                    AGGREGATE_FLUX,
                    {
                        "bucket": w.telemetry,
                        "start": -q.span,
                        "measurement": contract.MEASUREMENT,
                        "deviceId": DASH_DEVICE,
                        "window": q.window,
                    },
                )
            ],
            reps,
        )

    worst = 0.0
    for key, r in results.items():
        ctx.emit(
            NAME,
            f"page_{key}",
            devices=len(w.devices),
            status=r["status"],
            ttfb_ms=r["ttfb_ms"],
            total_ms=r["total_ms"],
            p90_total_ms=r["p90_total_ms"],
            bytes=r["bytes"],
            influx_ms=lim[key],
            ratio_to_influx=r["total_ms"] / lim[key],
        )
        if r["status"] == 200:
            worst = max(worst, r["total_ms"])
        ctx.target(
            f"5 pages: {key} total (status {r['status']})",
            f"{r['total_ms']:.0f} ms",
            "< 500 ms",
            r["total_ms"] < 500 and r["status"] == 200,
        )
    if browser is None:
        ctx.emit(NAME, "page_devices_html", available=0)
