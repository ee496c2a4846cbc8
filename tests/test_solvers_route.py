"""The one solve route of poso_sim.solvers on a tiny registered problem: what keys a cached plan, what a failed
solve leaves behind, how a recipe is reached and called, and the shape of the plan it returns.

The problem: ``min (x-2)^2 + (y-2)^2`` over ``0 <= x, y <= 10`` with ``x + y <= 2``, optimum ``x = y = 1`` (cost 2);
the ``tilted`` variant adds ``0.5 x`` to the objective (optimum ``x = 0.875``, cost 2.03125); the ``held`` variant
adds a row ``x >= 1.5`` after the honest ones (optimum ``x = 1.5, y = 0.5``, cost 2.5).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from poso_sim.nlp.problems import ProblemDefinition, problem_definition, register_problem
from poso_sim.solvers import RawResult
from poso_sim.solvers.api import cached_solution, solve_case
from poso_sim.solvers.pipeline import SolveError

MODULE = '''
import dataclasses

import numpy as np
import pyomo.environ as pyo

from poso_sim.solvers.pipeline import make_backend

CALLS = []


def build(data, variant):
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 10), initialize=0.5)
    m.y = pyo.Var(bounds=(0, 10), initialize=0.5)
    m.cap = pyo.Constraint(expr=m.x + m.y <= 2)
    m.cost = pyo.Expression(expr=(m.x - 2) ** 2 + (m.y - 2) ** 2)
    m.part_x = pyo.Expression(expr=(m.x - 2) ** 2)
    m.obj = pyo.Objective(expr=m.cost + (0.5 * m.x if variant == "tilted" else 0))
    if variant == "held":
        m.hold = pyo.Constraint(expr=m.x >= 1.5)
    return m


def _solve(nlp, x0, backend=None):
    return make_backend(backend).solve(nlp, nlp.clip(x0), options={"tol": 1e-10, "constr_viol_tol": 1e-10})


def recipe(model, nlp, x0, *, backend=None, starts=1, progress=None):
    CALLS.append(("recipe", backend, starts))
    return _solve(nlp, x0, backend)


recipe.version = "tiny-1"


def old_style(model, nlp, x0, progress=None):
    CALLS.append(("old_style",))
    return _solve(nlp, x0)


def anything(model, nlp, x0, **context):
    CALLS.append(("anything", tuple(sorted(context))))
    return _solve(nlp, x0, context["backend"])


def stops_in_polish(model, nlp, x0):
    return dataclasses.replace(_solve(nlp, x0), status="polish:max_iter")


def not_a_kkt_point(model, nlp, x0):
    r = _solve(nlp, x0)
    return dataclasses.replace(r, y=np.zeros_like(r.y), z_L=np.zeros_like(r.z_L), z_U=np.zeros_like(r.z_U))
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The module ``tinyroute`` on sys.path; ``define(recipe)`` registers the problem with that recipe."""
    d = tmp_path_factory.mktemp("tinyroute")
    (d / "tinyroute.py").write_text(MODULE)
    sys.path.insert(0, str(d))
    import tinyroute

    names = []

    def define(name: str, recipe: str | None) -> str:
        names.append(name)
        register_problem(name, ProblemDefinition(
            build=tinyroute.build, variants=("true", "tilted", "held"), cost_expression="cost",
            expressions=("part_x",), solve_recipe=recipe and f"tinyroute:{recipe}", source_files=(str(d / "tinyroute.py"),),
        ), replace=True)
        return name

    yield tinyroute, define
    sys.path.remove(str(d))
    from poso_sim.nlp import problems

    for name in names:  # the registry is the process's: leave it as found
        problems._REGISTRY.pop(name, None)


def test_plans_are_the_optima_on_the_honest_problem(tiny, tmp_path) -> None:
    mod, define = tiny
    case = define("tiny-optima", "recipe")
    sols = {v: solve_case(case, v, cache_dir=str(tmp_path)) for v in ("true", "tilted", "held")}
    assert sols["true"].cost == pytest.approx(2.0, abs=1e-8)
    assert sols["tilted"].cost == pytest.approx(2.03125, abs=1e-8)
    assert sols["held"].cost == pytest.approx(2.5, abs=1e-8)
    assert sols["held"].x[0] == pytest.approx(1.5, abs=1e-8)
    for v, sol in sols.items():
        # every plan is a point of the honest problem: its fingerprint, its rows (the held row's multiplier dropped)
        assert sol.fingerprint == sols["true"].fingerprint and sol.m == 1 and sol.variant == v
        assert sol.status == "optimal" and sol.solver.endswith("/ tiny-1")
        assert sol.cost_breakdown == {"part_x": pytest.approx((sol.x[0] - 2) ** 2, abs=1e-12)}
    assert sols["tilted"].objective == pytest.approx(2.03125 + 0.5 * 0.875, abs=1e-8)


