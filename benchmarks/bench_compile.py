"""Compile once per structure against compile each instance: whole-process CPU over generated day-ahead instances.

Run from the repository root: ``python -m benchmarks.bench_compile [--quick] [--write]``. ``--write`` replaces the
"Compile once per structure" section of docs/benchmarks.md.

Each measurement is one fresh process (``/usr/bin/time``: user + sys CPU and wall), OMP_NUM_THREADS=1, that
generates ``N`` instances of the Manchester case (``poso_sim.cases.generator``, seed 2026) and makes the compiled
problem of each, evaluating ``f``, ``g`` and the Jacobian at the start point:

* **each**: ``build_model`` + ``compile_nlp`` per instance (what a new problem per height cost before);
* **once**: build and compile the base case once, then ``nlp.with_data(instance_parameters(case))`` per instance
  (no Pyomo involved per instance: what a verifier does);
* **once, via model**: compile once, then ``update_parameters(model, case)`` + ``with_model(nlp, model)`` per
  instance (what a solver that holds the Pyomo model does).

The modes run alternated, ``repeats`` times each; the table gives the median. Every mode must give the same
instance fingerprints (checked), so the three produce the same problems.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks.common import machine, quick_main

SECTION = "## Compile once per structure"
SEED = 2026

_CHILD = r"""
import json, sys, time
mode, n = sys.argv[1], int(sys.argv[2])
from poso_sim.cases import build_model, instance_parameters, load_case, update_parameters
from poso_sim.cases.generator import generate_instances
from poso_sim.nlp import compile_nlp, with_model
base = load_case("manchester")
cases = generate_instances(base, n, seed=%(seed)d)
fps, per = [], []
def use(nlp):
    nlp.f(nlp.x0); nlp.g(nlp.x0); nlp.jac(nlp.x0)
    fps.append(nlp.fingerprint)
t0 = time.perf_counter()
if mode == "each":
    for c in cases:
        t = time.process_time(); use(compile_nlp(build_model(c))); per.append(time.process_time() - t)
else:
    model = build_model(base)
    nlp = compile_nlp(model)
    setup = time.perf_counter() - t0
    for c in cases:
        t = time.process_time()
        if mode == "once":
            use(nlp.with_data(instance_parameters(c)))
        else:
            update_parameters(model, c); use(with_model(nlp, model))
        per.append(time.process_time() - t)
print(json.dumps({"fingerprints": fps, "per_instance": per, "loop": time.perf_counter() - t0}))
""" % {"seed": SEED}

MODES = ("each", "once", "once-model")
LABELS = {"each": "each: build + compile per instance", "once": "once: compile base, `with_data` per instance",
          "once-model": "once: compile base, `update_parameters` + `with_model` per instance"}


def _run(mode: str, n: int, env: dict) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        out = subprocess.run(
            ["/usr/bin/time", "-o", tf.name, "-f", "%U %S %e", sys.executable, "-c", _CHILD, mode, str(n)],
            capture_output=True, text=True, env=env, check=True,
        )
        user, system, wall = (float(v) for v in tf.read().split()[-3:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(cpu=user + system, wall=wall)
    return res


def report(quick: bool) -> str:
    n, repeats = (3, 1) if quick else (7, 3)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    stamp = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(repeats):  # alternated
        for mode in MODES:
            runs[mode].append(_run(mode, n, env))
    fps = {m: runs[m][0]["fingerprints"] for m in MODES}
    if not (fps["each"] == fps["once"] == fps["once-model"]) or len(set(fps["each"])) != n:
        raise SystemExit("the modes gave different instance fingerprints")
    med = {m: statistics.median(r["cpu"] for r in runs[m]) for m in MODES}
    lines = [SECTION, "", *machine(), f"- `date`: {stamp}; `uptime` before the runs: {load}", ""]
    lines += [
        f"{n} generated day-ahead instances of Manchester (seed {SEED}); each measurement is one fresh process",
        "(imports, case load, instance generation, the compiled problem of every instance and an evaluation of f, g",
        f"and J at its start point). Median of {repeats} alternated run{'s' if repeats > 1 else ''}; CPU = user + sys",
        "of the whole process (`/usr/bin/time`), OMP_NUM_THREADS=1. All modes give the same instance fingerprints.",
        "",
        "| mode | process CPU s | process wall s | per instance CPU s (median) | CPU ratio to each |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in MODES:
        cpu = med[m]
        wall = statistics.median(r["wall"] for r in runs[m])
        per = statistics.median(t for r in runs[m] for t in r["per_instance"])
        lines.append(f"| {LABELS[m]} | {cpu:.2f} | {wall:.2f} | {per:.3f} | {cpu / med['each']:.2f} |")
    lines += [
        "",
        f"Compile-each costs {med['each'] / med['once']:.1f}x the CPU of compile-once with `with_data` over {n} "
        f"instances; per instance the update is {statistics.median(t for r in runs['each'] for t in r['per_instance']) / statistics.median(t for r in runs['once'] for t in r['per_instance']):.0f}x "
        "cheaper than a build + compile. The fixed part (imports, base build + compile) stays in both.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    quick_main(__doc__, SECTION, report, argv)


if __name__ == "__main__":
    main()
