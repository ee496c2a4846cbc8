"""The one-height market on the trading case (issue 20): the certificate checks the prices of the centralised
clearing; the packaged trading-poso scenarios end as documented; the market's outcome (prices, payments, the hubs'
own checks)."""

from __future__ import annotations

import numpy as np
import pytest

from poso_sim.kkt import checker_for, verify
from poso_sim.kkt.proposal import settle
from poso_sim.nlp.problems import load_problem
from poso_sim.protocol import Rejected, Verified
from poso_sim.scenarios.market import MarketPayloads, market_summary
from poso_sim.scenarios.model import packaged_scenarios
from poso_sim.scenarios.runner import run_scenario
from poso_sim.solvers.api import solve_case

PRICED = ["elec_balance", "heat_balance[1]", "heat_balance[2]", "heat_balance[3]"]
#: the hour-12 clearing prices (docs/cases/trading.md)
HOUR12 = {"elec_balance": 619.17, "heat_balance[1]": 206.10, "heat_balance[2]": 176.36, "heat_balance[3]": 201.96}


@pytest.fixture(scope="module")
def trading():
    nlp = load_problem("trading").nlp
    raw = {b: solve_case(case="trading", variant="true", backend=b, cache=True) for b in ("casadi", "cyipopt")}
    return nlp, raw


def _idx(nlp) -> list[int]:
    return [nlp.row_names.index(r) for r in PRICED]


def test_trading_declares_its_balances_as_priced(trading) -> None:
    nlp, _ = trading
    assert nlp.priced_rows == ("elec_balance", "heat_balance")
    assert [nlp.row_names[i] for i in checker_for(nlp).priced] == PRICED


@pytest.mark.parametrize("backend", ["casadi", "cyipopt"])
def test_honest_proposals_of_both_backends_accepted(trading, backend) -> None:
    nlp, raw = trading
    sol = raw[backend]
    for plan in (sol, settle(nlp, sol)):
        c = verify(nlp, plan)
        assert c.accepted, c.reasons
        got = {r["name"]: r for r in c.prices["rows"]}
        for row, p in HOUR12.items():
            assert got[row]["settlement"] == pytest.approx(p, abs=0.01)
            assert got[row]["high"] - got[row]["low"] < 1e-2  # unique prices at hour 12


@pytest.mark.parametrize("row", PRICED + ["all"])
@pytest.mark.parametrize("factor", [1.01, 0.99])
def test_optimal_allocation_with_prices_shifted_by_one_percent_rejected(trading, row, factor) -> None:
    nlp, raw = trading
    honest = settle(nlp, raw["casadi"])
    y = np.array(honest.y)
    idx = _idx(nlp) if row == "all" else [nlp.row_names.index(row)]
    y[idx] *= factor
    c = verify(nlp, honest.with_multipliers(y=y))
    assert not c.accepted and c.decided_by == "price"
    assert all(r.startswith("price: ") for r in c.reasons)
    assert len(c.reasons) == len(idx)


# ------------------------------------------------------------------------------------------------ scenarios
SCENARIOS = {
    "trading-poso-price-up-1": "price",
    "trading-poso-price-down-1": "price",
    "trading-poso-price-up-10": "price",
    "trading-poso-price-down-10": "price",
    "trading-poso-other-hour": "price",
    "trading-poso-favour": "stationarity",
    "trading-poso-interval-end": "price",
}


def test_market_scenarios_are_packaged() -> None:
    names = packaged_scenarios()
    assert {"trading-poso", *SCENARIOS} <= set(names)


@pytest.fixture(scope="module")
def honest_run():
    return run_scenario("trading-poso")


def test_trading_poso_decides_in_one_height_at_the_centralised_prices(honest_run) -> None:
    res = honest_run
    ex = res.executed
    assert ex["round"] == 1 and ex["label"] == "optimal" and ex["agreement"] and ex["votes"] == 5
    assert all(res.decisions[d][1]["round"] == 1 for d in res.delegates)
    m = market_summary(MarketPayloads("trading"), ex["digest"])
    for row, p in HOUR12.items():
        assert m["prices"][row] == pytest.approx(p, abs=0.01)
        # the settlement prices are the centralised problem's multipliers (unique here: to the interval's width)
        assert m["prices"][row] == pytest.approx(m["centralised_multipliers"][row], rel=1e-5)
    assert m["total_cost"] == pytest.approx(m["centralised_cost"], rel=1e-12)
    # every hub's allocation is its own best response at the decided prices, checked on its own model
    assert all(c["accepted"] for c in m["hub_checks"].values()) and len(m["hub_checks"]) == 12
    # payments: purchases at the prices; hub 5 and hub 1 sell electricity (they are paid)
    b = m["purchases"]["3"]
    gas = 318.0  # the hour-12 gas tariff
    assert m["payments"]["3"] == pytest.approx(gas * b["gas"] + m["prices"]["elec_balance"] * b["elec"]
                                               + m["prices"]["heat_balance[1]"] * b["heat"])
    assert m["payments"]["5"] < 0 and m["payments"]["1"] < 0
    # the verdicts in the run log carry the price intervals
    v = [e.item.verdict for e in res.log if isinstance(e.item, Verified)]
    assert v and all(x.accepted and [p[0] for p in x.prices] == PRICED for x in v)


