"""High-level entry points: one route from a ``case:`` string to a checked, cached :class:`Solution`.

Every problem of the registry (:mod:`poso_sim.nlp.problems`) is solved the same way: its definition's
``solve_recipe`` (``"module:function"``, e.g. ``"poso_sim.solvers.ies:solve"`` for the integrated-energy model) or,
without one, the backend from the model's initial values; the same final check; the plan expressed on the honest
problem; one cache-key scheme (:class:`_Lookup`). This module names no recipe: it reaches each through the
registry.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import logging.handlers
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from poso_sim.common import OK_STATUSES, canonical_json
from poso_sim.nlp.solution import Solution
from poso_sim.solvers.backend import violation
from poso_sim.solvers.cache import SolutionCache, cache_key
from poso_sim.solvers.pipeline import SolveError, backend_name, final_check, make_backend

# The compiled problem of a case variant comes from the problem registry (poso_sim.nlp.problems); these names
# stay importable from here.
from poso_sim.nlp.problems import (  # noqa: F401 - re-exported
    _data_bytes,
    _load_compiled,
    _save_compiled,
    _write_shortcut,
    get_problem,
    load_problem,
    load_problems,
    problem_definition,
    resolve_reference,
)
from poso_sim.nlp.problems import compiled_key  # the compiled cache's own key: the fast path's alias rests on it

logger = logging.getLogger(__name__)

#: The recipe of a problem whose definition names none: the chosen backend from the model's initial values
#: (``tol`` 1e-9, ``constr_viol_tol`` 1e-10). The name is its identity in cache keys (rename it when it changes).
DEFAULT_RECIPE = "ipopt-from-initial-values"
#: What the route offers a recipe by keyword, besides ``(model, nlp, x0)``: each one the recipe's signature names.
RECIPE_CONTEXT = ("progress", "backend", "starts", "variant", "label", "data")


@dataclass(frozen=True)
class _Recipe:
    """A problem's solve recipe as the route calls it and as the cache keys it."""

    name: str
    fn: Callable[..., Any] | None
    #: the recipe's identity and code version: its ``version`` attribute, else its ``"module:function"``
    version: str
    accepts: frozenset
    #: False: the recipe reads no Pyomo model (its ``needs_model`` attribute), so it gets ``None`` for it and a
    #: compiled problem loaded from disk is solved without building the model
    needs_model: bool = True

    def options(self, starts: int) -> dict:
        return {"starts": int(starts)} if "starts" in self.accepts else {}


