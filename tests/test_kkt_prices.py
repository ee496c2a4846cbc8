"""Priced rows in the certificate (poso_sim.kkt.prices), on a toy market of three hubs: the prices are checked,
not only the point; where prices are degenerate their interval and the settlement rule; a hub's own check."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pe
import pytest

from poso_sim.errors import ProblemError
from poso_sim.kkt import Tolerances, verify
from poso_sim.kkt.check import KKTChecker
from poso_sim.kkt.prices import analyse
from poso_sim.kkt.proposal import own_check, settle
from poso_sim.nlp import compile_nlp
from poso_sim.protocol import Verdict
from poso_sim.nlp.problems import ProblemDefinition, load_problem, register_problem
from poso_sim.solvers import IpoptBackend, Solution

HUBS = (1, 2, 3)
ZONE = {1: 1, 2: 1, 3: 2}
PRICED = ("elec_balance", "heat_balance", "gas_balance")
BASE = {
    "tariff": 0.6, "grid_cap": 200.0, "gas_price": 0.3, "heat_price": {1: 0.25, 2: 0.28}, "heat_cap": {1: 120.0, 2: 80.0},
    "load_e": {1: 40.0, 2: 25.0, 3: 30.0}, "load_h": {1: 60.0, 2: 50.0, 3: 55.0},
    "chp_cap": {1: 30.0, 2: 20.0, 3: 25.0}, "chp_gas": (2.0, 0.05), "hp_cap": {1: 5.0, 2: 4.0, 3: 6.0}, "cop": 3.0,
    "plant_cap": {1: 10.0, 2: 8.0, 3: 12.0}, "plant_cost": {1: (0.01, 0.5), 2: (0.012, 0.52), 3: (0.008, 0.55)},
}
#: The grid's cap equals the hubs' fixed electricity demand (no converter pays at prices near the tariff): the grid
#: sits exactly at the edge of its band, and the electricity price may be anything from the tariff (0.6) up to the
#: cheapest alternative, the CHPs' marginal cost at zero output (0.3 * 3 - 1.2 * 0.15 = 0.72).
EDGE = {**BASE, "grid_cap": 95.0, "heat_price": {1: 0.15, 2: 0.15}, "chp_gas": (3.0, 0.05),
        "plant_cost": {1: (0.01, 0.9), 2: (0.01, 1.0), 3: (0.01, 1.1)}}


def hub_block(b: pe.Block, h: int, d: dict, price_params: bool) -> None:
    """One hub's own components: its purchases, CHP, heat pump and plant, its buses. ``price_params``: the hub's
    best-response objective at given prices (parameters), for its own check."""
    b.G = pe.Var(bounds=(0, None), initialize=10)  # gas bought
    b.E = pe.Var(bounds=(-50, 100), initialize=10)  # electricity bought (negative: sold)
    b.Q = pe.Var(bounds=(-30, 100), initialize=10)  # heat bought from the zone
    b.P_chp = pe.Var(bounds=(0, d["chp_cap"][h]), initialize=1)
    b.P_hp = pe.Var(bounds=(0, d["hp_cap"][h]), initialize=1)
    b.P_pl = pe.Var(bounds=(0, d["plant_cap"][h]), initialize=1)
    a, q = d["chp_gas"]
    b.gas = pe.Constraint(expr=b.G - a * b.P_chp - q * b.P_chp**2 == 0)
    b.elec_bus = pe.Constraint(expr=b.E + b.P_chp + b.P_pl - b.P_hp == d["load_e"][h])
    b.heat_bus = pe.Constraint(expr=b.Q + 1.2 * b.P_chp + d["cop"] * b.P_hp == d["load_h"][h])
    pb, pc = d["plant_cost"][h]
    b.own_cost = pe.Expression(expr=pb * b.P_pl**2 + pc * b.P_pl)
    if price_params:
        b.p_gas = pe.Param(mutable=True, initialize=0.0)
        b.p_elec = pe.Param(mutable=True, initialize=0.0)
        b.p_heat = pe.Param(mutable=True, initialize=0.0)
        b.obj = pe.Objective(expr=b.own_cost + b.p_gas * b.G + b.p_elec * b.E + b.p_heat * b.Q)


def market(d: dict) -> pe.ConcreteModel:
    """The centralised problem: every hub, the grid, the zone heat sources, the gas supply; the balances' multipliers
    are the prices (Ipopt's convention, rows written as demand - supply = 0)."""
    m = pe.ConcreteModel()
    m.hub = pe.Block(HUBS, rule=lambda b, h: hub_block(b, h, d, False))
    m.grid = pe.Var(bounds=(0, d["grid_cap"]), initialize=50)
    m.source = pe.Var((1, 2), bounds=lambda _m, z: (0, d["heat_cap"][z]), initialize=10)
    m.gas_supply = pe.Var(bounds=(0, None), initialize=10)
    m.elec_balance = pe.Constraint(expr=sum(m.hub[h].E for h in HUBS) - m.grid == 0)
    m.heat_balance = pe.Constraint((1, 2), rule=lambda m, z: sum(m.hub[h].Q for h in HUBS if ZONE[h] == z) - m.source[z] == 0)
    m.gas_balance = pe.Constraint(expr=sum(m.hub[h].G for h in HUBS) - m.gas_supply == 0)
    m.obj = pe.Objective(expr=d["tariff"] * m.grid + sum(d["heat_price"][z] * m.source[z] for z in (1, 2))
                         + d["gas_price"] * m.gas_supply + sum(m.hub[h].own_cost for h in HUBS))
    return m


def hub_model(d: dict, h: int) -> pe.ConcreteModel:
    """Hub ``h``'s own best-response problem, the prices as parameters: all the hub knows."""
    m = pe.ConcreteModel()
    hub_block(m, h, d, True)
    return m


def definition(d: dict) -> ProblemDefinition:
    return ProblemDefinition(build=lambda _data, _v: market(d), priced_rows=PRICED, description="toy market")


register_problem("toy-market", definition(BASE), replace=True)
register_problem("toy-market-edge", definition(EDGE), replace=True)


def solve(nlp) -> Solution:
    r = IpoptBackend().solve(nlp, nlp.x0, options={"tol": 1e-10})
    assert r.status == "optimal"
    return Solution(x=r.x, y=r.y, z_L=r.z_L, z_U=r.z_U, x_names=nlp.x_names, row_names=nlp.row_names, variant="true",
                    case="toy", cost=nlp.f(r.x), objective=r.objective, status=r.status, fingerprint=nlp.fingerprint)


def row(nlp, name: str) -> int:
    return nlp.row_names.index(name)


@pytest.fixture(scope="module")
def base():
    nlp = load_problem("toy-market", disk_cache=False).nlp
    sol = solve(nlp)
    return nlp, sol, settle(nlp, sol)


@pytest.fixture(scope="module")
def edge():
    nlp = load_problem("toy-market-edge", disk_cache=False).nlp
    sol = solve(nlp)
    return nlp, sol, settle(nlp, sol)


def shifted(nlp, sol: Solution, name: str, factor: float) -> Solution:
    y = np.array(sol.y)
    y[row(nlp, name)] *= factor
    return sol.with_multipliers(y=y)


# ------------------------------------------------------------------------------------------------ priced rows
def test_priced_rows_reach_the_compiled_problem(base) -> None:
    nlp, _, _ = base
    assert nlp.priced_rows == PRICED
    chk = KKTChecker(nlp)
    assert [nlp.row_names[i] for i in chk.priced] == ["elec_balance", "heat_balance[1]", "heat_balance[2]",
                                                      "gas_balance"]
    with pytest.raises(ProblemError, match="'nope' names no row"):
        KKTChecker(type("P", (), {**{k: getattr(nlp, k) for k in ("n", "m", "jac_structure", "x_lb", "x_ub",
                                                                      "g_lb", "g_ub", "x_names", "row_names")},
                                  "priced_rows": ("nope",)})())
    with pytest.raises(ProblemError, match="priced_rows"):
        ProblemDefinition(build=lambda d, v: None, priced_rows=("",))


def test_unique_prices_are_the_marginal_costs(base) -> None:
    nlp, sol, proposal = base
    y = proposal.y
    # grid and heat sources inside their caps, gas unlimited: each price is its supplier's marginal cost
    assert y[row(nlp, "elec_balance")] == pytest.approx(0.6, abs=1e-6)
    assert y[row(nlp, "heat_balance[1]")] == pytest.approx(0.25, abs=1e-6)
    assert y[row(nlp, "heat_balance[2]")] == pytest.approx(0.28, abs=1e-6)
    assert y[row(nlp, "gas_balance")] == pytest.approx(0.3, abs=1e-6)
    # the solver's own prices are the settlement prices up to the intervals' width (a few tol.dual)
    for r in verify(nlp, sol).prices["rows"]:
        assert r["high"] - r["low"] < 4 * Tolerances().dual
        assert r["ok"]


def test_honest_proposal_accepted_with_its_prices(base) -> None:
    nlp, sol, proposal = base
    for plan in (sol, proposal):
        c = verify(nlp, plan)
        assert c.accepted, c.reasons
        assert c.prices["status"] == "optimal" and c.prices["rule"] == "midpoint"
        assert [r["name"] for r in c.prices["rows"]] == ["elec_balance", "heat_balance[1]", "heat_balance[2]",
                                                         "gas_balance"]
    assert verify(nlp, proposal, Tolerances().scaled(0.1)).accepted


@pytest.mark.parametrize("name", ["elec_balance", "heat_balance[1]", "heat_balance[2]", "gas_balance"])
@pytest.mark.parametrize("factor", [1.01, 0.99, 1.1, 0.9, 1.0001])
def test_optimal_allocation_with_shifted_prices_rejected(base, name, factor) -> None:
    nlp, _, proposal = base
    c = verify(nlp, shifted(nlp, proposal, name, factor))
    assert not c.accepted and c.decided_by == "price"
    assert any(r.startswith(f"price: {name} proposed") and "outside the valid interval" in r for r in c.reasons)
    # the point alone is a KKT point: the dispatch's certificate (no priced rows) accepts the same claim
    plain = KKTChecker(nlp)
    plain.priced = plain.priced[:0]
    assert plain.verify(shifted(nlp, proposal, name, factor)).accepted


def test_prices_within_tolerance_but_not_admissible_rejected(base) -> None:
    """A price within tol.price of its settlement value, held fixed, leaves a stationarity residual above the
    tolerance: the second half of the stage (no other multipliers can make up for it)."""
    nlp, _, proposal = base
    tol = Tolerances(price=1e-3)
    bad = shifted(nlp, proposal, "elec_balance", 1.0005)
    c = verify(nlp, bad, tol)
    assert not c.accepted and c.decided_by == "price"
    assert any("held fixed, admit no multipliers" in r for r in c.reasons)


def test_other_multipliers_are_free_but_prices_are_not(base) -> None:
    """Only the priced rows are judged as sent: the rest may be zeros (the certificate finds its own)."""
    nlp, _, proposal = base
    y = np.zeros_like(proposal.y)
    idx = KKTChecker(nlp).priced
    y[idx] = proposal.y[idx]
    zeros = proposal.with_multipliers(y=y, z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n))
    c = verify(nlp, zeros)
    assert c.accepted and c.found_multipliers
    assert c.prices["admissible"] in ("sanitised", "recomputed", "local-lp")
    no_prices = proposal.with_multipliers(y=np.zeros_like(proposal.y))
    assert not verify(nlp, no_prices).accepted


