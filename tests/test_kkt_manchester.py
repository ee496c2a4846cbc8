"""KKT certificate on the Manchester model: honest optima pass with margin and whatever valid multipliers they
carry; tampered, feasible-restricted, biased, broken-physics, forged and perturbed plans are rejected."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from poso_sim.kkt import Tolerances, checker_for, map_multipliers, verify
from _probes import unit_output_columns

pytestmark = pytest.mark.solver


@pytest.fixture(scope="module")
def ms(manchester_solutions):
    return manchester_solutions


def test_optimum_accepted_with_margin(ms) -> None:
    nlp, opt = ms["problem"], ms["optimal"]
    c = verify(nlp, opt)
    assert c.accepted and not c.found_multipliers, c.reasons
    assert 743.9 <= c.cost <= 744.5
    tol = Tolerances()
    assert c.primal_residual <= tol.primal / 10
    assert c.dual_residual <= tol.dual / 10
    assert c.complementarity <= tol.complementarity / 10
    assert c.sign_violation <= tol.sign / 10


def test_verify_time(ms) -> None:
    nlp, opt = ms["problem"], ms["optimal"]
    chk = checker_for(nlp)
    cpu = []
    for _ in range(9):
        t0 = time.thread_time()
        c = chk.verify(opt)
        cpu.append(time.thread_time() - t0)
        assert c.accepted
    # goal <= 20 ms per verify; CPU time, since wall time on a shared 2-core box varies with the load
    # (docs/benchmarks.md has the measured wall-clock figures)
    assert statistics.median(cpu) < 0.02


def _zero_flow_soc_row(nlp, x):
    """A SOCPeq row of a line-hour without flow (P = Q = I = 0), and the column of its current variable."""
    for name in nlp.row_names:
        if not name.startswith("SOCPeq["):
            continue
        idx = name[len("SOCPeq"):]
        cols = [nlp.var_index(f"{v}{idx}") for v in ("P_line", "Q_line", "I_line")]
        if np.all(np.abs(x[cols]) < 1e-6):
            return nlp.row_index(name), cols[2]
    return None


def _degenerate_row(nlp, x):
    """A row whose variable also sits at a bound, so its multiplier and the bound multiplier trade off: the SOC
    row of a zero-flow line-hour if the optimum has one, else the fixing row of a zero-load heat node's load flow
    (``m_load = 0`` with ``m_load >= 0``, the degenerate pair of IES_MODEL.md §2.4.8)."""
    found = _zero_flow_soc_row(nlp, x)
    if found is not None:
        return found
    for name in nlp.row_names:
        if name.startswith("HnLoadMassFlowFix["):
            return nlp.row_index(name), nlp.var_index("m_load" + name[len("HnLoadMassFlowFix"):])
    return None


def test_degenerate_row_other_valid_multipliers(ms) -> None:
    nlp, opt = ms["problem"], ms["optimal"]
    found = _degenerate_row(nlp, opt.x)
    assert found is not None
    row, col_i = found
    J = nlp.jac_sparse(opt.x)
    v_from = J[row, col_i]
    assert v_from > 0  # d(v*I)/dI = v of the sending bus (kV^2), or 1 for a fixing row
    delta = 0.5  # another multiplier of the row; the bound multiplier absorbs it
    y = opt.y.copy()
    zl = opt.z_L.copy()
    y[row] += delta
    zl[col_i] += delta * v_from
    c = verify(nlp, opt.with_multipliers(y=y, z_L=zl), Tolerances(decide=False))
    assert c.accepted, c.reasons
    # stale bound multiplier: fails without the decision, accepted with the (checked) re-derivation
    stale = opt.with_multipliers(y=y)
    c = verify(nlp, stale, Tolerances(decide=False))
    assert not c.accepted and nlp.x_names[col_i] in c.reasons[0]
    c = verify(nlp, stale)
    assert c.accepted and c.found_multipliers and c.decided_by == "sanitised"
    # a sigma that no valid bound multiplier can absorb: the multiplier LP finds valid ones around it
    y2 = opt.y.copy()
    y2[row] = -5.0
    c = verify(nlp, opt.with_multipliers(y=y2))
    assert c.accepted and c.found_multipliers and c.decided_by in ("sanitised", "recomputed", "local-lp"), c.decision


def test_tampered_plan_rejected(ms) -> None:
    nlp, tam = ms["problem"], ms["tampered"]
    c = verify(nlp, tam)
    assert not c.accepted
    assert c.cost > 850
    assert c.reasons[0].startswith("stationarity")
    assert any(w["measure"] == "stationarity" for w in c.worst)


def test_feasible_restricted_plan_rejected(ms) -> None:
    nlp, fea = ms["problem"], ms["feasible"]
    c = verify(nlp, fea)
    assert not c.accepted and c.reasons[0].startswith("stationarity")
    assert c.cost > verify(nlp, ms["optimal"]).cost


def test_forged_multipliers(ms) -> None:
    nlp, opt, tam = ms["problem"], ms["optimal"], ms["tampered"]
    # the optimum with another plan's multipliers, or every row multiplier scaled by 1.01: the point is a KKT
    # point, so it is never proved wrong; finding its multipliers from that far may exceed the budget
    for y in (tam.y, opt.y * 1.01):
        c = verify(nlp, opt.with_multipliers(y=y, z_L=tam.z_L, z_U=tam.z_U))
        assert c.accepted or (c.decided_by == "budget" and c.decision.get("exists") is None), c.decision
        assert not verify(nlp, opt.with_multipliers(y=y), Tolerances(decide=False)).accepted
    # the feasible-restricted plan with the best multipliers an LP over the certificate's rules finds
    fea = ms["feasible"]
    y, zl, zu = map_multipliers(nlp, fea.x, np.full(nlp.m, np.nan))
    c = verify(nlp, fea.with_multipliers(y=y, z_L=zl, z_U=zu), Tolerances(decide=False))
    assert not c.accepted and c.reasons[0].startswith("stationarity")


def test_perturbed_primal_rejected(ms) -> None:
    nlp, opt = ms["problem"], ms["optimal"]
    x = opt.x.copy()
    j = nlp.var_index("P_CHP[3,7]")
    x[j] += 0.01  # 10 W
    c = verify(nlp, opt.replace(x=x))
    assert not c.accepted and c.reasons[0].startswith("primal infeasibility")


def test_broken_network_equation_rejected_even_if_cheaper(ms) -> None:
    """The optimum with 2 kW less bought from the grid in the dearest hour: cheaper, one balance row broken."""
    nlp, opt = ms["problem"], ms["optimal"]
    grad = nlp.expr_grad("true_cost", opt.x)
    hours = [(float(grad[nlp.var_index(f"P_grid[{t}]")]), t) for t in range(1, 25)
             if opt.x[nlp.var_index(f"P_grid[{t}]")] > 10.0]
    _price, t = max(hours)
    x = np.array(opt.x)
    x[nlp.var_index(f"P_grid[{t}]")] -= 2.0
    plan = opt.replace(x=x, cost=float(nlp.true_cost(x)))
    assert plan.cost < opt.cost
    c = verify(nlp, plan)
    assert not c.accepted and c.reasons[0].startswith("primal infeasibility")
    assert "ENodePSlaeq" in c.reasons[0]


def test_reduced_model_multipliers_accepted_only_after_mapping(ms) -> None:
    """The solver's reduced formulation (fixings presolved, return flows and outlet temperatures substituted):
    its multipliers used as they are fail on the canonical model; mapped (docs/solver.md) they pass."""
    from poso_sim.solvers.api import get_problem
    from poso_sim.solvers.ies.reduce import Reduction

    nlp, opt = ms["problem"], ms["optimal"]
    red = Reduction(get_problem("manchester", "true")[0], nlp, np.asarray(opt.x))
    y_red = np.asarray(opt.y)[red.red_rows_to_can]
    zl_red = np.asarray(opt.z_L)[red.red_to_can]
    zu_red = np.asarray(opt.z_U)[red.red_to_can]
    # as the reduced solve reports them: rows it does not have get nothing
    y0 = np.zeros(nlp.m)
    y0[red.red_rows_to_can] = y_red
    zl0 = np.zeros(nlp.n)
    zu0 = np.zeros(nlp.n)
    zl0[red.red_to_can] = zl_red
    zu0[red.red_to_can] = zu_red
    assert not verify(nlp, opt.with_multipliers(y=y0, z_L=zl0, z_U=zu0), Tolerances(decide=False)).accepted
    y, zl, zu = red.canonical_multipliers(np.asarray(opt.x), y_red, zl_red, zu_red)
    c = verify(nlp, opt.with_multipliers(y=y, z_L=zl, z_U=zu), Tolerances(decide=False))
    assert c.accepted, c.reasons


def test_biased_view_equals_compiled_clone(ms) -> None:
    import pyomo.environ as pe

    from poso_sim.cases import build_model, load_case
    from _probes import BiasedObjective
    from poso_sim.nlp import compile_nlp

    nlp, opt = ms["problem"], ms["optimal"]
    m = build_model(load_case("manchester"), "true")
    m.obj.deactivate()
    m.obj_bias = pe.Objective(expr=m.true_cost + 0.01 * sum(m.P_CHP[3, t] for t in m.T))
    clone = compile_nlp(m)
    view = BiasedObjective(nlp, unit_output_columns(nlp, 3), 0.01)
    assert clone.x_names == nlp.x_names
    assert view.f(opt.x) == pytest.approx(clone.f(opt.x), rel=1e-12)
    np.testing.assert_allclose(view.grad(opt.x), clone.grad(opt.x), rtol=1e-12, atol=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_other_honest_local_optima_accepted(ms, k) -> None:
    """Other start points end at other local optima (743.9-744.5 $); each passes (a KKT check cannot rank them)."""
    from poso_sim.cases import load_case
    from poso_sim.solvers import Solution
    from poso_sim.solvers.api import get_problem
    from poso_sim.solvers.ies import perturbed_start
    from poso_sim.solvers.ies import solve_reduced

    nlp = ms["problem"]
    model = get_problem("manchester", "true")[0]
    r = solve_reduced(model, nlp, perturbed_start(nlp, load_case("manchester"), k))
    assert r.status == "optimal"
    sol = Solution(x=r.x, y=r.y, z_L=r.z_L, z_U=r.z_U, fingerprint=nlp.fingerprint, variant="true")
    c = verify(nlp, sol)
    assert 743.9 <= c.cost <= 744.5
    assert c.accepted, c.reasons
    # the verdict is the point's: the same optimum sent with zero multipliers is accepted too (recomputed from x)
    from poso_sim.kkt import checker_for

    checker_for(nlp).search.cache.clear()
    c0 = verify(nlp, sol.with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n)))
    assert c0.accepted and c0.found_multipliers, (c0.reasons, c0.decision)
