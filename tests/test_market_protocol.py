"""The market machines by hand: events in, actions out (no kernel, no solver)."""

from __future__ import annotations

import math

import pytest

from poso_sim.protocol import Dropped, MessageReceived, Send, Signer, Start, StartTimer, TimerExpired, make_keys
from poso_sim.protocol.market import MarketDelegate, MarketHub, MarketRule, excess_supply, market_timer, phase_timer
from poso_sim.protocol.market_behaviours import (
    BehavingMarketNode,
    BroadcastCollusion,
    BroadcastIgnore,
    DemandIgnore,
    DemandScale,
    PriceIgnore,
    PriceScale,
)
from poso_sim.protocol.market_messages import (
    Demand,
    DemandMade,
    DemandReceived,
    EquivocationProof,
    ForwardedDemand,
    HubExcluded,
    MarketEnded,
    NoPriceMajority,
    Prices,
    PricesAdopted,
    PricesComputed,
    ProofChecked,
    Respond,
    ResponseReady,
    Settled,
    market_message_problem,
)

HUBS = ["H1", "H2", "H3", "H4"]
DELEGATES = ["H2", "H3", "H4"]
ZONES = {"H1": 1, "H2": 1, "H3": 2, "H4": 3}
PAIRS = make_keys(HUBS, b"test-market")
KEYS = {n: kp.public for n, kp in PAIRS.items()}
SIGN = {n: Signer(PAIRS[n]) for n in HUBS}
RULE = MarketRule(gas_price=318.0, elec_tariff=994.7, grid_cap=3353.88, heat_price=206.1,
                  heat_caps=(100.0, 0.0, 160.0), initial=(286.2, 497.35, 200.0, 200.0, 200.0))


def delegate(name: str = "H2", **kw) -> MarketDelegate:
    return MarketDelegate(name, hubs=HUBS, delegates=DELEGATES, zones=ZONES, rule=RULE, signer=SIGN[name],
                          keys=KEYS, **kw)


def demand(hub: str, values, round: int = 1) -> Demand:
    return Demand.make(SIGN[hub], market="trading", round=round, hub=hub, values=values)


def of(actions, t):
    return [a for a in actions if isinstance(a, t)]


# ------------------------------------------------------------------------------------------------ the rule
def test_excess_demand_bands_against_the_outside_supplier():
    # above the band the supplier gives its cap, below nothing, inside it what is asked (SG = a surplus or 0)
    assert excess_supply(1000.0, 994.7, 3000.0, 2800.0, 0.01) == pytest.approx(-200.0)
    assert excess_supply(900.0, 994.7, 3000.0, 2800.0, 0.01) == 2800.0
    assert excess_supply(994.705, 994.7, 3000.0, 2800.0, 0.01) == 0.0
    assert excess_supply(994.705, 994.7, 3000.0, -50.0, 0.01) == -50.0


def test_first_update_moves_gas_to_the_tariff_and_steps_by_1_over_20_1():
    demands = {"H1": (5.0, 100.0, 30.0), "H2": (5.0, 50.0, 90.0), "H3": (1.0, -20.0, 10.0), "H4": (2.0, 10.0, 200.0)}
    new, change, sg = RULE.update(RULE.initial, demands, ZONES, 1, HUBS)
    assert new[0] == 318.0
    assert sg == (140.0, 120.0, 10.0, 200.0)          # elec 140 (grid 0: price below T); heat per zone, none supplied
    assert new[1] == pytest.approx(497.35 + 140 / 20.1)
    assert new[2:] == pytest.approx((200 + 120 / 20.1, 200 + 10 / 20.1, 200 + 200 / 20.1))
    expected = math.sqrt((318 - 286.2) ** 2 + sum((s / 20.1) ** 2 for s in sg))
    assert change == pytest.approx(expected)
    assert RULE.step(10) == pytest.approx(1 / 21.0)


