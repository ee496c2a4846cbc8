"""Keys, signatures, canonical encodings, and robustness of the machines against arbitrary input."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from poso_sim.protocol import (
    Decision,
    Delegate,
    KeyPair,
    MessageReceived,
    MisbehaviourProof,
    NormalNode,
    Payload,
    Proposal,
    Relay,
    Signer,
    SolutionReady,
    Start,
    TimerExpired,
    VerificationDone,
    Verdict,
    canonical,
    make_committee,
    check_signature,
)

OPT = "aa" * 32
NAMES = ["C", "D", "E", "F", "G"]
COMMITTEE, KEYS = make_committee(NAMES, ("N1",))


def test_keys_are_deterministic_from_the_seed():
    a, b = KeyPair.generate(b"seed-1"), KeyPair.generate(b"seed-1")
    assert a.public == b.public and len(a.public) == 32
    assert KeyPair.generate(b"seed-2").public != a.public
    raw = bytes(range(32))
    assert KeyPair.generate(raw).seed == raw
    sig = a.sign(b"msg")
    assert check_signature(a.public, sig, b"msg") and not check_signature(a.public, sig, b"msG")
    assert not check_signature(b"short", sig, b"msg") and not check_signature(a.public, b"", b"msg")
    assert Signer(None, enabled=False).sign(b"x") == b""


def test_ed25519_known_answers_and_small_order_keys():
    # RFC 8032, section 7.1, tests 1 and 2: the same key and signature bytes as any Ed25519 (deterministic)
    for seed, public, msg, sig in (
        ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ):
        kp = KeyPair.generate(bytes.fromhex(seed))
        assert kp.public.hex() == public and kp.sign(bytes.fromhex(msg)).hex() == sig
        assert check_signature(kp.public, bytes.fromhex(sig), bytes.fromhex(msg))
        assert not check_signature(kp.public, bytes.fromhex(sig), bytes.fromhex(msg) + b"x")
    # the identity point as a public key: R = identity, S = 0 would verify every message under a cofactorless
    # check that accepts small-order keys; such a key is rejected
    identity = b"\x01" + bytes(31)
    assert not check_signature(identity, identity + bytes(32), b"any message")


def test_proposal_signature_covers_case_height_round_leader_digest_only():
    s = Signer(KEYS["C"])
    p = Proposal.make(s, case_id="m", height=1, round=1, leader="C", payload=Payload(OPT, "optimal", 744.0, object()))
    pk = COMMITTEE.public_key("C")
    assert p.signed_by_leader(pk)
    for change in ({"case_id": "x"}, {"height": 2}, {"round": 2}, {"leader": "D"}, {"payload": Payload("ab" * 32)}):
        assert not dataclasses.replace(p, **change).signed_by_leader(pk)
    # label, claimed cost and the attached solution are not signed and do not affect equality
    same = dataclasses.replace(p, payload=Payload(OPT, "other", 1.0, "solution"))
    assert same.signed_by_leader(pk) and same == p and same.encode() == p.encode()


def test_relay_signature_covers_wrapped_proposal_and_path():
    p = Proposal.make(Signer(KEYS["C"]), case_id="m", height=1, round=1, leader="C", payload=Payload(OPT))
    r = Relay.make(Signer(KEYS["D"]), proposal=p, path=("C", "D"), relayer="D")
    pk = COMMITTEE.public_key("D")
    assert check_signature(pk, r.signature, r.signing_bytes())
    assert not check_signature(pk, r.signature, dataclasses.replace(r, path=("C", "E", "D")).signing_bytes())
    other = dataclasses.replace(p, signature=b"\1" * 64)
    assert not check_signature(pk, r.signature, dataclasses.replace(r, proposal=other).signing_bytes())


def test_encodings_are_canonical_and_typed():
    assert canonical({"b": 1, "a": [b"\x01", 2.5]}) == b'{"a":["01",2.5],"b":1}'
    d = Decision.make(Signer(KEYS["E"]), height=1, round=2, leader="D", digest=OPT, cost=744, delegate="E")
    assert d.kind == "decision" and d.version == 1 and b'"cost":744.0' in d.encode()
    kinds = {Proposal.kind, Relay.kind, MisbehaviourProof.kind, Decision.kind}
    assert kinds == {"proposal", "relay", "misbehaviour", "decision"}
    # domain separation: a decision's signature is not valid as a proposal's
    assert d.signing_bytes().startswith(b"poso-sim/protocol/decision/")


junk = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats() | st.text(max_size=4) | st.binary(max_size=70),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)
names = st.sampled_from(NAMES + ["X", ""]) | junk
payloads = st.builds(Payload, st.sampled_from([OPT, "bb" * 32, "zz", ""]) | junk)
proposals = st.builds(Proposal, st.sampled_from(["manchester", "x"]) | junk, st.integers(-1, 3) | junk,
                      st.integers(-1, 3) | junk, names, payloads | junk, st.binary(max_size=64) | junk)
messages = (
    proposals
    | st.builds(Relay, proposals | junk, st.lists(names, max_size=4).map(tuple) | junk, names, st.binary(max_size=64))
    | st.builds(MisbehaviourProof, proposals | junk, st.text(max_size=3) | junk, names, st.binary(max_size=64))
    | st.builds(Decision, st.integers(-1, 3) | junk, st.integers(-1, 3) | junk, names,
                st.sampled_from([OPT, "q"]) | junk, st.floats() | junk, names, st.binary(max_size=64))
    | junk
)
events = (
    st.builds(MessageReceived, names, messages)
    | st.builds(TimerExpired, junk | st.tuples(st.just("round"), st.integers(0, 3), st.integers(0, 3)))
    | st.builds(VerificationDone, st.sampled_from([OPT, "bb" * 32]) | junk,
                st.builds(Verdict, st.booleans(), st.floats() | st.none(), st.just(())) | junk, st.booleans())
    | st.builds(SolutionReady, st.integers(0, 3), st.integers(0, 3),
                st.dictionaries(st.sampled_from(["optimal", "tampered"]), payloads, max_size=2))
    | st.builds(Start, st.integers(-1, 3))
    | junk
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=12), st.booleans())
def test_machines_never_crash_on_arbitrary_input(evs, signatures):
    comm, keys = make_committee(NAMES, ("N1",), signatures=signatures)
    for name in ("C", "D"):
        d = Delegate(name, comm, keys[name], case_id="manchester", signatures=signatures)
        d.handle(Start(1))
        for ev in evs:
            assert isinstance(d.handle(ev), list)
    n = NormalNode("N1", comm, signatures=signatures)
    for ev in evs:
        assert isinstance(n.handle(ev), list)


def test_encodings_and_validation_are_computed_once_per_message_object(monkeypatch):
    import pickle

    from poso_sim.protocol import messages as messages_mod
    from poso_sim.protocol import message_problem

    s = Signer(KEYS["C"])
    prop = Proposal.make(s, case_id="manchester", height=1, round=1, leader="C", payload=Payload(OPT, "optimal", 744.09))
    relay = Relay.make(Signer(KEYS["D"]), proposal=prop, path=("C", "D"), relayer="D")
    calls = []
    real = messages_mod.canonical
    monkeypatch.setattr(messages_mod, "canonical", lambda obj: calls.append(1) or real(obj))
    first = (relay.signing_bytes(), relay.encode(), prop.signing_bytes(), prop.encode())
    n = len(calls)
    for _ in range(5):  # N receivers of one object: nothing is encoded again
        assert (relay.signing_bytes(), relay.encode(), prop.signing_bytes(), prop.encode()) == first
        assert message_problem(relay) is None
    assert len(calls) == n
    # the memo is exactly what a fresh object computes; copies, equality and pickling look at the fields only
    fresh = dataclasses.replace(relay)
    assert fresh == relay and hash(fresh) == hash(relay) and fresh.signing_bytes() == first[0]
    assert check_signature(KEYS["D"].public, relay.signature, relay.signing_bytes())
    back = pickle.loads(pickle.dumps(relay))
    assert back == relay and back.encode() == first[1]
    # a malformed message keeps its reason; a different object is judged on its own
    bad = dataclasses.replace(prop, height=0)
    assert message_problem(bad) == message_problem(bad) == "height/round must be positive integers"
    assert message_problem(dataclasses.replace(bad, height=2)) is None


def test_committee_membership_is_a_set_lookup():
    assert "C" in COMMITTEE and "N1" not in COMMITTEE and "Z" not in COMMITTEE
    assert [] not in COMMITTEE  # an unhashable claim is nobody, not an error
    assert COMMITTEE == make_committee(NAMES, ("N1",))[0]


_JSONISH = st.one_of(
    st.text(max_size=8), st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=4),
    st.lists(st.text(max_size=4), max_size=3), st.tuples(st.text(max_size=3)),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _JSONISH, max_size=6))
def test_a_message_body_is_encoded_as_canonical_encodes_it(body):
    """The direct encoding of plain bodies (strings, numbers, lists of strings) and the general path give the
    same bytes for any body: non-ASCII text, huge integers, NaN and infinities, -0.0, bytes, tuples, bools."""
    import numpy as np

    from poso_sim.protocol.messages import _canonical_body

    assert _canonical_body(body) == canonical(body)
    odd = {**body, "n": np.int64(3), "x": np.float64(0.1)}  # numpy numbers take the general path
    assert _canonical_body(odd) == canonical(odd)


def test_a_signed_message_is_the_unsigned_one_with_its_signature():
    """`_signed` copies the fields (not through `dataclasses.replace`) and keeps the signing bytes: the same object
    as `replace` makes, whose signing bytes and encoding recomputed from scratch are the same, for every kind
    (a market's demand included)."""
    import pickle

    from poso_sim.protocol.market_messages import Demand

    signer = Signer(KeyPair.generate(b"k"))
    CASE_ID = "manchester"
    p = Proposal(CASE_ID, 1, 2, "A", Payload("ab" * 32, "optimal", 1.0), instance="cd" * 32)
    unsigned = [p, Relay(Proposal.make(signer, case_id=CASE_ID, height=1, round=1, leader="A",
                                       payload=Payload("ab" * 32)), ("A", "B"), "B"),
                MisbehaviourProof(p, "tampered", "C"), Decision(1, 1, "A", "ab" * 32, 744.09, "D", b"", CASE_ID),
                Demand("m", 1, "H1", 1.0, -2.0, 0.5)]
    for m in unsigned:
        got = m._signed(signer)
        want = dataclasses.replace(m, signature=signer.sign(m.signing_bytes()))
        assert type(got) is type(m) and got == want and got.signature == want.signature != b""
        fresh = pickle.loads(pickle.dumps(got))  # no memo: everything recomputed
        assert got.signing_bytes() == fresh.signing_bytes() == m.signing_bytes()
        assert got.encode() == fresh.encode() == want.encode() and got.encode() != m.encode()


# ------------------------------------------------------------------ the signing bytes written field by field
_TEXTS = st.text(max_size=12) | st.sampled_from(["", "C", 'quo"te\\', "ünï\u2028", "\x00\x1f", "\ud800", OPT])
_INTS = st.integers(min_value=-2**70, max_value=2**70) | st.booleans()
_COSTS = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-2**60, max_value=2**60)
          | st.sampled_from([0.0, -0.0, 5e-324, 1e300, 744.0, 0.1 + 0.2]) | st.booleans())


