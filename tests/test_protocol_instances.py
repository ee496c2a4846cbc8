"""A chain of instances at the protocol level: the signed instance fingerprint, rejection by it alone, verdicts
per (digest, instance) and the replay behaviour (no solver: payloads and verdicts given by hand)."""

from __future__ import annotations

from poso_sim.protocol import (
    BehavingDelegate,
    Delegate,
    Exclude,
    MessageReceived,
    MisbehaviourProof,
    Payload,
    Proposal,
    Rejected,
    Replay,
    Send,
    Signer,
    SolutionReady,
    Start,
    VerificationDone,
    Verdict,
    Verify,
    make_committee,
)

NAMES = ["C", "D", "E", "F", "G"]
COMMITTEE, KEYS = make_committee(NAMES, ("N1",))
SIGNERS = {n: Signer(KEYS[n]) for n in NAMES}
CASE = "manchester"
FP = {1: "a1" * 32, 2: "b2" * 32, 3: "c3" * 32}
DAY1, DAY2 = Payload("11" * 32, "optimal", 700.0), Payload("22" * 32, "optimal", 710.0)


def delegate(name: str, **kw) -> Delegate:
    return Delegate(name, COMMITTEE, KEYS[name], case_id=CASE, instances=FP, **kw)


def proposal(payload: Payload, height: int, instance: str, leader: str = "C", round: int = 1) -> Proposal:
    return Proposal.make(SIGNERS[leader], case_id=CASE, height=height, round=round, leader=leader, payload=payload,
                         instance=instance)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def test_instance_is_signed_and_absent_fields_keep_the_old_encoding():
    p = proposal(DAY1, 1, FP[1])
    assert p.signed_by_leader(COMMITTEE.public_key("C"))
    assert b"instance" in p.signing_bytes()
    forged = Proposal(p.case_id, p.height, p.round, p.leader, p.payload, p.signature, instance=FP[2])
    assert not forged.signed_by_leader(COMMITTEE.public_key("C"))  # the fingerprint cannot be swapped
    plain = Proposal.make(SIGNERS["C"], case_id=CASE, height=1, round=1, leader="C", payload=DAY1)
    assert b"instance" not in plain.signing_bytes() and plain.instance == ""
    assert Proposal(CASE, 1, 1, "C", DAY1, instance="xyz").problem() == "instance is not a 64-hex fingerprint"


def test_leader_signs_the_instance_of_its_height():
    c = delegate("C")
    c.handle(Start(1))
    c.handle(SolutionReady(1, 1, {"optimal": DAY1}))
    acts = c.handle(VerificationDone(DAY1.digest, Verdict(True, 700.0), instance=FP[1]))
    sent = [a.msg for a in acts if isinstance(a, Send) and isinstance(a.msg, Proposal)]
    assert sent and {p.instance for p in sent} == {FP[1]}


def test_plan_for_another_instance_is_rejected_without_verification_and_is_evidence():
    d = delegate("D")
    d.handle(Start(1))
    d.handle(Start(2))
    acts = d.handle(MessageReceived("C", proposal(DAY1, 2, FP[1])))  # yesterday's plan, honestly labelled
    assert not of(acts, Verify)  # no KKT work at all
    [rej] = of(acts, Rejected)
    assert "wrong instance" in rej.reasons[0]
    [ex] = of(acts, Exclude)
    assert ex.leader == "C" and ex.evidence and "wrong instance" in ex.reason
    proofs = [a for a in acts if isinstance(a, Send) and isinstance(a.msg, MisbehaviourProof)]
    assert sorted(a.dst for a in proofs) == ["E", "F", "G"]
    # a receiver of the proof checks the fingerprint itself: it excludes C without verifying anything
    e = delegate("E")
    e.handle(Start(1))
    e.handle(Start(2))
    acts = e.handle(MessageReceived("D", proofs[0].msg))
    assert not of(acts, Verify) and [x.leader for x in of(acts, Exclude)] == ["C"]


def test_verdicts_are_per_instance_not_per_digest():
    # the digest accepted for day 1 is verified afresh when a proposal claims it for day 2 (C leads every height)
    d = delegate("D")
    d.handle(Start(1))
    acts = d.handle(MessageReceived("C", proposal(DAY1, 1, FP[1])))
    [v] = of(acts, Verify)
    assert v.instance == FP[1]
    d.handle(VerificationDone(DAY1.digest, Verdict(True, 700.0), instance=FP[1]))
    d.handle(Start(2))
    acts = d.handle(MessageReceived("C", proposal(DAY1, 2, FP[2])))
    [v2] = of(acts, Verify)  # not the cached day-1 verdict
    assert v2.instance == FP[2] and v2.height == 2
    acts = d.handle(VerificationDone(DAY1.digest, Verdict(False, None, ("plan is for another instance",)),
                                     instance=FP[2]))
    assert [x.leader for x in of(acts, Exclude)] == ["C"]


def _replayed(claim: str) -> list[Proposal]:
    plans = {1: {"optimal": DAY1}, 2: {"optimal": DAY2}}
    c = BehavingDelegate(delegate("C"), [Replay(claim=claim)], payload_source=plans.get)
    c.handle(Start(1))
    c.handle(Start(2))
    c.handle(SolutionReady(2, 1, {"optimal": DAY2}))
    acts = c.handle(VerificationDone(DAY2.digest, Verdict(True, 710.0), instance=FP[2]))
    return [a.msg for a in acts if isinstance(a, Send) and isinstance(a.msg, Proposal)]


def test_replay_behaviour_resends_yesterdays_plan():
    sent = _replayed("own")
    assert len(sent) == 4
    assert all(p.payload.digest == DAY1.digest and p.instance == FP[1] and p.height == 2 for p in sent)
    assert all(p.signed_by_leader(COMMITTEE.public_key("C")) for p in sent)
    sent = _replayed("current")  # the lying variant claims today's instance: left to the verifier
    assert len(sent) == 4 and all(p.payload.digest == DAY1.digest and p.instance == FP[2] for p in sent)
