"""Whole-process workload for A/B timing of the KKT certificate: verify a fixed adversarial set of claims.

28 claims on the Manchester problem (seeded): the optimum, the tampered and the restricted plan, each with its own
multipliers, zeros, random ones, 1.01x its own, the other plans'; the optimum and the restricted plan with 5 to
200 row multipliers perturbed by 1e-3. Prints the number accepted and the CPU time spent in ``verify`` (total and
worst claim) on stderr. Run against two checkouts, alternated, under ``/usr/bin/time -f "%U %S %e"``::

    PYTHONPATH=<checkout>/src python benchmarks/kkt_adversarial_workload.py

Uses only ``solve_case`` (cached plans) and ``poso_sim.kkt.verify``, which every version of the project has.
"""
import sys, time, numpy as np
from poso_sim.solvers.api import get_problem, solve_case
from poso_sim.kkt import verify
nlp = get_problem("manchester", "true")[1]
P = {v: solve_case(case="manchester", variant=v) for v in ("true", "tampered", "feasible")}
rng = np.random.default_rng(5)
claims = []
for v, p in P.items():
    claims += [p, p.with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n)),
               p.with_multipliers(y=rng.standard_normal(nlp.m)), p.with_multipliers(y=1.01 * np.asarray(p.y))]
    for w, q in P.items():
        if w != v:
            claims.append(p.with_multipliers(y=q.y, z_L=q.z_L, z_U=q.z_U))
for base in ("true", "feasible"):
    p = P[base]
    for k in (5, 20, 50, 100, 200):
        y = np.array(p.y)
        idx = rng.choice(nlp.m, k, replace=False)
        y[idx] += 1e-3 * rng.standard_normal(k)
        claims.append(p.with_multipliers(y=y))
t0 = time.process_time()
verdicts, worst = [], 0.0
for c in claims:
    t1 = time.process_time()
    verdicts.append(verify(nlp, c).accepted)
    worst = max(worst, time.process_time() - t1)
print(len(claims), "claims", sum(verdicts), "accepted", f"{time.process_time() - t0:.2f} s CPU in verify, worst claim {worst:.3f} s", file=sys.stderr)