def _general(msg) -> tuple[bytes, bytes]:
    """Signing bytes and encoding as the general path makes them (`canonical` of the body)."""
    from poso_sim.protocol.messages import DOMAIN, _canonical_body

    sig = msg.signature
    extra = {"signature": bytes(sig).hex() if isinstance(sig, (bytes, bytearray)) else sig}
    return (DOMAIN + msg.kind.encode() + b"/" + _canonical_body({"v": msg.version, **msg.body()}),
            _canonical_body({"kind": msg.kind, "v": msg.version, **msg.body(), **extra}))


@settings(max_examples=300, deadline=None)
@given(case=_TEXTS, h=_INTS, r=_INTS, leader=_TEXTS, digest=_TEXTS, cost=_COSTS, who=_TEXTS, inst=_TEXTS,
       v=st.sampled_from([1, 2, True]), path=st.lists(_TEXTS, max_size=4), sig=st.binary(max_size=64))
def test_signing_bytes_written_directly_equal_the_canonical_encoding(case, h, r, leader, digest, cost, who, inst, v,
                                                                     path, sig):
    """Decisions, proposals and relays write their signing bytes (and a proposal its encoding) field by field when
    the fields have a well-formed message's exact types: the same bytes as the canonical encoding of the body, for
    any values of those types (escapes, non-ASCII, huge numbers, -0.0), and the general path for anything else
    (booleans, non-finite costs)."""
    d = Decision(h, r, leader, digest, cost, who, sig, case, v)
    p = Proposal(case, h, r, leader, Payload(digest), sig, v, inst)
    rl = Relay(p, tuple(path), who, sig, v)
    for msg in (d, p, rl):
        try:
            want = _general(msg)
        except (TypeError, ValueError, OverflowError) as exc:  # what the general path raises, the new one does
            try:
                msg.signing_bytes()
                msg.encode()
            except type(exc):
                continue
            raise AssertionError(f"{type(msg).__name__}: no {type(exc).__name__}")
        assert (msg.signing_bytes(), msg.encode()) == want


