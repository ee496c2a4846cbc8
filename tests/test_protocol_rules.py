"""Each PROTOCOL.md §2 rule tested by feeding events to one machine by hand (no driver, no solver)."""

from __future__ import annotations

import dataclasses

import pytest

from poso_sim.protocol import (
    GENESIS_HASH,
    BehavingDelegate,
    CancelTimer,
    Crash,
    Decide,
    Decision,
    Delay,
    Delegate,
    Exclude,
    Execute,
    FollowerCollusion,
    FollowerError,
    FollowerIgnore,
    MessageReceived,
    MisbehaviourProof,
    NormalNode,
    Payload,
    Proposal,
    Relay,
    Send,
    Signer,
    Silence,
    SolutionReady,
    Solve,
    Start,
    StartTimer,
    TimerExpired,
    TrickIgnore,
    VerificationDone,
    Verdict,
    Dropped,
    OwnPlanRejected,
    Abandoned,
    RoundStarted,
    GaveUp,
    ConflictingDecisions,
    NoMajority,
    Crashed,
    Verify,
    from_reference_keys,
    leader_for,
    make_committee,
    check_chain,
)

NAMES = ["C", "D", "E", "F", "G"]
OPT, BAD, LOW = "aa" * 32, "bb" * 32, "11" * 32
P_OPT = Payload(OPT, "optimal", 744.0)
P_BAD = Payload(BAD, "tampered", 904.0)
CASE = "manchester"
COMMITTEE, KEYS = make_committee(NAMES, ("N1", "N2"))
SIGNERS = {n: Signer(KEYS[n]) for n in NAMES}


def delegate(name: str, **kw) -> Delegate:
    return Delegate(name, COMMITTEE, KEYS[name], case_id=CASE, **kw)


def proposal(payload: Payload, leader: str = "C", height: int = 1, round: int = 1) -> Proposal:
    return Proposal.make(SIGNERS[leader], case_id=CASE, height=height, round=round, leader=leader, payload=payload)


def relay(p: Proposal, path: tuple[str, ...]) -> Relay:
    return Relay.make(SIGNERS[path[-1]], proposal=p, path=path, relayer=path[-1])


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def sends(actions, msg_type=object):
    return [a for a in actions if isinstance(a, Send) and isinstance(a.msg, msg_type)]


def drops(actions):
    return [a.reason for a in actions if isinstance(a, Dropped)]


def started(name: str, height: int = 1, **kw) -> Delegate:
    d = delegate(name, **kw)
    d.handle(Start(height))
    return d


# ------------------------------------------------------------------------------------------ leader schedule
def test_leader_schedule_rotation_with_exclusions():
    assert [leader_for(NAMES, 1, r) for r in range(1, 7)] == ["C", "D", "E", "F", "G", "C"]
    assert leader_for(NAMES, 1, 1, {"C"}) == "D"
    assert leader_for(NAMES, 1, 2, {"C", "E"}) == "F"
    assert leader_for(NAMES, 3, 1, (), rotate_heights=True) == "E"
    assert leader_for(NAMES, 1, 1, set(NAMES)) == "C"  # everyone excluded: exclusions ignored


def test_start_leader_solves_follower_waits():
    c = delegate("C")
    acts = c.handle(Start(1))
    assert of(acts, StartTimer) == [StartTimer(("round", 1, 1), 5.3)]
    assert of(acts, Solve) == [Solve(1, 1)]
    d = delegate("D", window=7.7)
    acts = d.handle(Start(1))
    assert of(acts, StartTimer) == [StartTimer(("round", 1, 1), 7.7)] and not of(acts, Solve)


def test_leader_verifies_its_own_plan_before_proposing():
    c = started("C", verify_cost=0.25)
    acts = c.handle(SolutionReady(1, 1, {"optimal": P_OPT, "tampered": P_BAD}))
    assert of(acts, Verify) == [Verify(OPT, P_OPT, 1, 0.25)] and not sends(acts)
    acts = c.handle(VerificationDone(OPT, Verdict(True, 744.0)))
    out = sends(acts, Proposal)
    assert [s.dst for s in out] == ["D", "E", "F", "G"]
    assert all(s.msg.signed_by_leader(COMMITTEE.public_key("C")) and s.msg.payload.digest == OPT for s in out)
    acts = c.handle(TimerExpired(("round", 1, 1)))
    assert of(acts, Decide) == [Decide(1, 1, OPT, 744.0, "C", "optimal")]


