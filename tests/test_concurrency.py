"""Several verifications and runs at once in one process: no crash, and the verdicts of one after another.

The certificate keeps per-problem state (a point cache, QDLDL factorisations, HiGHS instances); two verifications
of one problem at once used to share a HiGHS instance and a factorisation and crashed the interpreter or rejected
the optimum (and kept that rejection for the point). docs/kernel.md, "What may run concurrently", states the rule.
The stress test (slow) runs ``tests/concurrency_driver.py`` in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from poso_sim.kkt import KKTChecker, checker_for, verify
from poso_sim.kkt import decide as decide_mod

pytestmark = pytest.mark.solver

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "concurrency_driver.py"


def _claims(ms) -> dict:
    nlp, opt = ms["problem"], ms["optimal"]
    return {
        "optimal": opt,
        "optimal-zero": opt.with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n)),
        "optimal-forged": opt.with_multipliers(y=opt.y * 0.5, z_L=opt.z_L * 0.5, z_U=opt.z_U * 0.5),
        "tampered": ms["tampered"],
        "feasible": ms["feasible"],
    }


def _fresh(nlp):
    """The same problem as a new object: a checker of its own (empty point cache, no factorisation yet)."""
    other = nlp.with_data(nlp.p)
    assert other.fingerprint == nlp.fingerprint and other is not nlp
    return other


def _verdict(c) -> tuple:
    """Everything a verdict says but its timings: acceptance, reasons, who decided and the residuals."""
    return (c.accepted, tuple(c.reasons), c.decided_by, c.found_multipliers, c.primal_residual, c.dual_residual,
            c.sign_violation, c.complementarity, c.cost)


def test_one_problem_verified_from_four_threads(manchester_solutions) -> None:
    ms = manchester_solutions
    claims = _claims(ms)
    names = sorted(claims)
    reference = {nm: _verdict(KKTChecker(ms["problem"]).verify(claims[nm])) for nm in names}
    # the decisions these claims exercise: received, recomputed/local LP (found), budget (rejected)
    assert reference["optimal"][0] and reference["optimal-zero"][0] and reference["optimal-forged"][0]
    assert not reference["tampered"][0] and not reference["feasible"][0]
    assert {reference[nm][2] for nm in names} >= {"received", "budget"}
    nlp = _fresh(ms["problem"])
    start = threading.Barrier(4)

    def worker(i: int) -> dict[str, list[tuple]]:
        order = names[i:] + names[:i]  # each thread in its own order: the same claim is decided at once elsewhere
        start.wait()
        out: dict[str, list[tuple]] = {nm: [] for nm in names}
        for _ in range(2):
            for nm in order:
                out[nm].append(_verdict(verify(nlp, claims[nm])))
        return out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
    for nm in names:
        got = [v for r in results for v in r[nm]]
        assert len(got) == 8 and all(v == reference[nm] for v in got), nm
    # the point cache holds the outcomes of the points decided past the received multipliers, and nothing else
    search = checker_for(nlp).search
    assert len(search.cache) == 3  # the optimum's x (zero and forged multipliers), the tampered, the feasible
    # the optimum is still accepted with any multipliers afterwards (no outcome of the contention was kept)
    after = verify(nlp, claims["optimal-zero"])
    assert after.accepted and after.decision.get("cached") is True
    # factorisations made while the threads overlapped are kept for reuse, at most _SPARE_FACTORS of them
    assert 1 <= len(search._factors) <= decide_mod._SPARE_FACTORS


class _Interrupted(Exception):
    pass


def test_interrupted_or_failed_decision_is_not_kept(manchester_solutions, monkeypatch) -> None:
    """An LP that raises (an interruption, a crash in Python) or ends with a status other than optimal, infeasible
    or the iteration limit leaves nothing in the point cache: the next claim of the point decides afresh."""
    ms = manchester_solutions
    zero = _claims(ms)["optimal-zero"]
    nlp = _fresh(ms["problem"])
    search = checker_for(nlp).search
    real = decide_mod._run_lp

    def interrupted(*a, **k):
        raise _Interrupted("stopped")

    monkeypatch.setattr(decide_mod, "_run_lp", interrupted)
    with pytest.raises(_Interrupted):
        verify(nlp, zero)
    assert len(search.cache) == 0 and search._factors == []  # a half-used factorisation is dropped too

    def other(*a, **k):
        status, v, basis, info = real(*a, **k)
        return "other", None, None, {**info, "status": "Time limit reached"}

    monkeypatch.setattr(decide_mod, "_run_lp", other)
    c = verify(nlp, zero)
    assert not c.accepted and c.decision["stage"] == "lp" and c.decision["exists"] is None
    assert len(search.cache) == 0
    monkeypatch.setattr(decide_mod, "_run_lp", real)
    c = verify(nlp, zero)
    assert c.accepted and c.decided_by == "local-lp" and "cached" not in c.decision
    assert len(search.cache) == 1


def test_lp_budget_is_iterations_not_time() -> None:
    """The LPs run without a time limit: only the iteration budget cuts them, the same on any machine and load."""
    import scipy.sparse as sp

    a = sp.csc_matrix(np.array([[1.0, 1.0], [1.0, -1.0]]))
    lo, hi = np.array([0.0, 0.0]), np.array([10.0, 10.0])
    status, v, _b, info = decide_mod._run_lp(a, lo, hi, np.array([1.0, -1.0]), np.array([1.0, 1.0]), None,
                                             iterations=1000, highs=decide_mod._new_highs())
    assert status == "optimal" and v is not None
    h = decide_mod._new_highs()
    h.setOptionValue("time_limit", 1e-9)  # an instance that carried a time limit: the LP clears it
    status, *_ = decide_mod._run_lp(a, lo, hi, np.array([1.0, -1.0]), np.array([1.0, 1.0]), None, iterations=5,
                                    highs=h)
    assert status == "optimal" and h.getOptionValue("time_limit")[1] == float("inf")


def test_first_highs_instances_made_at_once_keep_stdout() -> None:
    """The first HiGHS instance of a process is made with stdout sent to /dev/null (its banner); several threads
    making their first instances at once used to swap file descriptor 1 and could leave it at /dev/null."""
    code = (
        "import threading, os\n"
        "from poso_sim.kkt.decide import _new_highs\n"
        "b = threading.Barrier(8)\n"
        "def w():\n"
        "    b.wait(); _new_highs()\n"
        "ts = [threading.Thread(target=w) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "os.write(1, b'still here\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "still here\n"


def test_both_backends_solve_from_eight_threads_at_once() -> None:
    """Solves of shared compiled problems through both backends at once (CasADi's Ipopt: derivative functions
    built once per structure and shared, a new nlpsol per solve; cyipopt: callbacks through the problem's locked
    evaluators): each result is the one-thread result, to the bit."""
    from poso_sim.nlp import compile_nlp
    from poso_sim.solvers import IpoptBackend
    from poso_sim.solvers.casadi_ipopt import CasadiIpoptBackend
    from test_nlp import hs071, kitchen_sink

    nlps = [compile_nlp(hs071()), compile_nlp(kitchen_sink())]
    backends = [CasadiIpoptBackend, IpoptBackend]

    def solve(k: int) -> tuple:
        nlp, backend = nlps[(k // 2) % 2], backends[k % 2]
        r = backend().solve(nlp, nlp.x0)
        return r.status, r.iterations, r.x.tobytes(), r.y.tobytes(), r.z_L.tobytes(), r.z_U.tobytes()

    reference = {k: solve(k) for k in range(4)}
    assert all(v[0] == "optimal" for v in reference.values())
    start = threading.Barrier(8)

    def at_once(k: int) -> tuple:
        start.wait()
        return solve(k)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(at_once, range(8)))
    for k, v in enumerate(got):
        assert v == reference[k % 4], k


# ------------------------------------------------------------------------------------------------ trading markets
TRADING_VARIANTS = ("", ":price-liar", ":equivocating-hub", ":collusion")


def _market(r) -> tuple:
    """What a market run produced, as digests and counts (its timings aside)."""
    return r.log.digest(), r.trace_digest, r.rounds, r.responses, r.messages, tuple(r.path[-1])


def test_one_hub_responder_answers_from_four_threads_as_from_one() -> None:
    """The process's responder of a case and hour is shared by every trading run: four threads asking the same
    hubs at once get the one-thread answers to the bit (each hub's CasADi solvers serve one call at a time; on
    d34a3ff such threads crashed the interpreter inside `qpsol`)."""
    from poso_sim.cases.trading import load_trading_case
    from poso_sim.solvers.trading import HubResponder

    case = load_trading_case("trading")
    hr = HubResponder(case, hour=12)
    g, e, h = case.initial_prices(12)
    rng = np.random.default_rng(7)
    asks = [(hub, (g * 1.1, e * (1 + 0.05 * a), h * (1 + 0.05 * b))) for hub in hr.hubs
            for a, b in rng.standard_normal((3, 2))]
    reference = [hr.solve(hub, p).tobytes() for hub, p in asks]
    start = threading.Barrier(4)

    def worker(i: int) -> list[bytes]:
        order = list(range(i, len(asks))) + list(range(i))  # the same hub asked by another thread meanwhile
        start.wait()
        got = {k: hr.solve(*asks[k]).tobytes() for k in order}
        return [got[k] for k in range(len(asks))]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
    assert all(r == reference for r in results)
    assert hr.fallbacks == 0


def test_trading_runs_at_once_give_the_digests_of_one_after_another() -> None:
    """Four short trading-12 runs (honest and three dishonest variants) as `to_thread(run_trading)` in one
    `gather`, twice, sharing the process's responder: the run-log and trace digests, rounds and final prices of
    the same runs one after another. On d34a3ff 4 of 4 processes doing this crashed (double free in CasADi)."""
    import asyncio

    from poso_sim.scenarios.model import resolve_scenario
    from poso_sim.scenarios.trading_runner import run_trading

    scns = [resolve_scenario(f"trading-12{v}").with_(max_rounds=6) for v in TRADING_VARIANTS]
    reference = [_market(run_trading(s)) for s in scns]
    assert len({r[0] for r in reference}) == len(scns) and all(r[2] == 6 and r[3] > 0 for r in reference)

    async def at_once() -> list:
        return await asyncio.gather(*[asyncio.to_thread(run_trading, s) for s in scns + scns])

    got = [_market(r) for r in asyncio.run(at_once())]
    assert got == reference + reference


# ------------------------------------------------------------------------------------------------ stress (slow)
def _driver(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-X", "faulthandler", str(DRIVER), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _by_run(out: str) -> dict:
    return {(r["scenario"], r["seed"]): r for r in json.loads(out)["runs"]}


@pytest.mark.slow
def test_stress_concurrent_real_runs_in_fresh_processes(manchester_solutions) -> None:
    """20 fresh processes, 2 at a time; in each, 8 `arun_scenario` and 8 `to_thread(run_scenario)` runs with real
    payloads at once (one `asyncio.gather`), with 4 one-height market runs each way and 4 short iterative market
    runs (`to_thread(run_trading)`, sharing the process's best-response solvers); in half the processes each run
    has its own session (every run verifies every plan it sees), in the other half all share the default session
    (its memo filled by whichever run is first): no crash, and per run the verdicts, the run-log and the trace
    digests of the same runs one after another. On f97e291 such processes crashed (SIGSEGV in HiGHS, "double
    free" in QDLDL); on d34a3ff the iterative markets crashed them in CasADi's `qpsol`."""
    seq = _driver("sequential", "--runs", "8", "--markets", "4")
    assert seq.returncode == 0, seq.stderr[-3000:]
    reference = _by_run(seq.stdout)
    assert len(reference) == 16

    def one(i: int) -> tuple[int, str, str]:
        p = _driver("mixed", "--runs", "8", "--markets", "4", *(("--shared",) if i % 2 else ()))
        return p.returncode, p.stdout, p.stderr

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(one, range(20)))
    crashed = [(rc, err[-2000:]) for rc, _out, err in outcomes if rc != 0]
    assert not crashed, crashed[:2]
    for _rc, out, _err in outcomes:
        runs = json.loads(out)["runs"]
        assert len(runs) == 28
        for r in runs:
            ref = reference[(r["scenario"], r["seed"])]
            for key in ("verdicts", "log_digest", "trace_digest", "executed"):
                assert r[key] == ref[key], (r["via"], r["scenario"], r["seed"], key)
