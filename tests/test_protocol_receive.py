"""The per-message shortcuts of the machines give what the general path gives.

`Delegate.receive(src, msg)` / `NormalNode.receive` must equal `handle(MessageReceived(src, msg))`; a cached
acceptance in a relayed round (recorded without `_submit`) must equal the general `_submit -> _apply -> _accept`;
a relay's path verdict, kept on the relay object, belongs to one committee. Random event sequences over a pool of
message objects delivered again and again (where a per-object memo could go wrong)."""

from __future__ import annotations

import copy
import dataclasses
import random

import pytest

from poso_sim.protocol import (
    Committee,
    Decision,
    Delegate,
    MessageReceived,
    NormalNode,
    Payload,
    Proposal,
    Relay,
    Signer,
    Start,
    TimerExpired,
    VerificationDone,
    Verdict,
    make_committee,
    make_keys,
)
from poso_sim.protocol.delegate import round_timer
from poso_sim.scenarios import run_scenario

NAMES = ["C", "D", "E", "F", "G"]
OPT, BAD = "aa" * 32, "bb" * 32
P_OPT = Payload(OPT, "optimal", 744.0)
P_OPT2 = Payload(OPT, "optimal-copy", 745.0)  # the same digest, other hints
P_BAD = Payload(BAD, "tampered", 904.0)
CASE = "manchester"
COMMITTEE, KEYS = make_committee(NAMES, ("N1", "N2"))
OUTSIDER = make_keys(["X"])["X"]
SIGNERS = {**{n: Signer(KEYS[n]) for n in NAMES}, "X": Signer(OUTSIDER)}


def _proposal(payload: Payload, leader: str = "C", height: int = 1, round: int = 1, case: str = CASE) -> Proposal:
    return Proposal.make(SIGNERS[leader], case_id=case, height=height, round=round, leader=leader, payload=payload)


def _relay(p: Proposal, path: tuple[str, ...]) -> Relay:
    return Relay.make(SIGNERS[path[-1]], proposal=p, path=path, relayer=path[-1])


def _decision(delegate: str, digest: str = OPT, cost: float = 744.0) -> Decision:
    return Decision.make(SIGNERS[delegate], height=1, round=1, leader="C", digest=digest, cost=cost,
                         delegate=delegate, case_id=CASE)


def _pool() -> list[tuple[str, object]]:
    """(transport sender, message) pairs: honest copies, duplicates-to-be, and every kind of bad copy."""
    p_opt, p_opt2, p_bad = _proposal(P_OPT), _proposal(P_OPT2), _proposal(P_BAD)
    copies: list[tuple[str, object]] = [("C", p_opt), ("C", p_opt2), ("C", p_bad), ("E", p_opt)]
    for p in (p_opt, p_opt2, p_bad):
        for path in (("C", "E"), ("C", "F"), ("C", "G"), ("C", "E", "F"), ("C", "G", "E"), ("C", "F", "G", "E")):
            r = _relay(p, path)
            copies += [(path[-1], r), ("G" if path[-1] != "G" else "F", r)]
    r = _relay(p_opt, ("C", "E"))
    copies += [
        ("E", _relay(p_opt, ("E",))), ("E", _relay(p_opt, ("F", "E"))), ("E", _relay(p_opt, ("C", "E", "F", "E"))),
        ("E", _relay(p_opt, ("C", "D", "E"))), ("X", _relay(p_opt, ("C", "X"))), ("E", _relay(p_opt, ("C", "X", "E"))),
        ("E", dataclasses.replace(r, signature=b"\0" * 64)),
        ("E", _relay(dataclasses.replace(p_opt, signature=b"\1" * 64), ("C", "E"))),
        ("E", _relay(_proposal(P_OPT, round=2), ("C", "E"))), ("D", _proposal(P_OPT, leader="D", round=2)),
        ("E", _relay(_proposal(P_OPT, leader="E"), ("E", "F"))), ("C", _proposal(P_OPT, case="other")),
        ("F", _relay(_proposal(P_OPT, height=2), ("C", "F"))), ("C", "not a message"),
    ]
    copies += [(n, _decision(n)) for n in NAMES] + [("E", _decision("F")), ("G", _decision("G", BAD, 904.0))]
    return copies


def _events(seed: int, n: int = 120) -> list[object]:
    rng = random.Random(seed)
    pool = _pool()
    out: list[object] = [Start(1)]
    for _ in range(n):
        x = rng.random()
        if x < 0.06:
            out.append(VerificationDone(OPT, Verdict(True, 744.0)))
        elif x < 0.09:
            out.append(VerificationDone(BAD, Verdict(False, 904.0, ("tampered",))))
        elif x < 0.10:
            out.append(TimerExpired(round_timer(1, rng.choice((1, 2)))))
        elif x < 0.11:
            out.append(Start(2))
        else:
            out.append(MessageReceived(*rng.choice(pool)))
    return out


class _General(Delegate):
    """The delegate with a `_submit` of its own (the same rule): every copy takes the general path."""

    def _submit(self, copy, out):  # noqa: ANN001
        super()._submit(copy, out)


