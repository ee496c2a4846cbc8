"""Foundation benchmarks: model build + compile, a cold solve end to end, a cached solve.

Run from the repository root: ``python -m benchmarks.bench_solve [--write] [--variants true,tampered,feasible]``.
``--write`` replaces the "Model and solve" section of docs/benchmarks.md. Each cold solve runs in a fresh process
(build, start point, staged solve, canonical polish) with an empty temporary cache, so nothing is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import machine, write_section

SECTION = "## Model and solve"

_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from poso_sim.cases import build_model, load_case
from poso_sim.nlp import compile_nlp
t_import = time.perf_counter() - t0
t1 = time.perf_counter(); case = load_case("manchester"); model = build_model(case, "true"); t_build = time.perf_counter() - t1
t2 = time.perf_counter(); nlp = compile_nlp(model); t_compile = time.perf_counter() - t2
from poso_sim.solvers.api import solve_case
t3 = time.perf_counter(); sol = solve_case("manchester", sys.argv[1], cache=False); t_solve = time.perf_counter() - t3
print(json.dumps({"import": t_import, "build": t_build, "compile": t_compile, "solve": t_solve,
                  "total": time.perf_counter() - t0, "status": sol.status, "cost": sol.cost,
                  "iterations": sol.iterations, "violation": sol.constraint_violation, "stages": sol.stages}))
"""

_CACHED = r"""
import json, sys, time
t0 = time.perf_counter()
from poso_sim.solvers.api import solve_case
sol, cached = solve_case("manchester", sys.argv[1], return_cached_flag=True)
print(json.dumps({"total": time.perf_counter() - t0, "cached": cached}))
"""


def _py(code: str, *args: str, env=None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(variants: list[str]) -> str:
    lines = [SECTION, "", *machine(), ""]
    lines += [
        "Cold solve = one fresh process: imports, case load, model build, compile, data-only start point, the staged",
        "solve (reduced formulation, fixed flows, proximal round, free final solve), map back and canonical polish.",
        "",
        "| variant | status | true cost $ | violation | Ipopt iterations (per stage) | build s | compile s | solve s | process s |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        env["POSO_SIM_CACHE_DIR"] = tmp
        cached_rows = []
        for v in variants:
            r = _py(_COLD, v, env=env)
            per = ", ".join(f"{s['name']} {s['iterations']}" for s in r["stages"] if s["iterations"])
            lines.append(
                f"| {v} | {r['status']} | {r['cost']:.4f} | {r['violation']:.1e} | {r['iterations']} ({per}) | "
                f"{r['build']:.2f} | {r['compile']:.2f} | {r['solve']:.1f} | {r['total']:.1f} |"
            )
        # populate the cache, then time a cached solve in a fresh process
        subprocess.run([sys.executable, "-m", "poso_sim.cli", "solve", "--json"], env=env, capture_output=True, check=True)
        for _ in range(3):
            cached_rows.append(_py(_CACHED, "true", env=env)["total"])
    lines += [
        "",
        f"Cached solve (fresh process, imports included, best of 3): {min(cached_rows):.2f} s.",
        "",
        "Stage timings (seconds) of the last cold solve are in the JSON of `poso-sim solve --json --no-cache`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="true,tampered,feasible")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    text = run([v for v in args.variants.split(",") if v])
    print(text)
    if args.write:
        write_section(SECTION, text)
        print(f"wrote {SECTION!r} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
