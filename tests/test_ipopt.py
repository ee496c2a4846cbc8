"""The two Ipopt backends (cyipopt with CompiledNLP callbacks; CasADi's bundled Ipopt on the SX graph): HS071, sign
convention, warm start, scaling, cancel; the Pyomo SolverFactory passthrough's conventions."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pe
import pytest

from poso_sim.nlp import compile_nlp, with_model
from poso_sim.solvers import IpoptBackend, PyomoSolverFactoryBackend, RawResult, SolverBackend, violation
from poso_sim.solvers.casadi_ipopt import CasadiIpoptBackend
from test_nlp import hs071, kitchen_sink, rosenbrock_constrained

HS071_OPT = 17.0140173


@pytest.fixture(params=[IpoptBackend, CasadiIpoptBackend], ids=["cyipopt", "casadi"])
def Backend(request):
    return request.param


def stationarity(nlp, r: RawResult) -> float:
    res = nlp.grad(r.x) + nlp.jac_sparse(r.x).T @ r.y - r.z_L + r.z_U
    return float(np.abs(res).max())


def test_backend_satisfies_protocol(Backend) -> None:
    assert isinstance(Backend(), SolverBackend)


def test_hs071_optimum_and_sign_convention(Backend) -> None:
    nlp = compile_nlp(hs071())
    r = Backend().solve(nlp, nlp.x0)
    assert r.status == "optimal" and r.return_code == 0
    assert r.objective == pytest.approx(HS071_OPT, abs=1e-6)
    assert r.iterations > 0 and r.seconds > 0
    # Ipopt convention: grad f + J^T y - z_L + z_U = 0, z >= 0
    assert stationarity(nlp, r) < 1e-7
    assert np.all(r.z_L >= 0) and np.all(r.z_U >= 0)
    # c1 (>= 25) is active at its lower bound -> y < 0 in this convention; x1 at lower bound 1 -> z_L > 0
    assert r.y[nlp.row_index("c1")] < 0
    assert r.z_L[nlp.var_index("x[1]")] > 0.5
    assert violation(nlp, r.x) < 1e-6
    assert "ipopt" in r.solver


def test_warm_start_converges_in_few_iterations(Backend) -> None:
    nlp = compile_nlp(hs071())
    b = Backend()
    cold = b.solve(nlp, nlp.x0)
    warm = b.solve(
        nlp,
        cold.x,
        y0=cold.y,
        zl0=cold.z_L,
        zu0=cold.z_U,
        options={"mu_init": 1e-9, "warm_start_bound_push": 1e-9, "warm_start_mult_bound_push": 1e-9},
    )
    assert warm.status == "optimal"
    assert warm.iterations <= 3 < cold.iterations
    assert warm.objective == pytest.approx(HS071_OPT, abs=1e-6)


@pytest.mark.parametrize("make", [rosenbrock_constrained, kitchen_sink])
def test_other_models_solve_and_are_stationary(make, Backend) -> None:
    nlp = compile_nlp(make())
    r = Backend().solve(nlp, nlp.x0)
    assert r.ok, r.message
    assert stationarity(nlp, r) < 1e-6
    assert violation(nlp, r.x) < 1e-6


def test_maximize_objective_reported_with_model_sign(Backend) -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 4))
    m.obj = pe.Objective(expr=3 * m.x - m.x**2, sense=pe.maximize)
    nlp = compile_nlp(m)
    r = Backend().solve(nlp, nlp.x0)
    assert r.x[0] == pytest.approx(1.5, abs=1e-6)
    assert r.objective == pytest.approx(2.25, abs=1e-8)


def test_user_scaling_gives_same_solution(Backend) -> None:
    nlp = compile_nlp(hs071())
    r = Backend().solve(
        nlp, nlp.x0, options={"obj_scaling": 0.1, "x_scaling": np.full(4, 2.0), "g_scaling": np.array([0.01, 0.1])}
    )
    assert r.status == "optimal"
    assert r.objective == pytest.approx(HS071_OPT, abs=1e-6)
    assert stationarity(nlp, r) < 1e-6  # multipliers are returned unscaled


def test_callback_progress_and_cancellation(Backend) -> None:
    nlp = compile_nlp(hs071())
    seen = []
    r = Backend().solve(nlp, nlp.x0, callback=lambda info: seen.append(info.iteration))
    assert seen[0] == 0 and seen[-1] == r.iterations
    r2 = Backend().solve(nlp, nlp.x0, callback=lambda info: info.iteration < 2)
    assert r2.status == "cancelled" and r2.iterations == 2


def test_max_iter_status(Backend) -> None:
    nlp = compile_nlp(hs071())
    r = Backend().solve(nlp, nlp.x0, options={"max_iter": 2})
    assert r.status == "max_iter" and r.return_code == -1


def test_infeasible_status(Backend) -> None:
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 1))
    m.c = pe.Constraint(expr=m.x**2 >= 4)
    m.obj = pe.Objective(expr=m.x)
    r = Backend().solve(compile_nlp(m), [0.5])
    assert r.status == "infeasible"


def test_invalid_option_is_config_error(Backend) -> None:
    from poso_sim.errors import ConfigError

    nlp = compile_nlp(hs071())
    with pytest.raises(ConfigError, match="no_such_option"):
        Backend().solve(nlp, nlp.x0, options={"no_such_option": 3})


def test_pyomo_solver_factory_passthrough() -> None:
    backend = PyomoSolverFactoryBackend("ipopt")
    if not backend.available():
        pytest.skip("no ipopt executable for Pyomo's SolverFactory")
    nlp = compile_nlp(hs071())
    r = backend.solve(nlp, nlp.x0)
    assert r.objective == pytest.approx(HS071_OPT, abs=1e-5)


# --- the Pyomo SolverFactory passthrough, with a solver that writes AMPL-convention suffixes ------------------------
class _AmplConventionSolver:
    """A SolverFactory solver that solves with cyipopt and reports its multipliers the way the AMPL ``ipopt``
    executable does (``dual = -y``, ``ipopt_zU_out = -z_U``); ``bounds=False`` omits the bound suffixes."""

    bounds = True

    def __init__(self, **kwargs):
        pass

    def available(self, exception_flag=False):
        return True

    def solve(self, model, options=None, load_solutions=False):
        from pyomo.opt import SolverResults, TerminationCondition

        nlp = compile_nlp(model)
        r = IpoptBackend().solve(nlp, nlp.x0)
        nlp.load_into_model(r.x)
        for c, y in zip(nlp._con_data, r.y):
            model.dual[c] = -y
        if self.bounds:
            for v, zl, zu in zip(nlp._var_data, r.z_L, r.z_U):
                model.ipopt_zL_out[v] = zl
                model.ipopt_zU_out[v] = -zu
        res = SolverResults()
        res.solver.termination_condition = TerminationCondition.optimal
        return res


class _NoBoundSuffixSolver(_AmplConventionSolver):
    bounds = False


@pytest.fixture
def fake_solvers():
    from pyomo.opt import SolverFactory

    SolverFactory.register("poso_test_ampl")(_AmplConventionSolver)
    SolverFactory.register("poso_test_nobounds")(_NoBoundSuffixSolver)
    yield
    SolverFactory.unregister("poso_test_ampl")
    SolverFactory.unregister("poso_test_nobounds")


def test_solver_factory_on_disk_loaded_problem_returns_every_multiplier(fake_solvers) -> None:
    """A problem restored from its serialised form (the compiled-problem disk cache) is linked to the model's
    constraints too: the passthrough returns one multiplier per row, in Ipopt's convention."""
    from poso_sim.nlp.compiled import CompiledNLP

    model = hs071()
    nlp = with_model(CompiledNLP.from_bytes(compile_nlp(model).to_bytes()), model)
    assert len(nlp._con_data) == nlp.m
    r = PyomoSolverFactoryBackend("poso_test_ampl", convention=(-1.0, 1.0, -1.0)).solve(nlp, nlp.x0)
    assert r.y.shape == (nlp.m,) and r.status == "optimal"
    assert r.objective == pytest.approx(HS071_OPT, abs=1e-6)
    assert stationarity(nlp, r) < 1e-7
    assert r.y[nlp.row_index("c1")] < 0 and np.all(r.z_L >= 0) and np.all(r.z_U >= 0)


