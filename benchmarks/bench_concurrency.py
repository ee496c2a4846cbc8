"""Cost of the certificate's verdicts alone and at once (poso_sim.kkt on the Manchester model).

Run from the repository root: ``python -m benchmarks.bench_concurrency [--quick] [--write]``. Prints a markdown
report; ``--write`` replaces the "Concurrent verification" section of docs/benchmarks.md (and with it the one-off
before/after table kept there, which is why ``make bench`` does not run this one). Needs the three Manchester plans
in the solution cache (``make demo`` or the test suite puts them there).

Measured:

* per claim, the thread CPU time of one verdict (median; the point cache cleared before each), for the claims
  that reach each stage: received multipliers, multipliers recomputed then found by the local LP (the optimum
  with zero or halved multipliers), the iteration budget spent (the tampered and restricted plans);
* the parts a verification now makes for itself: a HiGHS instance, a QDLDL factorisation's first (symbolic +
  numeric) and later (numeric) use;
* the same verdicts from two threads at once, each verification owning its factorisation and HiGHS instance
  (what the certificate does), against one lock around the decision (the alternative) and against one thread;
  the point cache is off for this part, so every verdict decides.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import machine, quick_main  # noqa: E402

SECTION = "## Concurrent verification"


def _claims() -> tuple[object, dict[str, object]]:
    from poso_sim.solvers.probes import manchester_plans

    ms = manchester_plans("manchester")
    nlp, opt = ms["problem"], ms["optimal"]
    return nlp, {
        "optimal (own multipliers)": opt,
        "optimal, zero multipliers": opt.with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n)),
        "optimal, halved multipliers": opt.with_multipliers(y=opt.y * 0.5, z_L=opt.z_L * 0.5, z_U=opt.z_U * 0.5),
        "tampered plan": ms["tampered"],
        "restricted (feasible) plan": ms["feasible"],
    }


def _per_verdict(nlp, claims: dict, reps: int) -> list[str]:
    from poso_sim.kkt import KKTChecker

    chk = KKTChecker(nlp)
    rows = ["| claim | decided by | verdict | thread CPU per verdict (median) |", "| --- | --- | --- | --- |"]
    for name, sol in claims.items():
        cpu, cert = [], None
        for _ in range(reps):
            chk.search.cache.clear()
            c0 = time.thread_time()
            cert = chk.verify(sol)
            cpu.append(time.thread_time() - c0)
        verdict = "accepted" if cert.accepted else "rejected"
        rows.append(f"| {name} | {cert.decided_by} | {verdict} | {statistics.median(cpu) * 1e3:.1f} ms |")
    return rows


def _parts(nlp, reps: int) -> list[str]:
    from poso_sim.kkt import KKTChecker
    from poso_sim.kkt import decide as d

    d._new_highs()  # the process's first instance (banner, library set-up) is not what a verification pays
    cpu = []
    for _ in range(reps * 10):
        c0 = time.thread_time()
        d._new_highs()
        cpu.append(time.thread_time() - c0)
    highs = statistics.median(cpu)
    chk = KKTChecker(nlp)
    rng = np.random.default_rng(1)
    ls = chk.search.ls
    jv = nlp.jac(nlp.x0)
    dc = np.exp(rng.uniform(0, 4, nlp.n))
    dr = np.exp(rng.uniform(-8, 0, nlp.m))
    grad = rng.standard_normal(nlp.n)
    first, later = [], []
    for _ in range(reps):
        f = d._Factor()
        c0 = time.thread_time()
        ls.solve(dc, jv, dr, grad, f)
        first.append(time.thread_time() - c0)
        c0 = time.thread_time()
        ls.solve(dc, jv, dr, grad, f)
        later.append(time.thread_time() - c0)
    return [
        f"* a HiGHS instance: {highs * 1e3:.2f} ms of thread CPU (median of {len(cpu)});",
        f"* a QDLDL factorisation, first use (ordering, symbolic and numeric): {statistics.median(first) * 1e3:.1f} ms;"
        f" later uses (numeric only): {statistics.median(later) * 1e3:.1f} ms (medians of {reps}).",
    ]


def _at_once(nlp, claims: dict, rounds: int) -> list[str]:
    from poso_sim.kkt import checker_for
    from poso_sim.kkt import decide as d

    deciding = [s for n, s in claims.items() if "own multipliers" not in n]
    real_cacheable, real_from_point = d._cacheable, d.MultiplierSearch._from_point
    d._cacheable = lambda _dec: False  # every verdict decides
    lock = threading.Lock()

    def locked(self, *a, **k):
        with lock:
            return real_from_point(self, *a, **k)

    def batch() -> None:
        for _ in range(rounds):
            for s in deciding:
                checker_for(work).verify(s)

    rows = ["| how | verdicts | wall | process CPU |", "| --- | --- | --- | --- |"]
    try:
        for how, threads, patch in (("one thread", 1, None), ("two threads, a lock around the decision", 2, locked),
                                    ("two threads, a factorisation and HiGHS instance each", 2, None)):
            work = nlp.with_data(nlp.p)  # a checker of its own
            d.MultiplierSearch._from_point = patch or real_from_point
            batch_n = len(deciding) * rounds * (2 if threads == 1 else 1)
            t0, c0 = time.perf_counter(), time.process_time()
            if threads == 1:
                batch()
                batch()
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda _i: batch(), range(threads)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            n = batch_n * (1 if threads == 1 else threads)
            rows.append(f"| {how} | {n} | {wall:.2f} s ({wall / n * 1e3:.1f} ms each) | {cpu:.2f} s |")
    finally:
        d._cacheable, d.MultiplierSearch._from_point = real_cacheable, real_from_point
    return rows


def report(quick: bool = False) -> str:
    reps, rounds = (5, 2) if quick else (9, 6)
    nlp, claims = _claims()
    lines = [SECTION, "", "`python -m benchmarks.bench_concurrency" + (" --quick`" if quick else "`"), ""]
    lines += machine() + [""]
    lines += ["Per verdict, one thread (point cache cleared before each):", ""] + _per_verdict(nlp, claims, reps)
    lines += ["", "What a verification makes for itself:", ""] + _parts(nlp, reps)
    lines += ["", "The deciding claims (all but the first above), point cache off, from two threads at once:", ""]
    lines += _at_once(nlp, claims, rounds)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    quick_main(__doc__, SECTION, report, argv)


if __name__ == "__main__":
    main()