# ------------------------------------------------------------------------------------------------ degenerate prices
def test_edge_interval_and_settlement(edge) -> None:
    nlp, sol, proposal = edge
    c = verify(nlp, proposal)
    assert c.accepted, c.reasons
    rows = {r["name"]: r for r in c.prices["rows"]}
    e = rows["elec_balance"]
    # the intervals are those of half the tolerances: a few tau wider than the exact ones (complementarity lets
    # a bound multiplier 1e-9 from its bound carry some of a column's residual)
    tau = Tolerances().dual / 2
    assert e["low"] == pytest.approx(0.6, abs=1e-4) and e["high"] == pytest.approx(0.72, abs=1e-4)
    assert e["settlement"] == pytest.approx(0.66, abs=1e-4)
    assert proposal.y[row(nlp, "elec_balance")] == pytest.approx(e["settlement"], abs=1e-12)
    for z in ("heat_balance[1]", "heat_balance[2]"):
        assert rows[z]["high"] - rows[z]["low"] < 4 * tau
    # no gas is bought: its price may be anything up to the supplier's 0.3 that keeps the CHPs off at the
    # electricity price, 3 p_gas >= p_elec + 1.2 * 0.15: from 0.26 (p_elec = 0.6). The midpoints (0.66, 0.28)
    # are valid together (3 * 0.28 = 0.66 + 0.18): they are the settlement prices
    assert c.prices["joint"] is True
    v = Verdict.from_certificate(c)
    assert v.accepted and [p[0] for p in v.prices] == list(rows)
    assert v.prices[0][1:] == (e["low"], e["high"], e["settlement"])
    assert Verdict.from_certificate(verify(*edge[:2])).prices == v.prices  # a function of the point
    g = rows["gas_balance"]
    assert (g["low"], g["high"]) == pytest.approx((0.26, 0.3), abs=1e-4)
    assert (g["given_low"], g["given_high"]) == (g["low"], g["high"])
    assert g["settlement"] == pytest.approx(0.28, abs=1e-4)