def test_leader_whose_own_plan_fails_proposes_nothing():
    c = started("C")
    c.handle(SolutionReady(1, 1, {"optimal": P_BAD}))
    acts = c.handle(VerificationDone(BAD, Verdict(False, None, ("kkt",))))
    assert not sends(acts) and of(acts, OwnPlanRejected)


# --------------------------------------------------------------------------------------- verify once, relay
def test_each_digest_verified_once_and_first_valid_copy_relayed_to_all_but_leader_and_sender():
    d = started("D")
    p = proposal(P_OPT)
    a1 = d.handle(MessageReceived("E", relay(p, ("C", "E"))))
    assert of(a1, Verify) == [Verify(OPT, P_OPT, 1, 0.0)]
    a2 = d.handle(MessageReceived("C", p))
    assert not of(a2, Verify)  # already pending
    a3 = d.handle(VerificationDone(OPT, Verdict(True, 744.0)))
    out = sends(a3, Relay)
    assert [s.dst for s in out] == ["F", "G"]  # not the leader C, not the sender E
    assert out[0].msg.path == ("C", "E", "D") and out[0].msg.proposal == p
    a4 = d.handle(MessageReceived("G", relay(p, ("C", "G"))))
    assert not of(a4, Verify) and not sends(a4)  # cached verdict, relayed already
    assert d.current_round().valid == {OPT: (744.0, P_OPT)}
    assert drops(d.handle(MessageReceived("G", relay(p, ("C", "G"))))) == ["duplicate"]


def test_relayed_copy_path_rules():
    d = started("D")
    p = proposal(P_OPT)
    assert drops(d.handle(MessageReceived("E", relay(p, ("E",))))) == ["bad path"]
    assert drops(d.handle(MessageReceived("E", relay(p, ("F", "E"))))) == ["bad path"]  # not leader-first
    assert drops(d.handle(MessageReceived("E", relay(p, ("C", "E", "F", "E"))))) == ["bad path"]  # repeat
    assert drops(d.handle(MessageReceived("F", relay(p, ("C", "E"))))) == ["sender mismatch"]
    assert drops(d.handle(MessageReceived("E", relay(p, ("C", "D", "E"))))) == ["loop"]
    assert drops(d.handle(MessageReceived("E", p))) == ["sender mismatch"]  # bare proposal not from leader


# ---------------------------------------------------------------------------------------- misbehaviour proof
def test_signed_bad_proposal_is_evidence_and_proof_makes_every_honest_delegate_exclude():
    f = started("F")
    f.handle(MessageReceived("C", proposal(P_BAD)))
    acts = f.handle(VerificationDone(BAD, Verdict(False, 904.0, ("stationarity",))))
    (ex,) = of(acts, Exclude)
    assert ex.leader == "C" and ex.evidence
    proofs = sends(acts, MisbehaviourProof)
    assert [s.dst for s in proofs] == ["D", "E", "G"]
    proof = proofs[0].msg
    # D re-verifies the payload itself before excluding
    d = started("D")
    acts = d.handle(MessageReceived("F", proof))
    assert of(acts, Verify) == [Verify(BAD, P_BAD, 1, 0.0)] and not of(acts, Exclude)
    acts = d.handle(VerificationDone(BAD, Verdict(False, 904.0, ("stationarity",))))
    assert [e.leader for e in of(acts, Exclude)] == ["C"] and d.excluded["C"].evidence
    assert sorted(s.dst for s in sends(acts, MisbehaviourProof)) == ["E", "F", "G"]
    assert not d.handle(MessageReceived("E", MisbehaviourProof.make(SIGNERS["E"], proposal=proof.proposal,
                                                                    reason="x", reporter="E")))
    # exclusion takes effect from the next height
    acts = d.handle(Start(2))
    assert of(acts, Abandoned) == [Abandoned(1, 1)] and of(acts, RoundStarted) == [RoundStarted(2, 1, "D")]
    assert acts.index(of(acts, Abandoned)[0]) < acts.index(of(acts, RoundStarted)[0])
    assert of(acts, Solve) == [Solve(2, 1)]


