"""Adversarial plans for exercising the certificate: each is a KKT point of *its own* problem, verified against
the shared true problem.

* :class:`BiasedObjective`: the true problem with ``f(x) + b * sum_t P_CHP[u, t]`` (a unit favoured or penalised by
  ``b`` $/kWh); same rows, so its multipliers are directly those of the shared rows.
* :class:`ShiftedRows`: the true problem with chosen rows' right-hand sides moved (a network equation broken
  slightly, e.g. less line loss than physics allows: cheaper but infeasible).
* :func:`solve_warm`: warm-started Ipopt solve of such a view from a known primal-dual point.
* :func:`solve_biased`: the plan of a leader optimising a biased objective, solved from scratch by the staged
  pipeline; :func:`biased_plan` keeps it in the solution cache directory (``probes/``), keyed by the shared
  problem's fingerprint, the bias and the source of this module and of the staged solve.
* :func:`honest_plan`: the true optimum reached by a second route (another backend or scaling, another start),
  cached the same way.

These helpers *solve*; the certificate (:mod:`poso_sim.kkt`) never does. They serve the tests and
``benchmarks/bench_kkt.py`` only (which put solving and verifying together), so they live beside the tests, not in
the package.

Both views delegate everything else to the wrapped :class:`~poso_sim.nlp.CompiledNLP` (same Hessian: the bias
is linear). ``tests/test_kkt_manchester.py`` checks on one bias that the view equals a compiled Pyomo clone with
the extra objective term.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

import casadi as ca
import numpy as np

from poso_sim.cases import load_case
from poso_sim.nlp import Solution, compile_nlp
from poso_sim.solvers.api import get_problem, solve_case
from poso_sim.solvers.backend import symbolic
from poso_sim.solvers.cache import default_cache_dir
from poso_sim.solvers.ies import RECIPES, canonical_start, solve_reduced
from poso_sim.solvers.ies import staged
from poso_sim.solvers.ipopt import IpoptBackend

__all__ = [
    "BiasedObjective",
    "ShiftedRows",
    "solve_warm",
    "solve_biased",
    "biased_plan",
    "as_solution",
    "unit_output_columns",
    "manchester_plans",
    "honest_plan",
    "HONEST_ROUTES",
]

WARM_OPTIONS = {
    "warm_start_init_point": "yes",
    "mu_init": 1e-6,
    "warm_start_bound_push": 1e-9,
    "warm_start_mult_bound_push": 1e-9,
    "warm_start_slack_bound_push": 1e-9,
    "tol": 1e-8,
    "max_iter": 600,
}


class _View:
    def __init__(self, base: Any):
        self.base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


class BiasedObjective(_View):
    """``base`` with ``f + bias * sum(x[cols])``."""

    def __init__(self, base: Any, cols: np.ndarray, bias: float):
        super().__init__(base)
        self.cols = np.asarray(cols, dtype=np.int64)
        self.bias = float(bias)
        self._c = np.zeros(base.n)
        self._c[self.cols] = self.bias

    def f(self, x: Any) -> float:
        return float(self.base.f(x)) + float(self._c @ np.asarray(x, dtype=float))

    def grad(self, x: Any) -> np.ndarray:
        return np.asarray(self.base.grad(x), dtype=float) + self._c


class ShiftedRows(_View):
    """``base`` with ``g_lb[rows] += delta`` and ``g_ub[rows] += delta``."""

    def __init__(self, base: Any, rows: Iterable[int], delta: float):
        super().__init__(base)
        rows = np.asarray(list(rows), dtype=np.int64)
        self.g_lb = np.array(base.g_lb, dtype=float)
        self.g_ub = np.array(base.g_ub, dtype=float)
        self.g_lb[rows] += delta
        self.g_ub[rows] += delta


def unit_output_columns(nlp: Any, unit: int | None, component: str = "P_CHP") -> np.ndarray:
    """Columns of ``component[unit, t]`` for every t (``unit=None``: every column of ``component``, e.g. the
    hourly ``P_grid[t]``)."""
    idx = nlp.var_indices(component)
    if unit is None:
        return np.asarray(idx, dtype=np.int64)
    prefix = f"{component}[{unit},"
    return np.array([i for i in idx if nlp.x_names[i].startswith(prefix)], dtype=np.int64)


def solve_warm(view: Any, start: Any, options: dict | None = None) -> Any:
    """Warm-started Ipopt solve of ``view`` from ``start`` (a Solution); returns the backend's RawResult."""

    opts = dict(WARM_OPTIONS)
    opts.update(options or {})
    return IpoptBackend().solve(view, start.x, options=opts, y0=start.y, zl0=start.z_L, zu0=start.z_U)


