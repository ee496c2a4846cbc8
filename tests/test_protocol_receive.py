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
    Verify,
    check_signature,
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


class _Checked(Delegate):
    """A delegate with a copy check of its own (the same rule): it neither uses nor keeps a taken-copy memo."""

    def _on_copy(self, *args):  # noqa: ANN002
        super()._on_copy(*args)


class _Asking(Delegate):
    """A delegate with a judging rule of its own: it asks for a verification of every copy it takes."""

    def _submit(self, copy, out):  # noqa: ANN001
        p = copy.proposal
        out.append(Verify(p.payload.digest, p.payload, p.height, 0.0, p.instance))
        super()._submit(copy, out)


class _AskingChecked(_Asking, _Checked):
    pass


WIDE = ["C", "D", "E", "F", "G", "H", "I", "J"]
WIDE_COMMITTEE, WIDE_KEYS = make_committee(WIDE, ("N1",))
WIDE_SIGNERS = {n: Signer(WIDE_KEYS[n]) for n in WIDE}
INST = "cd" * 32


def _wide_pool() -> list[tuple[str, object]]:
    """Copies in an eight-member committee: the leader's proposals (two digests, two hint sets, a later round),
    their relays along every one- and two-relay path (from the relayer, and some from another sender), forged and
    misrouted relays, and every member's decision."""
    def prop(payload: Payload, leader: str = "C", round: int = 1, instance: str = "") -> Proposal:
        return Proposal.make(WIDE_SIGNERS[leader], case_id=CASE, height=1, round=round, leader=leader, payload=payload,
                             instance=instance)

    def relay(p: Proposal, path: tuple[str, ...]) -> Relay:
        return Relay.make(WIDE_SIGNERS[path[-1]], proposal=p, path=path, relayer=path[-1])

    props = [prop(P_OPT), prop(P_OPT2), prop(P_BAD), prop(P_OPT, "D", 2), prop(P_OPT, "D"),  # the last: not leader
             prop(P_OPT, instance=INST)]  # signed for an instance: wrong for all but the instance-aware receiver
    out: list[tuple[str, object]] = [(p.leader, p) for p in props]
    for p in props:
        others = [n for n in WIDE if n != p.leader]
        for x in others:
            out.append((x, relay(p, (p.leader, x))))
            for y in others:
                if y != x and (ord(x) + ord(y)) % 3 == 0:
                    r = relay(p, (p.leader, x, y))
                    out += [(y, r), (x, r)]  # the second: not from the relayer
                elif y != x and (ord(x) + ord(y)) % 3 == 1:  # forged: no valid copy along this path
                    out.append((y, dataclasses.replace(relay(p, (p.leader, x, y)), signature=b"\2" * 64)))
    r = relay(props[0], ("C", "E"))
    out += [("E", dataclasses.replace(r, signature=b"\0" * 64)), ("E", relay(props[0], ("E", "F")[::-1])),
            ("E", relay(dataclasses.replace(props[0], signature=b"\1" * 64), ("C", "E"))),
            ("E", relay(props[0], ("C", "E", "F", "E")))]
    out += [(n, Decision.make(WIDE_SIGNERS[n], height=1, round=1, leader="C", digest=OPT, cost=744.0, delegate=n,
                              case_id=CASE)) for n in WIDE]
    return out


