"""Expressing solutions on the shared canonical problem before they are verified.

* :func:`to_shared`: a plan solved on another variant of the same model (tampered objective, extra rows of the
  feasible variant) as a :class:`~poso_sim.solvers.Solution` of the shared problem: the same ``x``; ``y``,
  ``z_L``, ``z_U`` matched by row/variable *name*; rows the shared problem does not have are dropped, rows the
  plan did not have get ``y = 0``; the fingerprint becomes the shared problem's, the cost its true cost.
* :func:`map_multipliers`: multipliers computed on a reformulated (presolved, substituted, rescaled) model,
  completed on the canonical one: known row multipliers are kept, unknown ones (rows the reformulation
  eliminated) and all bound multipliers are re-derived from stationarity on the canonical problem by the same
  bounded least squares the verifier's repair uses. The result is an ordinary claim: :func:`verify` checks it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
    complementarity: float = 1e-6,
    rounds: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete row multipliers on the canonical ``problem`` at the canonical point ``x``.

    ``y_known`` has one entry per canonical row: the mapped multiplier of a row that the reformulated model kept
    (multiplied by the factor the reformulation scaled the row by), ``NaN`` for a row it eliminated. Returns
    ``(y, z_L, z_U)``: unknown rows and all bound multipliers re-derived from stationarity (bounded least squares
    on the columns the unknown rows touch). The caller verifies the result like any received claim.
    """
    from poso_sim.kkt.certificate import Tolerances
    from poso_sim.kkt.check import checker_for
    from poso_sim.kkt.repair import least_squares_multipliers, rederive_bound_multipliers

    chk = checker_for(problem)
    x = np.asarray(x, dtype=float)
    y = np.array(y_known, dtype=float)
    unknown = ~np.isfinite(y)
    y[unknown] = 0.0
    ev = chk.evaluate(x)
    ev["row_scale"] = chk.row_scale(x, ev)
    zl, zu = rederive_bound_multipliers(chk, x, y, ev, complementarity)
    tol = Tolerances(complementarity=complementarity)
    if not unknown.any():
        return y, zl, zu
    rows = np.flatnonzero(unknown)
    touched = np.zeros(chk.n, dtype=bool)
    in_rows = np.zeros(chk.m, dtype=bool)
    in_rows[rows] = True
    touched[chk.jc[in_rows[chk.jr]]] = True
    cols = np.flatnonzero(touched)
    for _ in range(rounds):
        ms = chk.measures(x, y, zl, zu, ev)
        y, zl, zu, _info = least_squares_multipliers(
            chk, x, y, zl, zu, ev, cols, rows, ms.stat_scale, tol, max_unknowns=50_000, max_iter=200
        )
        ms = chk.measures(x, y, zl, zu, ev)
        bad = np.flatnonzero(ms.stat > 0.5 * tol.dual)
        if bad.size == 0:
            break
        cols = np.union1d(cols, bad)
        rows = np.zeros(0, dtype=np.int64)
    return y, zl, zu
