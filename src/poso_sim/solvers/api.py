"""High-level entry points: the compiled problem of a case variant, and a cached solve of it."""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from poso_sim.cases import load_case
from poso_sim.common import OK_STATUSES
from poso_sim.errors import ConfigError
from poso_sim.solvers.cache import SolutionCache, cache_key
from poso_sim.nlp.solution import Solution

# The compiled problem of a case variant comes from the problem registry (poso_sim.nlp.problems); these names
# stay importable from here.
from poso_sim.nlp.problems import (  # noqa: F401 - re-exported
    _load_compiled,
    _save_compiled,
    _write_shortcut,
    get_problem,
    load_problem,
    problem_definition,
    resolve_reference,
)

logger = logging.getLogger(__name__)


def canonical_start(nlp, case) -> np.ndarray:
    """The data-only start point as a canonical vector of ``nlp``."""
    from poso_sim.solvers.start import network_data, start_point

    return _as_vector(nlp, start_point(network_data(case)))


def objective_aware_start(nlp, case, *, flows_only: bool = False) -> np.ndarray:
    """The start point built around a convex surrogate of ``nlp``'s own objective
    (:func:`poso_sim.solvers.start.objective_aware_dispatch`): per-hour hub injections and CHP outputs."""
    from poso_sim.solvers.start import network_data, objective_aware_dispatch, start_point

    net = network_data(case)
    disp = objective_aware_dispatch(nlp, canonical_start(nlp, case), net)
    if flows_only:  # the surrogate picks the hub injections; the dispatch follows the data-only rules
        disp = {"m_hub": disp["m_hub"]}
    return _as_vector(nlp, start_point(net, dispatch=disp))


def _as_vector(nlp, values: dict) -> np.ndarray:
    x0 = np.zeros(nlp.n)
    for comp, vals in values.items():
        for idx, val in vals.items():
            name = f"{comp}[{idx[0]},{idx[1]}]" if isinstance(idx, tuple) else f"{comp}[{idx}]"
            x0[nlp.var_index(name)] = val
    return x0


def _cost_breakdown(nlp, x) -> dict[str, float]:
    out = {}
    for part, name in (("grid", "cost_grid"), ("chp", "cost_chp"), ("boiler", "cost_boiler")):
        if nlp.has_expr(name):
            out[part] = float(nlp.expr(name, x))
    return out


