"""The packaged trading scenarios and their documented outcomes (docs/trading.md), bad trading scenario files,
determinism, and the safety property over random dishonest assignments."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from poso_sim.errors import ScenarioError
from poso_sim.protocol.market_messages import HubExcluded, MarketEnded, PricesAdopted, PricesComputed, Settled
from poso_sim.scenarios.model import packaged_scenarios, parse_scenario, resolve_scenario
from poso_sim.scenarios.trading_check import check_market, honest_hubs, random_assignment
from poso_sim.scenarios.trading_runner import run_trading
from poso_sim.scenarios.trading_schema import TradingScenario

from poso_sim.cases.trading import load_trading_case

CASE = load_trading_case()
_RUNS: dict[tuple[str, int | None], object] = {}


def run(name: str, seed: int | None = None):
    key = (name, seed)
    if key not in _RUNS:
        _RUNS[key] = run_trading(name, case=CASE, responder="stub", seed=seed)
    return _RUNS[key]


def adopted(res, hub):
    return {e.item.round: e.item.prices for e in res.log.of(PricesAdopted) if e.node == hub}


# --------------------------------------------------------------------------------------------- packaged runs
def test_three_shapes_are_packaged_with_an_honest_run_and_dishonest_variants():
    listed = packaged_scenarios()
    for n, dlg in (("trading-3", [4, 6, 8]), ("trading-5", [6, 7, 8]), ("trading-12", [10, 11, 12])):
        assert n in listed
        scn = resolve_scenario(n)
        assert isinstance(scn, TradingScenario) and scn.delegate_ids == dlg and not scn.behaviours
        assert len(scn.variants) >= 4
        assert all(v.behaviours for v in scn.variants.values())


@pytest.mark.parametrize("variant", ["price-liar", "price-silent", "broadcast-ignore", "demand-ignore-one"])
@pytest.mark.parametrize("shape", ["trading-3", "trading-12"])
def test_honest_hubs_follow_the_honest_price_path_round_by_round(shape, variant):
    honest, res = run(shape), run(f"{shape}:{variant}")
    assert honest.converged and res.converged and res.rounds == honest.rounds
    for h in honest_hubs(res.scenario):
        assert adopted(res, h) == adopted(honest, h), h           # the same prices, bit for bit, every round
    assert res.excluded_by_honest() == []
    assert check_market(res, honest)["safe"]


def test_a_lying_delegate_is_outvoted_two_to_one():
    res = run("trading-12:price-liar")
    votes = {e.item.votes for e in res.log.of(PricesAdopted)}
    assert votes == {2}                                    # the two honest delegates' triple, never the liar's
    honest = run("trading-12")
    assert res.path == honest.path


@pytest.mark.parametrize("shape", ["trading-3", "trading-5", "trading-12"])
@pytest.mark.parametrize("variant", ["equivocating-hub", "collusion"])
def test_an_equivocating_hub_is_excluded_with_proof_by_every_honest_delegate(shape, variant):
    res = run(f"{shape}:{variant}")
    scn = res.scenario
    liar = [h for h in scn.hub_names if h not in honest_hubs(scn)][0]
    for d in res.honest_delegates:
        ex = [e.item for e in res.log.of(HubExcluded) if e.node == d]
        assert [(x.hub, x.reason, x.evidence, x.round) for x in ex] == [(liar, "equivocation", True, 1)]
        assert ex[0].first != ex[0].second
    assert liar not in res.settled and res.converged
    assert check_market(res)["safe"]


@pytest.mark.parametrize("shape", ["trading-5", "trading-12"])
def test_a_silent_hub_is_excluded_after_silent_rounds_and_the_market_clears_without_it(shape):
    res = run(f"{shape}:silent-hub")
    scn = res.scenario
    silent = [h for h in scn.hub_names if h not in honest_hubs(scn)][0]
    for d in res.honest_delegates:
        ex = [e.item for e in res.log.of(HubExcluded) if e.node == d]
        assert [(x.hub, x.reason, x.evidence, x.round) for x in ex] == [(silent, "silent", False, scn.silent_rounds)]
        comps = [e.item for e in res.log.of(PricesComputed) if e.node == d]
        assert comps[0].hubs == len(scn.hub_names) - 1           # round 1: no demand of it to keep
        assert all(c.hubs == len(scn.hub_names) - 1 for c in comps)
    assert res.converged and check_market(res)["safe"]


def test_the_round_limit_ends_the_market_with_the_end_flag():
    scn = resolve_scenario("trading-5").with_(max_rounds=7)
    res = run_trading(scn, case=CASE, responder="stub")
    assert res.rounds == 7 and not res.converged
    assert {e.item.reason for e in res.log.of(MarketEnded)} == {"round limit"}
    assert {e.node: e.item.round for e in res.log.of(Settled)} == {h: 7 for h in res.hubs}
    assert res.to_json()["end"] == "round limit"


def test_same_seed_same_run_log_digest_and_another_seed_the_same_prices():
    a, b = run("trading-5:collusion"), run_trading("trading-5:collusion", case=CASE, responder="stub")
    assert a.log.digest() == b.log.digest() and a.trace_digest == b.trace_digest
    c = run("trading-5:collusion", seed=7)
    assert c.log.digest() != a.log.digest()                 # other latencies, other timestamps
    assert c.path == a.path                                 # the market's outcome does not depend on them


def test_settlement_prices_each_hubs_last_demand_at_the_final_prices():
    res = run("trading-12")
    j = res.to_json()
    assert set(j["final_prices"]) == {"gas", "elec", "heat"} and len(j["final_prices"]["heat"]) == 3
    for h, s in j["settlement"].items():
        assert s["settled"] and s["round"] == res.rounds
        assert s["payment"] == pytest.approx(sum(p * d for p, d in zip(s["prices"], s["demand"])))
        z = res.zones[h]
        assert s["prices"] == [j["final_prices"]["gas"], j["final_prices"]["elec"], j["final_prices"]["heat"][z - 1]]


# ------------------------------------------------------------------------------------ the real best responses
@pytest.fixture(scope="module")
def real():
    """The honest 12-hub market and its lying-delegate variant with the hubs' real best responses."""
    return {v: run_trading(f"trading-12{v}", case=CASE) for v in ("", ":price-liar")}