def test_each_key_component_is_a_miss_and_the_same_key_a_hit(tiny, tmp_path) -> None:
    mod, define = tiny
    case = define("tiny-keys", "recipe")
    cache = str(tmp_path)
    mod.CALLS.clear()
    first, cached = solve_case(case, "true", cache_dir=cache, return_cached_flag=True)
    assert not cached and len(mod.CALLS) == 1
    again, cached = solve_case(case, "true", cache_dir=cache, return_cached_flag=True)
    assert cached and again.digest == first.digest and len(mod.CALLS) == 1
    # another variant, backend, option (the recipe takes ``starts``) or recipe version: each solves again
    for kw in ({"variant": "tilted"}, {"backend": "cyipopt"}, {"starts": 2}):
        _, cached = solve_case(case, **{"variant": "true", **kw}, cache_dir=cache, return_cached_flag=True)
        assert not cached, kw
    assert [c[1:] for c in mod.CALLS[1:]] == [("casadi", 1), ("cyipopt", 1), ("casadi", 2)]
    mod.recipe.version = "tiny-2"
    try:
        _, cached = solve_case(case, "true", cache_dir=cache, return_cached_flag=True)
        assert not cached and len(mod.CALLS) == 5
    finally:
        mod.recipe.version = "tiny-1"
    assert cached_solution(case, "true", cache_dir=cache).digest == first.digest
    assert cached_solution(case, "true", cache_dir=str(tmp_path / "elsewhere")) is None
    assert not solve_case(case, "true", cache=False, return_cached_flag=True)[1]  # no cache: always solved


def test_a_hit_by_the_fast_path_loads_no_problem(tiny, tmp_path, monkeypatch) -> None:
    import poso_sim.solvers.api as api

    _, define = tiny
    case = define("tiny-fast", "recipe")
    first = solve_case(case, "held", cache_dir=str(tmp_path))
    assert list(tmp_path.glob("*.alias"))

    def no_problem(*args, **kwargs):
        raise AssertionError("the fast path loaded a problem")

    monkeypatch.setattr(api, "load_problem", no_problem)
    monkeypatch.setattr(api, "load_problems", no_problem)
    assert solve_case(case, "held", cache_dir=str(tmp_path)).digest == first.digest
    for alias in tmp_path.glob("*.alias"):  # without its shortcut the lookup needs the compiled problems
        alias.unlink()
    with pytest.raises(AssertionError, match="fast path"):
        solve_case(case, "held", cache_dir=str(tmp_path))


@pytest.mark.parametrize("recipe, stage, status", [("stops_in_polish", "polish", "max_iter"),
                                                   ("not_a_kkt_point", "check", "optimal")])
def test_a_failed_solve_raises_naming_the_stage_and_caches_nothing(tiny, tmp_path, recipe, stage, status) -> None:
    _, define = tiny
    case = define(f"tiny-{recipe}", recipe)
    with pytest.raises(SolveError) as err:
        solve_case(case, "true", cache_dir=str(tmp_path))
    assert err.value.stage == stage and err.value.status == status
    assert f"stage {stage!r}" in str(err.value) and case in str(err.value)
    assert not list(tmp_path.iterdir())


def test_a_recipe_gets_the_context_its_signature_names(tiny, tmp_path) -> None:
    mod, define = tiny
    mod.CALLS.clear()
    old = solve_case(define("tiny-old", "old_style"), "true", cache_dir=str(tmp_path))
    assert mod.CALLS == [("old_style",)] and old.solver.endswith("/ tinyroute:old_style")
    solve_case(define("tiny-any", "anything"), "true", cache_dir=str(tmp_path))
    assert mod.CALLS[-1] == ("anything", ("backend", "data", "label", "progress", "starts", "variant"))
    default = solve_case(define("tiny-default", None), "true", cache_dir=str(tmp_path))
    assert default.cost == pytest.approx(2.0, abs=1e-8) and default.solver.endswith("/ ipopt-from-initial-values")
    # the same problem whichever recipe reached its optimum (the default solves to its own tolerance)
    assert default.fingerprint == old.fingerprint and np.allclose(default.x, old.x, atol=1e-7)


