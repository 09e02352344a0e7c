"""4. Device endpoint: GET /api/env/<id> for 1,000 registered devices, each with its own token.

The IoT Center runs under gunicorn as deployed (2 gthread workers, 4 threads each) on its own
buckets of the shared influxd. The load generator (bench.loadgen, a separate process, one
keep-alive connection per client, closed loop) cycles through the 1,000 devices, each request
carrying that device's token, at 1, 10 and 100 concurrent clients.

The limit beside it: the same Flux lookup the endpoint makes (iot_center.registry.DEVICE_FLUX
for that device id, the same JSON body influxdb-client sends) POSTed to influxd's
/api/v2/query directly by the same load generator at the same concurrency. Server and
InfluxDB runs alternate, round by round; figures are medians over rounds.
"""

from __future__ import annotations

from bench.common import Ctx, flux_bodies, flux_request, load, log, median

NAME = "endpoint"
CONCURRENCY = (1, 10, 100)


def requests_for(w) -> tuple[list, list]:
    from iot_center.registry import DEVICE_FLUX

    server = [
        [
            "GET",
            f"/api/env/{dev}",
            {"Authorization": f"Token {tok}", "Accept": "application/json"},
            None,
        ]
        for dev, tok in w.devices
    ]
    bodies = flux_bodies(
        w.influx, DEVICE_FLUX, [{"bucket": w.devices_bucket, "deviceId": d} for d, _ in w.devices]
    )
    direct = [flux_request(w.influx, b) for b in bodies]
    return server, direct


def measure(
    ctx: Ctx, w, server: list, direct: list, conc: int, duration: float, rounds: int
) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict]] = {"server": [], "influx": []}
    for r in range(rounds):
        log(f"endpoint: {conc} clients, round {r + 1}/{rounds}")
        runs["server"].append(load(ctx, w.url, server, conc, duration))
        runs["influx"].append(load(ctx, w.influx.url, direct, conc, duration))
    out = {}
    for who, rs in runs.items():
        bad = sum(n for res in rs for s, n in res["statuses"].items() if s != "200")
        bad += sum(res["errors"] for res in rs)
        out[who] = {k: median([res[k] for res in rs]) for k in ("rps", "p50", "p90", "p99")}
        out[who]["failed"] = bad
    return out


def run(ctx: Ctx) -> None:
    w = ctx.world()
    n = 1000
    per_reg = w.ensure_devices(n)
    w.devices = w.devices[:n] if len(w.devices) >= n else w.devices
    if per_reg:
        ctx.emit(NAME, "register_device", devices=n, ms_each_6_threads=per_reg * 1000)
    server, direct = requests_for(w)
    duration = ctx.pick(3.0, 10.0)
    rounds = ctx.pick(1, 3)
    p99_at_10 = None
    for conc in CONCURRENCY:
        res = measure(ctx, w, server, direct, conc, duration, rounds)
        s, i = res["server"], res["influx"]
        ctx.emit(
            NAME,
            f"env_server_c{conc}",
            devices=n,
            rps=s["rps"],
            p50_ms=s["p50"],
            p90_ms=s["p90"],
            p99_ms=s["p99"],
            failed=s["failed"],
        )
        ctx.emit(
            NAME,
            f"env_influx_c{conc}",
            devices=n,
            rps=i["rps"],
            p50_ms=i["p50"],
            p90_ms=i["p90"],
            p99_ms=i["p99"],
            failed=i["failed"],
        )
        ctx.emit(
            NAME,
            f"env_ratio_c{conc}",
            p50_ratio=s["p50"] / i["p50"],
            p99_ratio=s["p99"] / i["p99"],
            rps_ratio=s["rps"] / i["rps"],
            overhead_p50_ms=s["p50"] - i["p50"],
            overhead_share=(s["p50"] - i["p50"]) / s["p50"],
        )
        if conc == 10:
            p99_at_10 = s["p99"]
        if conc == 1:
            c1 = (s["p50"], i["p50"])
    ctx.target("4 env: p99 at 10 clients", f"{p99_at_10:.0f} ms", "< 50 ms", p99_at_10 < 50)
    ctx.target(
        "4 env: server overhead / InfluxDB time (1 client, p50)",
        f"{(c1[0] - c1[1]) / c1[1]:.1f}x ({c1[0]:.1f} vs {c1[1]:.1f} ms)",
        "small fraction",
        (c1[0] - c1[1]) / c1[1] < 0.5,
    )
