"""High-level entry points: the compiled problem of a case variant, and a cached solve of it."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable

import numpy as np

from poso_sim.cases import load_case
from poso_sim.common import OK_STATUSES, canonical_json
from poso_sim.errors import ConfigError
from poso_sim.solvers.cache import SolutionCache, cache_key
from poso_sim.nlp.solution import Solution

# The compiled problem of a case variant comes from the problem registry (poso_sim.nlp.problems); these names
# stay importable from here.
from poso_sim.nlp.problems import (  # noqa: F401 - re-exported
    _compiled_path,
    _data_bytes,
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
    from poso_sim.solvers.pipeline import PIPELINE_VERSION, RECIPES, Recipe, SolveError, make_backend, solve_reduced

    bname = _backend_name(backend)
    definition = problem_definition(case)
    store = SolutionCache(cache_dir) if cache else None
    lookup = _lookup_for(case, variant, definition, bname, starts, store)
    if definition.solve_recipe != IES_RECIPE:
        sol, cached = _solve_registered(case, variant, definition, bname, lookup, progress)
        return (sol, cached) if return_cached_flag else sol
    case_obj = load_case(case)
    label = {"case": str(case), "variant": variant}
    hit = lookup.fast()
    if hit is not None:
        _log_cache(label, "hit", bname)
        return (hit, True) if return_cached_flag else hit
    model, nlp = get_problem(case, variant)
    _, shared = get_problem(case, "true")
    hit = lookup.full(shared.fingerprint, nlp.fingerprint)
    if hit is not None:
        _log_cache(label, "hit", bname)
        return (hit, True) if return_cached_flag else hit
    if lookup.store is not None:
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
    lookup.put(sol)
    return (sol, False) if return_cached_flag else sol


#: The staged pipeline of the integrated-energy model (Manchester and every case file of its format).
IES_RECIPE = "poso_sim.solvers.pipeline:solve_reduced"
#: Version of the generic route's cache key (bump when :func:`_solve_registered` changes what it returns).
GENERIC_VERSION = "registered-v1"


def _solve_registered(case, variant, definition, bname, lookup, progress):
    """Any registered problem: its own recipe (``recipe(model, nlp, x0, progress=None)`` returning a point with
    ``x, y, z_L/zL, z_U/zU, status, iterations, message``), or Ipopt from the model's initial values; the same
    final check and the same expression on the honest problem as the staged pipeline's plans."""
    from poso_sim.solvers.backend import violation
    from poso_sim.solvers.pipeline import SolveError, final_check, make_backend

    label = {"case": str(case), "variant": variant}
    recipe = definition.solve_recipe or "ipopt-from-initial-values"
    hit = lookup.fast()
    if hit is None:
        problem = load_problem(case, variant)
        nlp = problem.nlp
        shared_problem = load_problem(case)
        shared = shared_problem.nlp
        hit = lookup.full(shared.fingerprint, nlp.fingerprint)
    if hit is not None:
        _log_cache(label, "hit", bname)
        return hit, True
    if lookup.store is not None:
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
    lookup.put(sol)
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
    """The cached plan if the fast path finds it (no build, no compile), else None."""
    definition = problem_definition(case)
    return _lookup_for(case, variant, definition, _backend_name(backend), starts, SolutionCache(cache_dir)).fast()


def cached_solution(case: str = "manchester", variant: str = "true", *, cache_dir: str | None = None,
                    backend: str | None = None, starts: int = 1) -> Solution | None:
    """The plan :func:`solve_case` would return from the cache, or None. Never solves; when the fast path misses
    it loads the compiled problems (compiling them if they are not on disk) to read the entry under their
    fingerprints."""
    definition = problem_definition(case)
    lookup = _lookup_for(case, variant, definition, _backend_name(backend), starts, SolutionCache(cache_dir))
    hit = lookup.fast()
    if hit is None:
        hit = lookup.full(load_problem(case).nlp.fingerprint, load_problem(case, variant).nlp.fingerprint)
    return hit


