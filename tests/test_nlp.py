"""Tests of the Pyomo -> CasADi bridge (poso_sim.nlp)."""

from __future__ import annotations

import math

import numpy as np
import pyomo.environ as pe
import pytest

from poso_sim.nlp import CompiledNLP, NLPCompileError, UnsupportedExpressionError, compile_nlp

# ----------------------------------------------------------------------------------------------------------------
# test models


def hs071() -> pe.ConcreteModel:
    m = pe.ConcreteModel()
    m.I = pe.RangeSet(4)
    m.x = pe.Var(m.I, bounds=(1, 5), initialize={1: 1, 2: 5, 3: 5, 4: 1})
    m.obj = pe.Objective(expr=m.x[1] * m.x[4] * (m.x[1] + m.x[2] + m.x[3]) + m.x[3])
    m.c1 = pe.Constraint(expr=m.x[1] * m.x[2] * m.x[3] * m.x[4] >= 25)
    m.c2 = pe.Constraint(expr=sum(m.x[i] ** 2 for i in m.I) == 40)
    return m


def rosenbrock_constrained() -> pe.ConcreteModel:
    m = pe.ConcreteModel()
    m.x = pe.Var(initialize=-1.2)
    m.y = pe.Var(initialize=1.0, bounds=(None, 3))
    m.obj = pe.Objective(expr=(1 - m.x) ** 2 + 100 * (m.y - m.x**2) ** 2)
    m.disk = pe.Constraint(expr=m.x**2 + m.y**2 <= 2)
    m.lin = pe.Constraint(expr=m.x + 3 >= -5 + m.y)
    return m


def kitchen_sink(price: float = 2.0) -> pe.ConcreteModel:
    """Indexed model with exp, log, products, powers, division, fixed vars, Expressions, Params."""
    m = pe.ConcreteModel()
    m.E = pe.Set(initialize=[1, 2, 3])
    m.T = pe.RangeSet(0, 3)
    m.price = pe.Param(m.T, initialize=lambda m, t: price + 0.5 * t, mutable=True)
    m.k = pe.Param(initialize=0.3)  # immutable
    m.P = pe.Var(m.E, m.T, bounds=(0.1, 10), initialize=1.0)
    m.V = pe.Var(m.E, m.T, bounds=(0.9, 1.1), initialize=1.0)
    m.I = pe.Var(m.E, m.T, initialize=0.5)
    m.fix = pe.Var(initialize=2.5)
    m.fix.fix()
    m.unused = pe.Var(bounds=(-1, 1))
    m.loss = pe.Expression(m.E, m.T, rule=lambda m, e, t: 0.01 * m.I[e, t] ** 2)
    m.power = pe.Constraint(m.E, m.T, rule=lambda m, e, t: m.P[e, t] - m.V[e, t] * m.I[e, t] - m.loss[e, t] == 0)
    m.expo = pe.Constraint(
        m.E, m.T, rule=lambda m, e, t: pe.exp(m.k * m.P[e, t]) - m.fix * m.V[e, t] + pe.log(m.P[e, t]) <= 4
    )
    m.ratio = pe.Constraint(m.E, rule=lambda m, e: (1.0, m.P[e, 0] / (m.V[e, 1] + 1) + m.I[e, 2] ** 3, 8.0))
    m.misc = pe.Constraint(
        expr=pe.sqrt(m.P[1, 1] + 1) + abs(m.I[2, 2]) + m.V[3, 3] ** m.V[3, 2] - (-(m.I[1, 1] * m.fix)) >= 0.5
    )
    m.true_cost = pe.Expression(expr=sum(m.price[t] * m.P[e, t] + 0.02 * m.P[e, t] ** 2 for e in m.E for t in m.T))
    m.obj = pe.Objective(expr=m.true_cost + sum(m.I[e, t] ** 2 for e in m.E for t in m.T) / 2)
    return m


MODELS = {"hs071": hs071, "rosenbrock": rosenbrock_constrained, "kitchen_sink": kitchen_sink}