def _recipe_of(definition) -> _Recipe:
    reference = definition.solve_recipe
    if not reference:
        return _Recipe(DEFAULT_RECIPE, None, DEFAULT_RECIPE, frozenset())
    fn = resolve_reference(reference, "solve recipe")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepts = frozenset(RECIPE_CONTEXT)
    else:
        accepts = frozenset(n for n in RECIPE_CONTEXT if n in params)
    return _Recipe(reference, fn, str(getattr(fn, "version", "") or reference), accepts,
                   bool(getattr(fn, "needs_model", True)))


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
    """Solve a case variant by its problem's recipe and return a :class:`Solution` of the **shared** problem.

    The shared problem is the honest variant's compiled NLP: the plan of any variant is the same primal vector
    with the multipliers of the rows the shared problem has (the ``feasible`` variant's extra rows are dropped),
    the shared problem's fingerprint and its cost expression. That is what a leader sends and what delegates
    verify. The recipe is the definition's ``solve_recipe``, called as ``recipe(model, nlp, x0, **context)`` with
    those of :data:`RECIPE_CONTEXT` its signature names; ``data`` is the problem's case data, and ``model`` is
    ``None`` for a recipe whose ``needs_model`` attribute is False. With ``starts > 1`` the integrated-energy
    recipe runs from several start points and keeps the cheapest optimum. A recipe returns a point with ``x, y,
    z_L, z_U, status, iterations, message`` (and optionally ``stages``), e.g. a backend's
    :class:`~poso_sim.solvers.RawResult`.

    ``backend``: ``"casadi"`` (CasADi's bundled Ipopt, the default) or ``"cyipopt"``; it is part of the cache key.
    ``cache=False``: no plan is read or stored, and no compiled problem is written to the disk cache (one found
    there is still read).
    A plan is cached only after the final check accepted it; a failed solve raises
    :class:`~poso_sim.solvers.pipeline.SolveError` naming the stage and the status, and caches nothing.
    Cache hits and misses, and each stage's end, are logged at INFO (``extra["poso_progress"]``).
    """
    bname = backend_name(backend)
    definition = problem_definition(case)
    recipe = _recipe_of(definition)
    label = {"case": str(case), "variant": variant}
    store = SolutionCache(cache_dir) if cache else None
    lookup = _Lookup(case, variant, definition, bname, recipe.options(starts), recipe.version, store)
    hit = lookup.fast()
    if hit is None:
        disk = True if cache else "read"  # without the cache, nothing is written to the compiled cache either
        problem, shared = load_problems(case, variant, disk_cache=disk)
        hit = lookup.full(shared.nlp.fingerprint, problem.nlp.fingerprint)
    if hit is not None:
        _log_cache(label, "hit", bname)
        if hit.case != str(case):  # one compiled problem, several names (a case and an identical instance)
            hit = replace(hit, case=str(case))
        return (hit, True) if return_cached_flag else hit
    if store is not None:
        _log_cache(label, "miss", bname)
    t0 = time.perf_counter()
    res = _run_recipe(recipe, problem, bname, starts, progress, label)
    sol = _solution(problem, shared, res, recipe, bname, time.perf_counter() - t0)
    lookup.put(sol)
    return (sol, False) if return_cached_flag else sol


def _run_recipe(recipe: _Recipe, problem, bname: str, starts: int, progress, label: dict) -> Any:
    """The recipe's point, checked: a status the recipe reports as failed, or a point the final check rejects,
    raises :class:`SolveError` naming the stage."""
    nlp = problem.nlp
    if recipe.fn is None:
        res = make_backend(bname).solve(nlp, nlp.clip(nlp.x0), options={"tol": 1e-9, "constr_viol_tol": 1e-10})
    else:
        context = {"progress": progress, "backend": bname, "starts": int(starts), "variant": problem.variant,
                   "label": label, "data": problem.data}
        model = problem.model if recipe.needs_model else None
        res = recipe.fn(model, nlp, nlp.x0, **{k: v for k, v in context.items() if k in recipe.accepts})
    status = str(res.status)
    where = f"{problem.case} {problem.variant}"
    if status not in OK_STATUSES:
        stage, sep, code = status.partition(":")
        raise SolveError(stage if sep else "solve", code if sep else status, f"{where}: {getattr(res, 'message', '')}")
    accepted, measures = final_check(nlp, res.x, res.y, res.z_L, res.z_U)
    if not accepted:
        raise SolveError("check", status, f"{where}: the final check rejected the point ({measures})")
    if not getattr(res, "stages", ()):
        x = np.asarray(res.x, dtype=float)
        logger.info(
            "%s: solved, %d iterations, cost %.6g", where, int(res.iterations), problem.cost(x),
            extra={"poso_progress": {"task": "solve", **label, "stage": "solve", "iterations": int(res.iterations),
                                     "objective": float(nlp.f(x)), "violation": float(violation(nlp, x)),
                                     "final": True, "backend": bname}},
        )
    return res