def test_made_messages_are_the_signed_copies_of_their_fields():
    """`make` writes the fields once and signs them: equal to the unsigned message signed by `_signed`, with the
    same signature, signing bytes and fields."""
    s = Signer(KEYS["C"])
    p = Proposal.make(s, case_id="m", height=2, round=3, leader="C", payload=Payload(OPT, "optimal", 1.5), instance="")
    assert p == Proposal("m", 2, 3, "C", Payload(OPT), b"")._signed(s) and p.payload.label == "optimal"
    r = Relay.make(s, proposal=p, path=["C", "D"], relayer="D")
    assert r == Relay(p, ("C", "D"), "D")._signed(s) and type(r.path) is tuple
    d = Decision.make(s, height=2, round=3, leader="C", digest=OPT, cost=7, delegate="C", case_id="m")
    assert d == Decision(2, 3, "C", OPT, 7.0, "C", b"", "m")._signed(s) and type(d.cost) is float
    for m in (p, r, d):
        assert check_signature(KEYS["C"].public, m.signature, m.signing_bytes())
        names = [f.name for f in dataclasses.fields(m)]
        assert list(vars(m))[:len(names) + 1] == names + ["_signing_bytes"]  # (then a proposal's `_encoded`)


# ------------------------------------------------------------------ signatures made on demand
def test_a_noted_key_pair_signs_on_demand_with_the_same_signature():
    """A message made by a key pair that notes its signatures in a memo keeps the key pair and makes its signature
    on the first read: the signature an eager signer makes, noted in the memo then; equality, hashing, pickling,
    copying and encodings see it as usual."""
    import copy
    import pickle

    from poso_sim.protocol import SignatureCache

    cache = SignatureCache()
    noted, plain = Signer(KEYS["C"].noting(cache)), Signer(KEYS["C"])
    p_lazy = Proposal.make(noted, case_id="m", height=1, round=1, leader="C", payload=Payload(OPT, "optimal", 1.0))
    p = Proposal.make(plain, case_id="m", height=1, round=1, leader="C", payload=Payload(OPT, "optimal", 1.0))
    r_lazy = Relay.make(noted, proposal=p_lazy, path=("D", "C"), relayer="C")
    d_lazy = Decision.make(noted, height=1, round=1, leader="C", digest=OPT, cost=1.0, delegate="C", case_id="m")
    d = Decision.make(plain, height=1, round=1, leader="C", digest=OPT, cost=1.0, delegate="C", case_id="m")
    assert all("signature" not in vars(m) for m in (p_lazy, r_lazy, d_lazy)) and cache.vouched == 0
    assert "signature" in vars(p) and Proposal.signature == b""
    assert d_lazy.signature == d.signature and cache.vouched == 1  # made (and noted) on the first read
    assert cache.check(KEYS["C"].public, d_lazy.signature, d_lazy.signing_bytes()) and cache.computed == 0
    assert pickle.loads(pickle.dumps(r_lazy)) == r_lazy  # pickling makes the relay's (and its proposal's) signature
    assert p_lazy == p and hash(p_lazy) == hash(p) and p_lazy.encode() == p.encode()
    r = Relay.make(plain, proposal=p, path=("D", "C"), relayer="C")
    assert (r_lazy.signature, r_lazy.signing_bytes()) == (r.signature, r.signing_bytes())
    m_lazy = MisbehaviourProof.make(noted, proposal=p, reason="bad", reporter="C")
    assert copy.copy(m_lazy) == MisbehaviourProof.make(plain, proposal=p, reason="bad", reporter="C")
    off = SignatureCache(limit=0)  # a memo that notes nothing: signed at once
    assert "signature" in vars(Decision.make(Signer(KEYS["C"].noting(off)), height=1, round=1, leader="C",
                                             digest=OPT, cost=1.0, delegate="C", case_id="m"))


