"""The problem registry (poso_sim.nlp.problems): definitions, case resolution, the compiled-problem disk cache and
a verifier process that never imports Pyomo."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from poso_sim.errors import PosoError, ProblemError
from poso_sim.nlp import problems
from poso_sim.nlp.problems import ProblemDefinition, load_problem, problem_definition, register_problem
from poso_sim.nlp.solution import Solution, save_solution

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A two-variable problem with a known KKT point: min (x-1)^2 + (y-2)^2 s.t. x + y <= 2 has x = 0.5, y = 1.5 and
# the row's multiplier 1 (grad f + y_row * grad g = (-1, -1) + (1, 1) = 0). The "tampered" variant rewards y.
TOY_MODULE = '''
from poso_sim.nlp.problems import ProblemDefinition


def build(data, variant):
    import pyomo.environ as pyo  # inside the builder: a verifier that loads the compiled problem never needs it

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(-10, 10), initialize=0.0)
    m.y = pyo.Var(bounds=(-10, 10), initialize=0.0)
    m.cap = pyo.Constraint(expr=m.x + m.y <= data["cap"])
    m.cost = pyo.Expression(expr=(m.x - 1) ** 2 + (m.y - 2) ** 2)
    bonus = 0.0 if variant == "true" else 3.0 * m.y
    m.obj = pyo.Objective(expr=m.cost - bonus)
    return m


def load(case):
    return {"cap": 2.0}


def definition():
    return ProblemDefinition(build=build, variants=("true", "tampered"), cost_expression="cost", load=load,
                             description="a toy QP")


def build_flat(data, variant):  # the same model whose objective ignores y: another problem on the same data
    m = build(data, variant)
    m.obj.deactivate()
    m.obj_flat = __import__("pyomo.environ").environ.Objective(expr=(m.x - 1) ** 2)
    return m


def definition_flat():
    return ProblemDefinition(build=build_flat, variants=("true", "tampered"), cost_expression="cost", load=load,
                             description="the toy QP without y in its objective")


def definition_again():  # the same fields as definition(), under another name
    return definition()


def build_shared(data, variant):
    """The toy whose variants declare the true problem in them; "forced" adds a row of its own, and
    "misdeclared" declares its own row where it does not come last."""
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(-10, 10), initialize=0.0)
    m.y = pyo.Var(bounds=(-10, 10), initialize=0.0)
    if variant == "misdeclared":
        m.force = pyo.Constraint(expr=m.y >= 1.8)
    m.cap = pyo.Constraint(expr=m.x + m.y <= data["cap"])
    m.ring = pyo.Constraint(expr=m.x ** 2 + m.y ** 2 <= 9.0)
    if variant == "forced":
        m.force = pyo.Constraint(expr=m.y >= 1.8)
    m.cost = pyo.Expression(expr=(m.x - 1) ** 2 + (m.y - 2) ** 2 + m.x * m.y)
    m.obj = pyo.Objective(expr=m.cost - 3.0 * m.y if variant == "tampered" else m.cost)
    if variant != "true":
        m.nlp_shared = {"objective": "obj", "expression": "cost", "extra_rows": () if variant == "tampered" else ("force",)}
    return m


def definition_shared():
    return ProblemDefinition(build=build_shared, variants=("true", "tampered", "forced", "misdeclared"),
                             cost_expression="cost", load=load, description="the toy whose variants declare it")
'''


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    """The toy problem as an importable module ``toyproblem`` and a private cache directory."""
    (tmp_path / "toyproblem.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", str(tmp_path / "cache"))
    problems.clear_problems()
    yield tmp_path
    problems.clear_problems()
    sys.modules.pop("toyproblem", None)
    problems._BY_REFERENCE.pop("toyproblem:definition", None)


def _toy_plan(nlp) -> Solution:
    x = np.zeros(nlp.n)
    x[nlp.var_index("x")], x[nlp.var_index("y")] = 0.5, 1.5
    y = np.zeros(nlp.m)
    y[nlp.row_index("cap")] = 1.0
    return Solution(x=x, y=y, z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n), x_names=nlp.x_names,
                    row_names=nlp.row_names, variant="true", case="toyproblem:definition", fingerprint=nlp.fingerprint,
                    cost=float(nlp.expr("cost", x)), status="optimal")


def test_cost_unit_is_the_problems_and_display_only():
    assert problems.cost_unit("manchester") == "$" and problems.cost_unit("ieee33") == "$"
    assert problems.cost_unit("trading") == problems.cost_unit("trading-day") == "RMB"
    assert problems.cost_unit("trading-night") == "RMB"
    # a case no registered problem names (a run log read elsewhere) falls back to "$"
    assert problems.cost_unit("no-such-problem") == problems.cost_unit(None) == "$"
    d = problem_definition("manchester")
    other = dataclasses.replace(d, cost_unit="EUR")
    assert other.cost_unit == "EUR" and problems.definition_identity(other) == problems.definition_identity(d)
    for bad in ("", "  ", None, 3):
        with pytest.raises(ProblemError, match="cost_unit"):
            dataclasses.replace(d, cost_unit=bad)


def test_manchester_is_registered_with_its_variants_and_cost():
    from poso_sim.cases.model import VARIANTS

    d = problem_definition("manchester")
    assert d.variants == tuple(VARIANTS) and d.honest_variant == "true"
    assert d.cost_expression == "true_cost"
    assert d.compiled_expressions == ("true_cost", "cost_grid", "cost_chp", "cost_boiler")
    assert d.solve_recipe == "poso_sim.solvers.ies:solve"
    assert "manchester" in problems.registered_problems()
    # a packaged case file name and a path to a case file are data of the same definition
    from poso_sim.cases.loader import list_cases

    assert all(problem_definition(c) is d for c in list_cases())
    assert problem_definition("some/dir/my_case.json") is d


@pytest.mark.parametrize(
    "case, words",
    [
        ("atlantis", ["unknown case 'atlantis'", "manchester", "module:function"]),
        ("no_such_module_xyz:definition", ["cannot import no_such_module_xyz"]),
        ("poso_sim.errors:nothing_here", ["has no attribute 'nothing_here'"]),
        ("poso_sim.errors:PosoError", ["not a ProblemDefinition"]),
    ],
)
def test_bad_case_strings_are_one_line_errors_naming_them(case, words):
    with pytest.raises(ProblemError) as e:
        problem_definition(case)
    msg = str(e.value)
    assert "\n" not in msg and case.split(":")[0] in msg
    for w in words:
        assert w in msg


def test_check_case_names_variant_and_bad_file(tmp_path):
    assert problems.check_case("manchester", "tampered").variants[1] == "tampered"
    with pytest.raises(ProblemError, match="has no variant 'cheap'"):
        problems.check_case("manchester", "cheap")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"name\": 3}")
    with pytest.raises(PosoError, match="bad.json"):
        problems.check_case(str(bad))


def test_definition_validation():
    with pytest.raises(ProblemError, match="build must be callable"):
        ProblemDefinition(build=None)  # type: ignore[arg-type]
    with pytest.raises(ProblemError, match="variants"):
        ProblemDefinition(build=lambda d, v: None, variants=("true", "true"))
    with pytest.raises(ProblemError, match="not 'module:function'"):
        ProblemDefinition(build=lambda d, v: None, solve_recipe="ipopt please")
    d = ProblemDefinition(build=lambda d, v: None, variants="only")
    assert d.variants == ("only",) and d.compiled_expressions == ()
    with pytest.raises(ProblemError, match="already registered"):
        register_problem("manchester", d)
    with pytest.raises(ProblemError, match="problem name"):
        register_problem("a:b", d)


def test_registered_toy_problem_compiles_with_its_cost_expression(toy):
    import toyproblem

    register_problem("toy-qp", toyproblem.definition())
    try:
        p = load_problem("toy-qp")
        assert p.variant == "true" and p.nlp.expression_names == ("cost",) and p.nlp.cost_expression == "cost"
        x = np.array([0.5, 1.5]) if p.nlp.x_names == ["x", "y"] else np.array([1.5, 0.5])
        assert p.cost(x) == pytest.approx(0.5)
        t = load_problem("toy-qp", "tampered")
        # same variables and rows, another objective: the cost expression is the same, the objective is not
        assert t.nlp.x_names == p.nlp.x_names and t.nlp.row_names == p.nlp.row_names
        assert t.cost(x) == pytest.approx(0.5) and t.nlp.f(x) == pytest.approx(0.5 - 4.5)
        with pytest.raises(ProblemError, match="no variant 'feasible'"):
            load_problem("toy-qp", "feasible")
    finally:
        problems._REGISTRY.pop("toy-qp", None)


def test_compiled_problem_comes_back_from_disk_without_building_the_model(toy):
    first = load_problem("toyproblem:definition")
    assert not first.from_disk and first.model_built
    assert list((toy / "cache" / "compiled").glob("*.nlp"))
    problems.clear_problems()
    again = load_problem("toyproblem:definition")
    assert again.from_disk and not again.model_built
    assert again.nlp.fingerprint == first.nlp.fingerprint
    x = np.array([0.25, -1.0])
    assert again.nlp.f(x) == pytest.approx(first.nlp.f(x))
    np.testing.assert_allclose(again.nlp.jac(x), first.nlp.jac(x))
    # the model is built on first use and linked: load_into_model writes the values into it
    again.nlp.load_into_model(x)
    assert again.model_built
    assert [v.value for v in again.nlp._var_data] == [0.25, -1.0]
    np.testing.assert_array_equal(again.nlp.x_from_model(), x)
    model, nlp = problems.get_problem("toyproblem:definition", "true")
    assert model is again.model and nlp is again.nlp


def test_a_variant_that_declares_the_shared_problem_compiles_both_from_one_walk(toy):
    case = "toyproblem:definition_shared"
    direct = load_problem(case, disk_cache=False).nlp  # the true model's own compile
    x, lam = np.array([0.3, 1.7]), np.array([0.4, -0.2])
    for variant, rows in (("tampered", ["cap", "ring"]), ("forced", ["cap", "ring", "force"])):
        problems.clear_problems()
        problem, shared = problems.load_problems(case, variant, disk_cache=False)
        assert problem.nlp.row_names == rows and problem.model_built
        assert not shared.model_built  # the true model was not built, nor walked
        nlp = shared.nlp
        assert (nlp.fingerprint, nlp.structure_fingerprint) == (direct.fingerprint, direct.structure_fingerprint)
        assert nlp.row_names == direct.row_names and nlp.objective_name == "obj"
        assert nlp.f(x) == direct.f(x)
        assert (problem.nlp.f(x) != nlp.f(x)) == (variant == "tampered")
        np.testing.assert_array_equal(nlp.hess(x, lam, 0.5), direct.hess(x, lam, 0.5))
        assert load_problem(case) is shared  # every later use of the true problem gets this one
        nlp.load_into_model(x)  # its own model is built on first use and linked
        assert shared.model_built and shared.model.find_component("force") is None
    problems.clear_problems()
    with pytest.raises(PosoError, match="misdeclared.*must come after"):
        problems.load_problems(case, "misdeclared", disk_cache=False)


def test_manchester_variants_compile_the_true_problem_as_its_own_compile_does():
    """The true problem a tampered or feasible Manchester model declares is, function for function, the true
    model's own compile: the same fingerprints (what every plan carries and every verifier checks)."""
    from poso_sim.nlp.compiler import compile_nlp, compile_with_shared

    d = problem_definition("manchester")
    data = d.load("manchester")
    direct = compile_nlp(d.build(data, "true"), expressions=d.compiled_expressions)
    rng = np.random.default_rng(7)
    x = direct.clip(direct.x0 + rng.normal(size=direct.n))
    lam = rng.normal(size=direct.m)
    for variant in ("tampered", "feasible"):
        nlp, shared = compile_with_shared(d.build(data, variant), expressions=d.compiled_expressions)
        assert nlp.m == direct.m + (24 if variant == "feasible" else 0)
        assert (shared.fingerprint, shared.structure_fingerprint) == (direct.fingerprint, direct.structure_fingerprint)
        assert shared.row_names == direct.row_names and shared.row_component_names == direct.row_component_names
        for a in ("x_lb", "x_ub", "g_lb", "g_ub", "x0", "p"):
            np.testing.assert_array_equal(getattr(shared, a), getattr(direct, a))
        for f in ("f", "grad", "g", "jac"):
            np.testing.assert_array_equal(getattr(shared, f)(x), getattr(direct, f)(x))
        np.testing.assert_array_equal(shared.hess(x, lam, 0.7), direct.hess(x, lam, 0.7))
        assert [shared.expr(e, x) for e in d.compiled_expressions] == [direct.expr(e, x) for e in d.compiled_expressions]