# ----------------------------------------------------------------------------------------------- delegate
def fwd(d: Demand, *path: str) -> ForwardedDemand:
    """`d` forwarded along `path` (each forwarder signs its link)."""
    out = ForwardedDemand.first(SIGN[path[0]], d, path[0])
    for p in path[1:]:
        out = out.extend(SIGN[p], p)
    return out


def test_delegate_forwards_each_new_value_once_signed_to_the_delegates_not_on_its_path():
    d = delegate("H2")
    assert d.handle(Start(1)) == [StartTimer(phase_timer(1, 1), 1 / 3), StartTimer(phase_timer(1, 2), 2 / 3),
                                  StartTimer(market_timer(1), 1.0)]            # one dishonest delegate tolerated
    msg = demand("H1", (5.0, 100.0, 30.0))
    out = d.handle(MessageReceived("H1", msg))
    assert of(out, DemandReceived) == [DemandReceived(1, "H1", "H1", "R1", (5.0, 100.0, 30.0), ())]
    sent = of(out, Send)
    assert [s.dst for s in sent] == ["H3", "H4"] and sent[0].msg == fwd(msg, "H2") == sent[1].msg
    assert [a.reason for a in of(d.handle(MessageReceived("H1", msg)), Dropped)] == ["duplicate"]
    # the same value forwarded by another delegate is recorded, not forwarded again
    out = d.handle(MessageReceived("H3", fwd(msg, "H3")))
    assert of(out, DemandReceived)[0].via == "R2" and not of(out, Send)
    # a value first seen forwarded (the hub skipped this delegate) goes on to the delegates not on its path
    other = demand("H4", (1.0, 2.0, 3.0))
    out = d.handle(MessageReceived("H3", fwd(other, "H3")))
    assert [(s.dst, s.msg.path) for s in of(out, Send)] == [("H4", ("H3", "H2"))]
    # a hub that is also a delegate sends its demand and forwards it: two copies from one sender, both taken
    own = demand("H3", (1.0, 2.0, 3.0))
    d.handle(MessageReceived("H3", own))
    out = d.handle(MessageReceived("H3", fwd(own, "H3")))
    assert [(a.via, a.src) for a in of(out, DemandReceived)] == [("R2", "H3")] and not of(out, Dropped)


def test_a_copy_is_taken_only_while_the_phase_is_at_most_its_chain_length():
    d = delegate("H2")
    d.handle(Start(1))
    d.handle(TimerExpired(phase_timer(1, 1)))          # phase 1: direct copies are late, one-hop copies not
    late = d.handle(MessageReceived("H1", demand("H1", (5.0, 100.0, 30.0))))
    assert [a.reason for a in of(late, Dropped)] == ["late"] and not of(late, Send)
    assert of(d.handle(MessageReceived("H3", fwd(demand("H1", (5.0, 100.0, 30.0)), "H3"))), DemandReceived)
    d.handle(TimerExpired(phase_timer(1, 2)))          # phase 2: only two-hop copies, and they go no further
    assert [a.reason for a in of(d.handle(MessageReceived("H3", fwd(demand("H4", (1, 1, 1)), "H3"))), Dropped)] \
        == ["late"]
    out = d.handle(MessageReceived("H4", fwd(demand("H3", (2.0, 2.0, 2.0)), "H3", "H4")))
    assert of(out, DemandReceived)[0].via == "R3" and not of(out, Send)
    # a forged link (H4 claims H3 forwarded first) is a bad signature, whatever the phase
    forged = ForwardedDemand(demand("H1", (9.0, 9.0, 9.0)), ("H3", "H4"), (b"\x00" * 64, fwd(demand("H1", (9.0, 9.0, 9.0)), "H4").signatures[0]))
    assert of(d.handle(MessageReceived("H4", forged)), Dropped)[0].reason == "bad signature"