@pytest.mark.parametrize("knobs", [{}, {"trusted_leaders": {"C"}}, {"instances": True}], ids=["honest", "trusting", "instances"])
@pytest.mark.parametrize("seed", range(12))
def test_receive_and_the_cached_acceptance_equal_the_general_path(seed: int, knobs: dict) -> None:
    kw = {"instances": {1: "cd" * 32, 2: "ef" * 32}} if knobs.get("instances") else {}
    machines = [cls("D", COMMITTEE, KEYS["D"], case_id=CASE, **kw) for cls in (Delegate, Delegate, _General, Delegate)]
    assert [m._plain_judging for m in machines] == [True, True, False, True]
    for m in machines:
        m.trusted_leaders = set(knobs.get("trusted_leaders", ()))
    for ev in _events(seed):
        by_event = machines[0].handle(ev)
        direct = machines[1].receive(ev.src, ev.msg) if isinstance(ev, MessageReceived) else machines[1].handle(ev)
        general = machines[2].handle(ev)
        # the last one gets a copy of each message, with none of the per-object memos of the others' deliveries
        fresh = machines[3].handle(MessageReceived(ev.src, copy.copy(ev.msg)) if isinstance(ev, MessageReceived) else ev)
        assert direct == by_event == general == fresh, ev
    rounds = [{k: (v.valid, v.seen_paths, v.relayed) for k, v in m.rounds.items()} for m in machines]
    assert rounds[0] == rounds[1] == rounds[2] == rounds[3]
    # the valid plan keeps the payload of the last copy taken (the same digest, other hints), as before
    assert [{d: p.label for d, (_, p) in rs[0].items()} for rs in rounds[0].values()] == \
        [{d: p.label for d, (_, p) in rs[0].items()} for rs in rounds[2].values()]


@pytest.mark.parametrize("seed", range(6))
def test_normal_node_receive_equals_handle(seed: int) -> None:
    a, b = (NormalNode("N1", COMMITTEE, case_id=CASE) for _ in range(2))
    for ev in _events(seed, 60):
        got = b.receive(ev.src, ev.msg) if isinstance(ev, MessageReceived) else b.handle(ev)
        assert got == a.handle(ev)
    assert a.chain == b.chain


def test_a_relays_path_verdict_is_per_committee() -> None:
    """One relay object reaches delegates of two committees: E is a member of one only."""
    others = ["C", "D", "F", "G", "H"]
    keys = {**{n: KEYS[n].public for n in NAMES}, "H": make_keys(["H"])["H"].public}
    small = Committee(others, {n: keys[n] for n in others})
    r = _relay(_proposal(P_OPT), ("C", "E", "F"))
    mine, theirs = Delegate("D", COMMITTEE, KEYS["D"], case_id=CASE), Delegate("D", small, KEYS["D"], case_id=CASE)
    for m in (mine, theirs):
        m.handle(Start(1))
    for _ in range(2):
        assert [a.reason for a in theirs.receive("F", r) if type(a).__name__ == "Dropped"] == ["bad path"]
        assert not [a for a in mine.receive("F", r) if type(a).__name__ == "Dropped" and a.reason == "bad path"]


def test_a_copys_signature_verdict_is_per_check_and_keys() -> None:
    """One relay object reaches delegates with other signature checks or other keys: each gets its own answer."""
    r = _relay(_proposal(P_OPT), ("C", "E"))
    keys = {n: KEYS[n].public for n in NAMES}
    forged = Committee(NAMES, {**keys, "E": KEYS["F"].public}, ("N1", "N2"))  # E's key is not E's
    honest = Delegate("D", COMMITTEE, KEYS["D"], case_id=CASE)
    strict = Delegate("D", COMMITTEE, KEYS["D"], case_id=CASE, sig_check=lambda pk, sig, data: False)
    rekeyed = Delegate("D", forged, KEYS["D"], case_id=CASE)
    for m in (honest, strict, rekeyed):
        m.handle(Start(1))

    def dropped(m: Delegate) -> list:
        return [(a.reason, a.signer) for a in m.receive("E", r) if type(a).__name__ == "Dropped"]

    for _ in range(2):
        assert dropped(strict) == [("bad signature", "C")] and dropped(rekeyed) == [("bad signature", "E")]
    assert dropped(honest) == [] and dropped(honest) == [("duplicate", None)]  # signed: taken, then a duplicate
    assert dropped(strict) == [("bad signature", "C")]


def test_one_relay_object_is_checked_once_for_all_its_receivers() -> None:
    """The signature verdict kept on the relay serves every receiver with the same check (here `cache.check`,
    a new bound method for each delegate) and keys: two checks for the first receiver, none for the others."""
    from poso_sim.protocol import SignatureCache

    cache = SignatureCache()
    r = _relay(_proposal(P_OPT), ("C", "E"))
    receivers = [Delegate(n, COMMITTEE, KEYS[n], case_id=CASE, sig_check=cache.check) for n in ("D", "F", "G")]
    for m in receivers:
        m.handle(Start(1))
        assert [type(a).__name__ for a in m.receive("E", r)][0] == "Received"
    assert (cache.calls, cache.computed) == (2, 2)


class _Evented(Delegate):
    """A delegate whose `handle` is its own (the same): the runner feeds it events, not `receive`."""

    def handle(self, event):  # noqa: ANN001
        return super().handle(event)


@pytest.mark.parametrize("name", ["scenario-1", "scenario-3"])
def test_the_runners_direct_delivery_equals_the_event_path(name: str) -> None:
    fast = run_scenario(name, payloads="stub")
    evented = run_scenario(name, payloads="stub", delegate_factory=_Evented)
    assert fast.log.digest() == evented.log.digest() and fast.trace_digest == evented.trace_digest
    assert fast.messages == evented.messages and fast.messages_by_kind == evented.messages_by_kind


def test_a_pickled_or_copied_message_carries_its_fields_not_its_memos() -> None:
    import pickle

    r = _relay(_proposal(P_OPT), ("C", "E"))
    d = Delegate("D", COMMITTEE, KEYS["D"], case_id=CASE)
    d.handle(Start(1))
    d.receive("E", r)
    assert "_path_ok" in r.__dict__ and "_signing_bytes" in r.__dict__
    for back in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r), copy.copy(r)):
        assert back == r and not [k for k in vars(back) if k.startswith("_")]
        assert back.signing_bytes() == r.signing_bytes() and back.encode() == r.encode()
