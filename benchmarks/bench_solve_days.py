"""Cold solves in fresh processes: generated days (success rate, CPU distribution) and alternated tree comparisons.

Each solve is ``python -m poso_sim solve --case <case> --objective <variant> --no-cache --json`` in a new process
with an empty cache directory of its own (nothing compiled or solved before), one process at a time. CPU is the
child's user + system time (``os.wait4``), so it includes imports, the build, the compile, the start point, every
Ipopt stage and interpreter teardown.

Generated days: day ``--day`` of ``generate_instances(manchester, day, seed)`` for each seed, written as a case
file (``manchester-s<seed>-d<day>``). Trees: ``--tree NAME=SRC`` (a ``src`` directory put first on PYTHONPATH);
with several trees the runs alternate between them (tree A, tree B, tree A, ...), so load drifts hit both alike.

    python benchmarks/bench_solve_days.py --seeds 100-119 --variants true tampered feasible --out days.jsonl
    python benchmarks/bench_solve_days.py --case manchester --repeat 3 --tree new=src --tree old=../base/src \
        --out cold.jsonl
    python benchmarks/bench_solve_days.py --summary days.jsonl

One JSON line per solve: tree, case, variant, rc, status, cost, iterations, cpu, wall, and the error line of a
failed solve (``poso-sim: error: solve failed at stage ...``). ``--summary`` prints the success rate and the CPU
distribution per tree and variant.
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

HERE = Path(__file__).resolve().parent


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def write_day(seed: int, day: int, where: Path) -> Path:
    from poso_sim.cases import load_case
    from poso_sim.cases.generator import case_document, generate_instances

    case = generate_instances(load_case("manchester"), day, seed=seed)[day - 1]
    path = where / f"{case.name}.json"
    path.write_text(json.dumps(case_document(case)))
    return path


def solve_once(src: str, case: str, variant: str, timeout: float, nice: int) -> dict:
    """One cold solve in a fresh process with an empty cache directory."""
    with tempfile.TemporaryDirectory(prefix="solve-bench-") as cache:
        env = {**os.environ, "PYTHONPATH": src, "POSO_SIM_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "poso_sim", "solve", "--case", case, "--objective", variant, "--no-cache",
               "--json"]
        if nice:
            cmd = ["nice", "-n", str(nice)] + cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        wall = time.perf_counter() - t0  # the child is reaped: the caller reads its CPU from os.times()
    row = {"case": Path(case).stem, "variant": variant, "rc": proc.returncode, "wall": round(wall, 2)}
    try:
        data = json.loads(out.strip().splitlines()[-1])
        row.update(status=data["status"], cost=data["cost"], iterations=data["iterations"],
                   stages=[(s["name"], s["iterations"]) for s in data["stages"]])
    except (ValueError, IndexError, KeyError):
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        row.update(status="error", error=lines[-1] if lines else f"exit {proc.returncode}",
                   traceback=any(ln.startswith("Traceback") for ln in lines))
    return row


def run(args) -> None:
    trees = [t.split("=", 1) for t in (args.tree or [f"this={HERE.parent / 'src'}"])]
    out = open(args.out, "a") if args.out else sys.stdout
    with tempfile.TemporaryDirectory(prefix="solve-days-") as tmp:
        cases = [args.case] if args.case else [str(write_day(s, args.day, Path(tmp))) for s in _seeds(args.seeds)]
        for case in cases:
            for variant in args.variants:
                for _ in range(args.repeat):
                    for name, src in trees:
                        before = os.times()
                        row = solve_once(src, case, variant, args.timeout, args.nice)
                        after = os.times()
                        row["cpu"] = round((after.children_user - before.children_user)
                                           + (after.children_system - before.children_system), 2)
                        row["tree"] = name
                        print(json.dumps(row), file=out, flush=True)


def summary(paths: list[str]) -> None:
    rows = [json.loads(ln) for p in paths for ln in open(p) if ln.strip()]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["tree"], r["variant"]), []).append(r)
    print("| tree | variant | solves | optimal | named SolveError | other failure | CPU median | CPU p90 | CPU max |"
          " iterations median |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (tree, variant), rs in sorted(groups.items()):
        ok = [r for r in rs if r.get("status") == "optimal"]
        named = [r for r in rs if r["rc"] == 2 and "solve failed at stage" in r.get("error", "")]
        cpu = sorted(r["cpu"] for r in ok) or [float("nan")]
        p90 = cpu[min(len(cpu) - 1, int(0.9 * len(cpu)))]
        its = statistics.median(r["iterations"] for r in ok) if ok else float("nan")
        print(f"| {tree} | {variant} | {len(rs)} | {len(ok)} | {len(named)} | {len(rs) - len(ok) - len(named)} | "
              f"{statistics.median(cpu):.1f} | {p90:.1f} | {cpu[-1]:.1f} | {its:.0f} |")
    for r in rows:
        if r.get("status") != "optimal":
            print(f"- {r['tree']} {r['case']} {r['variant']}: rc {r['rc']}: {r.get('error', r.get('status'))}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--case", help="one case (name or file) instead of generated days")
    p.add_argument("--seeds", default="100-119", help="seeds of the generated days, e.g. 100-119 or 13,21")
    p.add_argument("--day", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=["true", "tampered", "feasible"])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--tree", action="append", help="NAME=SRC (repeat to alternate trees)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--out")
    p.add_argument("--summary", nargs="+", metavar="JSONL")
    args = p.parse_args()
    if args.summary:
        summary(args.summary)
    else:
        run(args)


if __name__ == "__main__":
    main()
