"""`python -m bench` (what `make bench` runs): every benchmark against a real influxd, each
against its peer in the same run, then a summary table. See bench/README.md.

    python -m bench              # the default run (about 20 minutes on 2 cores)
    python -m bench --quick      # a short version (about 3 minutes): smaller N, shorter windows
    python -m bench --full       # adds 10,000 devices to the scaling run
    python -m bench --only drain,endpoint
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

from bench.common import Ctx, fmt

BENCHES = ["buffer", "drain", "footprint", "endpoint", "pages", "scaling"]
MODULES = {"buffer": "bench.buffer_cost"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="short version (about 3 minutes)")
    p.add_argument("--full", action="store_true", help="also 10,000 devices in the scaling run")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or BENCHES
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    ctx = Ctx(quick=args.quick, full=args.full, keep=args.keep)
    mode = "quick" if args.quick else ("full" if args.full else "default")
    print(
        f"# IoT Center benchmarks ({mode}); work dir {ctx.root}; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    failed: list[str] = []
    began = time.monotonic()
    try:
        for name in chosen:
            mod = importlib.import_module(MODULES.get(name, f"bench.{name}"))
            print(f"\n## {name}", flush=True)
            t0 = time.monotonic()
            try:
                mod.run(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                print(f"BENCH {name}_failed error=1", flush=True)
            ctx.print_figures(mod.NAME)
            print(
                f"# {name} took {time.monotonic() - t0:.0f} s; load average "
                f"{os.getloadavg()[0]:.2f}",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed.append("interrupted")
    finally:
        ctx.close()
    summary(ctx)
    print(
        f"\n# total {time.monotonic() - began:.0f} s; load average now {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if failed:
        print(f"# failed: {', '.join(failed)}", flush=True)
        return 1
    return 0


def summary(ctx: Ctx) -> None:
    print("\n## summary: figures (medians)")
    rows = [(f.name, " ".join(f"{k}={fmt(v)}" for k, v in f.metrics.items())) for f in ctx.figures]
    w = max((len(r[0]) for r in rows), default=10)
    for name, text in rows:
        print(f"{name:<{w}}  {text}")
    if ctx.summary:
        print("\n## summary: targets")
        head = ("target", "measured", "wanted", "verdict")
        rows2 = [(r[1], r[2], r[3], r[4]) for r in ctx.summary]
        widths = [max(len(str(x[i])) for x in [head, *rows2]) for i in range(4)]
        line = "  ".join(f"{h:<{widths[i]}}" for i, h in enumerate(head))
        print(line)
        print("  ".join("-" * x for x in widths))
        for r in rows2:
            print("  ".join(f"{v!s:<{widths[i]}}" for i, v in enumerate(r)))


if __name__ == "__main__":
    sys.exit(main())
