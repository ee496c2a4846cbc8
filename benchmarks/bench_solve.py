"""Solve benchmarks: cold whole-process CPU per variant against a baseline commit, all plans in parallel, and the
per-stage / per-iteration cost of both Ipopt backends.

Run from the repository root::

    python -m benchmarks.bench_solve [--variants true,tampered,feasible] [--repeats 2] [--baseline c6a0cc8]
                                     [--no-baseline] [--write]

* **Cold solve**: one fresh process (``poso-sim solve --objective V --json``) with an empty ``POSO_SIM_CACHE_DIR``
  and ``OMP_NUM_THREADS=1``; CPU = user + system of the whole process (``/usr/bin/time``). Runs of this tree and
  of the baseline (its ``src/`` exported with ``git archive`` into a temporary directory) alternate.
* **All plans**: ``solve_plans(case, variants, workers=2)`` in one fresh process with an empty cache: wall time,
  and CPU of the process and its workers.
* **Backends**: the staged solve of each variant with each backend (``solve_case(..., backend=B)``): per stage the
  Ipopt iterations, the CPU seconds and the CPU per iteration.

``--write`` replaces the "Model and solve" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, machine, write_section

SECTION = "## Model and solve"

_BACKEND_RUN = r"""
import json, sys, time
from poso_sim.solvers.api import solve_case
sol = solve_case("manchester", sys.argv[1], cache=False, backend=sys.argv[2])
print(json.dumps({"status": sol.status, "cost": sol.cost, "iterations": sol.iterations, "stages": sol.stages,
                  "violation": sol.constraint_violation}))
"""

_PLANS_RUN = r"""
import json, sys
from poso_sim.solvers.api import solve_plans
plans = solve_plans("manchester", sys.argv[1].split(","), workers=int(sys.argv[2]))
print(json.dumps({v: [s.status, s.cost] for v, s in plans.items()}))
"""


def _timed(cmd: list[str], src: Path, cache: str) -> tuple[float, float, str]:
    """(CPU user+sys, wall, stdout) of one fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(src), POSO_SIM_CACHE_DIR=cache)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %e", "-o", tf.name, *cmd], capture_output=True, text=True, env=env
        )
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1:]}")
        u, s, e = (float(v) for v in Path(tf.name).read_text().split()[-3:])
    return u + s, e, out.stdout


def _cold(variant: str, src: Path) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        cpu, wall, out = _timed([sys.executable, "-m", "poso_sim.cli", "solve", "--objective", variant, "--json"], src, cache)
    r = json.loads(out.strip().splitlines()[-1])
    return {"cpu": cpu, "wall": wall, "iterations": r["iterations"], "cost": r["cost"], "status": r["status"],
            "violation": r["constraint_violation"], "stages": r["stages"]}


def _export(rev: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"poso-baseline-{rev}-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(d)], input=archive, check=True)
    return d / "src"


def _span(xs: list[float]) -> str:
    return f"{min(xs):.1f}" if len(xs) == 1 else f"{min(xs):.1f}-{max(xs):.1f}"


def run(variants: list[str], repeats: int, baseline: str | None, rev: str | None = None) -> str:
    src = _export(rev) if rev else ROOT / "src"
    base_src = _export(baseline) if baseline else None
    lines = [SECTION, "", *machine(), f"- `uptime` at start: {os.popen('uptime').read().strip()}", ""]
    # 1. cold per variant, alternating with the baseline
    new: dict[str, list[dict]] = {v: [] for v in variants}
    old: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            new[v].append(_cold(v, src))
            if base_src is not None:
                old[v].append(_cold(v, base_src))
    lines += [
        "### Cold solve per variant (one fresh process, empty cache)",
        "",
        "`poso-sim solve --objective V --json` in a fresh process with an empty `POSO_SIM_CACHE_DIR`,",
        "`OMP_NUM_THREADS=1`; CPU = user + system of the whole process (imports, build, compile, start point, staged",
        f"solve, polish, final check), {repeats} run(s) each" + (f", alternating with `{baseline}`." if baseline else "."),
        "",
        "| variant | status | true cost $ | violation | iterations (per stage) | CPU s | wall s |"
        + (f" baseline `{baseline}` CPU s | baseline iterations | CPU ratio |" if baseline else ""),
        "|---|---|---:|---:|---|---:|---:|" + ("---:|---:|---:|" if baseline else ""),
    ]
    for v in variants:
        r = new[v][-1]
        per = ", ".join(f"{s['name']} {s['iterations']}" for s in r["stages"] if s["iterations"])
        row = (f"| {v} | {r['status']} | {r['cost']:.4f} | {r['violation']:.1e} | {r['iterations']} ({per}) | "
               f"{_span([x['cpu'] for x in new[v]])} | {_span([x['wall'] for x in new[v]])} |")
        if baseline:
            ratio = statistics.median(x["cpu"] for x in old[v]) / statistics.median(x["cpu"] for x in new[v])
            row += f" {_span([x['cpu'] for x in old[v]])} | {old[v][-1]['iterations']} | {ratio:.1f}x |"
        lines.append(row)
    # 2. all plans at once
    with tempfile.TemporaryDirectory() as cache:
        cpu, wall, out = _timed([sys.executable, "-c", _PLANS_RUN, ",".join(variants), "2"], src, cache)
    got = json.loads(out.strip().splitlines()[-1])
    lines += [
        "",
        "### All plans at once",
        "",
        f"`solve_plans(\"manchester\", {variants}, workers=2)` in a fresh process, empty cache: **{wall:.1f} s wall**, "
        f"{cpu:.1f} s CPU (process and workers). Statuses: "
        + ", ".join(f"{v} {s} ({c:.4f} $)" for v, (s, c) in got.items()) + ".",
    ]
    # 3. per stage and per iteration, both backends
    lines += [
        "",
        "### Per stage and per iteration, both backends",
        "",
        "`solve_case(V, cache=False, backend=B)` in a fresh process; CPU seconds of each stage (process time) and per",
        "Ipopt iteration. `casadi` = CasADi's bundled Ipopt (`nlpsol`), `cyipopt` = the cyipopt wheels' Ipopt.",
        "",
        "| variant | backend | stage | iterations | CPU s | ms / iteration |",
        "|---|---|---|---:|---:|---:|",
    ]
    for v in variants:
        for b in ("casadi", "cyipopt"):
            with tempfile.TemporaryDirectory() as cache:
                cpu, wall, out = _timed([sys.executable, "-c", _BACKEND_RUN, v, b], src, cache)
            r = json.loads(out.strip().splitlines()[-1])
            for s in r["stages"]:
                it, c = s["iterations"], s.get("cpu_seconds", float("nan"))
                per = f"{1000 * c / it:.1f}" if it else "-"
                lines.append(f"| {v} | {b} | {s['name']} | {it} | {c:.2f} | {per} |")
            lines.append(f"| {v} | {b} | **whole process** ({r['status']}, {r['cost']:.4f} $) | {r['iterations']} | "
                         f"{cpu:.1f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="true,tampered,feasible")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline", default="c6a0cc8", help="commit to compare against (git archive of its src/)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--rev", default=None, help="measure this commit (git archive of its src/) instead of the tree")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    text = run([v for v in args.variants.split(",") if v], args.repeats, None if args.no_baseline else args.baseline,
               args.rev)
    print(text)
    if args.write:
        write_section(SECTION, text)
        print(f"wrote {SECTION!r} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
