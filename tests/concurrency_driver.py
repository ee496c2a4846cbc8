"""Several real-payload runs, or several verifications, at once in one process (the stress test's worker).

    python tests/concurrency_driver.py MODE [--runs N] [--markets M] [--threads K] [--repeat R]

MODE:

* ``sequential``: the runs one after another (the reference);
* ``gather``: the runs as ``asyncio.gather(arun_scenario(...), ...)``;
* ``threads``: the runs as ``asyncio.gather(asyncio.to_thread(run_scenario, ...), ...)``;
* ``mixed``: both at once: ``N`` ``arun_scenario`` and ``N`` ``to_thread(run_scenario)`` runs in one ``gather``;
* ``verify``: one compiled problem verified from ``K`` threads at once (every thread checks the same claims, in
  its own order, ``R`` times), then the optimum with zero multipliers once more on the same checker.

Each run has its own session (so each verifies every plan it sees: the most verifications at once), or with
``--shared`` all share the default session (its memo of verdicts and plans filled by whichever run gets first); the plans
come from the solution cache (``POSO_SIM_CACHE_DIR``). ``--markets M`` adds ``M`` iterative trading runs (short
``trading-12`` variants, ``to_thread(run_trading)``: they share the process's best-response solvers) and ``M``
one-height market runs (``trading-poso`` variants, like the dispatch runs). Prints one JSON object: per run its scenario, seed,
log and trace digests and verdicts; per claim its verdicts (``verify``). Exit status 0 unless something raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from typing import Any

SCENARIOS = ("scenario-1", "scenario-2", "scenario-3", "scenario-4")
#: iterative markets (run with this round limit) and one-height markets, taken in this order by ``--markets``
MARKETS = ("trading-12", "trading-12:price-liar", "trading-12:equivocating-hub", "trading-12:collusion")
MARKET_ROUNDS = 8
ONE_HEIGHT = ("trading-poso", "trading-poso-favour", "trading-poso-price-up-1", "trading-poso-interval-end")


def _runs(n: int) -> list[tuple[str, int | None]]:
    """``n`` (scenario, seed) pairs: the four scenarios with their own seed, then with seeds 1, 2, ..."""
    out: list[tuple[str, int | None]] = []
    k = 0
    while len(out) < n:
        for s in SCENARIOS:
            if len(out) < n:
                out.append((s, None if k == 0 else k + 1))
        k += 1
    return out


def _summary(name: str, seed: int | None, r: Any, via: str) -> dict[str, Any]:
    d = r.to_dict() if hasattr(r, "to_dict") else {}
    verdicts = sorted(
        {(e["digest"], e["accepted"], tuple(e["reasons"])) for e in _verified_rows(r)}
    )
    return {
        "scenario": name,
        "seed": seed,
        "via": via,
        "log_digest": r.log.digest(),
        "trace_digest": r.trace_digest,
        "executed": (r.executed or {}).get("digest"),
        "verdicts": [list(v[:2]) + [list(v[2])] for v in verdicts],
        "excluded": d.get("excluded", r.excluded_by_honest()),
    }


def _verified_rows(r: Any) -> list[dict[str, Any]]:
    from poso_sim.scenarios.log import kind_of

    rows = []
    for e in r.log:
        if kind_of(type(e.item)) == "verified":
            v = e.item.verdict
            rows.append({"digest": e.item.digest, "accepted": bool(v.accepted), "reasons": [str(x) for x in v.reasons]})
    return rows


def _source(session: Any, name: str) -> Any:
    from poso_sim.scenarios import RealPayloads

    if name in ONE_HEIGHT:
        return None  # the scenario's case decides: the market's payloads (MarketPayloads) in `session`
    return RealPayloads("manchester", session=session)


def _trading(name: str) -> Any:
    from poso_sim.scenarios.model import resolve_scenario

    return resolve_scenario(name).with_(max_rounds=MARKET_ROUNDS)


def _trading_summary(name: str, r: Any, via: str) -> dict[str, Any]:
    return {"scenario": name, "seed": None, "via": via, "log_digest": r.log.digest(), "trace_digest": r.trace_digest,
            "executed": f"{r.rounds} rounds, {r.responses} responses, prices {list(r.path[-1])}", "verdicts": [],
            "excluded": r.excluded_by_honest()}


def run_all(mode: str, n: int, shared: bool = False, markets: int = 0) -> list[dict[str, Any]]:
    from poso_sim.scenarios import arun_scenario, run_scenario
    from poso_sim.scenarios.session import Session, default_session
    from poso_sim.scenarios.trading_runner import run_trading

    runs = _runs(n) + [(nm, None) for nm in ONE_HEIGHT[:markets]]
    iterated = list(MARKETS[:markets])
    if mode == "sequential":
        out = []
        for name, seed in runs:
            s = Session()
            out.append(_summary(name, seed, run_scenario(name, payloads=_source(s, name), seed=seed, session=s),
                                mode))
        return out + [_trading_summary(nm, run_trading(_trading(nm)), mode) for nm in iterated]
    vias = {"gather": ["arun"], "threads": ["to_thread"], "mixed": ["arun", "to_thread"]}.get(mode)
    if vias is None:
        raise SystemExit(f"unknown mode {mode!r}")
    jobs = [(via, name, seed) for via in vias for name, seed in runs]

    async def main() -> list[Any]:
        coros = []
        for via, name, seed in jobs:
            s = default_session() if shared else Session()
            if via == "arun":
                coros.append(arun_scenario(name, payloads=_source(s, name), seed=seed, session=s))
            else:
                coros.append(asyncio.to_thread(run_scenario, name, payloads=_source(s, name), seed=seed, session=s))
        # an iterated market has no asyncio form: each in a thread, every one through the process's responder
        coros += [asyncio.to_thread(run_trading, _trading(nm)) for nm in iterated]
        return await asyncio.gather(*coros)

    results = asyncio.run(main())
    out = [_summary(name, seed, r, via) for (via, name, seed), r in zip(jobs, results)]
    return out + [_trading_summary(nm, r, "to_thread") for nm, r in zip(iterated, results[len(jobs):])]


def claims() -> dict[str, Any]:
    """The claims every verifying thread checks: the optimum (own and zero multipliers), the tampered and the
    feasible-restricted plans, forged multipliers (received ones fail, recomputed ones pass)."""
    import numpy as np

    from poso_sim.solvers.probes import manchester_plans

    ms = manchester_plans("manchester")
    nlp, opt = ms["problem"], ms["optimal"]
    zero = opt.with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n))
    return {
        "problem": nlp,
        "optimal": opt,
        "optimal-zero": zero,
        "optimal-forged": opt.with_multipliers(y=opt.y * 0.5, z_L=opt.z_L * 0.5, z_U=opt.z_U * 0.5),
        "tampered": ms["tampered"],
        "feasible": ms["feasible"],
    }


def _verdict(c: Any) -> list[Any]:
    return [bool(c.accepted), list(c.reasons), c.decided_by]


def verify_threads(k: int, repeat: int) -> dict[str, Any]:
    from poso_sim.kkt import KKTChecker, verify

    cl = claims()
    nlp = cl.pop("problem")
    names = sorted(cl)
    # reference: a checker of its own, one claim after another
    ref_chk = KKTChecker(nlp)
    reference = {nm: _verdict(ref_chk.verify(cl[nm])) for nm in names}
    got: dict[str, list[list[Any]]] = {nm: [] for nm in names}
    errors: list[str] = []
    start = threading.Barrier(k)

    def worker(i: int) -> None:
        order = names[i % len(names):] + names[: i % len(names)]
        try:
            start.wait()
            for _ in range(repeat):
                for nm in order:
                    got[nm].append(_verdict(verify(nlp, cl[nm])))
        except BaseException as exc:  # noqa: BLE001 - reported
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = _verdict(verify(nlp, cl["optimal-zero"]))
    differ = sorted(nm for nm in names if any(v != reference[nm] for v in got[nm]))
    return {"reference": reference, "differ": differ, "after": after, "errors": errors,
            "counts": {nm: len(got[nm]) for nm in names}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("sequential", "gather", "threads", "mixed", "verify"))
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--markets", type=int, default=0, choices=range(len(MARKETS) + 1),
                    help="add this many iterative and as many one-height market runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--shared", action="store_true", help="every concurrent run in the default session")
    a = ap.parse_args(argv)
    if a.mode == "verify":
        out: Any = verify_threads(a.threads, a.repeat)
    else:
        out = {"mode": a.mode, "runs": run_all(a.mode, a.runs, a.shared, a.markets)}
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