def test_lying_reporter_cannot_frame_an_honest_leader():
    d = started("D")
    false_proof = MisbehaviourProof.make(SIGNERS["F"], proposal=proposal(P_OPT), reason="lie", reporter="F")
    d.handle(MessageReceived("F", false_proof))
    acts = d.handle(VerificationDone(OPT, Verdict(True, 744.0)))
    assert drops(acts) == ["false accusation"] and not d.excluded
    # a proof around a proposal the leader never signed is rejected on the signature
    forged = Proposal(CASE, 1, 1, "C", P_BAD, SIGNERS["F"].sign(b"x"))
    bad = MisbehaviourProof.make(SIGNERS["F"], proposal=forged, reason="lie", reporter="F")
    assert drops(d.handle(MessageReceived("F", bad))) == ["bad signature"] and not d.excluded


def test_digest_mismatch_blames_the_carrier_not_the_leader():
    d = started("D")
    p = proposal(P_OPT)
    d.handle(MessageReceived("E", relay(p, ("C", "E"))))
    d.handle(MessageReceived("C", p))
    acts = d.handle(VerificationDone(OPT, Verdict(False, None, ("digest mismatch",)), digest_ok=False))
    assert drops(acts) == ["digest mismatch"] and of(acts, Verify)  # the next copy is verified afresh
    assert not any(k[0] == OPT for k in d.cache) and not d.excluded
    acts = d.handle(VerificationDone(OPT, Verdict(True, 744.0)))
    assert [s.dst for s in sends(acts, Relay)] == ["E", "F", "G"]


# ---------------------------------------------------------------------------------------------- end of round
def test_end_of_round_decides_lowest_cost_then_lowest_digest():
    d = started("D")
    for digest, cost in ((OPT, 744.0), (LOW, 744.0), (BAD, 900.0)):
        d.handle(MessageReceived("C", proposal(Payload(digest))))
        d.handle(VerificationDone(digest, Verdict(True, cost)))
    acts = d.handle(TimerExpired(("round", 1, 1)))
    (dec,) = of(acts, Decide)
    assert (dec.digest, dec.cost) == (LOW, 744.0)  # tie on cost -> lowest digest
    msgs = sends(acts, Decision)
    assert [s.dst for s in msgs] == ["C", "E", "F", "G", "N1", "N2"]
    m = msgs[0].msg
    assert m.delegate == "D" and m.leader == "C" and m.round == 1
    from poso_sim.protocol import check_signature
    assert check_signature(COMMITTEE.public_key("D"), m.signature, m.signing_bytes())
    assert drops(d.handle(MessageReceived("C", proposal(P_OPT, round=1)))) == ["height closed"]


def test_no_valid_proposal_excludes_leader_by_timeout_and_next_leader_takes_over():
    d = started("D")
    acts = d.handle(TimerExpired(("round", 1, 1)))
    (ex,) = of(acts, Exclude)
    assert ex.leader == "C" and not ex.evidence and ex.reason.startswith("timeout")
    assert of(acts, StartTimer) == [StartTimer(("round", 1, 2), 5.3)]
    assert of(acts, Solve) == [Solve(1, 2)]  # D leads round 2
    assert d.handle(TimerExpired(("round", 1, 1))) == []  # stale timer is ignored


def test_gives_up_after_every_candidate_failed():
    e = started("E")
    for r in range(1, 6):
        acts = e.handle(TimerExpired(("round", 1, r)))
    assert of(acts, GaveUp) and e.status == "gave_up"