def _solution(problem, shared, res, recipe: _Recipe, bname: str, seconds: float) -> Solution:
    """The plan on the shared problem: the point, the shared rows' multipliers, the shared cost and its parts."""
    nlp, snlp = problem.nlp, shared.nlp
    x, y, zl, zu = (np.asarray(getattr(res, a), dtype=float) for a in ("x", "y", "z_L", "z_U"))
    status, iterations = str(res.status), int(res.iterations)
    stages = [dict(s) for s in getattr(res, "stages", ())] or [
        {"name": "solve", "iterations": iterations, "objective": float(nlp.f(x)), "status": status, "seconds": seconds}
    ]
    expressions = problem.definition.expressions
    return Solution(
        x=x,
        y=y[: snlp.m],
        z_L=zl,
        z_U=zu,
        x_names=snlp.x_names,
        row_names=snlp.row_names,
        variant=problem.variant,
        case=problem.case,
        cost=float(shared.cost(x)),
        objective=float(nlp.f(x)),
        status=status,
        iterations=iterations,
        solve_seconds=seconds,
        stages=stages,
        fingerprint=snlp.fingerprint,
        constraint_violation=float(violation(nlp, x)),
        solver=f"ipopt {make_backend(bname).version} / {recipe.version}",
        cost_breakdown={n.removeprefix("cost_"): float(snlp.expr(n, x)) for n in expressions if snlp.has_expr(n)},
        message=str(getattr(res, "message", "")),
    )


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


def _worker_init(queue: Any = None) -> None:
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    if queue is not None:  # the worker's records (progress, cache hits) go to the parent, which shows them
        import logging.handlers

        top = logging.getLogger("poso_sim")
        top.handlers[:] = [logging.handlers.QueueHandler(queue)]
        top.setLevel(logging.DEBUG)
        top.propagate = False


class _Relay(logging.Handler):
    """Hands a worker's record to the parent's logger of the same name (and so to its handlers)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


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
            _log_cache({"case": str(case), "variant": v}, "hit", backend_name(backend))
            out[v] = hit
        else:
            missing.append(v)
    n = min(len(missing), workers if workers is not None else (os.cpu_count() or 1))
    if n <= 1:
        for v in missing:
            out[v] = solve_case(case, v, cache=cache, cache_dir=cache_dir, backend=backend, starts=starts)
    else:
        ctx = mp.get_context("spawn")
        # where this process shows poso_sim's records (the command's progress), the workers' records are relayed
        queue = ctx.Queue() if logging.getLogger("poso_sim").hasHandlers() else None
        listener = None if queue is None else logging.handlers.QueueListener(queue, _Relay())
        if listener is not None:
            listener.start()
        try:
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                                     initargs=(queue,)) as pool:
                futures = {v: pool.submit(_solve_worker, str(case), v, cache, cache_dir, backend, starts)
                           for v in missing}
                for v, fut in futures.items():
                    out[v] = fut.result()
        finally:
            if listener is not None:
                listener.stop()
    return {v: out[v] for v in variants}


def _cached_plan(case, variant, cache_dir, backend, starts):
    """The cached plan if the fast path finds it (no build, no compile), else None."""
    definition = problem_definition(case)
    recipe = _recipe_of(definition)
    lookup = _Lookup(case, variant, definition, backend_name(backend), recipe.options(starts), recipe.version,
                     SolutionCache(cache_dir))
    return lookup.fast()


def cached_solution(case: str = "manchester", variant: str = "true", *, cache_dir: str | None = None,
                    backend: str | None = None, starts: int = 1) -> Solution | None:
    """The plan :func:`solve_case` would return from the cache, or None. Never solves; when the fast path misses
    it loads the compiled problems (compiling them if they are not on disk) to read the entry under their
    fingerprints."""
    hit = _cached_plan(case, variant, cache_dir, backend, starts)
    if hit is None:
        definition = problem_definition(case)
        recipe = _recipe_of(definition)
        lookup = _Lookup(case, variant, definition, backend_name(backend), recipe.options(starts), recipe.version,
                         SolutionCache(cache_dir))
        problem, shared = load_problems(case, variant)
        hit = lookup.full(shared.nlp.fingerprint, problem.nlp.fingerprint)
    return hit


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
            key = compiled_key(definition, data, v)
            if key is None:
                return None
            compiled.append(key)
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