def random_points(nlp: CompiledNLP, k: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lo = np.where(np.isfinite(nlp.x_lb), nlp.x_lb, -2.0)
    hi = np.where(np.isfinite(nlp.x_ub), nlp.x_ub, 2.0)
    lo, hi = np.maximum(lo, hi - 4.0), np.minimum(hi, lo + 4.0)
    span = hi - lo
    # stay away from the bounds so central differences are evaluated inside the domain
    return [lo + span * (0.1 + 0.8 * rng.random(nlp.n)) for _ in range(k)]


def fd_grad(fun, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((np.atleast_1d(fun(x + e)) - np.atleast_1d(fun(x - e))) / (2 * h))
    return np.array(cols).T  # shape (out, n)


# ----------------------------------------------------------------------------------------------------------------
# derivatives


@pytest.mark.parametrize("name", sorted(MODELS))
def test_first_derivatives_match_central_differences(name: str) -> None:
    nlp = compile_nlp(MODELS[name]())
    for x in random_points(nlp, 3):
        np.testing.assert_allclose(nlp.grad(x), fd_grad(nlp.f, x)[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(nlp.jac_sparse(x).toarray(), fd_grad(nlp.g, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hessian_lower_triangle_matches_fd_of_lagrangian_gradient(name: str) -> None:
    nlp = compile_nlp(MODELS[name]())
    rng = np.random.default_rng(1)
    for x in random_points(nlp, 2, seed=2):
        lam = rng.normal(size=nlp.m)
        sigma = 0.7

        def grad_lag(z: np.ndarray) -> np.ndarray:
            return sigma * nlp.grad(z) + nlp.jac_sparse(z).T @ lam

        h_fd = fd_grad(grad_lag, x)
        h_fd = 0.5 * (h_fd + h_fd.T)
        rows, cols = nlp.hess_structure
        assert np.all(rows >= cols), "structure must be the lower triangle"
        np.testing.assert_allclose(nlp.hess_sparse(x, lam, sigma, full=True).toarray(), h_fd, rtol=1e-5, atol=1e-5)
        # entries outside the structure are exactly zero in the FD Hessian (up to noise)
        lower = np.zeros((nlp.n, nlp.n), dtype=bool)
        lower[rows, cols] = True
        outside = np.tril(~lower)
        assert np.all(np.abs(h_fd[outside]) < 1e-5)


def test_jacobian_structure_is_fixed_and_matches_sparse() -> None:
    nlp = compile_nlp(kitchen_sink())
    r, c = nlp.jac_structure
    assert r.dtype == np.int64 and c.dtype == np.int64 and r.size == nlp.nnz_jac
    x = random_points(nlp, 1)[0]
    dense = nlp.jac_sparse(x).toarray()
    np.testing.assert_array_equal(dense[r, c], nlp.jac(x))


# ----------------------------------------------------------------------------------------------------------------
# names, bounds, offsets, objective sense, fixed vars


def test_names_bounds_and_components() -> None:
    m = kitchen_sink()
    nlp = compile_nlp(m)
    assert nlp.n == 3 * 4 * 3 + 1  # P, V, I and the unused var; the fixed var is not a column
    assert nlp.x_names[0] == "P[1,0]" and nlp.x_names[-1] == "unused"
    assert "fix" not in nlp.x_names and nlp.fixed_names == ["fix"]
    i = nlp.var_index("V[2,3]")
    assert nlp.x_lb[i] == 0.9 and nlp.x_ub[i] == 1.1
    assert math.isinf(nlp.x_lb[nlp.var_index("I[1,1]")])
    assert nlp.var_component_names == ["P", "V", "I", "unused"]
    assert list(nlp.var_indices("V")) == list(range(12, 24))
    assert nlp.row_names[: 2] == ["power[1,0]", "power[1,1]"]
    assert nlp.row_component_names == ["power", "expo", "ratio", "misc"]
    assert nlp.row_kind[nlp.row_index("power[1,0]")] == "eq"
    r = nlp.row_index("ratio[2]")
    assert (nlp.g_lb[r], nlp.g_ub[r], nlp.row_kind[r]) == (1.0, 8.0, "ineq")
    r = nlp.row_index("expo[3,3]")
    assert nlp.g_lb[r] == -np.inf and nlp.g_ub[r] == 4.0
    # unused variable: zero derivatives everywhere
    j = nlp.var_index("unused")
    x = random_points(nlp, 1)[0]
    assert nlp.grad(x)[j] == 0.0
    assert not np.any(nlp.jac_structure[1] == j)


def test_x0_is_current_values_clipped_and_zero_for_none() -> None:
    m = pe.ConcreteModel()
    m.a = pe.Var(bounds=(1, 2), initialize=5.0)
    m.b = pe.Var()
    m.c = pe.Var(bounds=(0.5, None))
    m.con = pe.Constraint(expr=m.a + m.b + m.c >= 0)
    nlp = compile_nlp(m)
    np.testing.assert_array_equal(nlp.x0, [2.0, 0.0, 0.5])


def test_offsets_body_and_bounds_consistent() -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(initialize=1.0)
    m.y = pe.Var(initialize=2.0)
    m.c = pe.Constraint(expr=m.x + 3 >= 5)
    m.d = pe.Constraint(expr=m.x <= m.y - 1)
    m.e = pe.Constraint(expr=2 * m.x + 1 == m.y + 7)
    nlp = compile_nlp(m)
    x = np.array([1.0, 2.0])
    for k, con in enumerate([m.c, m.d, m.e]):
        assert nlp.g(x)[k] == pytest.approx(pe.value(con.body))
        lb = -np.inf if con.lb is None else con.lb
        ub = np.inf if con.ub is None else con.ub
        assert (nlp.g_lb[k], nlp.g_ub[k]) == (lb, ub)
    assert nlp.g(x)[0] == 4.0 and nlp.g_lb[0] == 5.0  # g = x + 3, lb = 5: body keeps its constant
    assert list(nlp.row_kind) == ["ineq", "ineq", "eq"]


def test_maximize_is_negated_and_flagged() -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 1))
    m.obj = pe.Objective(expr=3 * m.x - m.x**2, sense=pe.maximize)
    nlp = compile_nlp(m)
    assert nlp.maximize
    assert nlp.f([0.5]) == pytest.approx(-(1.5 - 0.25))
    assert nlp.objective_value([0.5]) == pytest.approx(1.25)
    assert nlp.grad([0.5])[0] == pytest.approx(-2.0)


def test_fixed_vars_are_constants_at_compile_time() -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(initialize=1.0)
    m.p = pe.Var(initialize=3.0)
    m.p.fix()
    m.c = pe.Constraint(expr=m.p * m.x + m.p**2 <= 10)
    m.obj = pe.Objective(expr=pe.exp(m.p) * m.x)
    nlp = compile_nlp(m)
    assert nlp.n == 1 and nlp.x_names == ["x"]
    assert nlp.g([2.0])[0] == pytest.approx(6.0 + 9.0)
    assert nlp.grad([2.0])[0] == pytest.approx(math.exp(3.0))


def test_named_expressions_and_true_cost() -> None:
    m = kitchen_sink()
    assert compile_nlp(m).expression_names == ()  # the generic compiler knows no cost name of its own
    m.nlp_expressions = ("true_cost",)  # a model may declare the expressions its users want compiled
    assert compile_nlp(m).expression_names == ("true_cost",)
    nlp = compile_nlp(m, expressions=("true_cost",))
    assert nlp.expression_names == ("true_cost",)
    x = random_points(nlp, 1)[0]
    nlp.load_into_model(x)
    assert nlp.true_cost(x) == pytest.approx(pe.value(m.true_cost))
    np.testing.assert_allclose(nlp.expr_grad("true_cost", x), fd_grad(lambda z: nlp.expr("true_cost", z), x)[0], atol=1e-6)
    nlp2 = compile_nlp(m, expressions=("loss[1,2]",))
    assert nlp2.expr("loss[1,2]", x) == pytest.approx(pe.value(m.loss[1, 2]))
    with pytest.raises(KeyError):
        nlp2.expr("true_cost", x)


def test_values_match_pyomo_evaluation() -> None:
    m = kitchen_sink()
    nlp = compile_nlp(m)
    x = random_points(nlp, 1, seed=5)[0]
    nlp.load_into_model(x)
    assert nlp.f(x) == pytest.approx(pe.value(m.obj))
    want = [pe.value(c.body) for c in m.component_data_objects(pe.Constraint, active=True)]
    np.testing.assert_allclose(nlp.g(x), want, rtol=1e-12)


def test_objective_selection_and_errors() -> None:
    m = hs071()
    m.obj2 = pe.Objective(expr=m.x[1])
    with pytest.raises(NLPCompileError, match="2 active objectives"):
        compile_nlp(m)
    nlp = compile_nlp(m, objective="obj2")
    assert nlp.objective_name == "obj2" and nlp.f(nlp.x0) == 1.0
    m.obj.deactivate()
    assert compile_nlp(m).objective_name == "obj2"


def test_unsupported_node_names_type_and_constraint() -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(initialize=1.0)
    m.c = pe.Constraint(expr=pe.floor(m.x) <= 3) if hasattr(pe, "floor") else None
    if m.c is None:  # pragma: no cover
        pytest.skip("no floor() in this Pyomo")
    with pytest.raises(UnsupportedExpressionError, match=r"floor.*constraint c"):
        compile_nlp(m)


def test_integer_vars_rejected_unless_relaxed() -> None:
    m = pe.ConcreteModel()
    m.b = pe.Var(domain=pe.Binary)
    m.c = pe.Constraint(expr=m.b <= 1)
    with pytest.raises(NLPCompileError, match="integer/binary"):
        compile_nlp(m)
    assert compile_nlp(m, relax_integrality=True).x_ub[0] == 1.0


# ----------------------------------------------------------------------------------------------------------------
# fingerprint


def test_fingerprint_stable_and_data_sensitive() -> None:
    a = compile_nlp(kitchen_sink())
    b = compile_nlp(kitchen_sink())
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    assert compile_nlp(kitchen_sink(price=2.5)).fingerprint != a.fingerprint
    m = kitchen_sink()
    m.P[1, 1].setub(9.0)
    assert compile_nlp(m).fingerprint != a.fingerprint


def test_fingerprint_ignores_solver_state() -> None:
    m = kitchen_sink()
    fp = compile_nlp(m).fingerprint
    for v in m.component_data_objects(pe.Var):
        if not v.fixed:
            v.set_value(0.777, skip_validation=True)
    assert compile_nlp(m).fingerprint == fp


def test_cse_option_gives_same_values() -> None:
    a = compile_nlp(kitchen_sink())
    b = compile_nlp(kitchen_sink(), cse=True)
    x = random_points(a, 1)[0]
    np.testing.assert_allclose(a.jac(x), b.jac(x), rtol=1e-14)
    np.testing.assert_allclose(a.hess(x, np.ones(a.m), 1.0), b.hess(x, np.ones(b.m), 1.0), rtol=1e-14)


def test_smooth_rejects_nonsmooth_functions_naming_them() -> None:
    assert compile_nlp(kitchen_sink()).m > 0  # abs() compiles by default
    with pytest.raises(UnsupportedExpressionError, match=r"non-smooth function abs\(\) in constraint misc"):
        compile_nlp(kitchen_sink(), smooth=True)
    m = pe.ConcreteModel()
    m.x = pe.Var(initialize=1.0)
    m.obj = pe.Objective(expr=pe.Expr_if(IF=m.x <= 0, THEN=-m.x, ELSE=m.x))
    with pytest.raises(UnsupportedExpressionError, match=r"non-smooth function Expr_if\(\) in objective obj"):
        compile_nlp(m, smooth=True)
    assert compile_nlp(hs071(), smooth=True).n == 4
