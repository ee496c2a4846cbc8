"""The staged solve of the IES dispatch NLP (see docs/solver.md).

:func:`solve_reduced` solves the reduced formulation of :mod:`poso_sim.solvers.ies.reduce` in stages, each a
:class:`~poso_sim.solvers.view.ProblemView` of a compiled NLP (rows kept, tightened bounds, log-parametrised
flows, a proximal term, own scaling) solved by a backend of :func:`~poso_sim.solvers.pipeline.make_backend`:

``fixed-flows``
    From the data-only start point (:mod:`poso_sim.solvers.ies.start`) all heat mass flows are fixed: the heat
    network becomes linear in the temperatures and Ipopt settles the electric and heat dispatch.
``proximal-cold`` (instead of ``fixed-flows``, per recipe)
    From a start built around the variant's own problem, the flows free at once with a proximal term towards the
    first reference (the per-hour MILP flow pattern of :mod:`poso_sim.solvers.ies.network_start`).
``proximal``
    The flows are freed, pipe flows parametrised as ``exp(u)``, with a proximal term ``rho * ||m - m_ref||^2``.
``final``
    A free, warm-started solve of the reduced model to the final tolerance.
``map-back`` and ``polish``
    The point and multipliers are mapped to the canonical model exactly, and a warm-started solve of the full
    canonical problem (all rows, all original bounds) polishes them: the multipliers are the canonical ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from poso_sim.solvers.backend import RawResult, violation
from poso_sim.solvers.pipeline import (
    ProblemView, StageReport, backend_name, emit_stage, final_check, make_backend, solve_view, tidy_multipliers,
)  # fmt: skip

__all__ = [
    "PIPELINE_VERSION", "RECIPES", "Recipe", "StageFailure", "StartError", "component_indices", "solve_reduced",
    "typical_sizes",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: The code version of the staged recipe: part of every cache key of its plans (bump when its results change).
#: ``-14``: the start's heat loads follow the day's heat load factor (a generated day's plans change; the base
#: day's, where the two factors are one, are the same bit for bit).
PIPELINE_VERSION = "reduced-prox-16"


class StartError(RuntimeError):
    """A start point's LP or surrogate did not solve: ``what`` names it, ``status`` is its solver's status."""

    def __init__(self, what: str, status: str):
        self.what, self.status = what, status
        super().__init__(f"{what}: {status}")


class StageFailure(RuntimeError):
    """An exception inside a stage of :func:`solve_reduced` (a solver or linear-algebra error), naming the stage."""

    def __init__(self, stage: str, status: str, detail: str):
        self.stage, self.status, self.detail = stage, status, detail
        super().__init__(f"stage {stage!r}: {status} ({detail})")


@dataclass(frozen=True)
class Recipe:
    """The stage settings of one solve (chosen per variant by measurement, see docs/solver.md)."""

    #: "data": the data-only start; "capacity": the data-only start with each hub's water held to the heat the hub
    #: can make, its boiler's cap plus its CHP's forced output (:mod:`poso_sim.solvers.ies.hub_capacity`);
    #: "objective": built around a convex surrogate of the variant's objective (hub
    #: injections and CHP outputs); "objective-flows": the surrogate's hub injections, the data-only dispatch rules;
    #: "network": a convex surrogate of the variant over the whole network, with the per-hour MILP flow pattern as
    #: the first proximal reference (:mod:`poso_sim.solvers.ies.network_start`)
    start: str = "data"
    #: the first stage holds every flow at its start value ("fixed-flows"); False: a cold proximal stage instead
    fix_flows_first: bool = True
    #: the first stage's ``mu_init`` and iteration cap; ``keep_capped_first``: a first stage stopped at its cap is
    #: kept (its iterate warm-starts the next) instead of failing the solve
    first_mu_init: float = 1e-1
    first_max_iter: int = 1500
    keep_capped_first: bool = False
    rho_schedule: tuple[float, ...] = (3e-3,)
    prox_max_iter: int = 150
    final_mu_init: float = 1e-4
    final_tol: float = 1e-8
    #: Ipopt's ``constr_viol_tol`` of the final reduced stage, per backend: with the scaling folded into the
    #: formulation (CasADi) it applies to the scaled rows and must be tight, else the canonical polish needs ~100
    #: iterations instead of ~14.
    final_constr_viol_tol: dict = field(default_factory=lambda: {"casadi": 1e-11, "cyipopt": 1e-8})


#: Recipes by variant (measured, docs/solver.md). ``true``: the capacity start (no CHP is forced, but its caps assume
#: no 4 K drop: hub 1 starts at the optimum's 40 kg/s instead of 101): 230 iterations instead of 274 from the data-only
#: start, same optimum; and a small ``mu_init`` in the final stage (40 % fewer final iterations at the same optimum). ``tampered``: the whole-network start ("network": a
#: surrogate of its own problem, the per-hour MILP flow pattern as the first proximal reference), a cold proximal
#: first stage (``mu_init`` 1e-6, capped at 300 and kept if capped; no second round: it moved nothing), final
#: ``mu_init`` 1e-7: 97 iterations to 904.0821 $ instead of 500 to 904.2597 $ ("objective-flows"). ``feasible``:
#: the capacity start (its forced CHP 3 heat lets hub 3 take the water the optimum gives it), a stiffer proximal
#: round (``rho`` 1e-2) and final ``mu_init`` 1e-7: 208 iterations instead of 412 from the data-only start, same
#: optimum.
RECIPES: dict[str, Recipe] = {
    "true": Recipe(start="capacity", final_mu_init=1e-6),
    "tampered": Recipe(start="network", fix_flows_first=False, rho_schedule=(3e-3,), first_mu_init=1e-6,
                       first_max_iter=300, keep_capped_first=True, final_mu_init=1e-7),
    "feasible": Recipe(start="capacity", rho_schedule=(1e-2,), final_mu_init=1e-7),
}

#: Seconds between two iterations the backend forwards to the progress callbacks (the live line and the DEBUG
#: records show one per 0.2 s at most anyway).
PROGRESS_INTERVAL = 0.2

#: The warm-started options of the proximal rounds (the final stage and the polish start from them).
_WARM = {
    "warm_start_init_point": "yes",
    "mu_init": 1e-4,
    "warm_start_bound_push": 1e-6,
    "warm_start_mult_bound_push": 1e-6,
    "warm_start_slack_bound_push": 1e-6,
    "tol": 1e-7,
}
#: The polish attempts (``mu_init``, ``bound_relax_factor``, ``max_iter``): each must pass the final check; the next
#: one starts again from the mapped point. The CasADi build's true plan stops at a row complementarity of 2.7e-6
#: (which the certificate rejects) with Ipopt's default bound relaxation and passes in 3 iterations without it,
#: while without it the tampered plan needs 23-110 iterations and passes in 1 with it.
_POLISH_ATTEMPTS = ((1e-9, 1e-8, 200), (1e-9, 0.0, 200), (1e-10, 1e-8, 400))

_TYPICAL = {
    "I_line": 1000.0, "V": 10.0, "gas_p": 1.0,
    "m_sup": 10.0, "m_ret": 10.0, "m_hub": 10.0, "m_load": 10.0,
    "T_sup": 10.0, "T_ret": 10.0, "T_load_out": 10.0, "T_end_sup": 10.0, "T_end_ret": 10.0,
}  # fmt: skip


def typical_sizes(nlp) -> np.ndarray:
    """A typical magnitude per variable, by component (powers and energies 100, currents 1000, ...)."""
    per_comp = np.array([_TYPICAL.get(nm, 100.0) for nm in nlp.var_component_names])
    return per_comp[np.asarray(nlp.var_component)]


def element_index(name: str) -> int | tuple[int, ...]:
    """The index of a variable element from its name: ``"P_CHP[3,5]"`` gives ``(3, 5)``, ``"P_grid[7]"`` gives 7."""
    inner = name.split("[", 1)[1].rstrip("]")
    return tuple(int(p) for p in inner.split(",")) if "," in inner else int(inner)


def component_indices(nlp, names) -> np.ndarray:
    comp = np.asarray(nlp.var_component)
    ids = [i for i, nm in enumerate(nlp.var_component_names) if nm in set(names)]
    return np.where(np.isin(comp, ids))[0]


class _Run:
    """What the stages of one solve share: the backend, the progress callbacks and the stage reports."""

    def __init__(self, backend: str | None, label: dict | None, progress: Callable | None):
        self.bname = backend_name(backend)
        self.backend = make_backend(self.bname, progress_interval=PROGRESS_INTERVAL)
        self.label = dict(label or {})
        self.label.setdefault("backend", self.bname)
        self.progress = progress
        self.stages: list[StageReport] = []
        self.t_all = time.perf_counter()
        self._cpu_mark = time.process_time()
        self._debug = logger.isEnabledFor(logging.DEBUG)
        #: the stage running now (named by a failure inside it)
        self.current = "reduce"

    def callback(self, name: str) -> Callable | None:
        """The per-iteration callback of stage ``name``: DEBUG records (at most one per 0.2 s) and ``progress``."""
        if self.progress is None and not self._debug:
            return None
        last = [0.0]

        def cb(info):
            if self._debug:
                now = time.perf_counter()
                if now - last[0] >= 0.2:
                    last[0] = now
                    logger.debug(
                        "%s iteration %d objective %.6f", name, info["iter"], info["objective"],
                        extra={"poso_progress": {"task": "solve", **self.label, "stage": name,
                                                 "iterations": info["iter"], "iteration": info["iter"],
                                                 "objective": float(info["objective"]),
                                                 "violation": float(info["inf_pr"]), "final": False}},
                    )
            if self.progress is not None:
                return self.progress(name, info)
            return None

        return cb

    def solve(self, view: ProblemView, v, options: dict, name: str, warm: Any = None) -> RawResult:
        self.current = name.split(" ", 1)[0]
        return solve_view(view, v, options, warm=warm, progress=self.callback(name), backend=self.backend)

    def add(self, rep: StageReport) -> None:
        now = time.process_time()
        rep.cpu_seconds = now - self._cpu_mark
        self._cpu_mark = now
        self.stages.append(rep)

    def done(self, rep: StageReport, viol: float, final: bool = False) -> None:
        self.add(rep)
        emit_stage(self.label, rep.name, rep.iterations, rep.objective, viol, final)

    def result(self, nlp, x, y, zl, zu, status: str, message: str) -> RawResult:
        return RawResult(
            x=x, y=y, z_L=zl, z_U=zu, status=status, objective=float(nlp.f(x)),
            iterations=sum(s.iterations for s in self.stages), seconds=time.perf_counter() - self.t_all,
            message=message, solver=self.bname, stages=tuple(s.as_dict() for s in self.stages),
        )

    def failed(self, nlp, red, xr, stage: str, status: str, message: str) -> RawResult:
        xc = red.to_canonical(xr)
        return self.result(nlp, xc, np.zeros(nlp.m), np.zeros(nlp.n), np.zeros(nlp.n), f"{stage}:{status}", message)


@dataclass
class _Reduced:
    """The reduced problem of one solve and the stages' shared setting on it."""

    red: Any
    rn: Any
    flows: np.ndarray
    log_idx: np.ndarray
    typical: np.ndarray
    #: the reduced start point
    x0: np.ndarray
    #: the proximal term's first reference of the flows
    ref: np.ndarray