def test_a_check_answers_a_signature_made_on_demand_only_through_its_memo():
    """`signed_on_demand` answers for the key pair's own public key through the `check` of the memo it notes in;
    any other key, check (Ed25519 itself, the memo's computed-only `verified`, another memo) or a copy with a
    changed field makes or computes the signature, and a tampered copy is rejected."""
    from poso_sim.protocol import SignatureCache
    from poso_sim.protocol.messages import signed_on_demand

    cache, other = SignatureCache(), SignatureCache()
    noted = Signer(KEYS["D"].noting(cache))
    pub = KEYS["D"].public

    def made():
        return Decision.make(noted, height=2, round=1, leader="C", digest=OPT, cost=3.0, delegate="D", case_id="m")

    assert signed_on_demand(made(), pub, cache.check) and cache.calls == 1 and cache.vouched == 0
    for public, check in ((KEYS["C"].public, cache.check), (pub, check_signature), (pub, cache.verified),
                          (pub, other.check), (None, cache.check)):
        assert not signed_on_demand(made(), public, check)
    m = made()
    assert m.signature and not signed_on_demand(m, pub, cache.check)  # made: the memo answers from now on
    forged = dataclasses.replace(made(), cost=2.0)  # the signature copied onto other content
    assert not signed_on_demand(forged, pub, cache.check) and not cache.check(pub, forged.signature,
                                                                                forged.signing_bytes())
    # a delegate drops a relay whose relayer's signature was copied onto another path; takes the honest one
    c_noted = Signer(KEYS["C"].noting(cache))
    p = Proposal.make(c_noted, case_id="m", height=1, round=1, leader="C", payload=Payload(OPT))
    e = Delegate("E", COMMITTEE, KEYS["E"], case_id="m", sig_check=cache.check)
    e.handle(Start(1))
    good = Relay.make(Signer(KEYS["D"].noting(cache)), proposal=p, path=("C", "D"), relayer="D")
    bad = dataclasses.replace(Relay.make(Signer(KEYS["D"].noting(cache)), proposal=p, path=("C", "D"), relayer="D"),
                              path=("C", "F", "D"))
    before = cache.computed
    assert [type(a).__name__ for a in e.receive("D", good)][:2] == ["Received", "Verify"]
    assert cache.computed == before  # answered without making or verifying the relay's signature
    assert [(type(a).__name__, a.reason) for a in e.receive("D", bad)] == [("Dropped", "bad signature")]
    assert cache.computed == before + 1