def solve_case(
    case: str = "manchester",
    variant: str = "true",
    *,
    cache: bool = True,
    cache_dir: str | None = None,
    starts: int = 1,
    progress: Callable[[str, dict], None] | None = None,
    return_cached_flag: bool = False,
    backend: str | None = None,
):
    """Solve a case variant with the staged pipeline and return a :class:`Solution` of the **shared** problem.

    The shared problem is the ``true`` variant's compiled NLP: the plan of any variant is the same primal vector
    with the multipliers of the rows the shared problem has (the ``feasible`` variant's extra rows are dropped),
    the shared problem's fingerprint and the true cost. That is what a leader sends and what delegates verify.
    With ``starts > 1`` the pipeline runs from several start points and keeps the cheapest optimum.

    ``backend``: ``"casadi"`` (CasADi's bundled Ipopt, the default) or ``"cyipopt"``; it is part of the cache key.
    A plan is cached only after the pipeline's final check accepted it; a failed solve raises
    :class:`~poso_sim.solvers.pipeline.SolveError` naming the stage and the status, and caches nothing.
    Cache hits and misses, and each stage's end, are logged at INFO (``extra["poso_progress"]``).
    """
    from poso_sim.solvers.backend import violation
    from poso_sim.solvers.pipeline import (
        BACKENDS, DEFAULT_BACKEND, PIPELINE_VERSION, RECIPES, Recipe, SolveError, make_backend, solve_reduced,
    )

    bname = DEFAULT_BACKEND if backend is None else ("cyipopt" if backend == "ipopt" else str(backend))
    if bname not in BACKENDS:
        raise ConfigError(f"unknown solver backend {backend!r} (choose from {', '.join(BACKENDS)})")
    definition = problem_definition(case)
    if definition.solve_recipe != IES_RECIPE:
        sol, cached = _solve_registered(case, variant, definition, bname, cache, cache_dir, progress)
        return (sol, cached) if return_cached_flag else sol
    options = {"starts": int(starts)}
    case_obj = load_case(case)
    store = SolutionCache(cache_dir) if cache else None
    label = {"case": str(case), "variant": variant}
    # fast path: the case data and the code that builds and solves the model identify the entry without
    # building or compiling anything (the entry itself is keyed by the compiled problems' fingerprints)
    alias = _source_key(case_obj, variant, {**options, "backend": bname}, PIPELINE_VERSION)
    if store is not None:
        full = _read_alias(store, alias)
        hit = store.get(full) if full else None
        if hit is not None:
            _log_cache(label, "hit", bname)
            return (hit, True) if return_cached_flag else hit
    model, nlp = get_problem(case, variant)
    _, shared = get_problem(case, "true")
    key = cache_key(shared.fingerprint + ":" + nlp.fingerprint, variant, bname, options, PIPELINE_VERSION)
    if store is not None:
        hit = store.get(key)
        if hit is not None:
            _write_alias(store, alias, key)
            _log_cache(label, "hit", bname)
            return (hit, True) if return_cached_flag else hit
        _log_cache(label, "miss", bname)
    t0 = time.perf_counter()
    recipe = RECIPES.get(variant, Recipe())
    best = None
    last = None
    for k in range(max(1, int(starts))):
        if k > 0:
            x0 = _perturbed_start(nlp, case_obj, k)
        elif recipe.start in ("objective", "objective-flows"):
            x0 = objective_aware_start(nlp, case_obj, flows_only=recipe.start == "objective-flows")
        else:
            x0 = canonical_start(nlp, case_obj)
        res = solve_reduced(model, nlp, x0, progress=progress, backend=bname, recipe=recipe,
                            label={**label, "start": k})
        last = res
        if res.ok and (best is None or float(shared.true_cost(res.x)) < best[1]):
            best = (res, float(shared.true_cost(res.x)))
    if best is None:
        stage = last.failed_stage or "check"
        raise SolveError(stage, last.status.split(":", 1)[-1], f"{case} {variant}: {last.message}")
    res = best[0]
    seconds = time.perf_counter() - t0
    # express the plan on the shared problem: its rows are the first rows of every variant
    y = np.asarray(res.y)[: shared.m]
    sol = Solution(
        x=res.x,
        y=y,
        z_L=res.z_L,
        z_U=res.z_U,
        x_names=shared.x_names,
        row_names=shared.row_names,
        variant=variant,
        case=str(case),
        cost=float(shared.true_cost(res.x)),
        objective=float(nlp.f(res.x)),
        status=res.status,
        iterations=int(res.iterations),
        solve_seconds=seconds,
        stages=[s.as_dict() for s in res.stages],
        fingerprint=shared.fingerprint,
        constraint_violation=float(violation(nlp, res.x)),
        solver=f"ipopt {make_backend(bname).version} / {PIPELINE_VERSION}",
        cost_breakdown=_cost_breakdown(shared, res.x),
        message=res.message,
    )
    if store is not None:
        store.put(key, sol)
        _write_alias(store, alias, key)
    return (sol, False) if return_cached_flag else sol


#: The staged pipeline of the integrated-energy model (Manchester and every case file of its format).
IES_RECIPE = "poso_sim.solvers.pipeline:solve_reduced"
#: Version of the generic route's cache key (bump when :func:`_solve_registered` changes what it returns).
GENERIC_VERSION = "registered-v1"


