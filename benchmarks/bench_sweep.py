"""Benchmark of sweeps (poso_sim.sweep).

Run from the repository root: ``python -m benchmarks.bench_sweep [--quick] [--write]``. Prints a markdown report;
``--write`` replaces the "Sweeps" section of docs/benchmarks.md.

Workloads:

* one height with N delegates (N = 10, 25, 50, 100), 3 normal nodes, every delegate honest, signatures on,
  latency Uniform(10 ms, 50 ms), stub payloads (verification memoised by digest): wall time, messages, peak
  memory (tracemalloc, separate run), with and without the Ed25519 verification memo;
* where the time goes for N = 100 (cProfile, own time grouped by layer);
* the packaged 1 000-case campaign on 2 worker processes (cases per second, violations), and on 1 worker for the
  first 200 cases; ``--quick`` runs 200 cases on 2 workers;
* real payloads (when the solution cache is warm): the one-off cost of loading the four cached plans and
  verifying each once with the KKT certificate, which every case then shares.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import sys
import time
import tracemalloc

from benchmarks.common import machine, quick_main
from poso_sim.scenarios.model import Scenario
from poso_sim.scenarios.payloads import StubPayloads
from poso_sim.sweep import build_trace, check_trace, run_sweep
from poso_sim.scenarios import Session
from poso_sim.sweep.checker import certificates
from poso_sim.sweep.worker import run_scenario_traced

SECTION = "## Sweeps"

#: measured by hand, 7 December 2026 (whole processes under /usr/bin/time, alternated; kept when the section is
#: written again)
CPU_PER_CASE = """#### CPU per case, 7 December 2026 (issue 22, item 3)

`poso-sim sweep campaign --stub --workers 1 --no-progress` (1 000 cases, checker included), user + sys CPU of
the whole process (`/usr/bin/time`), 53b9cb6 (main at the start of the day) and main at 1f68621 alternated, 3
pairs, 19:22-19:27 UTC, load average 3.8-4.6 on the 2 CPUs of the committee-size machine (AMD EPYC):

| tree | CPU s, 3 runs | median | cases per CPU-second | max RSS MiB |
|---|---|---:|---:|---:|
| 53b9cb6 | 32.7, 31.8, 34.3 | 32.7 | 30.6 | 191 |
| 1f68621 | 19.4, 26.7, 19.4 | 19.4 | 51.5 | 172 |

Ratio of the medians 0.59 (1.68x); per pair 0.59, 0.84 and 0.57 (the second run after was slowed by the load:
54 s of wall for 27 s of CPU). Every row (timings left out), checker trace and violation list of the 1 000 cases
is the same as 53b9cb6's, case by case.

The day's per-message work (protocol machines, virtual loop, compact log) accounts for part of it; per case:

* **Ed25519**: libsodium (PyNaCl) instead of OpenSSL (`cryptography`): verification 63 against 127 µs, signing
  23 against 39 µs, a key pair 22 against 44 µs (and the signing key is no longer loaded a second time, 43 µs).
  A signature a run's own key pair makes is noted as valid when made (`KeyPair.noting`), so no receiver's check
  of it is computed; a forged or altered signature still is. The checker re-verifies from computed answers only
  (`SignatureCache.verified`: a memo of `check_signature`, see docs/sweeps.md for what it trusts), which leaves it
  the 9.4 certificate signatures a case that nobody computed. Verifications per case 36.9 -> 9.8; Ed25519 about
  6.5 -> 1.5 ms a case (the counts times the per-operation times above).
* **The cycle collector**: every run was cyclic garbage (its network's handlers held the runner), about 2 000
  objects a case left to the collector; `Runner.release` unhooks them after the row is read and a batch keeps
  the runs' collector setting: collector time 3.2 -> 1.2 ms a case (gc callbacks, 300 cases in one process).
* The sweep command ends its process without the interpreter's teardown; a run builds its behaviour objects
  once; a scenario's generated delegate ids are made once per size.

What is left between 19.4 ms a case and the 10 ms of 100 cases per CPU-second (one process, 200-300 cases,
process CPU without a profiler, load 4-6): the simulation's per-message work, about 14 ms (386 messages a case,
some 36 µs each; canonical JSON of the signed messages is the largest single step in cProfile, about a tenth);
the process's start (imports: pandas and pyarrow for the table, the pydantic schemas, the package) about 1 s,
1 ms a case over 1 000 cases; the cycle collector 1.1 ms, now the kernel's own graph (network, nodes, channels,
about 900 objects a case, cyclic through the nodes' back references: dropping them after a run, tried by hand,
leaves 0.04-0.07 ms); Ed25519 1.5 ms (30 signatures, 9.3 key pairs, 9.8 verifications); building and checking
the trace 0.75 ms; the runner's set-up 0.45 ms (almost half of it the network's seeds); a virtual event loop created
and closed per case 0.4 ms; drawing and validating the case's scenario 0.4 ms.

