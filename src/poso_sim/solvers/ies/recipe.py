"""The solve recipe of the integrated-energy model, as the problem registry names it
(``solve_recipe="poso_sim.solvers.ies:solve"``): start points from the case data, the staged solve
(:mod:`poso_sim.solvers.ies.staged`) from each, the cheapest optimum kept.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

import numpy as np

from poso_sim.solvers.backend import RawResult
from poso_sim.solvers.ies.staged import PIPELINE_VERSION, RECIPES, Recipe, StageFailure, StartError, solve_reduced
from poso_sim.solvers.pipeline import SolveError

__all__ = ["solve", "canonical_start", "capacity_start", "objective_aware_start", "network_start", "perturbed_start"]

logger = logging.getLogger(__name__)


def solve(
    model,
    nlp,
    x0=None,
    *,
    progress: Callable[[str, dict], None] | None = None,
    backend: str | None = None,
    starts: int = 1,
    variant: str | None = None,
    label: dict | None = None,
    data=None,
) -> RawResult:
    """The plan of ``model``'s variant: the staged solve from the data-only start point (or, per the variant's
    :data:`~poso_sim.solvers.ies.staged.RECIPES` entry, a start built around its own objective); with
    ``starts > 1`` also from perturbed starts, keeping the cheapest optimum (by the true cost). ``x0`` (the
    model's initial values) is not used: every start is built from the case data, ``data`` (the route passes it,
    and no model: the recipe needs none, so a compiled problem loaded from disk is solved without Pyomo) or
    ``model._case``.

    Raises :class:`~poso_sim.solvers.pipeline.SolveError` naming the stage when no start reaches an optimum.
    """
    case = data if data is not None else model._case
    variant = variant or getattr(model, "variant", "true")
    label = {"variant": variant, **(label or {})}
    where = f"{label.get('case', case.name)} {variant}"
    recipe = RECIPES.get(variant, Recipe())
    best: tuple[RawResult, float] | None = None
    failure: SolveError | None = None
    for k in range(max(1, int(starts))):
        try:
            res = _solve_from_start(nlp, case, recipe, k, where, progress=progress, backend=backend,
                                    label={**label, "start": k})
        except SolveError as exc:
            failure = exc
            continue
        cost = float(nlp.true_cost(res.x))
        if best is None or cost < best[1]:
            best = (res, cost)
    if best is None:
        assert failure is not None
        raise failure
    return best[0]


def _solve_from_start(nlp, case, recipe: Recipe, k: int, where: str, **kw) -> RawResult:
    """Start ``k``'s optimum, or :class:`SolveError` naming the stage. The first start of a recipe built around the
    variant's own objective falls back to the data-only start (same stage settings) when its start point or any
    later stage fails: a generated day whose surrogate does not converge is still solved. A fixed-flows stage that
    Ipopt finds infeasible (the start's flows cannot carry the heat the variant asks for) gives way to a cold
    proximal stage from the same start."""
    fallback = k == 0 and recipe.start not in _DATA_STARTS
    prox_ref = None
    try:
        x_start, prox_ref = _start(nlp, case, recipe, k)
    except StartError as exc:
        if not fallback:
            raise SolveError("start", exc.status, f"{where}: {exc}") from None
        logger.warning("%s: %s; falling back to the data-only start", where, exc)
        x_start, fallback = _data_start(nlp, case, where), False
    rc = _on_start(recipe, fallback)
    res = _staged(case, nlp, x_start, rc, where, prox_ref=prox_ref, **kw)
    if res.status != "optimal" and fallback:
        logger.warning("%s: the solve from the %s start failed (%s); falling back to the data-only start", where,
                       recipe.start, res.status)
        x_start, rc, prox_ref = _data_start(nlp, case, where), _on_start(recipe, False), None
        res = _staged(case, nlp, x_start, rc, where, **kw)
    note = ""
    if res.status == "fixed-flows:infeasible" and rc.fix_flows_first:
        logger.warning("%s: the fixed-flows stage is infeasible at the start's flows; going on with a cold proximal "
                       "stage", where)
        note = " (after the fixed-flows stage was infeasible at the start's flows)"
        res = _staged(case, nlp, x_start, replace(rc, fix_flows_first=False), where, prox_ref=prox_ref, **kw)
    if res.status != "optimal":
        raise SolveError(res.failed_stage or "check", res.status.split(":", 1)[-1], f"{where}: {res.message}{note}")
    return res


#: Starts built from the case data alone by the data-only start's LPs: nothing of theirs to fall back from.
_DATA_STARTS = ("data", "capacity")


def _on_start(recipe: Recipe, own_start: bool) -> Recipe:
    """The stage settings from the recipe's own start, or from the data-only start it falls back to: a network
    start's cold proximal stage needs its reference, so the data-only start gets the fixed-flows stage."""
    if own_start or recipe.start != "network":
        return recipe
    return Recipe(final_mu_init=recipe.final_mu_init)


def _data_start(nlp, case, where: str) -> np.ndarray:
    try:
        return canonical_start(nlp, case)
    except StartError as exc:
        raise SolveError("start", exc.status, f"{where}: {exc}") from None


def _staged(case, nlp, x_start, recipe: Recipe, where: str, **kw) -> RawResult:
    """:func:`solve_reduced` on ``case``'s data; an exception inside a stage (a solver or linear-algebra error)
    becomes a failed result naming that stage."""
    try:
        return solve_reduced(case, nlp, x_start, recipe=recipe, **kw)
    except StageFailure as exc:
        return RawResult(x=np.asarray(x_start, dtype=float), y=np.zeros(nlp.m), z_L=np.zeros(nlp.n),
                         z_U=np.zeros(nlp.n), status=f"{exc.stage}:{exc.status}", objective=float("nan"),
                         iterations=0, seconds=0.0, message=f"{where}: {exc.detail}")


#: The recipe's code version: part of the cache key of every plan it makes.
solve.version = PIPELINE_VERSION  # type: ignore[attr-defined]
#: The recipe reads the case data (``data``), not the Pyomo model: the route does not build one for it.
solve.needs_model = False  # type: ignore[attr-defined]


def _start(nlp, case, recipe: Recipe, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Start ``k``'s point and, for a network start, the first proximal reference (else None)."""
    if k > 0:
        return perturbed_start(nlp, case, k), None
    if recipe.start in ("objective", "objective-flows"):
        return objective_aware_start(nlp, case, flows_only=recipe.start == "objective-flows"), None
    if recipe.start == "network":
        return network_start(nlp, case)
    if recipe.start == "capacity":
        return capacity_start(nlp, case), None
    return canonical_start(nlp, case), None


def canonical_start(nlp, case) -> np.ndarray:
    """The data-only start point as a canonical vector of ``nlp``."""
    from poso_sim.solvers.ies.start import network_data, start_point  # scipy.optimize: only for a start

    return _as_vector(nlp, start_point(network_data(case)))


def capacity_start(nlp, case) -> np.ndarray:
    """The data-only start point with each hub's water held to the heat the hub can make: its boiler's cap plus the
    heat of the least CHP output ``nlp``'s own rows force (:mod:`poso_sim.solvers.ies.hub_capacity`)."""
    from poso_sim.solvers.ies.hub_capacity import capacity_hub_water, forced_chp_output
    from poso_sim.solvers.ies.start import network_data, start_point  # scipy.optimize: only for a start

    net = network_data(case)
    water = capacity_hub_water(net, forced_chp_output(nlp, canonical_start(nlp, case)))
    return _as_vector(nlp, start_point(net, dispatch={"m_hub": water}))


def objective_aware_start(nlp, case, *, flows_only: bool = False) -> np.ndarray:
    """The start point built around a convex surrogate of ``nlp``'s own objective
    (:func:`poso_sim.solvers.ies.start.objective_aware_dispatch`): per-hour hub injections and CHP outputs."""
    from poso_sim.solvers.ies.start import network_data, objective_aware_dispatch, start_point  # scipy.optimize

    net = network_data(case)
    disp = objective_aware_dispatch(nlp, canonical_start(nlp, case), net)
    if flows_only:  # the surrogate picks the hub injections; the dispatch follows the data-only rules
        disp = {"m_hub": disp["m_hub"]}
    return _as_vector(nlp, start_point(net, dispatch=disp))


def network_start(nlp, case) -> tuple[np.ndarray, np.ndarray]:
    """The start point built around the whole-network surrogate of ``nlp``'s own problem (its CHP outputs, hub
    injections and storage, the network state around them), and the per-hour MILP flow pattern as a canonical
    vector: the first proximal reference (:mod:`poso_sim.solvers.ies.network_start`)."""
    from poso_sim.solvers.ies.network_start import milp_flow_pattern, network_dispatch
    from poso_sim.solvers.ies.start import network_data, start_point  # scipy.optimize: only for a start

    net = network_data(case)
    disp = network_dispatch(nlp, canonical_start(nlp, case), net)
    x_start = _as_vector(nlp, start_point(net, dispatch=disp))
    m_pipe, m_hub = milp_flow_pattern(net, disp)
    x_ref = x_start.copy()
    for (k, t), val in m_pipe.items():
        x_ref[nlp.var_index(f"m_sup[{k},{t}]")] = val
        x_ref[nlp.var_index(f"m_ret[{k},{t}]")] = val
    for (c, t), val in m_hub.items():
        x_ref[nlp.var_index(f"m_hub[{c},{t}]")] = val
    return x_start, x_ref


def perturbed_start(nlp, case, k: int) -> np.ndarray:
    """Start ``k`` of a best-of-k run: the heat-flow LP with another minimum pipe flow."""
    from poso_sim.solvers.ies.start import network_data, start_point  # scipy.optimize: only for a start

    deltas = (0.05, 0.03, 0.1, 0.15, 0.08, 0.04, 0.12, 0.06)
    return _as_vector(nlp, start_point(network_data(case), delta=deltas[k % len(deltas)]))


def _as_vector(nlp, values: dict) -> np.ndarray:
    x0 = np.zeros(nlp.n)
    for comp, vals in values.items():
        for idx, val in vals.items():
            name = f"{comp}[{idx[0]},{idx[1]}]" if isinstance(idx, tuple) else f"{comp}[{idx}]"
            x0[nlp.var_index(name)] = val
    return x0