def _solve_registered(case, variant, definition, bname, cache, cache_dir, progress):
    """Any registered problem: its own recipe (``recipe(model, nlp, x0, progress=None)`` returning a point with
    ``x, y, z_L/zL, z_U/zU, status, iterations, message``), or Ipopt from the model's initial values; the same
    final check and the same expression on the honest problem as the staged pipeline's plans."""
    from poso_sim.solvers.backend import violation
    from poso_sim.solvers.pipeline import SolveError, final_check, make_backend

    problem = load_problem(case, variant)
    nlp = problem.nlp
    shared_problem = load_problem(case)
    shared = shared_problem.nlp
    label = {"case": str(case), "variant": variant}
    recipe = definition.solve_recipe or "ipopt-from-initial-values"
    store = SolutionCache(cache_dir) if cache else None
    key = cache_key(shared.fingerprint + ":" + nlp.fingerprint, variant, bname, {"recipe": recipe}, GENERIC_VERSION)
    if store is not None:
        hit = store.get(key)
        if hit is not None:
            _log_cache(label, "hit", bname)
            return hit, True
        _log_cache(label, "miss", bname)
    t0 = time.perf_counter()
    backend = make_backend(bname)
    if definition.solve_recipe:
        res = resolve_reference(definition.solve_recipe, "solve recipe")(problem.model, nlp, nlp.x0, progress=progress)
    else:
        res = backend.solve(nlp, nlp.clip(nlp.x0), options={"tol": 1e-9, "constr_viol_tol": 1e-10})
    x = np.asarray(res.x, dtype=float)
    y = np.asarray(res.y, dtype=float)
    zl = np.asarray(getattr(res, "z_L", getattr(res, "zL", None)), dtype=float)
    zu = np.asarray(getattr(res, "z_U", getattr(res, "zU", None)), dtype=float)
    status = str(res.status)
    if status not in OK_STATUSES:
        raise SolveError("solve", status, f"{case} {variant}: {getattr(res, 'message', '')}")
    accepted, measures = final_check(nlp, x, y, zl, zu)
    if not accepted:
        raise SolveError("check", status, f"{case} {variant}: the final check rejected the point ({measures})")
    logger.info(
        "%s %s: solved, %d iterations, cost %.6g", case, variant, int(res.iterations), shared_problem.cost(x),
        extra={"poso_progress": {"task": "solve", **label, "stage": "solve", "iterations": int(res.iterations),
                                 "objective": float(nlp.f(x)), "violation": float(violation(nlp, x)),
                                 "final": True, "backend": bname}},
    )
    sol = Solution(
        x=x,
        y=y[: shared.m],
        z_L=zl,
        z_U=zu,
        x_names=shared.x_names,
        row_names=shared.row_names,
        variant=variant,
        case=str(case),
        cost=float(shared_problem.cost(x)),
        objective=float(nlp.f(x)),
        status=status,
        iterations=int(res.iterations),
        solve_seconds=time.perf_counter() - t0,
        stages=[{"name": "solve", "iterations": int(res.iterations), "objective": float(nlp.f(x)), "status": status,
                 "seconds": time.perf_counter() - t0}],
        fingerprint=shared.fingerprint,
        constraint_violation=float(violation(nlp, x)),
        solver=f"ipopt {backend.version} / {recipe}",
        cost_breakdown={name.removeprefix("cost_"): float(shared.expr(name, x)) for name in definition.expressions
                        if shared.has_expr(name)},
        message=str(getattr(res, "message", "")),
    )
    if store is not None:
        store.put(key, sol)
    return sol, False


def _log_cache(label: dict, what: str, backend: str) -> None:
    logger.info(
        "%s %s: solution cache %s (%s)", label["case"], label["variant"], what, backend,
        extra={"poso_progress": {"task": "solve", **label, "stage": f"cache-{what}", "iterations": 0,
                                 "objective": float("nan"), "violation": float("nan"), "final": what == "hit",
                                 "cache": what, "backend": backend}},
    )


def _solve_worker(case: str, variant: str, cache: bool, cache_dir: str | None, backend: str | None, starts: int):
    """Body of one worker process of :func:`solve_plans` (module level, so it pickles under spawn)."""
    return solve_case(case, variant, cache=cache, cache_dir=cache_dir, backend=backend, starts=starts)


def _worker_init() -> None:
    import os

    os.environ["OMP_NUM_THREADS"] = "1"


