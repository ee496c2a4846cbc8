"""The :class:`Tolerances` of the KKT check and the :class:`Certificate` it returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from poso_sim.htmlkit import div, escape, fmt, grid, kv_table, verdict

__all__ = ["Tolerances", "Certificate", "DEFAULT_TOLERANCES", "certificate_html"]


@dataclass(frozen=True)
class Tolerances:
    """Acceptance thresholds, each on a scaled measure (see docs/certificate.md, "Tolerance policy").

    * ``primal``: row violation relative to the row's scale ``max(1, |bound|, max_j |J_ij| max(|x_j|, u_j))``
      (``u_j = max(1, largest finite bound of x_j)``): the size its terms have or can have.
    * ``bound``: violation of a variable bound relative to ``max(1, |bound|)`` (a solver relaxes bounds slightly, and
      a plan computed in other units lands a little outside them; rows are still judged at the plan as sent).
    * ``dual``: stationarity residual of each variable's column relative to ``max(1, |grad f_j|)`` (independent
      of the multipliers, so inflating them cannot loosen the test).
    * ``sign``: wrong-signed part of a multiplier (inequality rows, bound multipliers), same column scaling.
    * ``complementarity``: ``multiplier * slack`` in objective units ($ for the IES model).
    * ``decide``: when the received multipliers fail, decide exactly whether valid ones exist for the point
      (:mod:`poso_sim.kkt.decide`); False judges the received multipliers only.
    * ``lp_iterations``: deterministic budget of simplex iterations for that decision; exhausting it rejects.
    * ``n_worst``: how many of the worst entries to name per measure.
    * ``price``: on a problem with priced rows, how far a proposed price may lie from its settlement price,
      relative to ``max(1, |settlement|)`` (:mod:`poso_sim.kkt.prices`).
    * ``price_lp_iterations``: simplex budget of the price intervals' LPs at one point (``None``: unlimited).
    """

    primal: float = 1e-6
    dual: float = 5e-6
    sign: float = 5e-6
    complementarity: float = 1e-5
    decide: bool = True
    n_worst: int = 5
    bound: float = 1e-4
    lp_iterations: int | None = 400
    price: float = 1e-5
    price_lp_iterations: int | None = 100_000

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scaled(self, factor: float, **changes: Any) -> "Tolerances":
        """These tolerances with every measure's threshold (primal, bound, dual, sign, complementarity) multiplied
        by ``factor``: ``scaled(0.1)`` is the check with a 10x margin for the honest side, ``scaled(10)`` the one
        a dearer plan must still fail. ``changes`` replace other fields (``lp_iterations=None``)."""
        from dataclasses import replace

        return replace(self, primal=self.primal * factor, bound=self.bound * factor, dual=self.dual * factor,
                       sign=self.sign * factor, complementarity=self.complementarity * factor,
                       price=self.price * factor, **changes)


DEFAULT_TOLERANCES = Tolerances()


def _num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


@dataclass
class Certificate:
    """The verdict of :func:`poso_sim.kkt.verify` on one solution.

    ``primal_residual``, ``dual_residual``, ``sign_violation`` and ``complementarity`` are the largest scaled
    measures of the multipliers that decided the verdict (those found by the exact decision when ``found_multipliers``
    is True; the received ones are then in ``received``); ``bound_violation`` is the scaled bound violation of the
    ``x`` as sent (the rest is judged at ``x`` projected onto its bounds). ``decided_by`` names the multipliers
    that decided: ``received``, ``sanitised``, ``recomputed``, ``local-lp``, ``lp`` (found), or why none were found
    (``lp`` = proved not to exist, ``budget`` = iteration budget exhausted, ``primal``/``integrity``), or ``price``
    when the point passed but its priced rows' multipliers did not (:mod:`poso_sim.kkt.prices`; ``prices`` then
    holds each priced row's valid interval, settlement price and proposed price). ``worst`` names the worst entries per measure as
    ``{"measure", "name", "value"}`` with ``name`` a model component and index (``SOCPeq[3,18]``, ``P_CHP[3,7]``).
    ``seconds`` is the wall time of the check (integrity + evaluation + residuals + decision), the problem being
    compiled already; ``cpu_seconds`` is the thread CPU time of the same span; ``timings`` splits the wall time.
    """

    accepted: bool
    reasons: list[str] = field(default_factory=list)
    primal_residual: float = float("nan")
    dual_residual: float = float("nan")
    sign_violation: float = float("nan")
    complementarity: float = float("nan")
    worst: list[dict[str, Any]] = field(default_factory=list)
    cost: float = float("nan")
    objective: float = float("nan")
    found_multipliers: bool = False
    decision: dict[str, Any] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    digest: str = ""
    fingerprint: str = ""
    problem_fingerprint: str = ""
    variant: str = ""
    tolerances: dict[str, Any] = field(default_factory=dict)
    integrity_ok: bool = True
    bound_violation: float = float("nan")
    decided_by: str = ""
    prices: dict[str, Any] = field(default_factory=dict)

    @property
    def verify_seconds(self) -> float:
        return self.seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (non-finite floats become ``None``/``"inf"``)."""
        d = {
            "accepted": bool(self.accepted),
            "reasons": list(self.reasons),
            "cost": _num(float(self.cost)),
            "objective": _num(float(self.objective)),
            "primal_residual": _num(float(self.primal_residual)),
            "dual_residual": _num(float(self.dual_residual)),
            "sign_violation": _num(float(self.sign_violation)),
            "complementarity": _num(float(self.complementarity)),
            "worst": [{k: _num(v) if isinstance(v, float) else v for k, v in w.items()} for w in self.worst],
            "found_multipliers": bool(self.found_multipliers),
            "decision": _jsonable(self.decision),
            "received": {k: _num(float(v)) for k, v in self.received.items()},
            "verify_seconds": float(self.seconds),
            "verify_cpu_seconds": float(self.cpu_seconds),
            "timings": {k: float(v) for k, v in self.timings.items()},
            "digest": self.digest,
            "fingerprint": self.fingerprint,
            "problem_fingerprint": self.problem_fingerprint,
            "variant": self.variant,
            "integrity_ok": bool(self.integrity_ok),
            "bound_violation": _num(float(self.bound_violation)),
            "decided_by": self.decided_by,
            "tolerances": dict(self.tolerances),
        }
        if self.prices:
            d["prices"] = _jsonable(self.prices)
        return d

    def summary(self) -> str:
        verdict = "ACCEPTED" if self.accepted else "REJECTED"
        extra = " (multipliers found by the decision)" if self.found_multipliers else ""
        head = (
            f"{verdict}{extra}: cost {self.cost:.4f}, primal {self.primal_residual:.2e}, bound {self.bound_violation:.2e}, "
            f"dual {self.dual_residual:.2e}, "
            f"sign {self.sign_violation:.2e}, complementarity {self.complementarity:.2e}, {self.seconds * 1e3:.2f} ms"
        )
        lines = [head] + [f"  - {r}" for r in self.reasons]
        rows = self.prices.get("rows") or []
        if rows:  # a market: each priced row's valid interval, settlement price and proposed price
            lines.append(f"  prices (rule: {self.prices.get('rule')}; valid interval, settlement, proposed):")
            for r in rows[:8]:
                lines.append(f"    {r['name']}: [{r['low']:.8g}, {r['high']:.8g}], {r['settlement']:.8g}, "
                             f"{r['proposed']:.8g}{'' if r['ok'] else '  <- not the settlement price'}")
            if len(rows) > 8:
                lines.append(f"    ... {len(rows) - 8} more (--json has them all)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return certificate_html(self)


def certificate_html(cert: Any) -> str:
    """A KKT :class:`~poso_sim.kkt.Certificate`: verdict, reasons, the four scaled measures against their
    tolerances, the worst entries, whether the decision found the multipliers, and timing."""
    accepted = bool(getattr(cert, "accepted", False))
    tol: Mapping[str, Any] = getattr(cert, "tolerances", None) or {}
    measures = [
        ("primal residual", "primal_residual", "primal"),
        ("stationarity (dual) residual", "dual_residual", "dual"),
        ("multiplier sign violation", "sign_violation", "sign"),
        ("complementarity", "complementarity", "complementarity"),
    ]
    rows: list[tuple[str, Any]] = [("verdict", verdict(accepted, "accepted", "rejected"))]
    reasons = list(getattr(cert, "reasons", []) or [])
    if reasons:
        rows.append(("reasons", escape("; ".join(map(str, reasons)))))
    rows.append(("true cost", escape(f"{fmt(getattr(cert, 'cost', float('nan')), 3)} $")))
    for label, attr, tkey in measures:
        v = getattr(cert, attr, float("nan"))
        t = tol.get(tkey)
        passed = isinstance(v, float) and isinstance(t, (int, float)) and v <= t
        mark = "" if t is None or not isinstance(v, float) or math.isnan(v) else (" ✓" if passed else " ✗")
        rows.append((label, escape(f"{fmt(v)}" + (f"  (tol {fmt(float(t))})" if t is not None else "") + mark)))
    if getattr(cert, "found_multipliers", False):
        rows.append(("multipliers", "found by the multiplier decision"))
    rows.append(("check time", escape(f"{fmt(float(getattr(cert, 'seconds', 0.0)), 3)} s")))
    digest = str(getattr(cert, "digest", "") or "")
    if digest:
        rows.append(("digest", f"<code>{escape(digest[:16])}…</code>"))
    parts = [kv_table(rows)]
    worst = list(getattr(cert, "worst", []) or [])
    if worst:
        parts.append(
            grid(["measure", "entry", "value"],
                  [[escape(str(w.get("measure", ""))), f"<code>{escape(str(w.get('name', '')))}</code>",
                    escape(fmt(w.get("value")))] for w in worst[:15]])
        )
    return div("KKT certificate", *parts)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(w) for k, w in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(w) for w in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return _jsonable(v.item())
        except (TypeError, ValueError):
            pass
    if isinstance(v, float):
        return _num(v)
    return v