Two workers (`--workers 2`, main at 1f68621, 19:28-19:31 UTC, load average 3.8-4.6): 44.1 and 49.5 s of wall
against 40.6 and 44.0 s with one worker, 23.0 and 25.5 s of CPU against 20.9 and 24.1 s. Other processes held
both CPUs, so the second worker bought no wall time; the 1-2 s of CPU more were not traced to one cause on the
loaded machine (pickling the 1 000 scenarios to the workers and their rows back takes 0.06 s). Again at
19:51-19:53 UTC (load average 2.0-3.6, one other process, a 2 000-delegate run, holding a CPU throughout): one
worker 22.8 and 33.6 s of wall, two workers 32.5 and 30.7 s. No quiet moment came in this session to measure the
speed-up itself.

#### Second pass: set-up, checker, tables and imports (7 December 2026, evening)

What a case costs outside the message path, and the process's own start and end, at main 2794d49 (the day's
kernel and protocol work included). `poso-sim sweep campaign --stub --workers 1 --no-progress` (1 000 cases),
user + sys CPU of the whole process, eb96ef5 / main without this pass (its three commits reverted) / main,
alternated, 3 rounds, 22:26-22:29 UTC, load average 1.2-1.8 (another worker on the second CPU):

| tree | CPU s, 3 runs | median | cases per CPU-second | max RSS MiB |
|---|---|---:|---:|---:|
| eb96ef5 | 21.6, 17.2, 18.4 | 18.4 | 54.2 | 165 |
| main without this pass | 17.0, 15.7, 14.9 | 15.7 | 63.8 | 165 |
| main 2794d49 | 12.3, 15.8, 14.8 | 14.8 | 67.4 | 122 |

The same tree varies by a quarter between runs on this machine; instruction counts (valgrind, `--limit 120`
minus `--limit 20`) are steadier: this pass takes a case from 64.7 to 62.5 M instructions and the process's fixed
part from 3.11 to 2.38 G. What it changed:

* **No pandas** in a stub sweep: the Parquet tables are written by pyarrow from the rows (column types and nulls
  as pandas makes them, tested), the report from the rows; `SweepResult.table` is made on first use. 0.25-0.3 s
  of CPU and 45 MiB a process.
* **The checker**: a decision's signed bytes and a block's header hash are memoised across the traces of a
  process (98 % and 99 % hits over the campaign: the same contents recur, the signatures do not); building the
  trace and checking it without Ed25519 3.7 -> 2.6 M instructions a case.
* **Set-up**: an unsigned run derives no key pairs (a third of the cases), `node_ref` and the scenario checks
  read the ids once, the sweep's axes once per iteration: drawing and validating a case 1.33 -> 1.24 M.