def solve_plans(
    case: str = "manchester",
    variants=("true", "tampered", "feasible"),
    *,
    workers: int | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    backend: str | None = None,
    starts: int = 1,
) -> dict[str, Solution]:
    """Solutions of several variants of a case: ``{variant: Solution}``.

    Plans already in the cache are read; the missing ones are solved in parallel worker processes
    (``ProcessPoolExecutor`` with the ``spawn`` start method, ``OMP_NUM_THREADS=1`` in each), each storing its
    plan in the cache. ``workers`` defaults to ``min(missing plans, CPU count)``; ``workers=1`` solves in this
    process. With ``cache=False`` nothing is read or stored, and every plan is solved (and sent back pickled).
    """
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    variants = list(dict.fromkeys(variants))
    out: dict[str, Solution] = {}
    missing = []
    for v in variants:
        hit = _cached_plan(case, v, cache_dir, backend, starts) if cache else None
        if hit is not None:
            out[v] = hit
        else:
            missing.append(v)
    n = min(len(missing), workers if workers is not None else (os.cpu_count() or 1))
    if n <= 1:
        for v in missing:
            out[v] = solve_case(case, v, cache=cache, cache_dir=cache_dir, backend=backend, starts=starts)
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {v: pool.submit(_solve_worker, str(case), v, cache, cache_dir, backend, starts) for v in missing}
            for v, fut in futures.items():
                out[v] = fut.result()
    return {v: out[v] for v in variants}


def _cached_plan(case, variant, cache_dir, backend, starts):
    """The cached plan if the fast alias path finds it (no build, no compile), else None."""
    from poso_sim.solvers.pipeline import DEFAULT_BACKEND, PIPELINE_VERSION

    if problem_definition(case).solve_recipe != IES_RECIPE:
        return None  # the generic route finds its cached plans by the compiled fingerprints
    bname = DEFAULT_BACKEND if backend is None else ("cyipopt" if backend == "ipopt" else str(backend))
    store = SolutionCache(cache_dir)
    alias = _source_key(load_case(case), variant, {"starts": int(starts), "backend": bname}, PIPELINE_VERSION)
    full = _read_alias(store, alias)
    return store.get(full) if full else None


_COMPILE_FILES = ("cases/model.py", "nlp/walker.py", "nlp/compiled.py")
_CODE_FILES = _COMPILE_FILES + (
    "solvers/start.py", "solvers/reduce.py", "solvers/pipeline.py", "solvers/ipopt.py", "solvers/casadi_ipopt.py",
)


def _source_key(case_obj, variant: str, options: dict, pipeline_version: str, files=_CODE_FILES) -> str:
    """SHA-256 over the case data, the variant, the options and the source of the model/solve code."""
    import hashlib
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(b"poso-sim/solve-alias/v1\n")
    h.update(case_obj.model_dump_json(by_alias=True).encode())
    h.update(json.dumps([variant, options, pipeline_version], sort_keys=True).encode())
    import casadi

    h.update(casadi.__version__.encode())
    for rel in files:
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def _read_alias(store: SolutionCache, alias: str) -> str | None:
    try:
        text = (store.path / f"{alias}.alias").read_text().strip()
    except OSError:
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _write_alias(store: SolutionCache, alias: str, key: str) -> None:
    _write_shortcut(store.path / f"{alias}.alias", key.encode("ascii"))


def _perturbed_start(nlp, case, k: int) -> np.ndarray:
    """Start ``k`` of a best-of-k run: the heat-flow LP with another minimum pipe flow."""
    from poso_sim.solvers.start import network_data, start_point

    deltas = (0.05, 0.03, 0.1, 0.15, 0.08, 0.04, 0.12, 0.06)
    x0 = np.zeros(nlp.n)
    for comp, vals in start_point(network_data(case), delta=deltas[k % len(deltas)]).items():
        for idx, val in vals.items():
            name = f"{comp}[{idx[0]},{idx[1]}]" if isinstance(idx, tuple) else f"{comp}[{idx}]"
            x0[nlp.var_index(name)] = val
    return x0