def test_delegate_drops_forgeries_impostors_and_stale_demands():
    d = delegate("H2")
    d.handle(Start(1))
    forged = Demand("trading", 1, "H1", 5.0, 100.0, 30.0, signature=b"\x00" * 64)
    assert of(d.handle(MessageReceived("H1", forged)), Dropped)[0].reason == "bad signature"
    assert of(d.handle(MessageReceived("H3", demand("H1", (1, 2, 3)))), Dropped)[0].reason == "sender mismatch"
    assert of(d.handle(MessageReceived("H1", fwd(demand("H1", (1, 2, 3)), "H3"))), Dropped)[0].reason \
        == "sender mismatch"
    assert of(d.handle(MessageReceived("H1", "garbage")), Dropped)[0].reason == "malformed"
    # a demand of the next round waits in the buffer and is taken when the round opens
    early = demand("H1", (1.0, 2.0, 3.0), round=2)
    assert d.handle(MessageReceived("H1", early)) == []
    out = d.handle(TimerExpired(market_timer(1)))
    assert of(out, DemandReceived) == [DemandReceived(2, "H1", "H1", "R1", (1.0, 2.0, 3.0), ())]
    assert of(d.handle(MessageReceived("H1", demand("H1", (1, 2, 3), round=1))), Dropped)[0].reason == "stale"


def test_an_equivocating_hub_is_excluded_with_the_two_signed_demands_as_proof():
    d = delegate("H2")
    d.handle(Start(1))
    a, b = demand("H1", (5.0, 100.0, 30.0)), demand("H1", (6.0, 120.0, 36.0))
    d.handle(MessageReceived("H1", a))
    out = d.handle(MessageReceived("H3", fwd(b, "H3")))
    assert of(out, HubExcluded) == [HubExcluded("H1", 1, "equivocation", True, a.values, b.values)]
    sends = of(out, Send)
    assert [(s.dst, s.msg.path) for s in sends if isinstance(s.msg, ForwardedDemand)] == [("H4", ("H3", "H2"))]
    proofs = [(s.dst, s.msg) for s in sends if isinstance(s.msg, EquivocationProof)]
    assert [p[0] for p in proofs] == ["H3", "H4"]   # every other delegate (the forwarder may hold only one of them)
    assert proofs[0][1].first == a and proofs[0][1].second == b
    # a third delegate checks both hub signatures and excludes the hub too, then passes the proof on once
    e = delegate("H4")
    e.handle(Start(1))
    out = e.handle(MessageReceived("H2", proofs[0][1]))
    assert of(out, HubExcluded)[0].evidence and [s.dst for s in of(out, Send)] == ["H3"]
    assert of(out, ProofChecked) == [ProofChecked("H2", "H1", 1)]
    again = e.handle(MessageReceived("H3", EquivocationProof(a, b, "H3")))   # noted, nothing more to do
    assert again == [ProofChecked("H3", "H1", 1)]
    # the excluded hub gets no prices and is out of the balance
    out = e.handle(TimerExpired(market_timer(1)))
    assert [s.dst for s in of(out, Send)] == ["H2", "H3", "H4"]


def test_a_proof_with_a_forged_second_demand_excludes_nobody():
    e = delegate("H4")
    e.handle(Start(1))
    a = demand("H1", (5.0, 100.0, 30.0))
    forged = Demand("trading", 1, "H1", 9.0, 9.0, 9.0, signature=a.signature)
    out = e.handle(MessageReceived("H3", EquivocationProof(a, forged, "H3")))
    assert of(out, Dropped)[0].reason == "bad signature" and not of(out, HubExcluded)
    assert market_message_problem(EquivocationProof(a, a, "H3")) == "the two demands do not differ"


