"""The compiler's shortcuts build the same compiled functions as the plain construction.

The walker builds SX nodes with ``SX.binary``/``SX.unary`` (CasADi's operators spend most of their time choosing an
overload). Here every problem is compiled twice, once as shipped and once with the plain CasADi operators put back
(:func:`plain_operators`), and the two must agree: the same serialised CasADi Functions (so the same values, byte
for byte), the same names, bounds, structures and fingerprints, and values equal to 1e-12 relative at random points.
"""

from __future__ import annotations

import casadi as ca
import numpy as np
import pyomo.environ as pe
import pytest

import poso_sim.nlp.compiler as compiler
import poso_sim.nlp.walker as walker
from poso_sim.nlp import CompiledNLP
from poso_sim.nlp.compiler import compile_nlp, compile_with_shared
from test_nlp import MODELS

_FUNCTIONS = ("f", "grad_f", "g", "jac_g", "hess_lag")


def _plain_pow(a, b):
    return a**b if isinstance(a, float) and isinstance(b, float) else ca.power(a, b)


@pytest.fixture
def plain_operators(monkeypatch):
    """Compile with CasADi's own operators and functions (``a * b``, ``ca.exp(a)``) instead of the shortcuts."""
    def use():
        for name, fn in (("sx_add", lambda a, b: a + b), ("sx_mul", lambda a, b: a * b),
                         ("sx_div", lambda a, b: a / b), ("sx_pow", _plain_pow)):
            monkeypatch.setattr(walker, name, fn)
            if hasattr(compiler, name):
                monkeypatch.setattr(compiler, name, fn)
        monkeypatch.setattr(walker, "_UNARY_OPS", {})
    return use


def every_function() -> pe.ConcreteModel:
    """Each unary function, powers with constant, parametric and variable exponents, divisions, products of
    Params and Vars, a fixed variable, Expressions and a maximised objective."""
    m = pe.ConcreteModel()
    m.I = pe.RangeSet(3)
    m.q = pe.Param(m.I, initialize={1: 0.5, 2: 1.5, 3: -0.25}, mutable=True)
    m.x = pe.Var(m.I, bounds=(0.2, 0.8), initialize=0.5)
    m.y = pe.Var(bounds=(1.1, 3.0), initialize=2.0)
    m.z = pe.Var(initialize=0.3)
    m.fixed = pe.Var(initialize=1.7)
    m.fixed.fix()
    funcs = (pe.exp, pe.log, pe.log10, pe.sqrt, pe.sin, pe.cos, pe.tan, pe.asin, pe.acos, pe.atan, pe.sinh,
             pe.cosh, pe.tanh, pe.asinh, pe.atanh)
    m.F = pe.RangeSet(len(funcs))
    m.unary = pe.Constraint(m.F, rule=lambda m, k: funcs[k - 1](m.x[1 + k % 3] * m.q[1 + k % 2] + 0.1) <= 10)
    m.acosh = pe.Constraint(expr=pe.acosh(m.y) + abs(m.z) * m.fixed >= -5)
    m.powers = pe.Constraint(expr=m.x[1] ** 2 + m.x[2] ** 3.5 + m.y ** m.q[2] + m.x[3] ** m.z + 2.0 ** m.z <= 50)
    m.ratio = pe.Constraint(expr=(m.q[1] * m.x[1] - m.q[3]) / (m.y + m.q[2]) + 3 * m.x[2] / m.y == 0.4)
    m.e = pe.Expression(expr=m.q[1] * m.x[1] * m.x[2] - m.q[3] * m.z + m.x[3] / 4)
    m.obj = pe.Objective(expr=m.e - (m.z - 0.5) ** 2 + m.fixed * m.y, sense=pe.maximize)
    m.nlp_expressions = ("e",)
    return m