def test_edge_sequential_midpoints(edge, monkeypatch) -> None:
    """Where the midpoints are not valid together the rule takes them in row order, each given the earlier
    settlement prices: given electricity at 0.66, gas may be 0.28 to 0.3, so it settles at 0.29."""
    import poso_sim.kkt.prices as prices

    nlp, _, proposal = edge
    monkeypatch.setattr(prices, "_jointly_valid", lambda *a: False)
    chk = KKTChecker(nlp)  # a fresh checker: no analysis kept for the point
    ana = analyse(chk, proposal.x, chk.evaluate(proposal.x), Tolerances())
    g = {r.name: r for r in ana.rows}["gas_balance"]
    assert (g.low, g.high) == pytest.approx((0.26, 0.3), abs=1e-4)
    assert (g.given_low, g.given_high) == pytest.approx((0.28, 0.3), abs=1e-4)
    assert g.settlement == pytest.approx(0.29, abs=1e-4)
    assert ana.rows[0].settlement == pytest.approx(0.66, abs=1e-4)


@pytest.mark.parametrize("end", ["low", "high"])
def test_edge_leader_picking_an_end_rejected(edge, end) -> None:
    nlp, _, proposal = edge
    chk = KKTChecker(nlp)
    ana = analyse(chk, proposal.x, chk.evaluate(proposal.x), Tolerances())
    e = ana.rows[0]
    y = np.array(proposal.y)
    y[row(nlp, "elec_balance")] = e.low + 1e-4 if end == "low" else e.high - 1e-4
    c = verify(nlp, proposal.with_multipliers(y=y))
    assert not c.accepted and c.decided_by == "price"
    assert any("inside the valid interval" in r for r in c.reasons)