def solve_reduced(
    model,
    nlp,
    x_start: np.ndarray,
    *,
    final_tol: float | None = None,
    rho_schedule=None,
    max_rounds: int = 1,
    scaling: bool = True,
    prox_max_iter: int | None = None,
    polish: bool = True,
    progress: Callable[[str, dict], None] | None = None,
    backend: str | None = None,
    recipe: Recipe | None = None,
    label: dict | None = None,
    prox_ref: np.ndarray | None = None,
) -> RawResult:
    """The staged solve on the reduced formulation (:mod:`poso_sim.solvers.ies.reduce`), mapped back to ``nlp``
    (``model``: the Pyomo model of ``nlp`` or the case data it was built from; only the data is read).

    Stages: reduce; fixed flows; proximal rounds with log-parametrised pipe flows; a final reduced solve at
    ``final_tol``; map the point and multipliers to the canonical model; polish there (warm start); the final
    check (:func:`~poso_sim.solvers.pipeline.final_check`). ``status`` is ``"optimal"`` only if the polish
    converged and the check accepts the point; otherwise it names the failing stage (``"polish:max_iter"``,
    ``"check:rejected"``, ...; :attr:`RawResult.failed_stage`).

    ``prox_ref`` (a canonical vector): the first proximal reference of the flows (default: ``x_start``'s).

    Progress: INFO records at each stage end and throttled DEBUG records per iteration, with
    ``extra={"poso_progress": {...}}`` (``label`` adds e.g. the case and variant); ``progress(stage, info)`` is
    called at every iteration as well.
    """
    rc = recipe or Recipe()
    rc = replace(
        rc,
        final_tol=rc.final_tol if final_tol is None else final_tol,
        rho_schedule=rc.rho_schedule if rho_schedule is None else tuple(rho_schedule),
        prox_max_iter=rc.prox_max_iter if prox_max_iter is None else prox_max_iter,
    )
    run = _Run(backend, label, progress)
    try:
        return _stages(run, model, nlp, x_start, rc, max_rounds, scaling, polish, prox_ref)
    except (RuntimeError, ValueError, ArithmeticError) as exc:  # LinAlgError is a ValueError
        raise StageFailure(run.current, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "") from exc