def test_solver_factory_convention_is_explicit_and_missing_duals_are_nan(fake_solvers) -> None:
    from poso_sim.errors import ConfigError

    with pytest.raises(ConfigError, match="sign convention"):
        PyomoSolverFactoryBackend("poso_test_ampl")  # unknown solver: no guessed convention
    assert PyomoSolverFactoryBackend("ipopt").convention == (-1.0, 1.0, -1.0)
    nlp = compile_nlp(hs071())
    r = PyomoSolverFactoryBackend("poso_test_nobounds", convention=(-1.0, 1.0, -1.0)).solve(nlp, nlp.x0)
    assert np.isnan(r.z_L).all() and np.isnan(r.z_U).all()  # all four variables have both bounds
    assert "ipopt_zL_out" in r.message and "ipopt_zU_out" in r.message
    assert np.isfinite(r.y).all()


def test_solver_factory_links_constraints_of_a_variables_only_link(fake_solvers) -> None:
    """A compiled problem whose variables alone were linked to a model (as the problem registry does for a
    disk-loaded problem) still gets one multiplier per row."""
    from poso_sim.nlp.compiled import CompiledNLP

    model = hs071()
    nlp = CompiledNLP.from_bytes(compile_nlp(model).to_bytes())
    nlp._var_data = compile_nlp(model)._var_data
    assert len(nlp._con_data) == 0
    r = PyomoSolverFactoryBackend("poso_test_ampl", convention=(-1.0, 1.0, -1.0)).solve(nlp, nlp.x0)
    assert r.y.shape == (nlp.m,) and np.isfinite(r.y).all()
    assert stationarity(nlp, r) < 1e-7


@pytest.mark.parametrize("options", [{}, {"max_iter": 3}, {"obj_scaling": 0.1, "x_scaling": None}],
                         ids=["optimal", "max_iter", "scaled"])
@pytest.mark.parametrize("make", [hs071, kitchen_sink], ids=["hs071", "kitchen_sink"])
def test_casadi_backend_without_lam_p_gives_what_nlpsol_gives(make, options, monkeypatch) -> None:
    """The CasADi backend builds its solvers without the parameter multipliers (``lam_p``, which nlpsol computes
    with a function it builds by reverse AD at every construction): every result is the same, bit for bit."""
    import poso_sim.solvers.casadi_ipopt as backend

    nlp = compile_nlp(make())
    results = []
    for without in (True, False):
        monkeypatch.setattr(backend, "NO_LAM_P", backend.NO_LAM_P if without else {})
        results.append(CasadiIpoptBackend().solve(nlp, nlp.x0, options=dict(options)))
    new, old = results
    assert (new.status, new.iterations, new.message) == (old.status, old.iterations, old.message)
    for k in ("x", "y", "z_L", "z_U", "objective"):
        a, b = np.atleast_1d(getattr(new, k)), np.atleast_1d(getattr(old, k))
        assert a.tobytes() == b.tobytes(), k