def test_the_shared_problem_compiled_beside_a_variant_is_kept_on_disk(toy):
    case = "toyproblem:definition_shared"
    problems.load_problems(case, "forced")
    problems.clear_problems()
    problem, shared = problems.load_problems(case, "tampered")  # the true problem is on disk: read, not derived
    assert shared.from_disk and not problem.from_disk
    problems.clear_problems()
    fresh = load_problem(case, disk_cache=False)
    assert shared.nlp.fingerprint == fresh.nlp.fingerprint


def test_the_disk_key_follows_the_data(toy):
    d = problem_definition("toyproblem:definition")
    a = problems._compiled_path(d, {"cap": 2.0}, "true")
    assert a == problems._compiled_path(d, {"cap": 2.0}, "true")
    assert a != problems._compiled_path(d, {"cap": 3.0}, "true")
    assert a != problems._compiled_path(d, {"cap": 2.0}, "tampered")


def test_two_definitions_of_one_module_never_share_a_compiled_entry(toy):
    first = load_problem("toyproblem:definition")
    problems.clear_problems()
    flat = load_problem("toyproblem:definition_flat")  # same module, data, variant and expressions
    assert not flat.from_disk and flat.nlp.fingerprint != first.nlp.fingerprint
    problems.clear_problems()
    assert load_problem("toyproblem:definition").nlp.fingerprint == first.nlp.fingerprint
    assert load_problem("toyproblem:definition_flat").nlp.fingerprint == flat.nlp.fingerprint
    keys = {problems.compiled_key(problem_definition(f"toyproblem:{a}"), {"cap": 2.0}, "true")
            for a in ("definition", "definition_flat", "definition_again")}
    assert len(keys) == 3  # even the same fields under another attribute are another entry