def _copies_events(seed: int, n: int = 400) -> list[object]:
    """Mostly copies, few round changes (a copy's memo is used when it reaches a receiver in its round); verdicts
    come early or late; a round may time out, a height end."""
    rng = random.Random(seed)
    pool = _wide_pool()
    out: list[object] = [Start(1)]
    verdict_at, timeout_at = rng.randrange(0, n), rng.randrange(0, n // 2)  # round 1 may end before its verdict
    for i in range(n):
        x = rng.random()
        if i == verdict_at or x < 0.01:
            y = rng.random()
            out.append(VerificationDone(OPT, Verdict(True, 744.0)) if y < 0.6
                       else VerificationDone(OPT, Verdict(True, 744.0), instance=INST) if y < 0.8
                       else VerificationDone(BAD, Verdict(False, 904.0, ("tampered",))))
        elif i == timeout_at or x < 0.014:
            out.append(TimerExpired(round_timer(1, rng.choice((1, 2)))))
        elif x < 0.026:
            out.append(Start(2))
        else:
            out.append(MessageReceived(*rng.choice(pool)))
    return out


def _receivers(general: bool) -> list[Delegate]:
    def strict(pk: bytes, sig: bytes, data: bytes) -> bool:  # E's signatures fail
        return pk != WIDE_KEYS["E"].public and check_signature(pk, sig, data)

    cls, asking = (_Checked, _AskingChecked) if general else (Delegate, _Asking)
    out = [cls(n, WIDE_COMMITTEE, WIDE_KEYS[n], case_id=CASE) for n in WIDE]
    out += [cls("D", WIDE_COMMITTEE, WIDE_KEYS["D"], case_id=CASE, sig_check=strict),
            cls("E", WIDE_COMMITTEE, WIDE_KEYS["E"], case_id=CASE, signatures=False),
            cls("F", WIDE_COMMITTEE, WIDE_KEYS["F"], case_id="other"),
            cls("G", WIDE_COMMITTEE, WIDE_KEYS["G"], case_id=CASE, instances={1: INST, 2: "ef" * 32}),
            asking("H", WIDE_COMMITTEE, WIDE_KEYS["H"], case_id=CASE)]
    out[2].trusted_leaders = {"C"}  # a colluder: its direct copies from C are accepted unchecked
    out[3].trust_own = True
    return out


@pytest.mark.parametrize("seed", range(16))
def test_the_taken_copy_memo_gives_what_the_general_path_gives(seed: int) -> None:
    """Every receiver of one message object (the leader, members on its paths or not, a colluder, one with instances,
    one with a judging rule of its own, and delegates of other contexts: another check, signatures off, another
    case) answers as its twin that takes every copy through
    the general path (a subclass with a copy check of its own, given a fresh copy of each message). The memos are shared between receivers, as in a run: the first one keeps it, the others use
    it (about a fifth of the relay copies taken here)."""
    fast, general = _receivers(False), _receivers(True)
    assert all(type(m._ctx) is tuple for m in fast) and not any(type(m._ctx) is tuple for m in general)
    assert len({id(m._ctx) for m in fast}) == 4  # one context per (case, signatures, check) of the committee
    rng = random.Random(1000 + seed)
    for ev in _copies_events(seed):
        order = list(range(len(fast)))
        rng.shuffle(order)  # which receiver keeps a memo first varies
        if isinstance(ev, MessageReceived):
            order = order[:rng.randint(1, len(order))]  # a copy reaches some receivers only (as a fault may do)
        for i in order:
            a, b = fast[i], general[i]
            if isinstance(ev, MessageReceived):  # the twin gets a copy: an object no receiver kept a memo on
                got, want = a.receive(ev.src, ev.msg), b.handle(MessageReceived(ev.src, copy.copy(ev.msg)))
            else:
                got, want = a.handle(ev), b.handle(ev)
            assert got == want, (a.name, ev)
    for a, b in zip(fast, general):
        assert {k: (v.valid, v.seen_paths, v.relayed) for k, v in a.rounds.items()} == \
            {k: (v.valid, v.seen_paths, v.relayed) for k, v in b.rounds.items()}
        assert (a.excluded, a.cache, a.status, a.decisions) == (b.excluded, b.cache, b.status, b.decisions)


def test_a_memo_serves_only_its_context_and_sender() -> None:
    """A relay's memo, kept by one receiver, is not used by a delegate of another context (its check is switched
    after construction), nor for the same object from another sender."""
    r = _relay(_proposal(P_OPT), ("C", "E"))
    first, other = (Delegate(n, COMMITTEE, KEYS[n], case_id=CASE) for n in ("D", "F"))
    for m in (first, other):
        m.handle(Start(1))
    assert [type(a).__name__ for a in first.receive("E", r)] == ["Received", "Verify"]
    assert r.__dict__["_taken"][0] is other._ctx
    other.sig_check = lambda pk, sig, data: False  # a context of its own from now on
    assert [(a.reason, a.signer) for a in other.receive("E", r)] == [("bad signature", "C")]
    other.sig_check = first.sig_check
    assert [a.reason for a in other.receive("G", r)] == ["sender mismatch"]  # the memo names E
    assert [type(a).__name__ for a in other.receive("E", r)] == ["Received", "Verify"]
    assert [a.reason for a in other.receive("E", r)] == ["duplicate"]
    d = _decision("E")
    assert first.receive("E", d) == other.receive("E", d) and d.__dict__["_taken"][1] == "E"
    assert [a.reason for a in other.receive("X", d)] == ["not a member"]
