"""The scaling question: solve time, verify time and their ratio against problem size.

Run from the repository root: ``python -m benchmarks.bench_scaling [--quick] [--write] [--cold-manchester]``.
With ``--committee`` it measures instead the committee-size curve (one height of N delegates through ``poso-sim
run``, before/after with ``--base-src``) and the stub campaign: see benchmarks/committee_scale.py.
Prints a markdown report; ``--write`` replaces the "Scaling: solve against verify" section of docs/benchmarks.md
and writes the log-log plot to docs/img/scaling.png.

Every point is one fresh process under ``/usr/bin/time`` (its whole CPU time, user + sys, is reported too):

* IEEE 33-bus dispatch over 1, 2, 4 and 7 days (``--quick``: 1 and 2): build, compile, one Ipopt solve from the
  model's initial values (CPU and wall time), then the KKT certificate of the optimum on the same compiled problem,
  repeated (median of 20; the checker is built once by a first, untimed verify);
* Manchester, 1 day: the plan of ``poso_sim.solvers.api.solve_case`` (the staged pipeline) from the solution cache
  with the solve time recorded when it was computed (wall), or solved cold here with ``--cold-manchester``
  (CPU and wall); verify as above on the compiled problem of ``get_problem``;
* Manchester over k days when the Manchester builder accepts ``days`` (``--manchester-days 2,...``): built,
  compiled and solved by the same staged pipeline, cold.

The ratio is solve CPU time over the median verify CPU time (for a cached Manchester plan: recorded solve wall
time over verify wall time, as the cache keeps no CPU time).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

from benchmarks.committee_scale import SIZES
from benchmarks.common import DOC, ROOT, machine, write_section

SECTION = "## Scaling: solve against verify"
IMG = ROOT / "docs" / "img" / "scaling.png"
IEEE_DAYS = (1, 2, 4, 7)
QUICK_DAYS = (1, 2)
VERIFY_REPS = 20


# ---- one point, in its own process -----------------------------------------------------------------------------------
def _verify_times(nlp, sol) -> dict:
    from poso_sim.kkt import checker_for

    chk = checker_for(nlp)
    first = chk.verify(sol)  # builds nothing more; warms caches
    walls, cpus = [], []
    for _ in range(VERIFY_REPS):
        c = chk.verify(sol)
        walls.append(c.seconds)
        cpus.append(c.cpu_seconds)
    return {
        "accepted": bool(first.accepted),
        "verify_wall": statistics.median(walls),
        "verify_cpu": statistics.median(cpus),
    }


def point_ieee33(days: int) -> dict:
    from poso_sim.cases.ieee33 import COST_EXPRESSIONS, build_model, load_case
    from poso_sim.nlp import Solution, compile_nlp
    from poso_sim.solvers import IpoptBackend

    t0 = time.perf_counter()
    model = build_model(load_case(), "true", days=days)
    t1 = time.perf_counter()
    nlp = compile_nlp(model, expressions=COST_EXPRESSIONS)
    t2 = time.perf_counter()
    c0 = time.process_time()
    w0 = time.perf_counter()
    r = IpoptBackend().solve(nlp, nlp.x0)
    solve_wall = time.perf_counter() - w0
    solve_cpu = time.process_time() - c0
    sol = Solution(x=r.x, y=r.y, z_L=r.z_L, z_U=r.z_U, fingerprint=nlp.fingerprint, variant="true", status=r.status)
    return {
        "problem": f"IEEE 33, {days} d",
        "case": "ieee33",
        "days": days,
        "periods": 24 * days,
        "n": nlp.n,
        "m": nlp.m,
        "status": r.status,
        "iterations": r.iterations,
        "cost": float(nlp.expr("true_cost", r.x)),
        "build": t1 - t0,
        "compile": t2 - t1,
        "solve_wall": solve_wall,
        "solve_cpu": solve_cpu,
        "solve_source": "measured",
        **_verify_times(nlp, sol),
    }


def point_manchester(days: int, cold: bool) -> dict:
    from poso_sim.solvers.api import get_problem, solve_case

    if days == 1:
        t0 = time.perf_counter()
        _, nlp = get_problem("manchester", "true")
        t1 = time.perf_counter()
        c0 = time.process_time()
        sol, cached = solve_case("manchester", "true", cache=not cold, return_cached_flag=True)
        solve_cpu = time.process_time() - c0
        if cached:
            solve_cpu = float("nan")
        result = {
            "problem": "Manchester, 1 d",
            "status": sol.status,
            "iterations": sol.iterations,
            "cost": sol.cost,
            "build": float("nan"),
            "compile": t1 - t0,
            "solve_wall": sol.solve_seconds,
            "solve_cpu": solve_cpu,
            "solve_source": "recorded with the cached plan" if cached else "measured (cold)",
        }
    else:
        result = _manchester_days(days)
        sol, nlp = result.pop("_solution"), result.pop("_nlp")
    result.update({"case": "manchester", "days": days, "periods": 24 * days, "n": nlp.n, "m": nlp.m})
    result.update(_verify_times(nlp, sol))
    return result


def _manchester_days(days: int) -> dict:
    """Manchester over ``days`` x 24 periods, cold, with the staged pipeline (needs a builder with ``days``)."""
    from poso_sim.cases import build_model, load_case
    from poso_sim.nlp import Solution, compile_nlp
    from poso_sim.solvers.ies import canonical_start
    from poso_sim.solvers.ies import solve_reduced

    if "days" not in inspect.signature(build_model).parameters:
        raise SystemExit("the Manchester builder has no days argument in this checkout")
    case = load_case("manchester")
    try:  # the k-day case itself (its profiles repeated) gives the data-only start point of every period
        from poso_sim.cases.generator import repeat_days

        case_k = repeat_days(case, days)
    except ImportError:
        case_k = None
    t0 = time.perf_counter()
    model = build_model(case_k, "true") if case_k is not None else build_model(case, "true", days=days)
    t1 = time.perf_counter()
    nlp = compile_nlp(model, expressions=("true_cost",))
    t2 = time.perf_counter()
    c0 = time.process_time()
    w0 = time.perf_counter()
    res = solve_reduced(model, nlp, canonical_start(nlp, case_k if case_k is not None else case))
    solve_wall = time.perf_counter() - w0
    solve_cpu = time.process_time() - c0
    sol = Solution(x=res.x, y=res.y, z_L=res.z_L, z_U=res.z_U, fingerprint=nlp.fingerprint, variant="true")
    return {
        "problem": f"Manchester, {days} d",
        "status": res.status,
        "iterations": res.iterations,
        "cost": float(nlp.true_cost(res.x)),
        "build": t1 - t0,
        "compile": t2 - t1,
        "solve_wall": solve_wall,
        "solve_cpu": solve_cpu,
        "solve_source": "measured (cold)",
        "_solution": sol,
        "_nlp": nlp,
    }


# ---- the driver: one process per point -------------------------------------------------------------------------------
def _run_point(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    cmd = ["/usr/bin/time", "-f", "TIME %U %S %e", sys.executable, "-m", "benchmarks.bench_scaling", "--point", *args]
    print("$ " + shlex.join(cmd[3:]), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"point {' '.join(args)} failed: {out.stderr.strip().splitlines()[-1:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    tline = [ln for ln in out.stderr.splitlines() if ln.startswith("TIME ")][-1].split()
    data["process_cpu"] = float(tline[1]) + float(tline[2])
    data["process_wall"] = float(tline[3])
    return data


def _ratio(p: dict) -> float:
    if p["solve_cpu"] == p["solve_cpu"]:  # measured CPU time
        return p["solve_cpu"] / p["verify_cpu"]
    return p["solve_wall"] / p["verify_wall"]


def _plot(points: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for case, marker, colour in (("ieee33", "o", "tab:blue"), ("manchester", "s", "tab:red")):
        pts = sorted((p for p in points if p["case"] == case), key=lambda p: p["n"])
        if not pts:
            continue
        n = [p["n"] for p in pts]
        solve = [p["solve_cpu"] if p["solve_cpu"] == p["solve_cpu"] else p["solve_wall"] for p in pts]
        label = "IEEE 33" if case == "ieee33" else "Manchester"
        ax.loglog(n, solve, marker=marker, color=colour, label=f"{label}: solve")
        ax.loglog(n, [p["verify_cpu"] for p in pts], marker=marker, color=colour, ls="--", mfc="white",
                  label=f"{label}: verify")
        ax2.loglog(n, [_ratio(p) for p in pts], marker=marker, color=colour, label=label)
        for p, s in zip(pts, solve):
            ax.annotate(f"{p['days']} d", (p["n"], s), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("variables")
    ax.set_ylabel("CPU seconds")
    ax.set_title("Solve (one leader) against verify (each delegate)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_xlabel("variables")
    ax2.set_ylabel("solve time / verify time")
    ax2.set_title("Solve/verify ratio")
    ratios = [_ratio(p) for p in points]
    ax2.set_ylim(min(ratios) / 4, max(ratios) * 4)
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    IMG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG, dpi=110)
    plt.close(fig)


def report(quick: bool, cold_manchester: bool, manchester_days: list[int], write_plot: bool) -> str:
    head = machine()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    points = [_run_point(["ieee33", str(d)]) for d in (QUICK_DAYS if quick else IEEE_DAYS)]
    points.append(_run_point(["manchester", "1"] + (["--cold-manchester"] if cold_manchester else [])))
    skipped = []
    for k in manchester_days:
        try:
            points.append(_run_point(["manchester", str(k)]))
        except RuntimeError as exc:
            skipped.append(f"Manchester {k} d: {exc}")
    if write_plot:
        _plot(points)
    argv = " ".join(
        ["python -m benchmarks.bench_scaling"]
        + (["--quick"] if quick else [])
        + (["--cold-manchester"] if cold_manchester else [])
        + ([f"--manchester-days {','.join(map(str, manchester_days))}"] if manchester_days else [])
    )
    lines = [
        SECTION,
        "",
        f"`{argv}`: PoSo's central claim, \"verifying is far cheaper than solving\", against problem size. One leader "
        "solves; every delegate verifies the plan with the KKT certificate on its own compiled copy of the problem. "
        "Each row is one fresh process (see the module docstring).",
        "",
        *head,
        f"- `uptime` at start: {uptime}",
        "",
        "| problem | periods | variables | rows | Ipopt iterations | true cost $ | build s | compile s | solve CPU s | "
        "solve wall s | verify CPU ms | verify wall ms | solve/verify | verdict | process CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in points:
        solve_cpu = f"{p['solve_cpu']:.2f}" if p["solve_cpu"] == p["solve_cpu"] else "n/a"
        build = f"{p['build']:.2f}" if p["build"] == p["build"] else "n/a"
        lines.append(
            f"| {p['problem']} | {p['periods']} | {p['n']:,} | {p['m']:,} | {p['iterations']} | {p['cost']:,.4f} | "
            f"{build} | {p['compile']:.2f} | {solve_cpu} | {p['solve_wall']:.2f} | {p['verify_cpu'] * 1e3:.2f} | "
            f"{p['verify_wall'] * 1e3:.2f} | {_ratio(p):,.0f}x | {'accepted' if p['accepted'] else 'REJECTED'} | "
            f"{p['process_cpu']:.2f} |"
        )
    ieee = sorted((p for p in points if p["case"] == "ieee33"), key=lambda p: p["n"])
    notes = [
        "verify = `poso_sim.kkt.verify` of the optimum (integrity, evaluation of f, grad f, g, J, residuals), median "
        f"of {VERIFY_REPS} after a first call that builds the checker; solve = one Ipopt call (IEEE 33: from the "
        "model's initial values; Manchester 1 d: `solve_case`, the staged pipeline with its default backend and "
        "recipe; Manchester k d: `solve_reduced` from the k-day case's data-only start). process CPU = user + sys of the "
        "whole process (imports, build, compile, solve and the verifies).",
    ]
    man = [p for p in points if p["case"] == "manchester" and p["days"] == 1]
    if man and man[0]["solve_source"] != "measured (cold)":
        notes.append(
            "Manchester 1 d: the plan comes from the solution cache, its solve time is the wall time recorded when "
            "it was computed (docs: cold solve 34 s of Ipopt in a 37 s process, see \"Model and solve\"), and its "
            "ratio is wall over wall."
        )
    if len(ieee) >= 2:
        a, b = ieee[0], ieee[-1]
        import math

        def slope(key):
            return math.log(b[key] / a[key]) / math.log(b["n"] / a["n"])

        notes.append(
            f"IEEE 33 from {a['n']:,} to {b['n']:,} variables ({b['n'] / a['n']:.0f}x): solve CPU grows "
            f"{b['solve_cpu'] / a['solve_cpu']:.1f}x (log-log slope {slope('solve_cpu'):.2f}), verify CPU "
            f"{b['verify_cpu'] / a['verify_cpu']:.1f}x (slope {slope('verify_cpu'):.2f}); the ratio stays between "
            f"{min(_ratio(p) for p in ieee):,.0f}x and {max(_ratio(p) for p in ieee):,.0f}x. Ipopt's iteration count "
            "depends on the instance, not only on its size, so the solve curve is not smooth; verify is one pass "
            "over the sparse Jacobian and grows at most linearly."
        )
    if not manchester_days:
        notes.append(
            "Manchester over k days is not measured here: pass `--manchester-days 2,...` once the Manchester builder "
            "accepts `days`."
        )
    notes += [f"Not measured: {s}" for s in skipped]
    for note in notes:
        lines += ["", note] if note else []
    lines += ["", f"![solve and verify time against problem size](img/{IMG.name})", ""]
    return "\n".join(lines)


def _committee(args: argparse.Namespace) -> None:
    """``--committee``: the committee-size curve and the campaign (benchmarks/committee_scale.py)."""
    from benchmarks import committee_scale as cs

    if args.load:
        data = cs.merge(args.load.split(","))
    else:
        sizes = [int(x) for x in args.sizes.split(",") if x]
        data = cs.measure(sizes, args.base_src, args.base_max, args.campaign_cases, args.save)
    text = cs.section(data)
    print(text)
    if args.write:
        cs.plot(data)
        write_section(cs.SECTION, text)
        print(f"written to {DOC} and {cs.IMG}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="IEEE 33 at 1 and 2 days only")
    ap.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md, write the plot")
    ap.add_argument("--cold-manchester", action="store_true", help="solve Manchester here instead of the cached plan")
    ap.add_argument("--manchester-days", default="", help="comma-separated k > 1 for Manchester over k days")
    ap.add_argument("--point", nargs=2, metavar=("CASE", "DAYS"), help=argparse.SUPPRESS)
    ap.add_argument("--committee", action="store_true",
                    help="instead: the committee-size curve (benchmarks/committee_scale.py) and the stub campaign")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="--committee: delegates per point")
    ap.add_argument("--base-src", default=None, help="--committee: the src directory of the tree before")
    ap.add_argument("--base-max", type=int, default=1000, help="--committee: largest N run on the tree before")
    ap.add_argument("--campaign-cases", type=int, default=None,
                    help="--committee: also the campaign (0 = all 1000 cases)")
    ap.add_argument("--save", default=None, help="--committee: keep the raw points in this JSON file")
    ap.add_argument("--load", default=None, help="--committee: report saved points, run nothing (several files: see committee_scale.merge)")
    args = ap.parse_args(argv)
    if args.committee:
        _committee(args)
        return
    if args.point:
        case, days = args.point[0], int(args.point[1])
        data = point_ieee33(days) if case == "ieee33" else point_manchester(days, args.cold_manchester)
        print(json.dumps(data))
        return
    k_days = [int(k) for k in args.manchester_days.split(",") if k.strip()]
    text = report(args.quick, args.cold_manchester, k_days, write_plot=args.write)
    print(text)
    if args.write:
        write_section(SECTION, text)
        print(f"written to {DOC} and {IMG}", file=sys.stderr)


if __name__ == "__main__":
    main()