def _mutations(d: ProblemDefinition, toy: Path):
    """Each input of a compiled entry changed once: (what, key after the change)."""
    import dataclasses

    def key(definition=d, data=None, variant="true"):
        return problems.compiled_key(definition, {"cap": 2.0} if data is None else data, variant)

    yield "data", key(data={"cap": 2.5})
    yield "variant", key(variant="tampered")
    yield "cost expression", key(dataclasses.replace(d, cost_expression=None))
    yield "expressions", key(dataclasses.replace(d, expressions=("cost",), cost_expression=None))
    yield "loader", key(dataclasses.replace(d, load=lambda case: {"cap": 2.0}))
    yield "variants", key(dataclasses.replace(d, variants=("true", "tampered", "other")))
    yield "origin", key(dataclasses.replace(d, origin="toyproblem:definition_again"))
    yield "data key", key(dataclasses.replace(d, data_key=lambda data: b"cap"))
    src = toy / "toyproblem.py"
    text = src.read_text()
    src.write_text(text.replace("bounds=(-10, 10)", "bounds=(-10, 11)", 1))
    yield "builder source", key()
    src.write_text(text)
    extra = toy / "compiler_part.py"
    extra.write_text("# a compiler module\n")
    files = problems._compiler_files()
    problems._compiler_files = lambda: [*files, extra]
    try:
        yield "compiler module", key()
        extra.write_text("# a compiler module, edited\n")
        yield "compiler source", key()
    finally:
        problems._compiler_files = _compiler_files_original
    import casadi

    version = casadi.__version__
    casadi.__version__ = version + ".post1"
    try:
        yield "casadi version", key()
    finally:
        casadi.__version__ = version