def test_market_reports_write_its_costs_in_rmb(honest_run) -> None:
    """The trading case's costs are in RMB: the text and HTML accounts of the run say so, not "$"."""
    from poso_sim.report import render_run

    cost = f"{honest_run.executed['true_cost']:.2f}"
    text = render_run(honest_run)
    assert f"({cost} RMB)" in text and " $)" not in text
    html = honest_run._repr_html_()
    assert f"{cost} RMB" in html and f"{cost} $" not in html


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_dishonest_market_leader_rejected_and_excluded(name) -> None:
    res = run_scenario(name)
    ex = res.executed
    assert ex["leader"] == "D" and ex["round"] == 2 and ex["label"] == "optimal" and ex["agreement"]
    assert res.excluded_by_honest() == ["C"]
    reasons = [r for e in res.log if isinstance(e.item, Rejected) and e.node in res.honest for r in e.item.reasons]
    assert reasons
    stage = SCENARIOS[name]
    if stage == "price":
        assert all(r.startswith("price: ") for r in reasons), reasons[:3]
    else:  # the favouring allocation is not a KKT point of the true problem: the point is rejected
        assert any(r.startswith("stationarity") for r in reasons) and not any(r.startswith("price") for r in reasons)


def test_interval_end_is_a_kkt_point_that_only_the_settlement_rule_rejects() -> None:
    src = MarketPayloads("trading-night")
    plans = src.prepare(["optimal", "interval_end"])
    nlp = load_problem("trading-night").nlp
    end = plans["interval_end"].solution
    c = verify(nlp, end)
    assert not c.accepted and c.decided_by == "price"
    assert any("inside the valid interval" in r for r in c.reasons)
    plain = type(checker_for(nlp))(nlp)
    plain.priced = plain.priced[:0]  # the dispatch's certificate: judges the point
    assert plain.verify(end).accepted
    # the degenerate hour: wide heat price intervals, the settlement prices are their (sequential) midpoints
    rows = {r["name"]: r for r in verify(nlp, plans["optimal"].solution).prices["rows"]}
    assert rows["heat_balance[1]"]["high"] - rows["heat_balance[1]"]["low"] > 100
    assert rows["heat_balance[1]"]["high"] == pytest.approx(206.1, abs=0.01)  # the zone's source price
    assert rows["elec_balance"]["high"] - rows["elec_balance"]["low"] < 0.01


def test_other_hour_and_favour_proposals() -> None:
    src = MarketPayloads("trading")
    plans = src.prepare(["optimal", "other_hour", "favour"])
    nlp = load_problem("trading").nlp
    opt, other, fav = (plans[k].solution for k in ("optimal", "other_hour", "favour"))
    assert np.array_equal(other.x, opt.x)
    i = nlp.row_names.index("elec_balance")
    assert other.y[i] == pytest.approx(615.09, abs=0.01)  # hour 13's electricity price
    # the favouring allocation costs more in truth, and hub 5's plant runs more
    assert fav.cost > opt.cost + 1.0
    k = [j for j, n in enumerate(nlp.x_names) if n.startswith("hub[5].")]
    assert not np.allclose(fav.x[k], opt.x[k])
    # a hub's own check sees what concerns it: the favoured allocation fails hub 5's check only (its true plant
    # cost), the optimal allocation at prices 1 % up fails every hub's (none is its best response there)
    checks = market_summary(src, plans["favour"].digest)["hub_checks"]
    assert [h for h, c in checks.items() if not c["accepted"]] == ["5"]
    up = src.prepare(["price_up_1"])["price_up_1"]
    assert not any(c["accepted"] for c in market_summary(src, up.digest)["hub_checks"].values())


# ------------------------------------------------------------------------------------------------ a whole day
def test_day_with_storage_decided_in_one_height() -> None:
    """The clearing of 24 hours with the hubs' storage: 96 prices proposed and verified in one height; storage
    moves energy between hours, so hour 12's prices differ from the single hour's (storage idle)."""
    from poso_sim.cases.trading import load_trading_case
    from poso_sim.cases.trading.day import storage_devices

    res = run_scenario("trading-poso-day")
    ex = res.executed
    assert ex["round"] == 1 and ex["label"] == "optimal" and ex["agreement"] and ex["votes"] == 5
    src = MarketPayloads("trading-day")
    m = market_summary(src, ex["digest"])
    assert len(m["prices"]) == 96 and m["price_gap"] < 1e-3
    p = m["prices"]
    day12 = (p["elec_balance[12]"], p["heat_balance[1,12]"], p["heat_balance[2,12]"], p["heat_balance[3,12]"])
    assert day12 == pytest.approx((623.81, 189.90, 173.61, 188.10), abs=0.01)
    # storage: stored heat is dearer by the retention 0.98 per hour (zone 1 charges through the night)
    assert p["heat_balance[1,2]"] / p["heat_balance[1,1]"] == pytest.approx(1 / 0.98, rel=1e-4)
    nlp = load_problem("trading-day").nlp
    x = dict(zip(nlp.x_names, src.prepare(["optimal"])["optimal"].solution.x))
    tc = load_trading_case()
    cool_16 = sum(x[f"hub[{h},16].flow[{d.out1}]"] for h, d in storage_devices(tc) if d.kind == "CS")
    assert cool_16 > 100  # cooling storage covers hour 16, infeasible on its own with storage idle
    v = [e.item.verdict for e in res.log if isinstance(e.item, Verified)]
    assert v and all(x.accepted and len(x.prices) == 96 for x in v)
    # each hub checks its day (flows and states of charge) on its own day model at the 96 prices
    assert len(m["hub_checks"]) == 12 and all(c["accepted"] for c in m["hub_checks"].values())


def test_market_labels_have_no_stub_plans() -> None:
    from poso_sim.errors import PosoError

    with pytest.raises(PosoError, match="no stub plan labelled 'price_up_1'.*real payloads"):
        run_scenario("trading-poso-price-up-1", payloads="stub")