def _stages(run: _Run, model, nlp, x_start, rc: Recipe, max_rounds: int, scaling: bool, polish: bool,
            prox_ref) -> RawResult:
    setting, x = _reduce(run, model, nlp, x_start, prox_ref)
    first = _first_stage(run, setting, x, rc, scaling)
    if not _usable(first[1], rc.keep_capped_first):
        return run.failed(nlp, setting.red, first[0].to_x(first[1].x), first[2], first[1].status, first[1].message)
    view, point = _proximal_rounds(run, setting, first[1], rc, max_rounds, scaling)
    final = _final_stage(run, setting, view, point, rc)
    xr = view.to_x(final.x)
    if not final.ok:
        return run.failed(nlp, setting.red, xr, "final", final.status, final.message)
    mapped = _map_back(run, setting, nlp, xr, final)
    if polish:
        return _polish(run, nlp, mapped, final, rc.final_tol)
    ok, measures = final_check(nlp, *mapped)
    if not ok:
        return run.result(nlp, *mapped, "check:rejected", _check_message(measures))
    return run.result(nlp, *mapped, final.status, final.message)


def _usable(r: RawResult, capped_ok: bool) -> bool:
    """Converged, or (``capped_ok``) stopped at its iteration cap with a finite iterate."""
    return r.ok or (capped_ok and r.status == "max_iter" and bool(np.all(np.isfinite(r.x))))


