"""Where the leader's plans come from and how a delegate's verifier judges them.

`PayloadSource` is the runner's port: `payloads(height)` gives the labelled plans a leader may propose
("optimal", "tampered", "feasible", "forged"), `verify(payload, height)` judges one attached solution against the
delegate's own copy of the problem, `cost_of(digest)` is a plan's true cost (for reports).

* `StubPayloads`: fixed digests and costs (744.09 / 904.17 / 893.41 / forged 744.09) and a verifier table; no
  solver. For unit tests and large sweeps.
* `RealPayloads`: real `poso_sim.solvers.Solution`s from the cached solve API and the real KKT certificate
  (`poso_sim.kkt.verify`) against `get_problem(case, "true")`.

Verdicts are memoised by digest in a process-wide table (`VERDICTS`), so a digest is verified once per process
whatever the number of delegates, heights or runs; each runner also counts its own calls.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

from poso_sim.errors import PosoError
from poso_sim.protocol import Payload

__all__ = [
    "PayloadSource",
    "VerifyResult",
    "StubPayloads",
    "StubSolution",
    "RealPayloads",
    "VERDICTS",
    "clear_verdicts",
    "STUB_COSTS",
]

LABELS = ("optimal", "tampered", "feasible", "forged")


@dataclass(frozen=True)
class VerifyResult:
    accepted: bool
    cost: float | None
    reasons: tuple[str, ...] = ()
    digest_ok: bool = True
    seconds: float = 0.0  # measured wall time of the (first) verification


@runtime_checkable
class PayloadSource(Protocol):
    key: str  # identifies the source in the process-wide verdict table (e.g. "stub:manchester")

    def payloads(self, height: int) -> Mapping[str, Payload]: ...

    def verify(self, payload: Payload, height: int | None = None) -> VerifyResult: ...

    def cost_of(self, digest: str) -> float | None: ...

    def label_of(self, digest: str) -> str | None: ...


# process-wide memo: (source key, digest) -> verdict
VERDICTS: dict[tuple[str, str], VerifyResult] = {}


def clear_verdicts() -> None:
    VERDICTS.clear()


def _memo_verify(source_key: str, payload: Payload, compute: Any) -> VerifyResult:
    """Shared memo; the solution attached must hash to the digest (checked every time, not memoised)."""
    sol = payload.solution
    if sol is None or getattr(sol, "digest", None) != payload.digest:
        return VerifyResult(False, None, ("solution does not hash to the digest",), digest_ok=False)
    key = (source_key, payload.digest)
    hit = VERDICTS.get(key)
    if hit is None:
        t0 = time.perf_counter()
        hit = compute(sol)
        hit = VerifyResult(hit.accepted, hit.cost, hit.reasons, True, time.perf_counter() - t0)
        VERDICTS[key] = hit
    return hit


# -------------------------------------------------------------------------------------------------- stubs
STUB_COSTS = {"optimal": 744.09, "tampered": 904.17, "feasible": 893.41, "forged": 744.09}
STUB_REASONS = {
    "tampered": ("stationarity",),
    "feasible": ("stationarity",),
    "forged": ("stationarity", "multiplier signs"),
}


@dataclass(frozen=True)
class StubSolution:
    """Stands in for a Solution: a digest, a label and a true cost."""

    digest: str
    label: str
    cost: float


class StubPayloads:
    """Fixed digests (SHA-256 of a label string), fixed costs and a verifier table: "optimal" is accepted, the
    others are rejected (their true cost is still reported). `costs`/`accepted` override the defaults."""

    def __init__(
        self,
        case: str = "manchester",
        *,
        costs: Mapping[str, float] | None = None,
        accepted: Mapping[str, bool] | None = None,
    ) -> None:
        self.case = case
        self.costs = {**STUB_COSTS, **(costs or {})}
        self.accepted = {lbl: lbl == "optimal" for lbl in LABELS}
        self.accepted.update(accepted or {})
        self.key = f"stub:{case}:" + hashlib.sha256(repr(sorted(self.costs.items()) + sorted(self.accepted.items())).encode()).hexdigest()[:12]
        self._payloads: dict[str, Payload] = {}
        self._by_digest: dict[str, str] = {}
        for lbl in LABELS:
            digest = hashlib.sha256(f"poso-sim/stub/{case}/{lbl}".encode()).hexdigest()
            sol = StubSolution(digest, lbl, float(self.costs[lbl]))
            self._payloads[lbl] = Payload(digest, lbl, float(self.costs[lbl]), sol)
            self._by_digest[digest] = lbl
        self.verifications = 0

    def payloads(self, height: int) -> Mapping[str, Payload]:
        return self._payloads

    def digest(self, label: str) -> str:
        return self._payloads[label].digest

    def verify(self, payload: Payload, height: int | None = None) -> VerifyResult:
        def compute(sol: StubSolution) -> VerifyResult:
            self.verifications += 1
            lbl = self._by_digest.get(sol.digest)
            if lbl is None:
                return VerifyResult(False, None, ("unknown solution",))
            ok = self.accepted[lbl]
            return VerifyResult(ok, self.costs[lbl], () if ok else STUB_REASONS.get(lbl, ("rejected",)))

        return _memo_verify(self.key, payload, compute)

    def cost_of(self, digest: str) -> float | None:
        lbl = self._by_digest.get(digest)
        return None if lbl is None else float(self.costs[lbl])

    def label_of(self, digest: str) -> str | None:
        return self._by_digest.get(digest)


# --------------------------------------------------------------------------------------------- real plans
class RealPayloads:
    """Real solutions and the real certificate.

    * "optimal": `solve_case(case, "true", cache=True)`;
    * "tampered": `solve_case(case, "tampered", cache=True)` (optimal for the doctored objective);
    * "feasible": `solve_case(case, "feasible", cache=True)` (CHP 3 forced on; sent with the multipliers of that
      restricted problem, i.e. without the extra rows' multipliers, which the true problem does not have);
    * "forged": the optimal primal with forged multipliers (all multipliers scaled by `forge_scale`).

    Verification: `poso_sim.kkt.verify(nlp, solution)` with `nlp` from `get_problem(case, "true")`. Solves and
    verdicts are cached per process (and solutions on disk by the solution cache)."""

    _PLANS: dict[tuple[str, float], dict[str, Payload]] = {}

    def __init__(self, case: str = "manchester", *, forge_scale: float = 0.5, cache_dir: str | None = None) -> None:
        self.case = case
        self.forge_scale = float(forge_scale)
        self.cache_dir = cache_dir
        self.key = f"real:{case}"
        self.verifications = 0
        self._plans: dict[str, Payload] | None = None
        self._costs: dict[str, float] = {}
        self._labels: dict[str, str] = {}

    # ---- plans
    def _solve(self, variant: str) -> Any:
        from poso_sim.solvers.api import solve_case  # CasADi and the solver stack: only for real payloads

        kw: dict[str, Any] = {"cache": True}
        if self.cache_dir is not None:
            kw["cache_dir"] = self.cache_dir
        return solve_case(self.case, variant, **kw)

    def plans(self) -> dict[str, Payload]:
        if self._plans is None:
            key = (self.case, self.forge_scale)
            plans = RealPayloads._PLANS.get(key)
            if plans is None:
                plans = {}
                true = self._solve("true")
                _, nlp = self._problem()
                plans["optimal"] = self._payload("optimal", true)
                plans["tampered"] = self._payload("tampered", self._solve("tampered"))
                plans["feasible"] = self._payload("feasible", self._restrict(self._solve("feasible"), nlp))
                s = self.forge_scale
                forged = true.with_multipliers(y=true.y * s, z_L=true.z_L * s, z_U=true.z_U * s)
                plans["forged"] = self._payload("forged", forged)
                RealPayloads._PLANS[key] = plans
            self._plans = plans
            for lbl, p in plans.items():
                self._costs[p.digest] = float(p.claimed_cost) if p.claimed_cost is not None else math.nan
                self._labels.setdefault(p.digest, lbl)
        return self._plans

    @staticmethod
    def _restrict(sol: Any, nlp: Any) -> Any:
        """A solution of a problem with extra rows (declared last) cut to the true problem's rows."""
        m = getattr(nlp, "m", None)
        if m is not None and len(sol.y) > m:
            return sol.replace(y=sol.y[:m])
        return sol

    @staticmethod
    def _payload(label: str, sol: Any) -> Payload:
        cost = getattr(sol, "cost", None)
        return Payload(sol.digest, label, None if cost is None else float(cost), sol)

    def _problem(self) -> tuple[Any, Any]:
        # only the compiled functions: from the disk cache they load without Pyomo or the model
        from poso_sim.nlp.problems import get_compiled  # CasADi: only for real payloads

        return None, get_compiled(self.case, "true")

    def payloads(self, height: int) -> Mapping[str, Payload]:
        return self.plans()

    # ---- verification
    def verify(self, payload: Payload, height: int | None = None) -> VerifyResult:
        def compute(sol: Any) -> VerifyResult:
            self.verifications += 1
            from poso_sim.kkt import verify  # scipy: only for real payloads

            _, nlp = self._problem()
            try:
                cert = verify(nlp, sol)
            except PosoError:
                raise
            except Exception as exc:  # a hostile or foreign solution must not crash the run
                return VerifyResult(False, None, (f"verifier error: {type(exc).__name__}: {exc}",))
            cost = getattr(cert, "cost", None)
            return VerifyResult(bool(cert.accepted), None if cost is None else float(cost),
                                tuple(str(r) for r in (getattr(cert, "reasons", ()) or ())))

        return _memo_verify(self.key, payload, compute)

    def cost_of(self, digest: str) -> float | None:
        self.plans()
        c = self._costs.get(digest)
        return None if c is None or math.isnan(c) else c

    def label_of(self, digest: str) -> str | None:
        self.plans()
        return self._labels.get(digest)


def make_source(kind: str, case: str = "manchester") -> PayloadSource:
    """"stub" or "real"."""
    if kind == "stub":
        return StubPayloads(case)
    if kind == "real":
        return RealPayloads(case)
    raise PosoError(f"unknown payload source {kind!r} (stub or real)")
