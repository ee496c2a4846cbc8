"""Worker side of a sweep: run one case of a sweep on the virtual-time runner and check its run log.

Everything here is importable in a fresh worker process (process pool, Dask worker). The expensive things are
done once per worker process and shared by all the cases it runs, through one `Session` per payload descriptor
(`session_for`):

* payloads: `PayloadDescriptor` -> a payload source built once (real payloads load the cached solutions from
  the solution cache; never re-solved in a worker);
* verdicts: the session's memo keyed by digest, pre-seeded with the verdicts the parent computed
  (`PayloadDescriptor.verdicts`), so a worker does not even verify once;
* signatures: optionally (`sig_memo`), the session's `SignatureCache` is given to the runner, so each distinct
  Ed25519 check is computed once for every simulated node of the process: a pure function of its inputs, so
  results are unchanged; it only removes the N-fold repetition of the same check by N simulated delegates.

Only the runner's public hooks are used (`session`, `verifier`, `signature_cache`, `delegate_factory`); the
checker's trace is built from the run log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from poso_sim.protocol import Delegate, Payload, SignatureCache, Verdict
from poso_sim.protocol.delegate import RUNNING
from poso_sim.scenarios.model import Scenario
from poso_sim.scenarios.payloads import PayloadSource, RealPayloads, StubPayloads
from poso_sim.scenarios.runner import Runner, gc_tuned, make_runner
from poso_sim.scenarios.session import Session

from .checker import SAFETY, build_trace, check_trace, complete_signatures

__all__ = [
    "PayloadDescriptor",
    "MUTATIONS",
    "run_case",
    "run_batch",
    "session_for",
    "source_for",
    "run_scenario_traced",
    "AcceptUnverified",
    "TrustingVerifier",
]


# ------------------------------------------------------------------------------------------- payloads
@dataclass(frozen=True)
class PayloadDescriptor:
    """What a worker needs to rebuild the payload source without solving: its kind, case, cache directory and
    the verdicts computed once by the parent (digest -> (accepted, cost, reasons))."""

    kind: str = "stub"  # "stub" | "real"
    case: str = "manchester"
    cache_dir: str | None = None
    verdicts: tuple[tuple[str, bool, float | None, tuple[str, ...]], ...] = ()
    variants: tuple[tuple[str, str], ...] = ()  # the scenarios' `variants:` (dishonest label -> problem variant)

    @classmethod
    def prepare(cls, kind: str, case: str = "manchester", cache_dir: str | None = None,
                variants: Any = ()) -> "PayloadDescriptor":
        """Build the source here (solving or loading the cached solutions once), verify its labelled plans once
        and return the descriptor to ship to workers."""
        mapped = tuple(sorted(dict(variants).items()))
        d = cls(kind, case, cache_dir, variants=mapped)
        _, src = session_for(d)
        verdicts = []
        for p in (src.plans() if isinstance(src, RealPayloads) else src.payloads(1)).values():
            v = src.verify(p, 1)
            verdicts.append((p.digest, bool(v.accepted), v.cost, tuple(v.reasons)))
        return cls(kind, case, cache_dir, tuple(sorted(verdicts)), mapped)


_SESSIONS: dict[tuple[Any, ...], tuple[Session, PayloadSource]] = {}


def session_for(desc: PayloadDescriptor) -> tuple[Session, PayloadSource]:
    """The session and payload source of a descriptor, built once per process; the parent's verdicts are seeded
    into the session's verdict memo."""
    key = (desc.kind, desc.case, desc.cache_dir, desc.variants)
    got = _SESSIONS.get(key)
    if got is None:
        session = Session()
        src: PayloadSource
        if desc.kind == "stub":
            src = StubPayloads(desc.case)
        elif desc.kind == "real":
            src = RealPayloads(desc.case, cache_dir=desc.cache_dir, session=session, variants=dict(desc.variants))
            src.plans()  # loads the cached solutions (solves only if the cache is cold)
        else:
            raise ValueError(f"unknown payload kind {desc.kind!r}")
        got = _SESSIONS[key] = (session, src)
    session, src = got
    known = {p.digest for p in (src.solved() if isinstance(src, RealPayloads) else src.payloads(1)).values()}
    for digest, ok, cost, reasons in desc.verdicts:
        if digest in known:
            session.seed_verdict(src.key, digest, Verdict(ok, cost, tuple(reasons)))
    return got


def source_for(desc: PayloadDescriptor) -> PayloadSource:
    """The payload source of a descriptor (see `session_for`)."""
    return session_for(desc)[1]


# -------------------------------------------------------------------------------- mutations (self-tests)
class AcceptUnverified(Delegate):
    """A deliberately broken honest delegate: takes every copy (and its own plan) as valid without asking the
    verifier. Only for the `accept_unverified` mutation."""

    def _submit(self, copy: Any, out: list[Any]) -> None:  # noqa: D401 - the broken rule
        p = copy.proposal.payload
        cost = float(p.claimed_cost) if p.claimed_cost is not None else 0.0
        if copy.via == "proof":
            return
        rs = self.rounds.get((copy.proposal.height, copy.proposal.round))
        if rs is None or self.status != RUNNING or (rs.height, rs.round) != (self.height, self.round):
            return
        if copy.via == "own":
            self._own_accepted(rs, copy.proposal, cost, out)
        else:
            self._accept(copy, cost, out)