def solve_biased(case: str, bias: float, *, unit: int | None = 3, component: str = "P_CHP") -> Any:
    """The plan of a leader optimising ``true cost + bias * sum_t component[unit, t]`` (``unit=None``: the
    component is indexed by hour only, e.g. ``P_grid``: a grid-price bias), solved from scratch by the staged
    pipeline (reduced formulation, canonical polish). Returns a RawResult-like record."""

    import pyomo.environ as pyo  # Pyomo only when a biased model is built (loading cached plans does without)


    model, shared = get_problem(case, "true")
    biased = model.clone()
    var = getattr(biased, component)
    biased.obj.deactivate()
    terms = (var[t] for t in biased.T) if unit is None else (var[unit, t] for t in biased.T)
    biased.obj_biased = pyo.Objective(expr=biased.true_cost + bias * sum(terms))
    nlp = compile_nlp(biased)
    t0 = time.perf_counter()
    r = solve_reduced(biased, nlp, canonical_start(shared, load_case(case)), recipe=RECIPES["true"])
    return SimpleNamespace(
        x=r.x, y=r.y, z_L=r.z_L, z_U=r.z_U, status=r.status, iterations=r.iterations,
        seconds=time.perf_counter() - t0, objective=r.objective,
    )


def as_solution(shared: Any, raw: Any, variant: str) -> Any:
    """A RawResult of a same-rows view as a Solution claiming the shared problem (multipliers as solved)."""

    return Solution(
        x=raw.x, y=raw.y, z_L=raw.z_L, z_U=raw.z_U, x_names=shared.x_names, row_names=shared.row_names,
        variant=variant, case="manchester", cost=float(shared.true_cost(raw.x)), objective=raw.objective,
        status=raw.status, iterations=raw.iterations, solve_seconds=raw.seconds, fingerprint=shared.fingerprint,
    )


def _probe_key(shared: Any, *parts: Any) -> str:


    h = hashlib.sha256()
    h.update(str(shared.fingerprint).encode())
    h.update(repr(parts).encode())
    for mod in (staged,):
        h.update(inspect.getsource(mod).encode())
    h.update(inspect.getsource(solve_biased).encode())
    return h.hexdigest()[:32]


def biased_plan(case: str, bias: float, *, unit: int | None = 3, component: str = "P_CHP", cache_dir: Any = None):
    """:func:`solve_biased`, kept as ``<cache dir>/probes/<key>.npz`` (the first call solves, ~40 s)."""


    shared = get_problem(case, "true")[1]
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "probes"
    path = d / f"{_probe_key(shared, case, float(bias), unit, component)}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return SimpleNamespace(
            x=z["x"], y=z["y"], z_L=z["zL"], z_U=z["zU"], status=str(z["status"]), iterations=int(z["iterations"]),
            seconds=float(z["seconds"]), objective=float(z["objective"]),
        )
    r = solve_biased(case, bias, unit=unit, component=component)
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, x=r.x, y=r.y, zL=r.z_L, zU=r.z_U, status=str(r.status), iterations=int(r.iterations),
             seconds=float(r.seconds), objective=float(r.objective))
    tmp.replace(path)
    return r


def solve_variant(variant: str, case: str = "manchester") -> Any:
    """A Solution of a case variant through the cached solve API ``poso_sim.solvers.api.solve_case``."""

    return solve_case(case=case, variant=variant, cache=True)


def manchester_plans(case: str = "manchester") -> dict[str, Any]:
    """``{"problem": shared true CompiledNLP, "optimal"|"tampered"|"feasible": plans on the shared problem,
    "raw": {variant: Solution as solved}}``."""

    shared = get_problem(case, "true")[1]
    out: dict[str, Any] = {"problem": shared, "raw": {}}
    for label, variant in (("optimal", "true"), ("tampered", "tampered"), ("feasible", "feasible")):
        sol = solve_variant(variant, case)  # solve_case returns every variant's plan on the shared problem
        if sol.fingerprint != shared.fingerprint or np.size(sol.y) != shared.m:
            raise ValueError(f"the {variant} plan is not expressed on the shared problem")
        out["raw"][variant] = sol
        out[label] = sol
    return out


