"""A tiny synchronous in-memory driver for the protocol machines (test-only), the four SCENARIOS.md
configurations with stub payloads, and a property test over random dishonest sets.

The driver is a discrete-event loop in virtual time: a heap of (time, seq, dst, event). Messages are
delivered at the current time (plus any Send.delay), FIFO among equal times; timers fire at their deadline;
Verify is answered from a stub table digest -> (accepted, cost), after Verify.charge seconds; Solve is
answered with the stub payloads at once. The real runtime is the asyncio kernel (poso_sim.sim).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import defaultdict
from typing import Any, Callable, Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poso_sim.protocol import (
    BehavingDelegate,
    CancelTimer,
    Crash,
    Decide,
    Delay,
    Delegate,
    Equivocate,
    FollowerCollusion,
    FollowerError,
    FollowerFeasible,
    FollowerIgnore,
    ForgedMultipliers,
    MessageReceived,
    NormalNode,
    Payload,
    Send,
    Silence,
    SolutionReady,
    Solve,
    Start,
    StartTimer,
    TimerExpired,
    TrickError,
    TrickIgnore,
    VerificationDone,
    Verdict,
    Verify,
    from_reference_keys,
    make_committee,
    check_chain,
)
from poso_sim.scenarios.log import KINDS, item_fields

OPT = "aa" * 32
BAD = "bb" * 32
FEAS = "cc" * 32
FORGED = "dd" * 32
PAYLOADS = {
    "optimal": Payload(OPT, "optimal", 744.0),
    "tampered": Payload(BAD, "tampered", 904.0),
    "feasible": Payload(FEAS, "feasible", 790.0),
    "forged": Payload(FORGED, "forged", 744.0),
}
TABLE = {OPT: (True, 744.0), BAD: (False, 904.0), FEAS: (False, 790.0), FORGED: (False, 744.0)}
CASE = "manchester"
REF_NAMES = ["C", "D", "E", "F", "G"]
REF_IDS = {8: "C", 9: "D", 10: "E", 11: "F", 12: "G"}


class Driver:
    def __init__(
        self,
        names: list[str],
        behaviours: Mapping[str, list] | None = None,
        *,
        observers: tuple[str, ...] = ("N1", "N2"),
        signatures: bool = True,
        window: float = 5.3,
        verify_cost: float = 0.0,
        drop: Callable[[str, str, Any], bool] | None = None,
        table: Mapping[str, tuple[bool, float]] = TABLE,
        payloads: Mapping[str, Payload] = PAYLOADS,
    ) -> None:
        behaviours = behaviours or {}
        self.committee, keys = make_committee(names, observers, signatures=signatures)
        self.names = list(names)
        self.observers = list(observers)
        self.dishonest = {n for n, b in behaviours.items() if b}
        self.nodes: dict[str, Any] = {}
        for n in names:
            d = Delegate(n, self.committee, keys[n], case_id=CASE, window=window, signatures=signatures,
                         verify_cost=verify_cost)
            if behaviours.get(n):
                self.nodes[n] = BehavingDelegate(d, behaviours[n], payload_source=lambda h: payloads)
            else:
                self.nodes[n] = d
        for o in observers:
            self.nodes[o] = NormalNode(o, self.committee, signatures=signatures, case_id=CASE,
                                       timeout=window * (len(names) + 2))
        self.table = table
        self.payloads = payloads
        self.drop = drop
        self.now = 0.0
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._timers: dict[tuple[str, Any], int] = {}
        self.log: list[tuple[float, str, Any]] = []
        self.verify_calls: list[tuple[str, str]] = []

    # -- plumbing
    def post(self, t: float, dst: str, event: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, dst, event))

    def deliver(self, dst: str, event: Any) -> list[Any]:
        node = self.nodes[dst]
        if isinstance(node, BehavingDelegate):
            actions = node.handle(dataclasses.replace(event, time=self.now))
        else:
            actions = node.handle(event)
        self._do(dst, actions)
        return actions

    def _do(self, src: str, actions: list[Any]) -> None:
        for a in actions:
            self.log.append((self.now, src, a))
            if isinstance(a, Send):
                if a.dst not in self.nodes:
                    continue
                if self.drop is not None and self.drop(src, a.dst, a.msg):
                    continue
                self.post(self.now + a.delay, a.dst, MessageReceived(src, a.msg))
            elif isinstance(a, StartTimer):
                self._seq += 1
                self._timers[(src, a.timer_id)] = self._seq
                heapq.heappush(self._heap, (self.now + a.delay_seconds, self._seq, src, ("timer", a.timer_id)))
            elif isinstance(a, CancelTimer):
                self._timers.pop((src, a.timer_id), None)
            elif isinstance(a, Verify):
                self.verify_calls.append((src, a.digest))
                ok, cost = self.table.get(a.digest, (False, None))
                reasons = () if ok else ("stationarity",)
                self.post(self.now + (a.charge or 0.0), src, VerificationDone(a.digest, Verdict(ok, cost, reasons)))
            elif isinstance(a, Solve):
                self.post(self.now, src, SolutionReady(a.height, a.round, dict(self.payloads)))

    def run(self, max_steps: int = 200_000) -> None:
        steps = 0
        while self._heap:
            t, seq, dst, ev = heapq.heappop(self._heap)
            if isinstance(ev, tuple) and ev and ev[0] == "timer":
                if self._timers.get((dst, ev[1])) != seq:
                    continue  # cancelled or replaced
                del self._timers[(dst, ev[1])]
                ev = TimerExpired(ev[1])
            self.now = t
            self.deliver(dst, ev)
            steps += 1
            assert steps < max_steps, "driver did not quiesce"

    def run_heights(self, heights: int = 1) -> None:
        for h in range(1, heights + 1):
            for n in self.nodes:
                self.post(self.now, n, Start(h))
            self.run()

    # -- queries
    def actions(self, kind: type, node: str | None = None) -> list[tuple[str, Any]]:
        return [(n, a) for _, n, a in self.log if isinstance(a, kind) and (node is None or n == node)]

    def decided(self, height: int = 1) -> dict[str, Decide]:
        return {n: a for n, a in self.actions(Decide) if a.height == height}

    def records(self, kind: str) -> list[dict]:
        return [{"node": n, **item_fields(a)} for _, n, a in self.log if KINDS.get(type(a)) == kind]

    def delegate(self, name: str) -> Delegate:
        node = self.nodes[name]
        return node.delegate if isinstance(node, BehavingDelegate) else node

    def table3(self, height: int = 1) -> dict[str, dict[str, dict[str, list[str]]]]:
        """phase leader -> receiving node -> {"R1": [...], "R2": [...], "own": [...]} as "<$cost>path"."""
        out: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        for r in self.records("received"):
            if r["height"] != height:
                continue
            cost = {OPT: 744, BAD: 904, FEAS: 790, FORGED: 744}[r["digest"]]
            out[r["leader"]][r["node"]][r["via"]].append(f"<${cost}>{''.join(r['path'])}")
        return out


def ref_behaviours(config: Mapping[str, Mapping[str, list[int]]]) -> dict[str, list]:
    return {REF_IDS[k] if isinstance(k, int) else k: from_reference_keys(v, REF_IDS) for k, v in config.items()}


def normal_outcome(drv: Driver) -> list[list[tuple[int, str, float]]]:
    return [[(b.height, b.digest, b.cost) for b in drv.nodes[o].chain] for o in drv.observers]


# ----------------------------------------------------------------------------------------------- scenarios
def test_scenario_1_liar_and_ignoring_relay():
    drv = Driver(REF_NAMES, ref_behaviours({
        8: {"follower_ignore": [9, 10, 12], "follower_error": [8, 11]},
        11: {"follower_trick_ignore": [9, 10, 12]},
    }))
    drv.run_heights(1)
    t3 = drv.table3()
    # Phase "Leader is C"
    assert dict(t3["C"]["C"]) == {"own": ["<$904>C"]}
    assert dict(t3["C"]["F"]) == {"R1": ["<$904>C"]}
    assert all(n not in t3["C"] for n in "DEG")
    # Phase "Leader is D"
    assert dict(t3["D"]["D"]) == {"own": ["<$744>D"]}
    assert sorted(t3["D"]["E"]["R1"]) == ["<$744>D"] and sorted(t3["D"]["E"]["R2"]) == ["<$744>DG"]
    assert sorted(t3["D"]["F"]["R2"]) == ["<$744>DE", "<$744>DG"]
    assert sorted(t3["D"]["G"]["R2"]) == ["<$744>DE"]
    assert "C" not in t3["D"]
    dec = drv.decided()
    assert dec["C"].digest == BAD and dec["C"].round == 1
    for n in "DEFG":
        assert dec[n].digest == OPT and dec[n].round == 2 and dec[n].leader == "D"
        assert "C" in drv.delegate(n).excluded
    # F saw a signed 904 proposal: evidence, relayed, so D, E, G exclude C on evidence too
    assert all(drv.delegate(n).excluded["C"].evidence for n in "DEFG")
    for o in drv.observers:
        (block,) = drv.nodes[o].chain
        # the block certifies the first strict majority (3 of 5); the 4th decision arrives after execution
        assert block.digest == OPT and block.cost == 744.0 and len(block.decisions) == 3
    assert sum(d.digest == OPT for d in dec.values()) == 4


def test_scenario_2_equivocation_and_bad_relay():
    drv = Driver(REF_NAMES, ref_behaviours({
        8: {"follower_ignore": [12], "follower_error": [8, 10, 11]},
        11: {"follower_trick_error": [9], "follower_trick_ignore": [10, 12]},
    }))
    drv.run_heights(2)
    t3 = drv.table3()
    assert t3["C"]["D"]["R1"] == ["<$744>C"]
    assert "<$904>CF" in t3["C"]["D"]["R2"]
    assert t3["C"]["E"]["R1"] == ["<$904>C"] and "<$744>CD" in t3["C"]["E"]["R2"]
    assert "G" not in {n for n, v in t3["C"].items() if v.get("R1")}
    paths = {p for node in t3["C"].values() for cells in node.values() for p in cells}
    assert "<$744>CDE" in paths and "<$744>CDG" in paths  # three-hop paths appear
    dec = drv.decided(1)
    for n in "DEG":
        assert dec[n].digest == OPT and dec[n].round == 1 and dec[n].leader == "C"
        assert drv.delegate(n).excluded["C"].evidence
    assert dec["C"].digest == BAD
    for o in drv.observers:
        b1 = drv.nodes[o].chain[0]
        assert b1.digest == OPT and len(b1.decisions) >= 3
    # C is excluded from leading later heights: height 2 is led by D at every honest delegate
    dec2 = drv.decided(2)
    for n in "DEG":
        assert dec2[n].leader == "D" and dec2[n].round == 1 and dec2[n].digest == OPT
    assert [b.digest for b in drv.nodes["N1"].chain] == [OPT, OPT]


def test_scenario_3_feasible_not_optimal():
    drv = Driver(REF_NAMES, ref_behaviours({8: {"follower_feasible": [8, 9, 10, 11, 12]}}))
    drv.run_heights(1)
    dec = drv.decided()
    for n in "DEFG":
        assert dec[n].digest == OPT and dec[n].round == 2 and dec[n].leader == "D"
        assert drv.delegate(n).excluded["C"].evidence
    assert dec["C"].digest == FEAS
    assert normal_outcome(drv) == [[(1, OPT, 744.0)]] * 2


def test_scenario_4_collusion():
    drv = Driver(REF_NAMES, ref_behaviours({
        8: {"follower_error": [8, 9, 10, 11, 12]},
        11: {"follower_collusion": [8]},
    }))
    drv.run_heights(1)
    dec = drv.decided()
    assert dec["F"].digest == BAD and dec["C"].digest == BAD
    for n in "DEG":
        assert dec[n].digest == OPT and dec[n].round == 2
        assert drv.delegate(n).excluded["C"].evidence
    assert "C" not in drv.delegate("F").excluded or not drv.delegate("F").excluded["C"].evidence
    for o in drv.observers:
        (block,) = drv.nodes[o].chain
        assert block.digest == OPT and len(block.decisions) == 3


@pytest.mark.parametrize("signatures", [True, False])
def test_honest_run_decides_in_round_one_and_chains_link(signatures):
    drv = Driver(REF_NAMES, signatures=signatures)
    drv.run_heights(3)
    for h in (1, 2, 3):
        dec = drv.decided(h)
        assert set(dec) == set(REF_NAMES)
        assert all(d.digest == OPT and d.round == 1 and d.leader == "C" for d in dec.values())
    chains = [drv.nodes[o].chain for o in drv.observers]
    assert chains[0] == chains[1] and len(chains[0]) == 3 and check_chain(chains[0])
    assert not drv.records("dropped") or all(r["reason"] in ("duplicate", "loop", "height closed")
                                             for r in drv.records("dropped"))


def test_trick_error_with_signatures_off_forges_undetectably_but_kkt_still_rejects():
    # F receives only the optimum, forges the tampered plan under C's name towards D.
    cfg = {11: {"follower_trick_error": [9]}}
    on = Driver(REF_NAMES, ref_behaviours(cfg), signatures=True)
    on.run_heights(1)
    assert any(r["reason"] == "bad signature" and r["src"] == "F" for r in on.records("dropped"))
    assert not on.delegate("D").excluded
    off = Driver(REF_NAMES, ref_behaviours(cfg), signatures=False)
    off.run_heights(1)
    assert any(r["node"] == "D" and r["digest"] == BAD and r["path"] == ("C", "F") for r in off.records("rejected"))
    # no attribution without signatures: nobody excludes the honest leader, nobody decides the bad plan
    assert not off.delegate("D").excluded
    assert all(d.digest == OPT for d in off.decided().values())


def test_verification_cost_is_charged_in_virtual_time_and_can_miss_the_window():
    ok = Driver(REF_NAMES, window=5.3, verify_cost=1.0)
    ok.run_heights(1)
    assert all(d.round == 1 for d in ok.decided().values())
    # leader verifies (1 s), follower verifies (1 s): a 1.5 s window is too short for followers
    slow = Driver(REF_NAMES, window=1.5, verify_cost=1.0)
    slow.run_heights(1)
    dec = slow.decided()
    assert dec["C"].round == 1  # the leader verified its own plan within its window
    assert all(d.digest == OPT for d in dec.values())


# ------------------------------------------------------------------------------------------- property test
LEADER_ATTACKS = ["ignore", "error", "feasible", "forged", "equivocate", "silence", "delay", "crash"]
FOLLOWER_ATTACKS = ["collusion", "trick_ignore", "trick_error"]


def make_behaviour(kind: str, rng: random.Random, names: list[str], me: str, dishonest: list[str]) -> Any:
    def subset() -> list[str]:
        return [n for n in names if rng.random() < 0.5]

    if kind == "ignore":
        return FollowerIgnore(subset())
    if kind == "error":
        return FollowerError(subset())
    if kind == "feasible":
        return FollowerFeasible(subset())
    if kind == "forged":
        return ForgedMultipliers(subset() or None)
    if kind == "equivocate":
        return Equivocate(rng.choice([("optimal", "tampered"), ("tampered", "optimal", "forged")]))
    if kind == "silence":
        return Silence()
    if kind == "delay":
        return Delay(rng.choice([0.5, 3.0, 6.0, 11.0]))
    if kind == "crash":
        return Crash(at_time=rng.choice([0.0, 2.0, 5.3, 7.0]))
    if kind == "collusion":
        return FollowerCollusion(dishonest)
    if kind == "trick_ignore":
        return TrickIgnore(subset())
    if kind == "trick_error":
        return TrickError(subset(), label=rng.choice(["tampered", "feasible", "forged"]))
    raise AssertionError(kind)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(4, 9),
    seed=st.integers(0, 2**32 - 1),
    signatures=st.booleans(),
    drop_p=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
)
def test_property_safety_and_agreement(n, seed, signatures, drop_p):
    rng = random.Random(seed)
    names = [f"D{i}" for i in range(n)]
    f = rng.randint(0, (n - 1) // 2)
    dishonest = rng.sample(names, f)
    behaviours = {}
    for d in dishonest:
        kinds = rng.sample(LEADER_ATTACKS + FOLLOWER_ATTACKS, rng.randint(1, 3))
        behaviours[d] = [make_behaviour(k, rng, names, d, dishonest) for k in kinds]
    drop_rng = random.Random(seed ^ 0x5EED)

    def drop(src: str, dst: str, msg: Any) -> bool:
        return (src in dishonest or dst in dishonest) and drop_rng.random() < drop_p

    drv = Driver(names, behaviours, signatures=signatures, drop=drop, observers=("N1", "N2", "N3"))
    heights = 3
    drv.run_heights(heights)
    honest = [x for x in names if x not in dishonest]
    accepted = {d for d, (ok, _) in TABLE.items() if ok}
    for h in range(1, heights + 1):
        dec = drv.decided(h)
        for x in honest:
            # liveness: honest links are reliable and instantaneous here, so every honest delegate decides
            assert x in dec, (h, x, dishonest, behaviours)
            assert dec[x].digest in accepted, (h, x, dec[x], behaviours)
    chains = [drv.nodes[o].chain for o in drv.observers]
    for c in chains:
        assert check_chain(c)
        assert all(b.digest in accepted for b in c)
        assert len(c) == heights
    assert [b.hash for b in chains[0]] == [b.hash for b in chains[1]] == [b.hash for b in chains[2]]
    assert not any(r["reason"] == "malformed" for r in drv.records("dropped") if r["node"] in honest)