Where a case's 12-15 ms go now (process CPU per phase, min of 3 passes over 300 cases, load 5-7, so about 1.3x
an idle machine): simulation 10.4 ms (the message path; it includes signing, 30 signatures a case, about
0.75 ms idle, and a virtual event loop made and closed per case, 0.25-0.36 ms); the checker 0.9 ms, of which
0.6 ms is the Ed25519 verification of the 9.7 certificate signatures no run computed (libsodium, no batch
verification; the rest 0.2-0.3 ms); the runner's set-up 0.5 ms (key pairs 0.2, the kernel's `Network` 0.2);
drawing and validating the scenario 0.3 ms; building the trace 0.3 ms; freeing the run 0.2 ms; runner and
behaviour objects 0.1 ms; the process's imports 0.45-0.55 s, 0.5 ms a case over 1 000 (numpy 0.39 G
instructions, which pyarrow needs anyway, pydantic 0.26 G and its models, the protocol's dataclasses, asyncio).
100 cases per CPU-second needs the simulation near 7.5 ms a case: what is left outside it is about 2.3 ms, a
third of it Ed25519."""


def one_height(n: int, memo: bool = True) -> dict:
    scn = Scenario(delegates=n, normal_nodes=3, heights=1, network={"latency": {"uniform": [0.01, 0.05]}})
    src = StubPayloads()
    gc.collect()
    session = Session()  # a cold memo: every distinct signature is checked once in this run
    runner, wall = run_scenario_traced(scn, src, sig_memo=memo, session=session)
    sig_calls, sig_computed = session.signatures.calls, session.signatures.computed
    ex = sum(1 for b in certificates(runner.log).values() if b)
    t0 = time.perf_counter()
    res = check_trace(build_trace(runner, src))
    check = time.perf_counter() - t0
    assert res.ok and res.live, res.violations
    return {
        "n": n, "wall": wall, "check": check, "sent": runner.net.sent, "memo": memo, "executed": ex,
        "sig_calls": sig_calls, "sig_computed": sig_computed,
        "kinds": dict(runner.by_kind),
    }


def peak_memory(n: int) -> float:
    scn = Scenario(delegates=n, normal_nodes=3, heights=1, network={"latency": {"uniform": [0.01, 0.05]}})
    gc.collect()
    tracemalloc.start()
    run_scenario_traced(scn, StubPayloads())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def _layer(filename: str, func: str) -> str:
    f = filename.replace("\\", "/")
    if "ed25519" in func or "crypto_sign" in func or "ed25519" in f or "/nacl/" in f or "identity.py" in f:
        return "signatures (Ed25519 sign/verify, keys)"
    if "messages.py" in f or "/json/" in f:
        return "canonical encodings (signing bytes, digests)"
    if "/poso_sim/sim/" in f or "asyncio" in f or "heapq" in func:
        return "kernel (channels, latency, heap, loop)"
    if "/poso_sim/protocol/" in f:
        return "protocol machines (delegate, normal node, behaviours)"
    if "/poso_sim/scenarios/" in f or "/poso_sim/sweep/worker" in f:
        return "host (runner, run log, verification memo)"
    if "/poso_sim/sweep/" in f:
        return "checker"
    return "other (interpreter, builtins)"


def profile_height(n: int, memo: bool) -> list[tuple[str, float]]:
    scn = Scenario(delegates=n, normal_nodes=3, heights=1, network={"latency": {"uniform": [0.01, 0.05]}})
    session = Session()
    pr = cProfile.Profile()
    pr.enable()
    run_scenario_traced(scn, StubPayloads(), sig_memo=memo, session=session)
    pr.disable()
    st = pstats.Stats(pr)
    groups: dict[str, float] = {}
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        groups[_layer(filename, func)] = groups.get(_layer(filename, func), 0.0) + tt
        total += tt
    return sorted(((k, v / total) for k, v in groups.items()), key=lambda kv: -kv[1])


def _cpu() -> float:
    import resource

    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _timed_sweep(workers: int, limit: int | None):
    c0, t0 = _cpu(), time.perf_counter()
    res = run_sweep("campaign", workers=workers, limit=limit, progress=False)
    return res, time.perf_counter() - t0, _cpu() - c0


_REAL_PROBE = r"""
import json, time
t0 = time.perf_counter()
from poso_sim.scenarios.payloads import RealPayloads
t1 = time.perf_counter()
src = RealPayloads("manchester")
plans = src.plans()
t2 = time.perf_counter()
ver = {}
for label, p in plans.items():
    a = time.perf_counter()
    r = src.verify(p, 1)
    ver[label] = [time.perf_counter() - a, bool(r.accepted)]