_compiler_files_original = problems._compiler_files


def test_a_change_to_any_input_of_a_compiled_entry_is_a_miss(toy):
    d = problem_definition("toyproblem:definition")
    base = problems.compiled_key(d, {"cap": 2.0}, "true")
    assert base is not None and base == problems.compiled_key(d, {"cap": 2.0}, "true")
    seen = {"base": base}
    for what, key in _mutations(d, toy):
        assert key is not None and key not in seen.values(), f"changing the {what} kept the key"
        seen[what] = key
    assert problems.compiled_key(d, {"cap": 2.0}, "true") == base  # everything restored: the same key again
    assert len(seen) == 13


def test_a_builder_failure_is_one_line(toy, tmp_path):
    (tmp_path / "brokenproblem.py").write_text(textwrap.dedent('''
        from poso_sim.nlp.problems import ProblemDefinition

        def build(data, variant):
            raise KeyError("load_mw")

        def definition():
            return ProblemDefinition(build=build)
    '''))
    with pytest.raises(ProblemError) as e:
        load_problem("brokenproblem:definition")
    assert "brokenproblem:definition" in str(e.value) and "KeyError" in str(e.value) and "\n" not in str(e.value)
    sys.modules.pop("brokenproblem", None)
    problems._BY_REFERENCE.pop("brokenproblem:definition", None)


