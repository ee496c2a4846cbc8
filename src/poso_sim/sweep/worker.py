"""Worker side of a sweep: run one case of a sweep on the virtual-time runner and check its trace.

Everything here is importable in a fresh worker process (process pool, Dask worker). The expensive things are
done once per worker process and shared by all the cases it runs:

* payloads: `PayloadDescriptor` -> a payload source built once per process (`_SOURCES`); real payloads load the
  cached solutions from the solution cache (never re-solved in a worker);
* verdicts: the scenario layer's process-wide memo keyed by digest (`poso_sim.scenarios.payloads.VERDICTS`),
  pre-seeded with the verdicts the parent computed (`PayloadDescriptor.verdicts`), so a worker does not even
  verify once;
* signatures: optionally (`signature_memo`), Ed25519 verification results memoised by (key, signature, bytes) for
  every simulated node of the process (`signature_memo()`): a pure function of its inputs, so results are
  unchanged; it only removes the N-fold repetition of the same check by N simulated delegates.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from poso_sim.protocol import Delegate, Execute
from poso_sim.scenarios.model import Scenario
from poso_sim.scenarios.payloads import VERDICTS, PayloadSource, RealPayloads, StubPayloads, VerifyResult
from poso_sim.scenarios.runner import Runner
from poso_sim.sim import run

from .checker import SAFETY, build_trace, check_trace

__all__ = [
    "PayloadDescriptor",
    "MUTATIONS",
    "run_case",
    "run_batch",
    "signature_memo",
    "clear_signature_memo",
    "source_for",
    "SweepRunner",
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

    @classmethod
    def prepare(cls, kind: str, case: str = "manchester", cache_dir: str | None = None) -> "PayloadDescriptor":
        """Build the source here (solving or loading the cached solutions once), verify its labelled plans once
        and return the descriptor to ship to workers."""
        d = cls(kind, case, cache_dir)
        src = source_for(d)
        verdicts = []
        for p in src.payloads(1).values():
            r = src.verify(p, 1)
            verdicts.append((p.digest, bool(r.accepted), r.cost, tuple(r.reasons)))
        return cls(kind, case, cache_dir, tuple(sorted(verdicts)))


_SOURCES: dict[tuple[str, str, str | None], PayloadSource] = {}


def source_for(desc: PayloadDescriptor) -> PayloadSource:
    """The payload source of a descriptor, built once per process; the parent's verdicts are seeded into the
    process-wide verdict memo."""
    key = (desc.kind, desc.case, desc.cache_dir)
    src = _SOURCES.get(key)
    if src is None:
        if desc.kind == "stub":
            src = StubPayloads(desc.case)
        elif desc.kind == "real":
            src = RealPayloads(desc.case, cache_dir=desc.cache_dir)
            src.plans()  # loads the cached solutions (solves only if the cache is cold)
        else:
            raise ValueError(f"unknown payload kind {desc.kind!r}")
        _SOURCES[key] = src
    known = {p.digest for p in src.payloads(1).values()}
    for digest, ok, cost, reasons in desc.verdicts:
        if digest in known:
            VERDICTS.setdefault((src.key, digest), VerifyResult(ok, cost, tuple(reasons)))
    return src


# ------------------------------------------------------------------------------------- signature memo
_SIG_MEMO: dict[tuple[bytes, bytes, bytes], bool] = {}
_SIG_MEMO_LIMIT = 200_000
_sig_depth = 0
_sig_saved: Any = None
_sig_lock = threading.Lock()
SIG_STATS = {"calls": 0, "computed": 0}


def clear_signature_memo() -> None:
    """Forget the memoised signature checks (and reset `SIG_STATS`)."""
    _SIG_MEMO.clear()
    SIG_STATS.update(calls=0, computed=0)


class _MemoPublicKey:
    __slots__ = ("raw", "key")

    def __init__(self, raw: bytes, key: Any) -> None:
        self.raw = raw
        self.key = key

    def verify(self, signature: bytes, data: bytes) -> None:
        from cryptography.exceptions import InvalidSignature

        SIG_STATS["calls"] += 1
        k = (self.raw, signature, data)
        ok = _SIG_MEMO.get(k)
        if ok is None:
            SIG_STATS["computed"] += 1
            try:
                self.key.verify(signature, data)
                ok = True
            except InvalidSignature:
                ok = False
            if len(_SIG_MEMO) >= _SIG_MEMO_LIMIT:
                _SIG_MEMO.clear()
            _SIG_MEMO[k] = ok
        if not ok:
            raise InvalidSignature()


@contextlib.contextmanager
def signature_memo(enabled: bool = True) -> Iterator[None]:
    """Memoise Ed25519 verification inside the block (re-entrant). Adapter over
    `poso_sim.protocol.identity._public_key`, which `verify_sig` looks up at call time; see the module
    docstring for why results cannot change."""
    global _sig_depth, _sig_saved
    if not enabled:
        yield
        return
    from poso_sim.protocol import identity

    with _sig_lock:
        _enter_memo(identity)
    try:
        yield
    finally:
        with _sig_lock:
            _sig_depth -= 1
            if _sig_depth == 0:
                identity._public_key = _sig_saved  # type: ignore[assignment]
                _sig_saved = None


def _enter_memo(identity: Any) -> None:
    global _sig_depth, _sig_saved
    if _sig_depth == 0:
        _sig_saved = identity._public_key
        original = identity._public_key
        cache: dict[bytes, _MemoPublicKey] = {}

        def memo_public_key(raw: bytes) -> _MemoPublicKey:
            pk = cache.get(raw)
            if pk is None:
                pk = cache[raw] = _MemoPublicKey(raw, original(raw))
            return pk

        identity._public_key = memo_public_key  # type: ignore[assignment]
    _sig_depth += 1


# -------------------------------------------------------------------------------- mutations (self-tests)
class _AcceptUnverified(Delegate):
    """A broken honest delegate: takes every copy (and its own plan) as valid without asking the verifier."""

    def _submit(self, copy: Any, out: list[Any]) -> None:  # noqa: D401 - overrides the honest rule
        p = copy.proposal.payload
        cost = float(p.claimed_cost) if p.claimed_cost is not None else 0.0
        if copy.via == "proof":
            return
        rs = self.rounds.get((copy.proposal.height, copy.proposal.round))
        if rs is None or self.status != "running" or (rs.height, rs.round) != (self.height, self.round):
            return
        if copy.via == "own":
            self._own_accepted(rs, copy.proposal, cost, out)
        else:
            self._accept(copy, cost, out)


class _TrustingSource:
    """A broken verifier: every plan whose solution matches its digest is accepted at its claimed cost."""

    def __init__(self, inner: PayloadSource) -> None:
        self.inner = inner
        self.key = "broken-verifier:" + inner.key
        self.verifications = 0

    def payloads(self, height: int) -> Mapping[str, Any]:
        return self.inner.payloads(height)

    def verify(self, payload: Any, height: int | None = None) -> VerifyResult:
        self.verifications += 1
        sol = payload.solution
        if sol is None or getattr(sol, "digest", None) != payload.digest:
            return VerifyResult(False, None, ("solution does not hash to the digest",), digest_ok=False)
        cost = payload.claimed_cost if payload.claimed_cost is not None else self.inner.cost_of(payload.digest)
        return VerifyResult(True, cost, ())

    def cost_of(self, digest: str) -> float | None:
        return self.inner.cost_of(digest)

    def label_of(self, digest: str) -> str | None:
        return self.inner.label_of(digest)

    def plans(self) -> Any:
        f = getattr(self.inner, "plans", None)
        return f() if f else None


#: deliberately broken rules, to show the checker catches them (never use them for real results)
MUTATIONS = {
    "accept_unverified": "honest delegates accept every proposal copy (and their own plan) without verifying it",
    "verifier_accepts_all": "the verification host answers 'accepted' for every plan",
}


# ------------------------------------------------------------------------------------------ the runner
class SweepRunner(Runner):
    """The scenario runner, observing one more thing: the certificates (signed Decisions) of the blocks that
    normal nodes execute, so the checker can re-verify them. Behaviour is unchanged."""

    def __init__(self, *args: Any, mutation: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.mutation = mutation
        self.certificates: dict[str, list[dict[str, Any]]] = {}

    def _build(self) -> None:
        super()._build()
        if self.mutation == "accept_unverified":
            for name, m in self.machines.items():
                if type(m) is Delegate:
                    m.__class__ = _AcceptUnverified

    def _do(self, name: str, a: Any) -> None:
        if isinstance(a, Execute):
            b = a.block
            self.certificates.setdefault(name, []).append({
                "height": b.height, "round": b.round, "leader": b.leader, "digest": b.digest, "cost": b.cost,
                "hash": b.hash, "prev_hash": b.prev_hash,
                "decisions": [
                    {"height": d.height, "round": d.round, "leader": d.leader, "digest": d.digest, "cost": d.cost,
                     "delegate": d.delegate, "case_id": d.case_id, "signature": bytes(d.signature).hex()}
                    for d in b.decisions
                ],
            })
        super()._do(name, a)


@dataclass
class CaseOutcome:
    """A case's row for the results table, its violations, and (when asked) its checkable trace."""

    index: int
    row: dict[str, Any]
    violations: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] | None = None