class TrustingVerifier:
    """A deliberately broken verification service: every plan is accepted at its claimed cost (or the source's
    true cost). Only for the `verifier_accepts_all` mutation."""

    def __init__(self, source: PayloadSource) -> None:
        self.source = source
        self.key = "broken-verifier:" + source.key

    def __call__(self, payload: Payload, height: int | None = None) -> Verdict:
        cost = payload.claimed_cost if payload.claimed_cost is not None else self.source.cost_of(payload.digest)
        return Verdict(True, cost, ())


#: deliberately broken rules, to show the checker catches them (never use them for real results)
MUTATIONS = {
    "accept_unverified": "honest delegates accept every proposal copy (and their own plan) without verifying it",
    "verifier_accepts_all": "the verification host answers 'accepted' for every plan",
}


# ------------------------------------------------------------------------------------------ the runner
def run_scenario_traced(
    scn: Scenario,
    source: PayloadSource,
    *,
    mutation: str | None = None,
    sig_memo: bool = True,
    session: Session | None = None,
    log_mode: str = "compact",
) -> tuple[Runner, float]:
    """Run a scenario (no kernel trace kept) and return the runner (its `log` holds the run) and the wall time.
    The checker reads no per-copy note (`TRACE_RECORD_KINDS`), so the run log is compact by default: the first
    copy of each per-copy note is kept and the rest counted, the same records, rows and traces as a full log for
    less work per delivered message (``log_mode="full"`` keeps every entry)."""
    session = session if session is not None else Session()
    hooks: dict[str, Any] = {"session": session}
    # without the memo every check is computed (a run given no cache would keep one of its own)
    hooks["signature_cache"] = session.signatures if sig_memo else SignatureCache(limit=0)
    if mutation == "verifier_accepts_all":
        hooks["verifier"] = TrustingVerifier(source)
    elif mutation == "accept_unverified":
        bad = set(scn.dishonest)

        def factory(name: str, *args: Any, **kw: Any) -> Delegate:
            return (Delegate if name in bad else AcceptUnverified)(name, *args, **kw)

        hooks["delegate_factory"] = factory
    elif mutation is not None:
        raise ValueError(f"unknown mutation {mutation!r} (known: {', '.join(MUTATIONS)})")
    runner = make_runner(scn, source, trace_events=[], log_mode=log_mode, **hooks)
    runner.prepare()
    return runner, runner.simulate()


@dataclass
class CaseOutcome:
    """A case's row for the results table, its violations, and (when asked) its checkable trace."""

    index: int
    row: dict[str, Any]
    violations: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] | None = None


def run_case(
    case: Any,
    desc: PayloadDescriptor = PayloadDescriptor(),
    *,
    mutation: str | None = None,
    sig_memo: bool = True,
    keep_trace: bool = False,
) -> CaseOutcome:
    """Run one case (a `CaseSpec`), check its trace, and return its row."""
    session, source = session_for(desc)
    scn: Scenario = case.scenario
    runner, wall = run_scenario_traced(scn, source, mutation=mutation, sig_memo=sig_memo, session=session)
    # the certificates' signatures the run's key pairs have not made yet stay pending: the checker answers them
    # through the memo, and they are made only if the trace is kept
    trace = build_trace(runner, source, pending_signatures=sig_memo)
    t0 = time.perf_counter()
    # the checker re-verifies the certificates' signatures from the trace; with the memo on, a triple whose check
    # was computed, or that a key pair of this process signed (vouched), is answered by the session's memo
    result = check_trace(trace, sig_check=session.signatures.check if sig_memo else None)
    check_wall = time.perf_counter() - t0
    net = runner.net
    row: dict[str, Any] = {"case": case.index, **case.params}
    row.update(result.outcome)
    row.update({
        "messages": net.sent,
        "dropped": sum(net.drops.values()) if hasattr(net, "drops") else 0,
        "verifications": sum(1 for r in trace["records"] if r["kind"] == "verified"),  # the log's Verified notes
        "virtual_seconds": round(runner.end_time, 6),
        "height_timeouts": len(runner.height_timeouts),
        "liveness_premise": result.premise_heights,
        "live": result.live,
        "safe": not any(v["property"] in SAFETY for v in result.violations),
        "violations": len(result.violations),
        "violated": ",".join(sorted({v["property"] for v in result.violations})),
        "wall_seconds": wall,
        "check_seconds": check_wall,
    })
    keep = keep_trace or bool(result.violations)
    if keep:
        complete_signatures(trace)
    runner.release()  # the run is freed when this returns, by reference counting (Runner.release)
    return CaseOutcome(case.index, row, result.violations, trace if keep else None)


def run_batch(
    cases: list[Any],
    desc: PayloadDescriptor,
    mutation: str | None = None,
    sig_memo: bool = True,
    keep_trace: bool = False,
) -> list[CaseOutcome]:
    """Run several cases in this process (one executor task). The runs' collector setting (`gc_tuned`) holds for
    the whole batch: each run is freed by reference counting when its case ends, so between cases there is
    little for the collector to find, and resetting it case by case made it scan the live objects every 700
    allocations of the checker."""
    with gc_tuned():
        return [run_case(c, desc, mutation=mutation, sig_memo=sig_memo, keep_trace=keep_trace) for c in cases]