# ------------------------------------------------------------------------------------------- dropping rules
def test_bad_signature_not_leader_stale_future_and_garbage_are_dropped_with_reasons():
    d = started("D")
    p = proposal(P_OPT)
    assert drops(d.handle(MessageReceived("C", dataclasses.replace(p, signature=b"\0" * 64)))) == ["bad signature"]
    wrong_signer = Proposal.make(SIGNERS["E"], case_id=CASE, height=1, round=1, leader="C", payload=P_OPT)
    assert drops(d.handle(MessageReceived("C", wrong_signer))) == ["bad signature"]
    assert drops(d.handle(MessageReceived("E", proposal(P_OPT, leader="E")))) == ["not leader"]
    assert drops(d.handle(MessageReceived("C", dataclasses.replace(p, case_id="other")))) == ["wrong case"]
    assert drops(d.handle(MessageReceived("X", p))) == ["not a member"]
    for garbage in ("hello", None, Proposal(CASE, -1, 1, "C", P_OPT), Proposal(CASE, 1, 1, "C", "nope"),
                    dataclasses.replace(p, version=2), Relay("x", ("C",), "E")):
        assert drops(d.handle(MessageReceived("C", garbage))) == ["malformed"]
    # a round-2 proposal from D's perspective while in round 1 is buffered and replayed on entering round 2
    p2 = proposal(P_OPT, leader="D", round=2)
    e = started("E")
    assert e.handle(MessageReceived("D", p2)) == []
    acts = e.handle(TimerExpired(("round", 1, 1)))
    assert of(acts, Verify) == [Verify(OPT, P_OPT, 1, 0.0)]
    assert drops(e.handle(MessageReceived("C", p))) == ["stale"]


# ------------------------------------------------------------------------------------------------ normal node
def decision(delegate: str, digest: str = OPT, height: int = 1, round: int = 1, cost: float = 744.0) -> Decision:
    return Decision.make(SIGNERS[delegate], height=height, round=round, leader="C", digest=digest, cost=cost,
                         delegate=delegate, case_id=CASE)


def test_normal_node_executes_strict_majority_only():
    n = NormalNode("N1", COMMITTEE, case_id=CASE)
    n.handle(Start(1))
    for who in ("C", "D"):
        assert not of(n.handle(MessageReceived(who, decision(who))), Execute)
    assert not of(n.handle(MessageReceived("D", decision("D"))), Execute)  # a duplicate counts once
    assert not of(n.handle(MessageReceived("E", decision("E", BAD))), Execute)
    acts = n.handle(MessageReceived("F", decision("F")))
    (ex,) = of(acts, Execute)
    assert ex.block.digest == OPT and ex.block.prev_hash == GENESIS_HASH and len(ex.block.decisions) == 3
    assert CancelTimer(("height", 1)) in acts and n.chain == [ex.block]


def test_normal_node_conflicting_decisions_count_for_nothing_and_bad_ones_are_dropped():
    n = NormalNode("N1", COMMITTEE, case_id=CASE)
    n.handle(MessageReceived("C", decision("C")))
    acts = n.handle(MessageReceived("C", decision("C", BAD)))
    assert of(acts, ConflictingDecisions)
    n.handle(MessageReceived("D", decision("D")))
    n.handle(MessageReceived("E", decision("E")))
    assert not n.chain  # C counts for nothing: 2 of 5
    assert drops(n.handle(MessageReceived("G", decision("F")))) == ["sender mismatch"]
    assert drops(n.handle(MessageReceived("F", dataclasses.replace(decision("F"), cost=1.0)))) == ["bad signature"]
    assert of(n.handle(MessageReceived("G", decision("G"))), Execute)


def test_normal_node_timeout_and_hash_chain_in_height_order():
    n = NormalNode("N1", COMMITTEE, case_id=CASE, timeout=30.0)
    assert of(n.handle(Start(1)), StartTimer) == [StartTimer(("height", 1), 30.0)]
    n.handle(Start(2))
    for who in "CDE":
        n.handle(MessageReceived(who, decision(who, height=2)))
    assert not n.chain  # height 1 still open: height 2 waits
    acts = n.handle(TimerExpired(("height", 1)))
    assert of(acts, NoMajority)
    assert [b.height for b in n.chain] == [2]
    n.handle(Start(3))
    for who in "CDE":
        n.handle(MessageReceived(who, decision(who, height=3, round=2)))
    assert [b.height for b in n.chain] == [2, 3] and n.chain[1].prev_hash == n.chain[0].hash
    assert check_chain(n.chain)
    assert not check_chain([n.chain[0], dataclasses.replace(n.chain[1], cost=1.0)])
    assert drops(n.handle(MessageReceived("F", decision("F", height=1)))) == ["height closed"]