def _backend_name(backend: str | None) -> str:
    from poso_sim.solvers.pipeline import BACKENDS, DEFAULT_BACKEND

    bname = DEFAULT_BACKEND if backend is None else ("cyipopt" if backend == "ipopt" else str(backend))
    if bname not in BACKENDS:
        raise ConfigError(f"unknown solver backend {backend!r} (choose from {', '.join(BACKENDS)})")
    return bname


def _lookup_for(case, variant, definition, bname, starts, store) -> "_Lookup":
    """The cache keys of a plan: the recipe's options and version come from the route that solves it."""
    from poso_sim.solvers.pipeline import PIPELINE_VERSION

    if definition.solve_recipe == IES_RECIPE:
        options, version = {"starts": int(starts)}, PIPELINE_VERSION
    else:
        options, version = {"recipe": definition.solve_recipe or "ipopt-from-initial-values"}, GENERIC_VERSION
    return _Lookup(case, variant, definition, bname, options, version, store)


#: Version of the fast path's key (bump when :meth:`_Lookup.alias_key` changes what it hashes).
ALIAS_VERSION = "poso-sim/solve-alias/v2"


class _Lookup:
    """The solution cache's keys of one plan: one scheme for every problem and recipe.

    The entry is keyed by what the plan solves and how: the fingerprints of the compiled shared and variant
    problems (structure and instance, what the certificate checks), the variant, the backend, the recipe's options
    and the recipe's own version. The fast path (an ``<alias>.alias`` file naming the entry) avoids building and
    compiling: its key is the disk-cache key of both compiled problems (the definition's source files, the
    compiler's sources, the variant, the CasADi version) with the instance data, and the same solve identity, so
    any change to what produced the entry is a miss there too.
    """

    def __init__(self, case, variant, definition, backend, options, version, store):
        self.case, self.variant, self.definition = str(case), variant, definition
        self.solve_id = {"variant": variant, "backend": backend, "options": dict(options), "version": version}
        self.store = store
        self.key: str | None = None
        self._alias: str | None | bool = False

    def alias_key(self) -> str | None:
        """The fast path's key, or None when the compiled problems have no disk-cache key (no fast path)."""
        if self._alias is False:
            self._alias = self._alias_key()
        return self._alias  # type: ignore[return-value]

    def _alias_key(self) -> str | None:
        definition = self.definition
        data = definition.load(self.case) if definition.load is not None else None
        raw = _data_bytes(definition, data)
        if raw is None:
            return None
        compiled = []
        for v in dict.fromkeys((definition.honest_variant, self.variant)):
            path = _compiled_path(definition, data, v)
            if path is None:
                return None
            compiled.append(path.stem)
        payload = {"v": ALIAS_VERSION, "compiled": compiled, "data": hashlib.sha256(raw).hexdigest(), **self.solve_id}
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()

    def fast(self) -> Solution | None:
        """The entry the fast path names, or None."""
        if self.store is None:
            return None
        alias = self.alias_key()
        full = _read_alias(self.store, alias) if alias else None
        return self.store.get(full) if full else None

    def full(self, shared_fingerprint: str, fingerprint: str) -> Solution | None:
        """The entry under the compiled problems' fingerprints (recording the fast path to it on a hit)."""
        sid = self.solve_id
        self.key = cache_key(shared_fingerprint + ":" + fingerprint, self.variant, sid["backend"], sid["options"],
                             sid["version"])
        if self.store is None:
            return None
        hit = self.store.get(self.key)
        if hit is not None:
            self._remember()
        return hit

    def put(self, sol: Solution) -> None:
        if self.store is not None and self.key is not None:
            self.store.put(self.key, sol)
            self._remember()

    def _remember(self) -> None:
        alias = self.alias_key()
        if alias and self.key:
            _write_alias(self.store, alias, self.key)


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