def test_silent_hub_keeps_its_last_demand_then_is_excluded_after_silent_rounds():
    d = delegate("H2", silent_rounds=3)
    d.handle(Start(1))
    for h, v in {"H1": (1.0, 10.0, 5.0), "H2": (1.0, 20.0, 5.0), "H3": (1.0, 30.0, 5.0), "H4": (1.0, 40.0, 5.0)}.items():
        d.handle(MessageReceived(h, demand(h, v)))
    comp = of(d.handle(TimerExpired(market_timer(1))), PricesComputed)[0]
    assert comp.hubs == 4 and comp.kept == () and comp.excess[0] == 100.0
    for k in (2, 3, 4):                                   # H1 is silent from round 2 on
        for h, v in {"H2": (1.0, 20.0, 5.0), "H3": (1.0, 30.0, 5.0), "H4": (1.0, 40.0, 5.0)}.items():
            d.handle(MessageReceived(h, demand(h, v, round=k)))
        out = d.handle(TimerExpired(market_timer(k)))
        comp = of(out, PricesComputed)[0]
        if k < 4:
            assert comp.kept == ("H1",) and comp.excess[0] == 100.0        # its round-1 demand still counts
            assert not of(out, HubExcluded)
        else:
            assert of(out, HubExcluded) == [HubExcluded("H1", 4, "silent", False)]
            assert comp.hubs == 3 and comp.excess[0] == 90.0
            assert "H1" not in [s.dst for s in of(out, Send)]


def test_end_flag_when_the_change_is_below_the_tolerance_and_at_the_round_limit():
    rule = MarketRule(gas_price=318.0, elec_tariff=994.7, grid_cap=100.0, heat_price=206.1, heat_caps=(0.0,),
                      initial=(318.0, 994.7, 206.1))
    d = MarketDelegate("H1", hubs=["H1"], delegates=["H1"], zones={"H1": 1}, rule=rule, signer=SIGN["H1"],
                       keys=KEYS, max_rounds=5)
    d.handle(Start(1))
    d.handle(MessageReceived("H1", Demand.make(SIGN["H1"], market="trading", round=1, hub="H1", values=(1, 0.0, 0.0))))
    out = d.handle(TimerExpired(market_timer(1)))       # everything inside its band: no change, converged
    assert of(out, PricesComputed)[0].change == 0.0 and of(out, MarketEnded)[0].reason == "converged"
    assert of(out, Send)[0].msg.end is True
    below = MarketRule(gas_price=318.0, elec_tariff=994.7, grid_cap=100.0, heat_price=206.1, heat_caps=(0.0,),
                       initial=(318.0, 900.0, 206.1))           # electricity below its band: 50 MW short moves it
    d2 = MarketDelegate("H1", hubs=["H1"], delegates=["H1"], zones={"H1": 1}, rule=below, signer=SIGN["H1"],
                        keys=KEYS, max_rounds=2)
    d2.handle(Start(1))
    ends = []
    for k in (1, 2):
        d2.handle(MessageReceived("H1", Demand.make(SIGN["H1"], market="trading", round=k, hub="H1",
                                                    values=(1.0, 50.0, 0.0))))
        ends += of(d2.handle(TimerExpired(market_timer(k))), MarketEnded)
    assert [e.reason for e in ends] == ["round limit"] and ends[0].round == 2


# ---------------------------------------------------------------------------------------------------- hub
def prices(dlg: str, vector, round: int = 1, end: bool = False) -> Prices:
    return Prices.make(SIGN[dlg], market="trading", round=round, delegate=dlg, vector=vector, end=end)


def test_hub_asks_for_its_best_response_signs_it_and_sends_it_to_every_delegate():
    h = MarketHub("H3", delegates=DELEGATES, zone=2, initial=(286.2, 497.35, 200.0), signer=SIGN["H3"], keys=KEYS)
    assert h.handle(Start(1)) == [Respond("H3", 1, (286.2, 497.35, 200.0))]
    out = h.handle(ResponseReady(1, (3.0, 40.0, 7.0)))
    assert of(out, DemandMade) == [DemandMade(1, (286.2, 497.35, 200.0), (3.0, 40.0, 7.0))]
    sends = of(out, Send)
    assert [s.dst for s in sends] == DELEGATES and len({id(s.msg) for s in sends}) == 1
    assert sends[0].msg.signing_bytes() and sends[0].msg.values == (3.0, 40.0, 7.0)