# ------------------------------------------------------------------------------------------- signatures off
def test_signatures_off_identity_rests_on_the_transport_sender():
    comm, _ = make_committee(NAMES, ("N1",), signatures=False)
    d = Delegate("D", comm, None, case_id=CASE, signatures=False)
    d.handle(Start(1))
    p = Proposal(CASE, 1, 1, "C", P_OPT)
    assert of(d.handle(MessageReceived("C", p)), Verify)
    assert drops(d.handle(MessageReceived("E", p))) == ["sender mismatch"]
    acts = d.handle(VerificationDone(OPT, Verdict(True, 744.0)))
    assert all(s.msg.signature == b"" for s in sends(acts))
    proof = MisbehaviourProof(p, "x", "E")
    assert drops(d.handle(MessageReceived("E", proof))) == ["proof without signatures"]
    # a rejected unsigned proposal proves nothing: no exclusion before the window ends
    e = Delegate("E", comm, None, case_id=CASE, signatures=False)
    e.handle(Start(1))
    e.handle(MessageReceived("C", Proposal(CASE, 1, 1, "C", P_BAD)))
    assert not of(e.handle(VerificationDone(BAD, Verdict(False, 904.0, ("kkt",)))), Exclude)
    n = NormalNode("N1", comm, signatures=False)
    forged = Decision(1, 1, "C", BAD, 904.0, "D")
    assert drops(n.handle(MessageReceived("E", forged))) == ["sender mismatch"]


# ------------------------------------------------------------------------------------------------ behaviours
def test_reference_keys_map_one_to_one():
    bs = from_reference_keys({"follower_ignore": [9, 10], "follower_error": ["C"], "follower_collusion": []},
                             {9: "D", 10: "E"})
    assert [type(b).__name__ for b in bs] == ["FollowerIgnore", "FollowerError"]
    assert bs[0].targets == {"D", "E"}
    with pytest.raises(ValueError):
        from_reference_keys({"follower_teleport": [1]})
    with pytest.raises(ValueError):
        from_reference_keys({"follower_ignore": [99]}, {9: "D"})


def test_leader_filters_ignore_and_error():
    c = BehavingDelegate(delegate("C"), [FollowerIgnore(["D"]), FollowerError(["C", "E"])])
    c.handle(Start(1))
    acts = c.handle(SolutionReady(1, 1, {"optimal": P_OPT, "tampered": P_BAD}))
    assert not of(acts, Verify)  # it adopts the tampered plan for itself, unverified
    by_dst = {s.dst: s.msg for s in sends(acts, Proposal)}
    assert set(by_dst) == {"E", "F", "G"}
    assert by_dst["E"].payload.digest == BAD and by_dst["F"].payload.digest == OPT
    assert by_dst["E"].signed_by_leader(COMMITTEE.public_key("C"))
    assert of(c.handle(TimerExpired(("round", 1, 1))), Decide)[0].digest == BAD


def test_a_substituted_plan_is_signed_once_per_height():
    """A leader's behaviour asks for the same substituted proposal for every destination: one object, the one a
    new signature gives; another payload object (even of the same digest, with another label), another field or
    a new height signs afresh."""
    c = BehavingDelegate(delegate("C"), [FollowerError(["D", "E", "F"])])
    c.handle(Start(1))
    c.handle(SolutionReady(1, 1, {"optimal": P_OPT, "tampered": P_BAD}))
    acts = c.handle(VerificationDone(OPT, Verdict(True, 744.0)))
    bad = [s.msg for s in sends(acts, Proposal) if s.msg.payload.digest == BAD]
    assert len(bad) == 3 and all(m is bad[0] for m in bad)
    assert bad[0] == proposal(P_BAD) and bad[0].signature == proposal(P_BAD).signature
    d = c.delegate
    assert d.sign_proposal(1, 1, P_BAD) is bad[0]
    same_digest = Payload(BAD, "other", 1.0)
    other = d.sign_proposal(1, 1, same_digest)
    assert other is not bad[0] and other.payload is same_digest and other.signature == bad[0].signature
    assert d.sign_proposal(1, 2, P_BAD).signature == proposal(P_BAD, round=2).signature
    assert d.sign_proposal(1, 1, P_BAD, leader="D") == Proposal.make(
        SIGNERS["C"], case_id=CASE, height=1, round=1, leader="D", payload=P_BAD)
    d.handle(Start(2))
    assert d.sign_proposal(1, 1, P_BAD) is not bad[0] and d.sign_proposal(1, 1, P_BAD) == bad[0]


