"""The IEEE 33-bus feeder (Baran & Wu 1989): the converted data, the base-case power flow against the published
results, the 24-h dispatch NLP (exact DistFlow) and its optimum, and the KKT certificate on it."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from poso_sim.cases.ieee33 import (
    COST_EXPRESSIONS,
    HOURS,
    build_model,
    build_power_flow_model,
    load_case,
    power_flow,
    topology,
)
from poso_sim.errors import CaseError

pyo = pytest.importorskip("pyomo.environ")


@pytest.fixture(scope="module")
def case():
    return load_case()


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(resources.files("poso_sim.cases.ieee33").joinpath("ieee33.json").read_text())


# ---- the data --------------------------------------------------------------------------------------------------------
def test_converted_data_matches_the_published_feeder(case):
    assert len(case.buses) == 33 and len(case.lines) == 32 and len(case.tie_lines) == 5
    p, q = case.total_load()
    assert p == pytest.approx(3715.0, abs=1e-9) and q == pytest.approx(2300.0, abs=1e-9)
    assert case.base_kv == 12.66
    assert "Baran" in case.source["citation"] and "1989" in case.source["citation"]
    by_to = {ln.to: ln for ln in case.lines}
    # spot checks against Baran & Wu's table: first line, the longest-impedance line, the big reactive load
    assert (by_to[2].from_, by_to[2].r_ohm, by_to[2].x_ohm) == (1, 0.0922, 0.0470)
    assert (by_to[19].from_, by_to[19].r_ohm, by_to[19].x_ohm) == (2, 0.1640, 0.1565)
    assert (by_to[20].r_ohm, by_to[20].x_ohm) == (1.5042, 1.3554)
    bus30 = next(b for b in case.buses if b.id == 30)
    assert (bus30.p_kw, bus30.q_kvar) == (200.0, 600.0)
    t = topology(case)
    assert t.root == 1 and t.children[1] == (2,) and set(t.children[2]) == {3, 19}
    assert case.z_base_ohm == pytest.approx(12.66**2)


# ---- base-case power flow --------------------------------------------------------------------------------------------
def test_sweep_power_flow_reproduces_the_published_base_case(case):
    pf = power_flow(case)
    pub = case.published
    assert pf.loss_kw == pytest.approx(pub.loss_kw, abs=0.01)  # 202.677 kW; published 202.67 kW
    bus, vmin = pf.min_voltage()
    assert bus == pub.v_min_bus == 18
    assert vmin == pytest.approx(pub.v_min_pu, abs=5e-5)  # 0.91309 pu; published 0.9131 pu
    # the substation supplies load plus losses
    assert pf.p_grid * 1e3 == pytest.approx(3715.0 + pf.loss_kw, abs=1e-6)
    assert pf.q_grid * 1e3 == pytest.approx(2300.0 + pf.q_loss_kvar, abs=1e-6)
    # no load, no flow, no loss
    empty = power_flow(case, load_scale=0.0)
    assert empty.loss_kw == 0.0 and empty.min_voltage()[1] == pytest.approx(1.0)


def test_ipopt_solves_the_same_distflow_rows_at_fixed_injections(case):
    from poso_sim.nlp import compile_nlp
    from poso_sim.solvers import IpoptBackend

    m = build_power_flow_model(case)
    nlp = compile_nlp(m, expressions=("loss_kw",))
    assert nlp.n == nlp.m == 2 + 4 * 32  # square: P, Q, l, v per line and the substation injection
    res = IpoptBackend().solve(nlp, nlp.x0)  # flat start
    assert res.status == "optimal"
    assert nlp.expr("loss_kw", res.x) == pytest.approx(202.677, abs=1e-3)
    nlp.load_into_model(res.x)
    v = {j: pyo.value(m.v[j, 0]) for j in m.LINES}
    sweep = power_flow(case)
    assert max(abs(v[j] - sweep.v[j]) for j in v) < 1e-8
    assert min(v, key=v.get) == 18


# ---- bad input -------------------------------------------------------------------------------------------------------
def _error_of(tmp_path: Path, raw: dict, mutate) -> str:
    data = copy.deepcopy(raw)
    mutate(data)
    p = tmp_path / "feeder.json"
    p.write_text(json.dumps(data))
    with pytest.raises(CaseError) as info:
        load_case(p)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("feeder.json: ")
    return msg


def _set(path, value):
    def mutate(d):
        *head, last = path
        for k in head:
            d = d[k]
        d[last] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (_set(["lines", 4, "to"], 99), "lines[4].to: unknown bus 99"),
        (_set(["lines", 4, "r_ohm"], -1.0), "lines[4].r_ohm: input should be greater than 0 (got -1.0)"),
        (_set(["lines", 20, "to"], 5), "lines[20].to: bus 5 is fed by two lines"),
        (_set(["lines", 1, "to"], 1), "lines[1].to: a line into the substation bus 1"),
        (_set(["lines", 0, "to"], 1), "lines[0]: a line from bus 1 to itself"),
        (_set(["substation", "bus"], 77), "substation.bus: unknown bus 77"),
        (_set(["dispatch", "profiles", "load"], [1.0] * 23), "dispatch.profiles.load: list should have at least 24"),
        (_set(["dispatch", "tampered", "unit"], "DG9"), "dispatch.tampered.unit: unknown generator 'DG9'"),
        (_set(["dispatch", "battery", "soc_initial"], 0.95), "dispatch.battery.soc_initial: 0.95 outside [0.1, 0.9]"),
        (_set(["dispatch", "generators", 0, "bus"], 40), "dispatch.generators[0].bus: unknown bus 40"),
        (_set(["dispatch", "voltage_min_pu"], 1.1), "dispatch.voltage_min_pu: 1.1 not below voltage_max_pu"),
        (_set(["buses", 3, "colour"], "red"), "buses[3].colour: unknown field"),
    ],
)
def test_bad_feeder_files_give_one_line_naming_the_field(tmp_path, raw, mutate, expected):
    assert expected in _error_of(tmp_path, raw, mutate)


def test_a_loop_or_an_unfed_bus_is_named(tmp_path, raw):
    def loop(d):  # bus 3 fed from bus 4, which is fed from 3
        d["lines"][1]["from"] = 4

    assert "lies on a loop" in _error_of(tmp_path, raw, loop)

    def orphan(d):
        d["lines"].pop(31)  # bus 33 loses its line

    assert "buses[32]: bus 33 is not fed by any line" in _error_of(tmp_path, raw, orphan)


def test_unreadable_files(tmp_path):
    with pytest.raises(CaseError, match=r"^missing.json: file not found"):
        load_case(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  oops")
    with pytest.raises(CaseError, match=r"^bad.json: line 2 column 3: invalid JSON"):
        load_case(bad)


def test_builder_rejects_bad_arguments(case):
    with pytest.raises(ValueError, match="unknown model variant 'sneaky'"):
        build_model(case, "sneaky")
    for days in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="days: expected a positive integer"):
            build_model(case, days=days)


# ---- the dispatch NLP ------------------------------------------------------------------------------------------------
def test_model_structure_and_horizon_tiling(case):
    from poso_sim.nlp import compile_nlp

    one = compile_nlp(build_model(case), expressions=COST_EXPRESSIONS)
    two = compile_nlp(build_model(case, days=2), expressions=COST_EXPRESSIONS)
    per_hour = 4 * 32 + 2 + 2 * 3 + 3  # P, Q, l, v per line; grid P, Q; DG P, Q; battery ch, dis, E
    assert one.n == HOURS * per_hour and two.n == 2 * one.n
    # rows per hour: P/Q balance, voltage drop, current per line, the two root balances, the battery; one end row
    assert one.m == HOURS * (4 * 32 + 2 + 1) + 1 and two.m == 2 * HOURS * (4 * 32 + 2 + 1) + 1
    # the battery carries over midnight: hour 24 follows hour 23, only the horizon's end is pinned
    m2 = build_model(case, days=2)
    assert "E[23]" in str(m2.SOC[24].body)
    assert m2.SOCEnd.body.polynomial_degree() == 1 and "E[47]" in str(m2.SOCEnd.body)
    # the current equation is the exact (nonconvex) equality
    assert m2.Current[5, 0].equality and m2.Current[5, 0].body.polynomial_degree() == 2
    # deterministic: a second build compiles to the same fingerprint
    again = compile_nlp(build_model(case), expressions=COST_EXPRESSIONS)
    assert again.fingerprint == one.fingerprint


def _solve(model, expressions=COST_EXPRESSIONS):
    from poso_sim.nlp import Solution, compile_nlp
    from poso_sim.solvers import IpoptBackend

    nlp = compile_nlp(model, expressions=expressions)
    r = IpoptBackend().solve(nlp, nlp.x0)  # from the model's initial values
    sol = Solution(
        x=r.x,
        y=r.y,
        z_L=r.z_L,
        z_U=r.z_U,
        x_names=nlp.x_names,
        row_names=nlp.row_names,
        variant=model.variant,
        case="ieee33",
        cost=nlp.expr("true_cost", r.x),
        objective=r.objective,
        status=r.status,
        iterations=r.iterations,
        solve_seconds=r.seconds,
        fingerprint=nlp.fingerprint,
    )
    return nlp, sol


@pytest.fixture(scope="module")
def solved(case):
    out = {}
    for variant in ("true", "tampered", "feasible"):
        m = build_model(case, variant)
        nlp, sol = _solve(m)
        out[variant] = (m, nlp, sol)
    return out


# Recorded optimum of the packaged case (Ipopt 3.14, tol 1e-8, from the model's initial values).
OPTIMUM_COST = 4471.4111
TAMPERED_TRUE_COST = 4670.5859
FEASIBLE_COST = 4547.9038


@pytest.mark.solver
def test_true_dispatch_optimum(solved, case):
    m, nlp, sol = solved["true"]
    assert sol.status == "optimal" and sol.iterations < 200
    assert sol.cost == pytest.approx(OPTIMUM_COST, abs=1e-3)
    nlp.load_into_model(sol.x)
    parts = {k: pyo.value(getattr(m, k)) for k in ("cost_grid", "cost_dg", "cost_battery")}
    assert parts["cost_grid"] == pytest.approx(2295.872, abs=1e-2)
    assert parts["cost_dg"] == pytest.approx(2165.286, abs=1e-2)
    assert sum(parts.values()) == pytest.approx(sol.cost, rel=1e-12)
    kw = lambda var: 1e3 * case.base_mva * pyo.value(var)  # noqa: E731
    # evening peak (hour 18, price 110 $/MWh): every DG at its limit, the battery discharging at full power
    assert [kw(m.P_dg[g, 18]) for g in ("DG1", "DG2", "DG3")] == pytest.approx([800.0, 1000.0, 800.0], abs=1e-3)
    assert kw(m.P_dis[18]) == pytest.approx(400.0, abs=1e-3) and kw(m.P_grid[18]) == pytest.approx(740.228, abs=1e-2)
    # night (hour 3, 32 $/MWh): DGs off, the battery charging from the grid
    assert max(kw(m.P_dg[g, 3]) for g in m.G) < 1e-3
    assert kw(m.P_ch[3]) == pytest.approx(287.199, abs=1e-2)
    # limits hold and the exact branch-flow equality holds at the optimum (no relaxation gap)
    v = np.array([pyo.value(m.v[j, t]) for j in m.LINES for t in m.T])
    assert v.min() >= 0.95**2 - 1e-8 and v.max() <= 1.05**2 + 1e-8
    parent = topology(case).parent

    def v_at(bus, t):
        return 1.0 if bus == 1 else pyo.value(m.v[bus, t])  # the substation is held at 1.0 pu

    gap = max(
        abs(pyo.value(m.l[j, t]) * v_at(parent[j], t) - pyo.value(m.P[j, t]) ** 2 - pyo.value(m.Q[j, t]) ** 2)
        for j in m.LINES
        for t in m.T
    )
    assert gap < 1e-9
    # the voltage limit binds at bus 18 somewhere in the day (the DGs and the battery keep it at 0.95 pu)
    assert min(pyo.value(m.v[18, t]) for t in m.T) == pytest.approx(0.95**2, abs=1e-7)


@pytest.mark.solver
def test_variants_change_the_plan(solved, case):
    _, true_nlp, true = solved["true"]
    mt, nlp_t, tampered = solved["tampered"]
    mf, nlp_f, feasible = solved["feasible"]
    assert tampered.status == feasible.status == "optimal"
    assert nlp_t.n == true_nlp.n and nlp_t.m == true_nlp.m and nlp_f.m == true_nlp.m + HOURS
    assert tampered.cost == pytest.approx(TAMPERED_TRUE_COST, abs=1e-3)
    assert feasible.cost == pytest.approx(FEASIBLE_COST, abs=1e-3)
    unit = case.dispatch.tampered.unit
    idx = true_nlp.var_indices("P_dg")
    names = [true_nlp.x_names[i] for i in idx]
    mine = [i for i, n in zip(idx, names) if f"[{unit}," in n]
    assert tampered.x[mine].sum() > true.x[mine].sum() + 1.0  # > 1 MWh more from the favoured unit
    forced = [i for i, n in zip(idx, names) if f"[{case.dispatch.feasible.unit}," in n]
    assert feasible.x[forced].min() >= 0.5 - 1e-8


# ---- the KKT certificate ---------------------------------------------------------------------------------------------
@pytest.mark.solver
def test_certificate_accepts_the_optimum_and_rejects_the_dishonest_plans(solved):
    from poso_sim.kkt import to_shared, verify

    _, true_nlp, honest = solved["true"]
    cert = verify(true_nlp, honest, claimed_digest=honest.digest)
    assert cert.accepted, cert.reasons
    assert cert.primal_residual < 1e-7 and cert.dual_residual < 1e-7
    assert cert.cost == pytest.approx(OPTIMUM_COST, abs=1e-3)

    for variant, first in (("tampered", "stationarity"), ("feasible", "stationarity")):
        _, own, sol = solved[variant]
        plan = to_shared(sol, true_nlp, own)
        assert plan.fingerprint == true_nlp.fingerprint and plan.m == true_nlp.m
        cert = verify(true_nlp, plan)
        assert not cert.accepted
        assert cert.reasons[0].startswith(first), cert.reasons
        assert cert.primal_residual < 1e-7  # the plan is feasible; it is just not optimal

    # the honest optimum sent with forged multipliers (the tampered plan's): they fail as sent, but the verdict is
    # the point's - valid multipliers exist and are recomputed from x
    from poso_sim.kkt import Tolerances

    _, _, tampered = solved["tampered"]
    forged = honest.with_multipliers(y=tampered.y, z_L=tampered.z_L, z_U=tampered.z_U)
    assert not verify(true_nlp, forged, Tolerances(decide=False)).accepted
    cert = verify(true_nlp, forged)
    assert cert.accepted and cert.found_multipliers, (cert.reasons, cert.decision)
    assert cert.decided_by in ("recomputed", "local-lp")


@pytest.mark.solver
def test_a_delegate_verifies_on_the_registered_problem(solved):
    """The plan of a leader that compiled the model itself is certified on the copy the registry gives a delegate."""
    from poso_sim.kkt import to_shared, verify
    from poso_sim.nlp.problems import load_problem

    _, nlp, honest = solved["true"]
    mine = load_problem("ieee33").nlp
    assert mine.fingerprint == nlp.fingerprint
    assert verify(mine, honest).accepted
    _, own, tampered = solved["tampered"]
    assert not verify(mine, to_shared(tampered, mine, own)).accepted