def test_hub_takes_the_majority_triple_of_its_zone_and_ignores_a_lying_minority():
    h = MarketHub("H3", delegates=DELEGATES, zone=2, initial=(286.2, 497.35, 200.0), signer=SIGN["H3"], keys=KEYS)
    h.handle(Start(1))
    h.handle(ResponseReady(1, (3.0, 40.0, 7.0)))
    honest = (318.0, 500.0, 201.0, 202.0, 203.0)
    assert not of(h.handle(MessageReceived("H2", prices("H2", tuple(1.5 * x for x in honest)))), PricesAdopted)
    assert not of(h.handle(MessageReceived("H3", prices("H3", honest))), PricesAdopted)
    out = h.handle(MessageReceived("H4", prices("H4", honest)))
    assert of(out, PricesAdopted) == [PricesAdopted(1, (318.0, 500.0, 202.0), 2, False)]
    assert of(out, Respond) == [Respond("H3", 2, (318.0, 500.0, 202.0))]
    # a late copy of a closed round is stale; a forged one is dropped
    assert of(h.handle(MessageReceived("H2", prices("H2", honest))), Dropped)[0].reason == "stale"
    forged = Prices("trading", 2, "H2", 1.0, 1.0, (1.0, 1.0, 1.0), False, signature=b"\x01" * 64)
    assert of(h.handle(MessageReceived("H2", forged)), Dropped)[0].reason == "bad signature"


def test_hub_settles_on_the_end_flag_and_notes_a_missing_majority():
    h = MarketHub("H1", delegates=DELEGATES, zone=1, initial=(1.0, 2.0, 3.0), signer=SIGN["H1"], keys=KEYS)
    h.handle(Start(1))
    h.handle(ResponseReady(1, (3.0, 40.0, 7.0)))
    assert h.handle(TimerExpired(("prices", 1))) == [NoPriceMajority(1, 0)]
    v = (318.0, 990.0, 206.0, 206.0, 206.0)
    h.handle(MessageReceived("H2", prices("H2", v, end=True)))
    out = h.handle(MessageReceived("H3", prices("H3", v, end=True)))
    assert of(out, Settled) == [Settled(1, (318.0, 990.0, 206.0), (3.0, 40.0, 7.0))] and not of(out, Respond)
    assert h.done


# ------------------------------------------------------------------------------------------------ behaviours
def test_dishonest_filters_change_only_what_their_keys_say():
    hub = MarketHub("H1", delegates=DELEGATES, zone=1, initial=(1.0, 2.0, 3.0), signer=SIGN["H1"], keys=KEYS)
    bh = BehavingMarketNode(hub, [DemandIgnore(["H2"]), DemandScale(["H3"], 2.0)], SIGN["H1"])
    bh.handle(Start(1))
    sends = of(bh.handle(ResponseReady(1, (1.0, 10.0, 4.0))), Send)
    assert {s.dst: s.msg.values for s in sends} == {"H3": (2.0, 20.0, 8.0), "H4": (1.0, 10.0, 4.0)}
    assert all(s.msg.signing_bytes() for s in sends)
    d = BehavingMarketNode(delegate("H2"), [PriceIgnore(["H1"]), PriceScale(["H3"], 1.5), BroadcastIgnore(["H4"]),
                                           BroadcastCollusion(["H1"], ["H3"], 3.0, {"H1": SIGN["H1"]})], SIGN["H2"])
    d.handle(Start(1))
    fwd = of(d.handle(MessageReceived("H1", demand("H1", (1.0, 10.0, 4.0)))), Send)
    assert [(s.dst, s.msg.demand.values) for s in fwd] == [("H3", (3.0, 30.0, 12.0))]   # colluding hub's lie, re-signed
    out = of(d.handle(TimerExpired(market_timer(1))), Send)
    assert [s.dst for s in out] == ["H2", "H3", "H4"]
    by = {s.dst: s.msg for s in out}
    assert by["H3"].vector == pytest.approx(tuple(1.5 * x for x in by["H2"].vector))
