"""A closed-loop HTTP load generator, run as its own process (`python -m bench.loadgen SPEC`).

Each of `concurrency` clients holds one keep-alive connection and sends its next request as
soon as the previous answer has been read in full, cycling through the spec's requests
(client k starts at request k, so 1,000 devices are spread over the clients). Only the
standard library is used, so it measures HTTP, not a client library. Latency is from just
before the request is written until the last body byte is read; time to first byte is
until the status line and headers have been parsed.

Spec (JSON file): {"host", "port", "concurrency", "duration", "warmup",
                   "requests": [[method, path, {headers}, body-or-null], ...]}
Prints one JSON object: count, errors, statuses, rps, p50/p90/p99/max latency (ms), ttfb p50.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def run(spec: dict) -> dict:
    host, port = spec["host"], int(spec["port"])
    reqs = [
        (m, p, h, b.encode() if isinstance(b, str) else None) for m, p, h, b in spec["requests"]
    ]
    conc = int(spec["concurrency"])
    warmup, duration = float(spec.get("warmup", 1.0)), float(spec["duration"])
    start = time.monotonic()
    measure_from = start + warmup
    stop_at = measure_from + duration
    lock = threading.Lock()
    lat: list[float] = []
    ttfb: list[float] = []
    statuses: dict[str, int] = {}
    errors = [0]

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        i = k
        my_lat, my_ttfb, my_status, my_err = [], [], {}, 0
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            method, path, headers, body = reqs[i % len(reqs)]
            i += conc
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                t1 = time.perf_counter()
                resp.read()
                t2 = time.perf_counter()
                status = resp.status
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                if now >= measure_from:
                    my_err += 1
                continue
            if t0 >= 0 and now >= measure_from:
                my_lat.append((t2 - t0) * 1000)
                my_ttfb.append((t1 - t0) * 1000)
                my_status[str(status)] = my_status.get(str(status), 0) + 1
        conn.close()
        with lock:
            lat.extend(my_lat)
            ttfb.extend(my_ttfb)
            errors[0] += my_err
            for s, n in my_status.items():
                statuses[s] = statuses.get(s, 0) + n

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + warmup + 60)
    lat.sort()
    ttfb.sort()
    return {
        "count": len(lat),
        "errors": errors[0],
        "statuses": statuses,
        "rps": len(lat) / duration,
        "p50": pct(lat, 0.50),
        "p90": pct(lat, 0.90),
        "p99": pct(lat, 0.99),
        "max": lat[-1] if lat else float("nan"),
        "ttfb_p50": pct(ttfb, 0.50),
    }


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    print(json.dumps(run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
