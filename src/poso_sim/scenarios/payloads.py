"""Where the leader's plans come from and how a delegate's verifier judges them.

`PayloadSource` is the runner's port: `payloads(height)` gives the labelled plans a leader may propose
("optimal", "tampered", "feasible", "forged"), `verify(payload, height)` judges one attached solution against the
delegate's own copy of the problem and returns the protocol's `Verdict`, `cost_of(digest)` is a plan's true cost
(for reports). A source may also have `prepare(labels)`: make those plans ready before the clock starts.

* `StubPayloads`: fixed digests and costs (744.09 / 904.17 / 893.41 / forged 744.09) and a verifier table; no
  solver. For unit tests and large sweeps.
* `RealPayloads`: real `poso_sim.nlp.Solution`s from the cached solve API and the real KKT certificate
  (`poso_sim.kkt.verify`) against `get_problem(case, "true")`; a plan is solved only when a run needs it.

The runner checks that an attached solution hashes to its digest (`solution_matches`) and memoises verdicts by
digest in its `Session` (poso_sim.scenarios.session), so a digest is verified once per session whatever the
number of delegates, heights or runs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Protocol, runtime_checkable

from poso_sim.errors import PosoError
from poso_sim.protocol import Payload, Verdict

from .session import default_session

log = logging.getLogger("poso_sim.scenarios.payloads")

# The solver API and the certificate are imported where they are used: importing poso_sim.solvers.api loads
# Pyomo and CasADi (seconds), which stub runs, sweeps on stubs and `--help` must not pay.

__all__ = [
    "PayloadSource",
    "StubPayloads",
    "StubSolution",
    "RealPayloads",
    "STUB_COSTS",
    "LABELS",
    "solution_matches",
    "solve_variants",
]

LABELS = ("optimal", "tampered", "feasible", "forged")
#: Labels whose dispatch (primal point) is the optimum: "forged" only changes the multipliers. The real certificate
#: judges the point, not the multipliers that came with it, so it accepts a forged plan as the optimal dispatch it
#: is; the stub verifier's table keeps rejecting it (a verifier that judges multipliers as sent).
OPTIMAL_DISPATCH = frozenset({"optimal", "forged"})


@runtime_checkable
class PayloadSource(Protocol):
    key: str  # identifies the source's verdicts in a session's memo (e.g. "stub:manchester:...")

    def payloads(self, height: int) -> Mapping[str, Payload]: ...

    def verify(self, payload: Payload, height: int | None = None) -> Verdict: ...

    def cost_of(self, digest: str) -> float | None: ...

    def label_of(self, digest: str) -> str | None: ...


def solution_matches(payload: Payload) -> bool:
    """Whether the solution attached to `payload` hashes to the payload's digest (else the carrier is at
    fault and no verdict is given for the digest)."""
    sol = payload.solution
    return sol is not None and getattr(sol, "digest", None) == payload.digest


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

    def payloads(self, height: int) -> Mapping[str, Payload]:
        return self._payloads

    def prepare(self, labels: Iterable[str] = LABELS) -> dict[str, Payload]:
        """The stub plans of ``labels``; a label without one (a market's: ``price_up_1``, ...) is a one-line error
        rather than a run in which the dishonest leader silently sends the honest plan."""
        labels = [lbl for lbl in labels if lbl is not None]  # None: a member that gets no proposal at all
        for lbl in labels:
            if lbl not in self._payloads:
                raise PosoError(f"no stub plan labelled {lbl!r} (stub labels: {', '.join(LABELS)}); "
                                "run it with real payloads")
        return {lbl: self._payloads[lbl] for lbl in labels}

    def digest(self, label: str) -> str:
        return self._payloads[label].digest

    def verify(self, payload: Payload, height: int | None = None) -> Verdict:
        lbl = self._by_digest.get(getattr(payload.solution, "digest", None))
        if lbl is None:
            return Verdict(False, None, ("unknown solution",))
        ok = self.accepted[lbl]
        return Verdict(ok, self.costs[lbl], () if ok else STUB_REASONS.get(lbl, ("rejected",)))

    def cost_of(self, digest: str) -> float | None:
        lbl = self._by_digest.get(digest)
        return None if lbl is None else float(self.costs[lbl])

    def label_of(self, digest: str) -> str | None:
        return self._by_digest.get(digest)


# --------------------------------------------------------------------------------------------- real plans
#: the solver variant behind each label ("forged" reuses the optimum's primal)
VARIANT_OF = {"optimal": "true", "tampered": "tampered", "feasible": "feasible", "forged": "true"}


def solve_variants(case: str, variants: Iterable[str], **kw: Any) -> dict[str, Any]:
    """Cached solutions of `variants` of `case`: the one place that calls the solver for a run's plans.

    One call of `poso_sim.solvers.api.solve_plans(case, variants)` (any registered problem: its own recipe, or
    Ipopt from the model's initial values): cached plans are read, the missing ones solved (in parallel worker
    processes when there are several), each stored in the solution cache."""
    from poso_sim.solvers.api import solve_plans  # heavy (Pyomo, CasADi): see the note at the imports

    if _registered_here(case):
        kw.setdefault("workers", 1)  # a worker process would not know it
    return solve_plans(case, tuple(dict.fromkeys(variants)), cache=True, **kw)


def _registered_here(case: str) -> bool:
    """Whether ``case`` names a definition registered in this process as an object (``register_problem(name,
    ProblemDefinition(...))``), which a fresh worker process cannot resolve."""
    from poso_sim.nlp import problems  # the registry: only for real payloads

    return not isinstance(problems._REGISTRY.get(case, ""), str)


class _Plans(Mapping[str, Payload]):
    """The labelled plans of a `RealPayloads`: a plan is made (solved or loaded) when it is first looked up.
    Iterating the keys solves nothing; looking at every value solves every plan."""

    def __init__(self, source: "RealPayloads") -> None:
        self._source = source

    def __getitem__(self, label: str) -> Payload:
        if label not in LABELS:
            raise KeyError(label)
        return self._source._plan(label)

    def __iter__(self) -> Iterator[str]:
        return iter(LABELS)

    def __len__(self) -> int:
        return len(LABELS)


class RealPayloads:
    """Real solutions and the real certificate.

    * "optimal": `solve_case(case, "true", cache=True)`;
    * "tampered": `solve_case(case, "tampered", cache=True)` (optimal for the doctored objective);
    * "feasible": `solve_case(case, "feasible", cache=True)` (CHP 3 forced on; sent with the multipliers of that
      restricted problem, i.e. without the extra rows' multipliers, which the true problem does not have);
    * "forged": the optimal primal with forged multipliers (all multipliers scaled by `forge_scale`).

    A plan is solved (or loaded from the solution cache) only when it is needed: `prepare(labels)` makes the
    given ones ready (the runner calls it with the labels a scenario's behaviours use, before the clock starts),
    any other is made on first lookup. Plans are kept in the `session` (default: the process's default
    session), so every run of a session shares them.

    Verification: `poso_sim.kkt.verify(nlp, solution)` with `nlp` from `get_problem(case, "true")`, turned into
    the protocol's `Verdict`."""

    def __init__(
        self, case: str = "manchester", *, forge_scale: float = 0.5, cache_dir: str | None = None, session: Any = None,
        variants: Mapping[str, str] | None = None,
    ) -> None:
        self.case = case
        self.forge_scale = float(forge_scale)
        self.cache_dir = cache_dir
        #: dishonest label -> the problem variant that makes it (a scenario's `variants:`; default: same name)
        self.variants = dict(variants or {})
        self.key = f"real:{case}" + "".join(f":{k}={v}" for k, v in sorted(self.variants.items()))
        self.session = session if session is not None else default_session()
        self._lock = threading.RLock()
        self._view = _Plans(self)

    # ---- plans
    @property
    def _store(self) -> dict[str, Payload]:
        key = (self.case, self.forge_scale, self.cache_dir)
        if self.variants:  # plans made from other variants are other plans
            key += (tuple(sorted(self.variants.items())),)
        return self.session.plans.setdefault(key, {})

    def variant_of(self, label: str) -> str:
        """The problem variant whose optimum is the plan ``label``."""
        if label in ("tampered", "feasible"):
            return self.variants.get(label, label)
        from poso_sim.nlp.problems import problem_definition  # the registry: only for real payloads

        return problem_definition(self.case).honest_variant

    def _solve(self, variants: Iterable[str]) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.cache_dir is not None:
            kw["cache_dir"] = self.cache_dir
        return solve_variants(self.case, variants, **kw)

    def prepare(self, labels: Iterable[str] = LABELS) -> dict[str, Payload]:
        """Make the plans of `labels` ready (one solver call for the missing variants); returns them."""
        labels = [lbl for lbl in dict.fromkeys(labels)]
        for lbl in labels:
            if lbl not in LABELS:
                raise PosoError(f"unknown plan label {lbl!r} (known: {', '.join(LABELS)})")
        with self._lock:
            store = self._store
            missing = [lbl for lbl in labels if lbl not in store]
            if missing:
                sols = self._solve(self.variant_of(lbl) for lbl in missing)
                for lbl in missing:
                    store[lbl] = self._make(lbl, sols[self.variant_of(lbl)])
            self._ready_to_verify()
            return {lbl: store[lbl] for lbl in labels}

    def _ready_to_verify(self) -> None:
        """Load the compiled problem and the certificate now, before a run's virtual clock starts: a
        verification during the run must not import them (importing scipy's parts reads the wall clock, which
        the virtual-time loop forbids, and would stall the simulated time line)."""
        self._problem()
        import poso_sim.kkt  # noqa: F401  (scipy: only for real payloads; loaded ahead, see above)

    def _plan(self, label: str) -> Payload:
        p = self._store.get(label)
        return p if p is not None else self.prepare([label])[label]

    def _make(self, label: str, sol: Any) -> Payload:
        if label == "feasible":
            sol = self._restrict(sol, self._problem()[1])
        elif label == "forged":
            s = self.forge_scale
            sol = sol.with_multipliers(y=sol.y * s, z_L=sol.z_L * s, z_U=sol.z_U * s)
        return self._payload(label, sol)

    def makeable_labels(self) -> tuple[str, ...]:
        """The labels whose variant the problem has (all four for Manchester and IEEE 33)."""
        from poso_sim.nlp.problems import problem_definition  # the registry: only for real payloads

        variants = problem_definition(self.case).variants
        return tuple(lbl for lbl in LABELS if self.variant_of(lbl) in variants)

    def plans(self) -> dict[str, Payload]:
        """Every plan the problem can make (solving those not solved yet): all four for Manchester."""
        return self.prepare(self.makeable_labels())

    def solved(self) -> dict[str, Payload]:
        """The plans made so far (solves nothing)."""
        return dict(self._store)

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

        return None, get_compiled(self.case, None)  # the honest variant

    def payloads(self, height: int) -> Mapping[str, Payload]:
        return self._view

    # ---- verification
    def verify(self, payload: Payload, height: int | None = None) -> Verdict:
        from poso_sim.kkt import verify  # scipy: only for real payloads

        _, nlp = self._problem()
        try:
            cert = verify(nlp, payload.solution)
        except PosoError:
            raise
        except Exception as exc:  # a hostile or foreign solution must not crash the run
            log.info("verdict on the %s plan %s: REJECTED (verifier error: %s)", payload.label, payload.digest[:12],
                     type(exc).__name__)
            return Verdict(False, None, (f"verifier error: {type(exc).__name__}: {exc}",))
        verdict = Verdict.from_certificate(cert)
        log.info("verdict on the %s plan %s%s: %s%s", payload.label, payload.digest[:12],
                 "" if height is None else f" (height {height})", "ACCEPTED" if verdict.accepted else "REJECTED",
                 "" if verdict.accepted else f" ({'; '.join(verdict.reasons)[:160]})")
        return verdict

    def _by_digest(self, digest: str) -> Payload | None:
        for p in self._store.values():
            if p.digest == digest:
                return p
        return None

    def cost_of(self, digest: str) -> float | None:
        p = self._by_digest(digest)
        c = None if p is None else p.claimed_cost
        return None if c is None or math.isnan(c) else float(c)

    def label_of(self, digest: str) -> str | None:
        p = self._by_digest(digest)
        return None if p is None else p.label


def make_source(kind: str, case: str = "manchester") -> PayloadSource:
    """"stub" or "real"."""
    if kind == "stub":
        return StubPayloads(case)
    if kind == "real":
        return RealPayloads(case)
    raise PosoError(f"unknown payload source {kind!r} (stub or real)")