def _reduce(run: _Run, model, nlp, x_start, prox_ref=None) -> tuple[_Reduced, np.ndarray]:
    from poso_sim.solvers.ies.reduce import cached_reduction  # scipy.sparse's solvers: only when a solve runs

    t0 = time.perf_counter()
    red = cached_reduction(model, nlp, x_start)
    rn = red.nlp
    x = np.clip(red.to_reduced(x_start), rn.x_lb, rn.x_ub)
    run.done(StageReport("reduce", 0, time.perf_counter() - t0, float(rn.f(x)), f"n={rn.n} m={rn.m}"),
             violation(rn, x))
    flows = component_indices(rn, ("m_sup", "m_hub"))
    ref = x[flows] if prox_ref is None else np.clip(red.to_reduced(prox_ref), rn.x_lb, rn.x_ub)[flows]
    setting = _Reduced(red, rn, flows, component_indices(rn, ("m_sup",)), typical_sizes(rn), x, ref)
    return setting, x


def _first_stage(run: _Run, s: _Reduced, x, rc: Recipe, scaling: bool) -> tuple[ProblemView, RawResult, str]:
    """Flows fixed at the start (or, without ``fix_flows_first``, held near it by the first proximal weight), in
    the same log-parametrised view as the later stages: one structure for all."""
    t0 = time.perf_counter()
    flows = s.flows
    view = ProblemView(s.rn, log_idx=s.log_idx, prox_idx=flows, prox_ref=s.ref, prox_weight=0.0, prox_space="x")
    v = view.from_x(x)
    name = "fixed-flows"
    if rc.fix_flows_first:
        view.x_lb, view.x_ub = view.x_lb.copy(), view.x_ub.copy()
        view.x_lb[flows] = v[flows]
        view.x_ub[flows] = v[flows]
    else:
        name = f"proximal-cold rho={rc.rho_schedule[0]:g}"
        view.prox_weight = float(rc.rho_schedule[0])
    if scaling:
        view.set_scaling(s.typical, v)
    r = run.solve(view, v, {"tol": 1e-6, "mu_init": rc.first_mu_init, "max_iter": rc.first_max_iter}, name)
    x = view.to_x(r.x)
    run.done(StageReport(name, r.iterations, time.perf_counter() - t0, float(s.rn.f(x)), r.status),
             violation(s.rn, x))
    if r.ok and rc.fix_flows_first:
        r.z_L[flows] = 0.0
        r.z_U[flows] = 0.0
    return view, r, name