#: Second routes to the true optimum: another backend (CasADi's own Ipopt interface, its default gradient-based
#: scaling, adaptive barrier) or the project's backend with another objective scaling, each at its own tolerance,
#: from the optimum perturbed (relative and absolute, seeded) with the optimum's multipliers as a warm start.
HONEST_ROUTES: dict[str, dict[str, Any]] = {
    "casadi-tol1e-6": {"backend": "casadi", "tol": 1e-6, "seed": 11, "perturb": 1e-3},
    "casadi-tol1e-8": {"backend": "casadi", "tol": 1e-8, "seed": 12, "perturb": 1e-4},
    "cyipopt-objscale10-tol1e-8": {"backend": "cyipopt", "tol": 1e-8, "seed": 13, "perturb": 1e-4,
                                   "obj_scaling": 10.0, "mu_strategy": "adaptive"},
}


def _perturbed(x: np.ndarray, nlp: Any, rel: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return nlp.clip(x * (1 + rel * rng.standard_normal(nlp.n)) + rel * rng.standard_normal(nlp.n))


def _solve_casadi(nlp: Any, x0: np.ndarray, start: Any, tol: float) -> Any:
    """The compiled problem solved through ``casadi.nlpsol("ipopt")`` (not the project's cyipopt backend)."""


    xs = ca.MX.sym("x", nlp.n)
    opts = {
        "ipopt.tol": tol, "ipopt.compl_inf_tol": tol, "ipopt.print_level": 0, "print_time": False,
        "ipopt.max_iter": 3000,
        "ipopt.mu_strategy": "monotone", "ipopt.warm_start_init_point": "yes", "ipopt.mu_init": 1e-5,
        "ipopt.warm_start_bound_push": 1e-6, "ipopt.warm_start_mult_bound_push": 1e-6,
    }
    solver = ca.nlpsol("second_route", "ipopt", {"x": xs, "f": symbolic(nlp, "_f", xs), "g": symbolic(nlp, "_g", xs)}, opts)
    big = 1e20
    t0 = time.perf_counter()
    r = solver(
        x0=x0, lam_g0=start.y, lam_x0=np.asarray(start.z_U) - np.asarray(start.z_L),
        lbx=np.maximum(nlp.x_lb, -big), ubx=np.minimum(nlp.x_ub, big),
        lbg=np.maximum(nlp.g_lb, -big), ubg=np.minimum(nlp.g_ub, big),
    )
    st = solver.stats()
    lam_x = np.array(r["lam_x"]).ravel()  # CasADi: > 0 at an upper bound, < 0 at a lower bound
    return SimpleNamespace(
        x=np.array(r["x"]).ravel(), y=np.array(r["lam_g"]).ravel(), z_L=np.maximum(-lam_x, 0.0),
        z_U=np.maximum(lam_x, 0.0), status="optimal" if st["success"] else str(st["return_status"]),
        iterations=int(st["iter_count"]), seconds=time.perf_counter() - t0, objective=float(r["f"]),
    )


def _solve_route(spec: dict[str, Any], shared: Any, start: Any) -> Any:
    x0 = _perturbed(np.asarray(start.x), shared, spec["perturb"], spec["seed"])
    if spec["backend"] == "casadi":
        return _solve_casadi(shared, x0, start, spec["tol"])
    opts = {"tol": spec["tol"], "warm_start_init_point": "yes", "mu_init": 1e-5, "warm_start_bound_push": 1e-6,
            "warm_start_mult_bound_push": 1e-6, "max_iter": 3000}
    opts.update({k: v for k, v in spec.items() if k not in ("backend", "tol", "seed", "perturb")})
    return IpoptBackend().solve(shared, x0, options=opts, y0=start.y, zl0=start.z_L, zu0=start.z_U)


def honest_plan(route: str, case: str = "manchester", *, cache_dir: Any = None) -> Any:
    """The true optimum reached by a second route (:data:`HONEST_ROUTES`), kept as
    ``<cache dir>/probes/honest-<route>-<key>.npz`` (key: the shared problem, the route and the solving source)."""
    spec = HONEST_ROUTES[route]
    shared = get_problem(case, "true")[1]
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "probes"
    key = hashlib.sha256(
        (shared.fingerprint + repr(sorted(spec.items())) + inspect.getsource(_solve_casadi)
         + inspect.getsource(_solve_route) + inspect.getsource(_perturbed)).encode()
    ).hexdigest()[:32]
    path = d / f"honest-{route}-{key}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return SimpleNamespace(x=z["x"], y=z["y"], z_L=z["zL"], z_U=z["zU"], status=str(z["status"]),
                               iterations=int(z["iterations"]), seconds=float(z["seconds"]),
                               objective=float(z["objective"]))
    r = _solve_route(spec, shared, solve_variant("true", case))
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, x=r.x, y=r.y, zL=r.z_L, zU=r.z_U, status=str(r.status), iterations=int(r.iterations),
             seconds=float(r.seconds), objective=float(r.objective))
    tmp.replace(path)
    return r
