"""Run every benchmark and write its section of docs/benchmarks.md (``make bench``)."""

from __future__ import annotations

import importlib
import sys

MODULES = ("bench_solve", "bench_compile", "bench_kkt", "bench_sim", "bench_scenarios", "bench_sweep", "bench_trading",
           "bench_markets", "bench_trading_market")


def main() -> int:
    failed = []
    for name in MODULES:
        print(f"== {name}", flush=True)
        try:
            importlib.import_module(f"benchmarks.{name}").main(["--write"])
        except SystemExit as exc:
            if exc.code:
                failed.append(name)
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            print(f"{name} failed: {exc}", file=sys.stderr)
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