def assert_same(new: CompiledNLP, old: CompiledNLP) -> None:
    for name in _FUNCTIONS:
        assert new.function(name).serialize() == old.function(name).serialize(), name
    for nm in old.expression_names:
        assert [f.fn.serialize() for f in new._expr[nm]] == [f.fn.serialize() for f in old._expr[nm]], nm
    assert (new.x_names, new.row_names, new.p_names) == (old.x_names, old.row_names, old.p_names)
    assert (new.fingerprint, new.structure_fingerprint) == (old.fingerprint, old.structure_fingerprint)
    for a, b in zip(new.jac_structure + new.hess_structure, old.jac_structure + old.hess_structure):
        np.testing.assert_array_equal(a, b)
    for a, b in ((new.x_lb, old.x_lb), (new.x_ub, old.x_ub), (new.g_lb, old.g_lb), (new.g_ub, old.g_ub),
                 (new.x0, old.x0), (new.p, old.p)):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(11)
    lo = np.where(np.isfinite(old.x_lb), old.x_lb, -2.0)
    hi = np.minimum(np.where(np.isfinite(old.x_ub), old.x_ub, 2.0), lo + 4.0)
    for _ in range(3):
        x = lo + (hi - lo) * rng.random(old.n)
        lam = rng.normal(size=old.m)
        for fn in (lambda q: [q.f(x)], lambda q: q.grad(x), lambda q: q.g(x), lambda q: q.jac(x),
                   lambda q: q.hess(x, lam, 0.7)):
            np.testing.assert_allclose(fn(new), fn(old), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("make", [*MODELS.values(), every_function], ids=[*MODELS, "every_function"])
def test_user_models_compile_as_with_plain_operators(make, plain_operators) -> None:
    new = compile_nlp(make())
    plain_operators()
    assert_same(new, compile_nlp(make()))


def _packaged(case: str, variant: str):
    from poso_sim.nlp import problems

    definition = problems.problem_definition(case)
    data = definition.load(case) if definition.load is not None else None
    return definition, lambda: problems._build(definition, data, case, variant)


@pytest.mark.parametrize("case, variant", [("ieee33", "feasible"), ("trading", "true")])
def test_packaged_problems_compile_as_with_plain_operators(case, variant, plain_operators) -> None:
    definition, build = _packaged(case, variant)
    new = compile_with_shared(build(), expressions=definition.compiled_expressions)
    plain_operators()
    old = compile_with_shared(build(), expressions=definition.compiled_expressions)
    assert_same(new[0], old[0])
    assert (new[1] is None) == (old[1] is None)
    if old[1] is not None:
        assert_same(new[1], old[1])


@pytest.mark.parametrize("variant", ["feasible", pytest.param("tampered", marks=pytest.mark.slow)])
def test_manchester_compiles_as_with_plain_operators(variant, plain_operators) -> None:
    definition, build = _packaged("manchester", variant)
    new, new_shared = compile_with_shared(build(), expressions=definition.compiled_expressions)
    plain_operators()
    old, old_shared = compile_with_shared(build(), expressions=definition.compiled_expressions)
    assert_same(new, old)
    assert_same(new_shared, old_shared)


def test_names_are_pyomo_names() -> None:
    """The compiler names elements as Pyomo does (``Component[index]``, quoted strings, tuples, sub-blocks)."""
    from poso_sim.nlp.compiler import _data_names

    m = pe.ConcreteModel()
    m.S = pe.Set(initialize=["a", "b c", "1.5", "x,y", "it's", 3, 2.5])
    m.x = pe.Var(m.S, initialize=1.0)
    m.y = pe.Var(m.S, pe.RangeSet(2), initialize=1.0)
    m.z = pe.Var()
    m.b = pe.Block(pe.RangeSet(2))
    for blk in m.b.values():
        blk.P = pe.Set(initialize=[("p", 1), ("q", 2)], dimen=2)
        blk.w = pe.Var(blk.P)
        blk.c = pe.Constraint(expr=blk.w["p", 1] >= 0)
    m.c = pe.Constraint(m.S, rule=lambda m, s: m.x[s] + m.z >= 0)
    for datas in (list(m.component_data_objects(pe.Var, descend_into=True)),
                  list(m.component_data_objects(pe.Constraint, descend_into=True))):
        names, component, component_names = _data_names(datas)
        assert names == [d.name for d in datas]
        assert [component_names[k] for k in component] == [d.parent_component().name for d in datas]


def with_shared(extra_rows: bool, honest: bool = False) -> pe.ConcreteModel:
    """A dishonest variant over the honest rows (and, with ``extra_rows``, rows of its own after them) that declares
    the honest problem sitting in it (``nlp_shared``): minimise ``true_cost`` over the honest rows. ``honest``: that
    honest problem's own model."""
    m = pe.ConcreteModel()
    m.I = pe.RangeSet(4)
    m.price = pe.Param(m.I, initialize={1: 1.0, 2: 2.5, 3: 0.7, 4: 1.2}, mutable=True)
    m.x = pe.Var(m.I, bounds=(0.1, 5.0), initialize=1.0)
    m.balance = pe.Constraint(expr=sum(m.x[i] for i in m.I) == 6.0)
    m.loss = pe.Constraint(m.I, rule=lambda m, i: m.x[i] ** 2 / 10 - m.x[i] <= 1.0)
    m.true_cost = pe.Expression(expr=sum(m.price[i] * m.x[i] + 0.1 * m.x[i] ** 2 for i in m.I))
    m.nlp_expressions = ("true_cost",)
    if honest:
        m.obj = pe.Objective(expr=m.true_cost)
        return m
    if extra_rows:
        m.cap = pe.Constraint(expr=m.x[1] * m.x[2] <= 4.0)
    m.obj = pe.Objective(expr=m.true_cost - 3.0 * m.x[2])
    m.nlp_shared = {"objective": "obj", "expression": "true_cost", "extra_rows": ("cap",) if extra_rows else ()}
    return m


@pytest.mark.parametrize("extra_rows", [False, True], ids=["same rows", "extra rows"])
def test_a_shared_problem_takes_the_variants_functions_and_encodes_as_alone(extra_rows, plain_operators) -> None:
    """The shared problem compiled from a variant's walk is what compile_nlp makes of the honest model, with the
    plain construction too; it takes the variant's functions of the rows (when it has the same rows) and of the
    expressions, and encoding both problems with one memo gives the bytes each gives alone."""
    nlp, shared = compile_with_shared(with_shared(extra_rows))
    assert_same(shared, compile_nlp(with_shared(extra_rows, honest=True)))
    assert (shared.function("g") is nlp.function("g")) is not extra_rows
    assert (shared.function("jac_g") is nlp.function("jac_g")) is not extra_rows
    assert shared.function("hess_lag") is not nlp.function("hess_lag")
    assert all(shared._expr[nm][0].fn is nlp._expr[nm][0].fn for nm in nlp.expression_names)
    memo: dict = {}
    assert nlp.to_bytes(memo) == nlp.to_bytes() and shared.to_bytes(memo) == shared.to_bytes()
    assert CompiledNLP.from_bytes(shared.to_bytes(memo)).fingerprint == shared.fingerprint
    plain_operators()
    old, old_shared = compile_with_shared(with_shared(extra_rows))
    assert_same(nlp, old)
    assert_same(shared, old_shared)