def test_the_ies_wing_is_reached_only_through_the_registry() -> None:
    """The Manchester definition names the wing's recipe; the route resolves it by that name (importing the route
    loads no wing), with the staged solve's code version as the recipe's identity in cache keys."""
    from poso_sim.solvers.api import _recipe_of
    from poso_sim.solvers.ies import PIPELINE_VERSION, solve

    definition = problem_definition("manchester")
    assert definition.solve_recipe == "poso_sim.solvers.ies:solve"
    recipe = _recipe_of(definition)
    assert recipe.fn is solve and recipe.version == PIPELINE_VERSION and recipe.options(3) == {"starts": 3}
    code = "import sys, poso_sim.solvers.api; print(sorted(m for m in sys.modules if 'solvers.ies' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_staged_status_names_its_stage() -> None:
    z = np.zeros(1)
    point = RawResult(x=z, y=z, z_L=z, z_U=z, status="polish:max_iter", iterations=3, seconds=0.0, objective=0.0)
    assert point.failed_stage == "polish" and not point.ok
    assert RawResult(z, z, z, z, "acceptable", 1, 0.0, 0.0).ok
    assert RawResult(z, z, z, z, "optimal", 1, 0.0, 0.0).failed_stage == ""


def test_no_function_in_the_solvers_is_longer_than_80_lines() -> None:
    root = Path(__file__).resolve().parents[1] / "src" / "poso_sim" / "solvers"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, textwrap.indent("\n".join(long), "  ")


def test_without_the_cache_nothing_is_written(tiny, tmp_path, monkeypatch) -> None:
    """``cache=False`` (``poso-sim solve --no-cache``) stores no plan and no compiled problem; with the cache both
    are kept."""
    _, define = tiny
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", str(tmp_path / "cold"))
    sol = solve_case(define("tiny-nocache", "recipe"), "tilted", cache=False)
    assert sol.cost == pytest.approx(2.03125, abs=1e-8)
    assert not (tmp_path / "cold").exists()
    solve_case(define("tiny-cache", "recipe"), "tilted", cache_dir=str(tmp_path / "plans"))
    assert len(list((tmp_path / "cold" / "compiled").glob("*.nlp"))) == 2  # the variant's and the honest problem's
    assert len(list((tmp_path / "plans").glob("*.sol"))) == 1


def test_the_casadi_backend_forwards_progress_at_its_interval() -> None:
    """With a progress interval the backend forwards the first iteration and then at most one per interval (the
    staged solve's live line needs no more); the solve itself is the same to the bit."""
    from poso_sim.nlp.problems import load_problem
    from poso_sim.solvers.pipeline import make_backend

    nlp = load_problem("ieee33").nlp
    seen: dict[float, list[int]] = {0.0: [], 1e9: []}
    out = {}
    for interval, its in seen.items():
        backend = make_backend("casadi", progress_interval=interval)
        out[interval] = backend.solve(nlp, nlp.clip(nlp.x0), options={"tol": 1e-9},
                                      callback=lambda info, its=its: its.append(info.iteration))
    assert seen[1e9] == [0] and seen[0.0] == list(range(out[0.0].iterations + 1))
    assert out[1e9].iterations == out[0.0].iterations
    np.testing.assert_array_equal(out[1e9].x, out[0.0].x)
    np.testing.assert_array_equal(out[1e9].y, out[0.0].y)


@pytest.mark.solver
def test_the_staged_recipe_solves_a_compiled_problem_from_disk_without_pyomo(tmp_path) -> None:
    """The route gives the integrated-energy recipe the case data, not a model: a process that finds the compiled
    problem on disk runs the whole staged solve without importing Pyomo (here every stage's solve stands in by its
    start, so the final check rejects the point and nothing is cached)."""
    from poso_sim.nlp.problems import load_problem

    load_problem("manchester", "true")  # on disk for the child process (the suite's cache directory)
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from poso_sim.solvers import RawResult
        from poso_sim.solvers.api import solve_case
        from poso_sim.solvers.ies import staged
        from poso_sim.solvers.pipeline import SolveError

        def start(view, x0, options, *, warm=None, progress=None, backend=None):
            z = np.zeros(view.n)
            return RawResult(np.asarray(x0, dtype=float), np.zeros(view.m), z, z.copy(), "optimal", 1, 0.0,
                             float(view.f(x0)))

        staged.solve_view = start
        try:
            solve_case("manchester", "true", cache_dir=sys.argv[1])
        except SolveError as exc:
            print(exc.stage, "pyomo" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["check", "False"]
    assert not list(tmp_path.glob("*.sol"))