def _proximal_rounds(run: _Run, s: _Reduced, point: RawResult, rc: Recipe, max_rounds: int,
                     scaling: bool) -> tuple[ProblemView, RawResult]:
    """Rounds with the flows free and a proximal term towards the previous round's flows, until the term no longer
    moves them (or a round runs to its iteration cap)."""
    flows = s.flows
    view = ProblemView(s.rn, log_idx=s.log_idx, prox_idx=flows, prox_ref=s.ref, prox_weight=0.0,
                       prox_space="x")
    if scaling:
        view.set_scaling(s.typical, point.x)
    schedule = rc.rho_schedule if rc.fix_flows_first else rc.rho_schedule[1:]
    options = {**_WARM, "max_iter": rc.prox_max_iter}
    f_prev = float(s.rn.f(view.to_x(point.x)))
    rounds = 0
    for rho in schedule:
        for _ in range(max_rounds):
            rounds += 1
            view.prox_ref = view.to_x(point.x)[flows]
            view.prox_weight = float(rho)
            t0 = time.perf_counter()
            r = run.solve(view, point.x, options, f"proximal-{rounds}", warm=point)
            x_new = view.to_x(r.x)
            f_new = float(s.rn.f(x_new))
            run.done(StageReport(f"proximal rho={rho:g}", r.iterations, time.perf_counter() - t0, f_new, r.status),
                     violation(s.rn, x_new))
            usable = r.ok or (r.status == "max_iter" and np.all(np.isfinite(r.x)) and np.all(np.isfinite(r.y)))
            if not usable:
                break
            # a round stopped at its iteration cap is kept: its iterate is interior and closer to the optimum
            point = r
            improved = f_prev - f_new
            f_prev = min(f_prev, f_new)
            if r.status == "max_iter" or improved < 1e-3:
                # the proximal term no longer moves the flows (or the round ran long): the free solve takes over
                return view, point
    return view, point