_VERIFY_IN_FRESH_PROCESS = """
import json, sys
from poso_sim.kkt.cli import main
rc = main([sys.argv[1], "--case", sys.argv[2], "--json"])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pyomo", "pandas", "matplotlib"})
print(json.dumps({"rc": rc, "heavy": heavy}))
"""


def _fresh(args, env):
    out = subprocess.run([sys.executable, "-c", _VERIFY_IN_FRESH_PROCESS, *args], capture_output=True, text=True,
                         env=env, check=True)
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[0]), json.loads(lines[-1])


def test_a_fresh_process_verifies_without_pyomo(toy):
    import os

    p = load_problem("toyproblem:definition")  # compiles and fills the disk cache
    plan = toy / "plan.sol"
    save_solution(_toy_plan(p.nlp), plan)
    bad = toy / "bad.sol"
    save_solution(_toy_plan(p.nlp).replace(x=np.array([0.9, 1.5])), bad)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(toy)]), "POSO_SIM_CACHE_DIR": str(toy / "cache")}
    cert, run = _fresh([str(plan), "toyproblem:definition"], env)
    assert run == {"rc": 0, "heavy": []}
    assert cert["accepted"] is True and cert["cost"] == pytest.approx(0.5)
    cert, run = _fresh([str(bad), "toyproblem:definition"], env)
    assert run["rc"] == 1 and run["heavy"] == [] and cert["accepted"] is False
    # with an empty cache the same process compiles (and so imports Pyomo), and the verdict is the same
    env["POSO_SIM_CACHE_DIR"] = str(toy / "empty-cache")
    cert, run = _fresh([str(plan), "toyproblem:definition"], env)
    assert run == {"rc": 0, "heavy": ["pyomo"]} and cert["accepted"] is True


