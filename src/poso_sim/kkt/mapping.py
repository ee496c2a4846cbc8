"""Expressing solutions on the shared canonical problem before they are verified.

* :func:`to_shared`: a plan solved on another variant of the same model (tampered objective, extra rows of the
  feasible variant) as a :class:`~poso_sim.nlp.Solution` of the shared problem: the same ``x``; ``y``,
  ``z_L``, ``z_U`` matched by row/variable *name*; rows the shared problem does not have are dropped, rows the
  plan did not have get ``y = 0``; the fingerprint becomes the shared problem's, the cost its true cost.
* :func:`map_multipliers`: multipliers computed on a reformulated (presolved, substituted, rescaled) model,
  completed on the canonical one: known row multipliers are kept where they fit, unknown ones (rows the
  reformulation eliminated) and all bound multipliers are found by the certificate's own multiplier LP
  (:mod:`poso_sim.kkt.decide`, without an iteration budget). The result is an ordinary claim: :func:`verify`
  checks it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poso_sim.kkt.certificate import DEFAULT_TOLERANCES
from poso_sim.kkt.check import checker_for
from poso_sim.kkt.decide import _Box

__all__ = ["to_shared", "map_multipliers"]


def _by_name(values: np.ndarray, own_names: list[str], shared_names: list[str], what: str, *, strict: bool) -> np.ndarray:
    if list(own_names) == list(shared_names):
        return np.array(values, dtype=float)
    pos = {nm: i for i, nm in enumerate(own_names)}
    out = np.zeros(len(shared_names))
    missing = []
    for k, nm in enumerate(shared_names):
        i = pos.get(nm)
        if i is None:
            missing.append(nm)
        else:
            out[k] = values[i]
    if missing and strict:
        raise ValueError(f"{len(missing)} {what} of the shared problem are missing from the plan, e.g. {missing[0]}")
    return out


def to_shared(solution: Any, shared: Any, own: Any = None, *, variant: str | None = None) -> Any:
    """``solution`` (of problem ``own``, default: names carried by the solution) as a Solution of ``shared``.

    Variables must match by name (a missing variable raises ``ValueError``); rows are matched by name, the
    plan's extra rows are dropped and rows it lacks get a zero multiplier. The solution's ``variant`` label is kept
    unless ``variant`` is given; the digest is recomputed for the shared fingerprint.
    """
    if solution.fingerprint == shared.fingerprint and solution.x.size == shared.n and solution.y.size == shared.m:
        return solution if variant is None else solution.replace(variant=variant)
    x_names = list(solution.x_names or (own.x_names if own is not None else shared.x_names))
    row_names = list(solution.row_names or (own.row_names if own is not None else []))
    if not row_names:
        if solution.y.size != shared.m:
            raise ValueError("the plan carries no row names and its row count differs from the shared problem")
        row_names = list(shared.row_names)
    x = _by_name(solution.x, x_names, shared.x_names, "variables", strict=True)
    zl = _by_name(solution.z_L, x_names, shared.x_names, "variables", strict=True)
    zu = _by_name(solution.z_U, x_names, shared.x_names, "variables", strict=True)
    y = _by_name(solution.y, row_names, shared.row_names, "rows", strict=False)
    cost = float(shared.true_cost(x)) if shared.has_expr("true_cost") else float(shared.f(x))
    return solution.replace(
        x=x,
        y=y,
        z_L=zl,
        z_U=zu,
        x_names=shared.x_names,
        row_names=shared.row_names,
        fingerprint=shared.fingerprint,
        variant=solution.variant if variant is None else variant,
        cost=cost,
    )


def map_multipliers(
    problem: Any,
    x: Any,
    y_known: Any,
    *,
    complementarity: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete row multipliers on the canonical ``problem`` at the canonical point ``x``.

    ``y_known`` has one entry per canonical row: the mapped multiplier of a row that the reformulated model kept
    (multiplied by the factor the reformulation scaled the row by), ``NaN`` for a row it eliminated. Returns
    ``(y, z_L, z_U)``: the known values where they are valid, the rest (unknown rows, any known value that does
    not fit, all bound multipliers) from the certificate's multiplier LP over growing neighbourhoods of the
    columns that fail, then over the whole problem. If no valid multipliers exist, the known values with
    re-derived bound multipliers come back and :func:`verify` will say why they fail.
    """
    chk = checker_for(problem)
    x = np.minimum(np.maximum(np.asarray(x, dtype=float), chk.x_lb), chk.x_ub)
    y = np.array(y_known, dtype=float)
    y[~np.isfinite(y)] = 0.0
    tol = DEFAULT_TOLERANCES
    tol = type(tol)(**{**tol.as_dict(), "lp_iterations": None,
                       **({} if complementarity is None else {"complementarity": complementarity})})
    ev = chk.evaluate(x)
    d = chk.search.decide(x, y, ev, tol)
    if d.found:
        return d.y, d.z_L, d.z_U
    box = _Box(chk, x, ev, 0.0, tol.complementarity)
    y0 = np.clip(y, box.ylo, box.yhi)
    zl, zu = box.bound_multipliers(ev["grad"] + np.bincount(chk.jc, weights=ev["jv"] * y0[chk.jr], minlength=chk.n))
    return y0, zl, zu