def _final_stage(run: _Run, s: _Reduced, view: ProblemView, point: RawResult, rc: Recipe) -> RawResult:
    """The reduced problem without the proximal term (same view, weight 0), to the final tolerance."""
    view.prox_weight = 0.0
    t0 = time.perf_counter()
    options = {**_WARM, "tol": rc.final_tol, "max_iter": 1500, "mu_init": rc.final_mu_init,
               "constr_viol_tol": rc.final_constr_viol_tol.get(run.bname, 1e-8)}
    r = run.solve(view, point.x, options, "final", warm=point)
    run.done(StageReport("final", r.iterations, time.perf_counter() - t0, r.objective, r.status),
             violation(s.rn, view.to_x(r.x)))
    return r


def _map_back(run: _Run, s: _Reduced, nlp, xr, final: RawResult) -> tuple:
    """The reduced point and multipliers on the canonical model (bound multipliers of the log-parametrised flows
    back in the flows' own units)."""
    run.current = "map-back"
    scale = np.ones(s.rn.n)
    scale[s.log_idx] = xr[s.log_idx]
    zl, zu = final.z_L / scale, final.z_U / scale
    t0 = time.perf_counter()
    xc = s.red.to_canonical(xr)
    yc, zlc, zuc = s.red.canonical_multipliers(xc, final.y, zl, zu)
    run.done(StageReport("map-back", 0, time.perf_counter() - t0, float(nlp.f(xc)), "mapped"), violation(nlp, xc))
    return xc, yc, zlc, zuc


def _polish(run: _Run, nlp, mapped: tuple, final: RawResult, final_tol: float) -> RawResult:
    """Warm starts of the canonical problem with a tiny barrier parameter (1-3 iterations from the mapped point; at
    ``mu_init`` 1e-8 the CasADi build took 14-136), each checked by the final check; the barrier's leftovers on
    rows far from binding are zeroed (:func:`~poso_sim.solvers.pipeline.tidy_multipliers`) and the point checked
    again."""
    point, status, message, measures, failed_stage = mapped, final.status, final.message, {}, ""
    start = RawResult(*mapped, status="mapped", iterations=0, seconds=0.0, objective=float("nan"))
    for attempt, (mu0, relax, max_it) in enumerate(_POLISH_ATTEMPTS):
        t0 = time.perf_counter()
        options = {**_WARM, "max_iter": max_it, "tol": final_tol, "mu_init": mu0, "warm_start_bound_push": 1e-9,
                   "warm_start_mult_bound_push": 1e-9, "warm_start_slack_bound_push": 1e-9, "constr_viol_tol": 1e-8,
                   "nlp_scaling_method": "none", "bound_relax_factor": relax}
        r = run.solve(ProblemView(nlp), start.x, options, "polish", warm=start)
        name = "polish" if attempt == 0 else f"polish-retry{attempt}"
        run.add(StageReport(name, r.iterations, time.perf_counter() - t0, r.objective, r.status))
        point, status, message = (r.x, r.y, r.z_L, r.z_U), r.status, r.message
        ok, measures = final_check(nlp, *point)
        if r.status == "optimal" and not ok and measures["complementarity"] > 5e-7:
            tidy = (r.x, *tidy_multipliers(nlp, *point))
            tok, tmeasures = final_check(nlp, *tidy)
            if tok:
                point, ok, measures = tidy, tok, tmeasures
        if r.status == "optimal" and ok:
            failed_stage = ""
            break
        failed_stage = "polish" if r.status != "optimal" else "check"
        if attempt < len(_POLISH_ATTEMPTS) - 1:
            emit_stage(run.label, name, r.iterations, r.objective, measures["violation"], False)
    last = run.stages[-1]
    emit_stage(run.label, last.name, last.iterations, last.objective, measures["violation"], True)
    if failed_stage == "check":
        return run.result(nlp, *point, "check:rejected", _check_message(measures))
    return run.result(nlp, *point, f"polish:{status}" if failed_stage else status, message)


def _check_message(measures: dict) -> str:
    return (f"final check: violation {measures['violation']:.1e}, stationarity {measures['stationarity']:.1e}, "
            f"sign {measures['sign']:.1e}, complementarity {measures['complementarity']:.1e}")