def test_edge_solver_prices_are_valid_but_not_the_settlement(edge) -> None:
    """Ipopt's own price lies inside the interval (the point is fine) but is not the settlement price: the leader
    must send :func:`settle`'s proposal."""
    nlp, sol, proposal = edge
    p = sol.y[row(nlp, "elec_balance")]
    assert 0.6 - 1e-6 < p < 0.72 + 1e-6 and abs(p - 0.66) > 1e-3  # Ipopt lands near the tariff's end
    c = verify(nlp, sol)
    assert not c.accepted and c.decided_by == "price"
    assert verify(nlp, proposal).accepted


# ------------------------------------------------------------------------------------------------ a hub's own check
def _own(d: dict, h: int, prices: dict[str, float]):
    nlp = compile_nlp(hub_model(d, h))
    return nlp.with_data(prices)


@pytest.mark.parametrize("h", HUBS)
def test_hub_own_check_at_the_proposed_prices(base, h) -> None:
    nlp, _, proposal = base
    y = proposal.y
    prices = {"p_gas": y[row(nlp, "gas_balance")], "p_elec": y[row(nlp, "elec_balance")],
              "p_heat": y[row(nlp, f"heat_balance[{ZONE[h]}]")]}
    own = _own(BASE, h, prices)
    x_own = [proposal.x[nlp.x_names.index(f"hub[{h}].{v}")] for v in own.x_names]
    c = own_check(own, x_own)
    assert c.accepted, c.reasons
    # at prices 10 % off, the same allocation is not the hub's best response
    wrong = own.with_data({**prices, "p_elec": prices["p_elec"] * 1.1})
    c2 = own_check(wrong, x_own)
    assert not c2.accepted


@pytest.mark.parametrize("seed", range(3))
def test_prices_property_inside_tolerance_accepted_outside_interval_rejected(base, edge, seed) -> None:
    """Random price vectors around the settlement prices: each price within a tenth of tol.price of its
    settlement price is accepted (if all are); any price outside its valid interval is rejected, by the stage
    price, naming that row; the point alone stays acceptable to the dispatch's certificate."""
    rng = np.random.default_rng(seed)
    tol = Tolerances()
    for nlp, _sol, proposal in (base, edge):
        idx = KKTChecker(nlp).priced
        rows = {r["name"]: r for r in verify(nlp, proposal).prices["rows"]}
        for _ in range(4):
            y = np.array(proposal.y)
            close = rng.uniform(-0.1, 0.1, idx.size) * tol.price * np.maximum(1.0, np.abs(y[idx]))
            y[idx] += close
            assert verify(nlp, proposal.with_multipliers(y=y)).accepted
            k = int(rng.integers(idx.size))
            r = rows[nlp.row_names[idx[k]]]
            side = rng.choice([-1.0, 1.0])
            y[idx[k]] = (r["high"] if side > 0 else r["low"]) + side * rng.uniform(1e-4, 0.05)
            c = verify(nlp, proposal.with_multipliers(y=y))
            assert not c.accepted and c.decided_by == "price"
            assert any(x.startswith(f"price: {r['name']} proposed") and "outside" in x for x in c.reasons)