def test_a_build_and_compile_leave_scipy_stats_to_pyomo_s_own_use(toy):
    """A fresh process that builds and compiles a problem (Pyomo, then CasADi and SciPy) does not import
    scipy.stats; Pyomo still gets SciPy, finalised, when it asks for it."""
    import os

    code = ("import sys\n"
            "from poso_sim.nlp.problems import load_problem\n"
            "nlp = load_problem('toyproblem:definition').nlp\n"
            "before = 'scipy.stats' in sys.modules\n"
            "from pyomo.common.dependencies import scipy, scipy_available\n"
            "print(before, 'scipy.sparse' in sys.modules, bool(scipy_available), scipy.stats.norm.cdf(0.0))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(toy)]), "POSO_SIM_CACHE_DIR": str(toy / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True", "0.5"]


@pytest.mark.solver
def test_a_fresh_process_verifies_a_manchester_plan_without_pyomo(tmp_path):
    import os

    from poso_sim.solvers.api import solve_case

    sol = solve_case("manchester", "true")  # the shared solution cache: solved once per machine
    plan = tmp_path / "plan.sol"
    save_solution(sol, plan)
    load_problem("manchester")  # the compiled problem is on disk after this
    env = {**os.environ, "PYTHONPATH": SRC}
    cert, run = _fresh([str(plan), "manchester"], env)
    assert run == {"rc": 0, "heavy": []}
    assert cert["accepted"] is True and cert["cost"] == pytest.approx(sol.cost, rel=1e-12)


def test_checking_a_case_loads_neither_casadi_nor_pyomo(tmp_path):
    import os

    code = textwrap.dedent("""
        import sys
        from poso_sim.nlp.problems import check_case
        check_case("manchester", "tampered")
        try:
            check_case("atlantis")
        except Exception as exc:
            print(type(exc).__name__)
        print(sorted({m.split(".")[0] for m in sys.modules} & {"casadi", "pyomo"}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.stdout.split("\n")[:2] == ["ProblemError", "[]"]


def test_the_ieee33_feeder_is_registered_where_it_ships():
    ieee33 = pytest.importorskip("poso_sim.cases.ieee33")
    d = problem_definition("ieee33")
    assert d.variants == tuple(ieee33.VARIANTS)
    assert set(d.compiled_expressions) == set(ieee33.COST_EXPRESSIONS)
    p = load_problem("ieee33")
    x = p.nlp.x0
    assert p.cost(x) == pytest.approx(sum(p.nlp.expr(n, x) for n in ("cost_grid", "cost_dg", "cost_battery")))
    tampered = load_problem("ieee33", "tampered")
    assert tampered.nlp.x_names == p.nlp.x_names and tampered.nlp.row_names == p.nlp.row_names


def test_the_disk_cache_keeps_the_most_recently_used_entries(tmp_path):
    import os
    import time

    d = tmp_path / "compiled"
    d.mkdir()
    now = time.time()
    for i in range(6):
        p = d / f"{i}.nlp"
        p.write_bytes(b"x")
        os.utime(p, (now - 100 * (6 - i), now - 100 * (6 - i)))  # 5.nlp is the newest
    (d / "other.red").write_bytes(b"not ours")
    os.utime(d / "1.nlp")  # used just now
    problems._prune(d, keep=3)
    assert sorted(p.name for p in d.iterdir()) == ["1.nlp", "4.nlp", "5.nlp", "other.red"]


def test_the_packaged_problems_live_with_their_cases_and_the_registry_imports_none():
    for name, reference in problems.PACKAGED_PROBLEMS.items():
        d = problem_definition(name)
        assert d.origin == reference and reference.startswith("poso_sim.cases.") and d.variants
    # a case file name shipped with the file problem resolves to it, through the definition's named_cases
    assert "manchester" in problem_definition(problems.CASE_FILE_PROBLEM).case_names()
    code = ("import sys; import poso_sim.nlp.problems as p; p.registered_problems(); "
            "print(sorted(m for m in sys.modules if m.startswith('poso_sim.cases')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": SRC})
    assert out.stdout.strip() == "[]"