print(json.dumps({"import": t1 - t0, "plans": t2 - t1, "verify": ver}))
"""


def real_payloads() -> str | None:
    """Cost of real payloads in a fresh process, when the solution cache is warm (None otherwise)."""
    import json
    import subprocess

    try:
        from poso_sim.solvers.cache import default_cache_dir
    except ImportError:
        return None
    cache = default_cache_dir()
    if not cache.exists() or len(list(cache.glob("*.sol"))) < 3:
        return None  # cold cache: the first sweep would solve (minutes); not a sweep cost
    try:
        out = subprocess.run([sys.executable, "-c", _REAL_PROBE], capture_output=True, text=True, timeout=1200,
                             check=True)
        d = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None
    ver = d["verify"]
    cells = ", ".join(f"{k} {v[0]:.2f} s ({'accepted' if v[1] else 'rejected'})" for k, v in ver.items())
    return (f"Real payloads (warm solution cache, fresh process): loading the cached Manchester plans and compiling "
            f"the true problem {d['plans']:.1f} s; the KKT certificate, once per plan: {cells}. A sweep pays "
            f"this once in the parent (`PayloadDescriptor.prepare`); each worker process pays the loading once "
            f"and receives the verdicts with its tasks, so no case runs the certificate and no worker re-solves.")


def report(quick: bool = False) -> str:
    sizes = (10, 25, 50) if quick else (10, 25, 50, 100)
    rows = []
    for n in sizes:
        r = one_height(n)
        r2 = one_height(n)
        best = min(r["wall"], r2["wall"])
        mem = peak_memory(n)
        rows.append(f"| {n} | {r['sent']:,} | {r['kinds'].get('relay', 0):,} | {best:.2f} | {r['sent'] / best:,.0f} "
                    f"| {min(r['check'], r2['check']):.3f} | {r['sig_calls']:,} | {r['sig_computed']:,} | {mem:.1f} |")
    nomemo_n = sizes[-1]
    nm = one_height(nomemo_n, memo=False)
    prof_n = 50 if quick else 100
    prof = profile_height(prof_n, True)
    prof_nm = profile_height(prof_n, False)

    n_cases = 200 if quick else None
    camp, camp_wall, camp_cpu = _timed_sweep(2, n_cases)
    one, one_wall, one_cpu = _timed_sweep(1, 200)
    two, two_wall, two_cpu = _timed_sweep(2, 200)
    t = camp.table
    real = real_payloads()

    lines = [
        SECTION,
        "",
        "`python -m benchmarks.bench_sweep" + (" --quick" if quick else "") + "` (see the module docstring).",
        "",
        *machine(),
        "",
        "### One height with N delegates",
        "",
        "Every delegate honest, 3 normal nodes, signatures on, latency Uniform(10 ms, 50 ms), stub payloads "
        "(verification memoised by digest). Wall time is the simulation, best of 2 runs with a cold Ed25519 "
        "verification memo; check s = building the trace and running the checker (which re-verifies the block "
        "certificates' signatures); signature checks = calls to the session's signature cache (distinct = "
        "actually computed); "
        "memory is the tracemalloc peak of a separate run. Every run passes the checker, liveness included.",
        "",
        "| N | messages | relays | wall s | messages/s | check s | signature checks | distinct checks | peak MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Without the signature memo, N = {nomemo_n} takes **{nm['wall']:.2f} s** ({nm['sent']:,} messages): every "
        f"simulated delegate re-checks the same leader and relay signatures.",
        "",
        f"Where the time goes, N = {prof_n} (cProfile own time by layer; profiling inflates small calls):",
        "",
        "| layer | share with memo | share without memo |",
        "|---|---:|---:|",
    ]
    nm_d = dict(prof_nm)
    for k, v in prof:
        lines.append(f"| {k} | {100 * v:.0f} % | {100 * nm_d.get(k, 0.0):.0f} % |")
    lines += [
        "",
        "### The packaged campaign",
        "",
        f"`poso-sim sweep campaign --workers 2`: **{len(t)} cases in {camp_wall:.1f} s wall = "
        f"{len(t) / camp_wall:.1f} cases/s** on 2 worker processes, **{camp.n_violations} violations**; "
        f"{int(t.messages.sum()):,} messages, {t.virtual_seconds.sum():,.0f} simulated seconds, liveness premises "
        f"held in {int((t.liveness_premise > 0).sum())} cases; CPU time (parent and workers) {camp_cpu:.1f} s = "
        f"{len(t) / camp_cpu:.1f} cases per CPU-second.",
        "",
        f"First 200 cases: 1 worker {200 / one_wall:.1f} cases/s ({one_cpu:.1f} CPU s), 2 workers "
        f"{200 / two_wall:.1f} cases/s ({two_cpu:.1f} CPU s). The machine is shared (see the load average): "
        "wall-time speed-up from the second worker depends on what else runs; cases per CPU-second does not.",
        "",
        f"Per case (2 workers): median {t.wall_seconds.median() * 1e3:.0f} ms simulation + "
        f"{t.check_seconds.median() * 1e3:.1f} ms checking, max {t.wall_seconds.max():.2f} s; "
        f"N from {int(t.N.min())} to {int(t.N.max())}.",
        "",
    ]
    if real:
        lines += [real, ""]
    lines += [CPU_PER_CASE, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    quick_main(__doc__, SECTION, report, argv)


if __name__ == "__main__":
    main()