def run_scenario_traced(
    scn: Scenario,
    source: PayloadSource,
    *,
    mutation: str | None = None,
    sig_memo: bool = True,
) -> tuple[SweepRunner, float]:
    """Run a scenario (no kernel trace kept) and return the runner and the wall time."""
    if mutation == "verifier_accepts_all":
        source = _TrustingSource(source)  # type: ignore[assignment]
    elif mutation not in (None, "accept_unverified"):
        raise ValueError(f"unknown mutation {mutation!r} (known: {', '.join(MUTATIONS)})")
    runner = SweepRunner(scn, source, trace_events=[], mutation=mutation)
    t0 = time.perf_counter()
    with signature_memo(sig_memo):
        run(runner.main())
    return runner, time.perf_counter() - t0


def run_case(
    case: Any,
    desc: PayloadDescriptor = PayloadDescriptor(),
    *,
    mutation: str | None = None,
    sig_memo: bool = True,
    keep_trace: bool = False,
) -> CaseOutcome:
    """Run one case (a `CaseSpec`), check its trace, and return its row."""
    source = source_for(desc)
    scn: Scenario = case.scenario
    runner, wall = run_scenario_traced(scn, source, mutation=mutation, sig_memo=sig_memo)
    trace = build_trace(runner, source)
    t0 = time.perf_counter()
    result = check_trace(trace)  # outside the memo: the checker re-verifies certificates independently
    check_wall = time.perf_counter() - t0
    net = runner.net
    row: dict[str, Any] = {"case": case.index, **case.params}
    row.update(result.outcome)
    row.update({
        "messages": net.sent,
        "dropped": sum(net.drops.values()) if hasattr(net, "drops") else 0,
        "verifications": sum(1 for r in runner.records if r.get("kind") == "verified"),
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
    return CaseOutcome(case.index, row, result.violations, trace if (keep_trace or result.violations) else None)


def run_batch(
    cases: list[Any],
    desc: PayloadDescriptor,
    mutation: str | None = None,
    sig_memo: bool = True,
    keep_trace: bool = False,
) -> list[CaseOutcome]:
    """Run several cases in this process (one executor task)."""
    return [run_case(c, desc, mutation=mutation, sig_memo=sig_memo, keep_trace=keep_trace) for c in cases]
