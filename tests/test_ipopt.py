"""IpoptBackend over cyipopt with CompiledNLP callbacks: HS071, sign convention, warm start, scaling, cancel."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pe
import pytest

from poso_sim.nlp import compile_nlp
from poso_sim.solvers import IpoptBackend, PyomoSolverFactoryBackend, RawResult, SolverBackend, violation
from test_nlp import hs071, kitchen_sink, rosenbrock_constrained

HS071_OPT = 17.0140173


def stationarity(nlp, r: RawResult) -> float:
    res = nlp.grad(r.x) + nlp.jac_sparse(r.x).T @ r.y - r.zL + r.zU
    return float(np.abs(res).max())


def test_backend_satisfies_protocol() -> None:
    assert isinstance(IpoptBackend(), SolverBackend)


def test_hs071_optimum_and_sign_convention() -> None:
    nlp = compile_nlp(hs071())
    r = IpoptBackend().solve(nlp, nlp.x0)
    assert r.status == "optimal" and r.return_code == 0
    assert r.objective == pytest.approx(HS071_OPT, abs=1e-6)
    assert r.iterations > 0 and r.seconds > 0
    # Ipopt convention: grad f + J^T y - z_L + z_U = 0, z >= 0
    assert stationarity(nlp, r) < 1e-7
    assert np.all(r.zL >= 0) and np.all(r.zU >= 0)
    # c1 (>= 25) is active at its lower bound -> y < 0 in this convention; x1 at lower bound 1 -> z_L > 0
    assert r.y[nlp.row_index("c1")] < 0
    assert r.zL[nlp.var_index("x[1]")] > 0.5
    assert violation(nlp, r.x) < 1e-6
    assert "ipopt 3.14" in r.solver


def test_warm_start_converges_in_few_iterations() -> None:
    nlp = compile_nlp(hs071())
    b = IpoptBackend()
    cold = b.solve(nlp, nlp.x0)
    warm = b.solve(
        nlp,
        cold.x,
        y0=cold.y,
        zl0=cold.zL,
        zu0=cold.zU,
        options={"mu_init": 1e-9, "warm_start_bound_push": 1e-9, "warm_start_mult_bound_push": 1e-9},
    )
    assert warm.status == "optimal"
    assert warm.iterations <= 3 < cold.iterations
    assert warm.objective == pytest.approx(HS071_OPT, abs=1e-6)


@pytest.mark.parametrize("make", [rosenbrock_constrained, kitchen_sink])
def test_other_models_solve_and_are_stationary(make) -> None:
    nlp = compile_nlp(make())
    r = IpoptBackend().solve(nlp, nlp.x0)
    assert r.ok, r.message
    assert stationarity(nlp, r) < 1e-6
    assert violation(nlp, r.x) < 1e-6


def test_maximize_objective_reported_with_model_sign() -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 4))
    m.obj = pe.Objective(expr=3 * m.x - m.x**2, sense=pe.maximize)
    nlp = compile_nlp(m)
    r = IpoptBackend().solve(nlp, nlp.x0)
    assert r.x[0] == pytest.approx(1.5, abs=1e-6)
    assert r.objective == pytest.approx(2.25, abs=1e-8)


def test_user_scaling_gives_same_solution() -> None:
    nlp = compile_nlp(hs071())
    r = IpoptBackend().solve(
        nlp, nlp.x0, options={"obj_scaling": 0.1, "x_scaling": np.full(4, 2.0), "g_scaling": np.array([0.01, 0.1])}
    )
    assert r.status == "optimal"
    assert r.objective == pytest.approx(HS071_OPT, abs=1e-6)
    assert stationarity(nlp, r) < 1e-6  # multipliers are returned unscaled


def test_callback_progress_and_cancellation() -> None:
    nlp = compile_nlp(hs071())
    seen = []
    r = IpoptBackend().solve(nlp, nlp.x0, callback=lambda info: seen.append(info.iteration))
    assert seen[0] == 0 and seen[-1] == r.iterations
    r2 = IpoptBackend().solve(nlp, nlp.x0, callback=lambda info: info.iteration < 2)
    assert r2.status == "cancelled" and r2.iterations == 2


def test_max_iter_status() -> None:
    nlp = compile_nlp(hs071())
    r = IpoptBackend().solve(nlp, nlp.x0, options={"max_iter": 2})
    assert r.status == "max_iter" and r.return_code == -1


def test_infeasible_status() -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 1))
    m.c = pe.Constraint(expr=m.x**2 >= 4)
    m.obj = pe.Objective(expr=m.x)
    r = IpoptBackend().solve(compile_nlp(m), [0.5])
    assert r.status == "infeasible"


def test_invalid_option_is_config_error() -> None:
    from poso_sim.errors import ConfigError

    nlp = compile_nlp(hs071())
    with pytest.raises(ConfigError, match="no_such_option"):
        IpoptBackend().solve(nlp, nlp.x0, options={"no_such_option": 3})


def test_pyomo_solver_factory_passthrough() -> None:
    backend = PyomoSolverFactoryBackend("ipopt")
    if not backend.available():
        pytest.skip("no ipopt executable for Pyomo's SolverFactory")
    nlp = compile_nlp(hs071())
    r = backend.solve(nlp, nlp.x0)
    assert r.objective == pytest.approx(HS071_OPT, abs=1e-5)