def test_the_real_12_hub_market_converges_and_a_lying_delegate_changes_no_honest_hubs_price(real):
    honest, liar = real[""], real[":price-liar"]
    assert honest.converged and 100 <= honest.rounds <= 200          # 137 rounds (docs/trading.md)
    assert honest.path[-1][0] == CASE.tariff(12)[0]                  # gas: the supplier's price
    assert liar.rounds == honest.rounds and liar.path == honest.path
    for h in honest_hubs(liar.scenario):
        assert adopted(liar, h) == adopted(honest, h)
    assert check_market(liar, honest)["safe"]


def test_the_iteration_ends_near_the_centralised_clearing(real):
    from poso_sim.report.trading import central_gap

    gap = central_gap(real[""], CASE)
    assert gap["available"] and gap["max_price"] < 0.05 and gap["max_demand"] < 0.5
    assert gap["clearing_prices"]["elec"] == pytest.approx(real[""].path[-1][1], abs=0.05)


def test_run_json_reports_rounds_prices_settlement(capsys, tmp_path):
    from poso_sim.cli import main

    assert main(["run", "trading-12:silent-hub", "--stub", "--json", "--trace", str(tmp_path / "t.jsonl")]) == 0
    j = json.loads(capsys.readouterr().out)
    sends = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert sum(1 for r in sends if r["ev"] == "send") == j["messages"]
    assert j["converged"] and j["rounds"] == len(j["price_path"]) - 1
    assert set(j["final_prices"]) == {"gas", "elec", "heat"} and len(j["final_prices"]["heat"]) == 3
    assert j["excluded"] == ["H2"] and not j["settlement"]["H2"]["settled"] and j["settlement"]["H1"]["settled"]
    assert j["gap"] is None                                           # no clearing for stub responses
    assert main(["table3", "trading-12:equivocating-hub", "--stub", "--round", "1"]) == 0
    out = capsys.readouterr().out
    assert "| H10 " in out and "H2>H10" in out and "equivocation" not in out.split("|")[0]