def test_behaving_receive_is_handle_of_the_message():
    """`BehavingDelegate.receive(src, msg, time)` gives what `handle(MessageReceived(src, msg, time))` gives, and
    leaves the same state, whichever behaviours (with or without an `incoming`, passing notes or not, a
    behaviour of one's own that drops every note)."""
    from poso_sim.protocol import Behaviour, Equivocate, Received, TrickError

    class NoNotes(Behaviour):  # inherits `passes_notes` but overrides `outgoing`: must still be asked
        def outgoing(self, action, ctx):
            return [] if isinstance(action, Received) else [action]

    kinds = [
        lambda: [FollowerIgnore(["D"]), Delay(1.0)], lambda: [FollowerCollusion(["C"])], lambda: [NoNotes()],
        lambda: [TrickError(["E"])], lambda: [Crash(at_time=2.0), Silence()], lambda: [Equivocate()],
    ]
    p_opt, p_bad = proposal(P_OPT), proposal(P_BAD)
    msgs = [("C", p_opt), ("D", relay(p_opt, ("C", "D"))), ("E", relay(p_bad, ("C", "E"))),
            ("C", Decision.make(SIGNERS["C"], height=1, round=1, leader="C", digest=OPT, cost=744.0, delegate="C",
                                case_id=CASE)),
            ("G", relay(p_opt, ("C", "G"))), ("D", relay(p_opt, ("C", "D")))]
    for make in kinds:
        a, b = (BehavingDelegate(delegate("F"), make(), payload_source=lambda h: {"tampered": P_BAD}) for _ in "ab")
        assert a.handle(Start(1, time=0.0)) == b.handle(Start(1, time=0.0))
        for i, (src, m) in enumerate(msgs):
            t = 0.5 * i
            assert a.receive(src, m, t) == b.handle(MessageReceived(src, m, t)), (make(), i)
            assert (a.now, a.events_seen, a.crashed, a.seen) == (b.now, b.events_seen, b.crashed, b.seen)
        assert a.handle(VerificationDone(OPT, Verdict(True, 744.0))) == b.handle(VerificationDone(OPT, Verdict(True, 744.0)))


def test_follower_filters_collusion_trick_ignore_delay_silence_crash():
    f = BehavingDelegate(delegate("F"), [FollowerCollusion(["C"]), TrickIgnore(["D"]), Delay(2.0)])
    f.handle(Start(1))
    acts = f.handle(MessageReceived("C", proposal(P_BAD)))
    assert not of(acts, Verify)  # accepted unchecked
    assert {(s.dst, s.delay) for s in sends(acts, Relay)} == {("E", 2.0), ("G", 2.0)}
    assert of(f.handle(TimerExpired(("round", 1, 1))), Decide)[0].digest == BAD
    s = BehavingDelegate(delegate("D"), [Silence()])
    s.handle(Start(1))
    s.handle(MessageReceived("C", proposal(P_OPT)))
    acts = s.handle(VerificationDone(OPT, Verdict(True, 744.0)))
    assert not sends(acts) and not sends(s.handle(TimerExpired(("round", 1, 1))))
    k = BehavingDelegate(delegate("E"), [Crash(at_time=3.0)])
    assert k.handle(Start(1, time=0.0))
    acts = k.handle(MessageReceived("C", proposal(P_OPT), time=3.0))
    assert acts == [Crashed(3.0)] and k.handle(TimerExpired(("round", 1, 1), time=5.3)) == []