def test_the_run_log_digest_is_the_same_in_another_process():
    code = ("from poso_sim.scenarios.trading_runner import run_trading;"
            "print(run_trading('trading-5:collusion', responder='stub').log.digest())")
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        digests.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout.strip())
    assert digests == {run("trading-5:collusion").log.digest()}


# ---------------------------------------------------------------------------------------------- safety
@pytest.mark.parametrize("seed", range(int(os.environ.get("POSO_TRADING_CASES", "24"))))
def test_safety_no_honest_hub_acts_off_the_honest_path(seed):
    shape = ("trading-3", "trading-5", "trading-12")[seed % 3]
    base = resolve_scenario(shape).with_(max_rounds=25)
    if (shape, -25) not in _RUNS:
        _RUNS[(shape, -25)] = run_trading(base, case=CASE, responder="stub")
    scn = random_assignment(base, seed)
    res = run_trading(scn, case=CASE, responder="stub")
    verdict = check_market(res, _RUNS[(shape, -25)])
    assert verdict["safe"], (scn.behaviours, verdict)
    assert verdict["adoptions"] > 0


# --------------------------------------------------------------------------------------------- bad files
BASE = "name: t\ncase: trading\nhubs: 5\ndelegates: [3, 4, 5]\n"


@pytest.mark.parametrize("extra, line, needle", [
    ("behaviours:\n  9: {price_ignore: all}\n", 6, "behaviours.9: unknown hub '9'"),
    ("behaviours:\n  1: {price_ignore: all}\n", 6, "behaviours.1.price_ignore: H1 is not a delegate"),
    ("behaviours:\n  3: {price_target: [1, 2]}\n", 6, "behaviours.3.price_target: needs 'price_rate' too"),
    ("behaviours:\n  3: {price_target: [1], price_rate: -1}\n", 6, "price_rate: expected a positive number"),
    ("behaviours:\n  2:\n    demand_ignore: [3, 1]\n", 7, "behaviours.2.demand_ignore[1]: 'H1' is not a delegate"),
    ("behaviours:\n  3: {bribe: all}\n", 6, "unknown behaviour 'bribe'"),
    ("round_timeout: 0\n", 5, "round_timeout: Input should be greater than 0"),
    ("variants:\n  x:\n    behaviours:\n      4: {broadcast_target: all}\n", 8, "needs 'broadcast_collusion' too"),
    ("hour: 25\n", 5, "hour: Input should be less than or equal to 24"),
    ("color: red\n", 5, "color: unknown field"),
])
def test_a_bad_trading_file_is_one_error_at_its_line(extra, line, needle):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(BASE + extra, "bad.yaml")
    msg = str(err.value)
    assert msg.startswith(f"bad.yaml, line {line}: ") and needle in msg and "\n" not in msg


def test_an_unknown_variant_and_delegates_outside_the_market_are_named():
    with pytest.raises(ScenarioError, match="no variant 'nope'"):
        resolve_scenario("trading-12:nope")
    with pytest.raises(ScenarioError, match=r"bad.yaml, line 4: delegates\[1\]: delegate 7 is not a hub"):
        parse_scenario("name: t\ncase: trading\nhubs: 5\ndelegates: [3, 7]\n", "bad.yaml")


def test_figures_of_the_price_path_and_the_hubs_demands():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from poso_sim.report.trading import plot_hub_demands, plot_price_path

    res = run("trading-12")
    fig = plot_price_path(res)
    axes = fig.get_axes()
    assert len(axes) == 5 and [a.get_ylabel() for a in axes[:2]] == ["gas", "electricity"]
    assert list(axes[1].get_lines()[0].get_ydata()) == [p[1] for p in res.path]
    assert axes[1].get_lines()[1].get_ydata()[0] == CASE.tariff(12)[1]        # the grid's tariff, dashed
    fig2 = plot_hub_demands(res)
    assert len(fig2.get_axes()[0].get_lines()) == len(res.hubs) + 1            # one line per hub, the zero line
    plt.close("all")


def test_the_dispatch_runner_names_the_market_runner_for_a_market():
    from poso_sim.scenarios import run_scenario

    with pytest.raises(ScenarioError, match="trading-12: a trading market: run it with .*run_trading"):
        run_scenario("trading-12", payloads="stub")
