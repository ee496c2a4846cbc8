"""The delegate: an honest PoSo committee member as a sans-I/O state machine.

`Delegate.handle(event) -> list[action]`. See docs/protocol.md for the rules and the host contract.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence, Union

from .events import (
    Abandoned,
    AcceptedUnchecked,
    Action,
    CancelTimer,
    Decide,
    DecisionSeen,
    Dropped,
    Event,
    Exclude,
    GaveUp,
    MessageReceived,
    OwnPlanRejected,
    ProofReceived,
    Received,
    Rejected,
    RoundStarted,
    Send,
    SolutionReady,
    Solve,
    Start,
    StartTimer,
    TimerExpired,
    VerificationDone,
    Verdict,
    Verified,
    Verify,
)
from .identity import Committee, KeyPair, NodeId, Signer, check_signature
from .messages import Decision, MisbehaviourProof, Payload, Proposal, Relay, message_problem, signed_on_demand

# Reasons of `Dropped` notes.
MALFORMED = "malformed"
NOT_MEMBER = "not a member"
SENDER_MISMATCH = "sender mismatch"
WRONG_CASE = "wrong case"
BAD_SIGNATURE = "bad signature"
BAD_PATH = "bad path"
LOOP = "loop"
STALE = "stale"
HEIGHT_CLOSED = "height closed"
NOT_LEADER = "not leader"
DUPLICATE = "duplicate"
BUFFER_FULL = "buffer full"
DIGEST_MISMATCH = "digest mismatch"
FALSE_ACCUSATION = "false accusation"
UNSIGNED_PROOF = "proof without signatures"
UNEXPECTED = "unexpected"
#: the reason of the verdict on a plan signed for another instance than its height's (no verification needed)
WRONG_INSTANCE = "wrong instance"

#: A delegate's state in its current height (`Delegate.status`).
DelegateStatus = Literal["idle", "running", "decided", "gave_up"]
IDLE: DelegateStatus = "idle"
RUNNING: DelegateStatus = "running"
DECIDED: DelegateStatus = "decided"
GAVE_UP: DelegateStatus = "gave_up"

#: What a verification costs in virtual time: fixed seconds, or the measured CPU time of the check.
VerifyCost = Union[float, Literal["measured"]]
MEASURED: Literal["measured"] = "measured"


def leader_for(
    members: Sequence[NodeId],
    height: int,
    round: int,
    excluded: Any = (),
    *,
    rotate_heights: bool = False,
) -> NodeId:
    """The leader of (height, round): the round-th delegate in rotation order among those not excluded
    (wrapping around). With `rotate_heights`, height h starts the rotation at its (h-1)-th candidate.
    If every member is excluded the exclusions are ignored (someone must lead)."""
    candidates = [m for m in members if m not in excluded] or list(members)
    offset = (height - 1) if rotate_heights else 0
    return candidates[(offset + round - 1) % len(candidates)]


def _info(proposal: Proposal, path: tuple[NodeId, ...]) -> dict[str, Any]:
    """What a dropped copy claimed (the fields of its `Dropped` note)."""
    return {"height": proposal.height, "round": proposal.round, "leader": proposal.leader, "path": path}


def round_timer(height: int, round: int) -> tuple[str, int, int]:
    return ("round", height, round)


_HOPS = tuple(f"R{k}" for k in range(16))


def _hops(k: int) -> str:
    """The `via` of a copy that took k hops ("R1" direct from the leader)."""
    return _HOPS[k] if k < 16 else f"R{k}"


#: the methods whose rules a copy's memo (`Delegate._on_message`) stands for: a subclass that overrides one of them
#: takes every copy through the general path
_RECEIVER_INDEPENDENT = ("_on_message", "_on_copy", "_on_signed_copy", "_path_ok", "_bad_signer", "_pk", "_drop")
#: delegate class -> whether it overrides one of those methods (`Delegate._context`)
_OWN_CHECKS: dict[type, bool] = {}


def _context_field(name: str, doc: str) -> Any:
    """An attribute a copy's checks that need no round state read: setting it gives the delegate its context
    again (`Delegate._ctx`)."""
    private = "_" + name

    def fset(self: "Delegate", value: Any) -> None:
        setattr(self, private, value)  # (not through __dict__: that would make the object's dict)
        if self._ctx is not None:
            self._ctx = self._context()

    return property(operator.attrgetter(private), fset, doc=doc)


@dataclass(frozen=True)
class Exclusion:
    leader: NodeId
    height: int
    round: int
    reason: str
    evidence: bool


@dataclass(slots=True)
class _Copy:
    """One received copy of a proposal (or a proof carrying one) waiting for, or given, a verdict."""

    proposal: Proposal
    path: tuple[NodeId, ...]
    src: NodeId
    via: str  # "own" | "direct" | "relay" | "proof"


@dataclass(slots=True)
class RoundState:
    height: int
    round: int
    leader: NodeId
    valid: dict[str, tuple[float, Payload]] = field(default_factory=dict)
    relayed: bool = False
    proposed: bool = False
    #: the copies taken, as digest -> their paths (a path tuple is shared with the message that carried it)
    seen_paths: dict[str, set[tuple[NodeId, ...]]] = field(default_factory=dict)

    @property
    def seen(self) -> set[tuple[str, tuple[NodeId, ...]]]:
        """The (digest, path) pairs of the copies taken."""
        return {(d, p) for d, paths in self.seen_paths.items() for p in paths}

    def take(self, digest: str, path: tuple[NodeId, ...]) -> bool:
        """Record a copy; False if one with this digest and path was taken already."""
        paths = self.seen_paths.get(digest)
        if paths is None:
            self.seen_paths[digest] = {path}
            return True
        if path in paths:
            return False
        paths.add(path)
        return True


class Delegate:
    """An honest delegate. Behaviours (protocol.behaviours) make dishonest ones by filtering its events and
    actions and by setting the policy knobs `own_choice`, `trust_own` and `trusted_leaders`."""

    def __init__(
        self,
        name: NodeId,
        committee: Committee,
        keys: KeyPair | None,
        *,
        case_id: str,
        window: float = 5.3,
        signatures: bool = True,
        verify_cost: VerifyCost | None = 0.0,
        rotate_heights: bool = False,
        max_rounds: int | None = None,
        buffer_limit: int = 256,
        sig_check: Callable[[bytes | None, bytes, bytes], bool] = check_signature,
        instances: Callable[[int], str] | Mapping[int, str] | None = None,
    ) -> None:
        if name not in committee:
            raise ValueError(f"{name!r} is not a committee member")
        if signatures and committee.keys is None:
            raise ValueError("signatures are on but the committee has no public keys")
        if not (window > 0):
            raise ValueError("window must be positive")
        self.name = name
        self.committee = committee
        self.case_id = case_id
        self.window = float(window)
        self.signatures = signatures
        self.signer = Signer(keys, signatures)
        if verify_cost == MEASURED or verify_cost is None:
            self.verify_charge: float | None = None
        else:
            self.verify_charge = float(verify_cost)
        self.rotate_heights = rotate_heights
        self.max_rounds = max_rounds
        self.buffer_limit = buffer_limit
        self.sig_check = sig_check  # (public key, signature, data) -> bool; a memo may stand in (same results)
        # height -> fingerprint of that height's problem instance (None: one problem for every height)
        self.instances = instances

        # Policy knobs (honest defaults). Dishonest behaviours change them.
        self.own_choice = "optimal"  # payload label the leader adopts as its own plan
        self.trust_own = False  # adopt own plan without verifying it
        self.trusted_leaders: set[NodeId] = set()  # accept their direct proposals unchecked

        self.excluded: dict[NodeId, Exclusion] = {}
        # verdicts and waiting copies by (digest, instance): a plan accepted for one instance says nothing of another
        self.cache: dict[tuple[str, str], Verdict] = {}
        self.pending: dict[tuple[str, str], list[_Copy]] = {}
        self.height: int | None = None
        self.round = 0
        self.status: DelegateStatus = IDLE
        self.rounds: dict[tuple[int, int], RoundState] = {}
        self.decisions: dict[int, Decision] = {}
        self.payloads: dict[tuple[int, int], Mapping[str, Payload]] = {}
        self.proofs_sent: set[NodeId] = set()
        self._schedule_excluded: frozenset[NodeId] = frozenset()
        self._rounds_this_height = 0
        self._buffer: list[tuple[NodeId, Any]] = []
        # the proposals this node signed in its current height (`sign_proposal`), kept with what they were made of
        self._signed: dict[tuple[Any, ...], tuple[Payload, Signer, Proposal]] = {}
        # a copy's verdict is applied by the rules below (not by a subclass's own): a cached acceptance of a copy
        # in a relayed round may then be recorded without the general path (`_on_signed_copy`)
        cls = type(self)
        self._plain_judging = (cls._submit, cls._apply, cls._accept) == (Delegate._submit, Delegate._apply, Delegate._accept)
        # the round state of (height, round), set with them (`_enter_round`): the taken-copy shortcut's round
        self._rs: RoundState | None = None
        # what a copy's checks that need no round state depend on (see `_on_message`)
        self._ctx = self._context()

    _ctx: Any = None  # set at the end of __init__ (`_context`)
    committee: Committee = _context_field("committee", "The committee (members, keys, observers).")
    case_id: str = _context_field("case_id", "The case every copy must be about.")
    signatures: bool = _context_field("signatures", "Whether messages are signed and signatures checked.")
    sig_check: Callable[[bytes | None, bytes, bytes], bool] = _context_field(
        "sig_check", "(public key, signature, data) -> bool; a memo may stand in (same results).")

    def _context(self) -> Any:
        """What a copy's checks that need no round state depend on, as one object shared by the delegates of a
        committee with the same case, signatures switch and check (`Committee.context`)."""
        cls = type(self)
        own = _OWN_CHECKS.get(cls)
        if own is None:
            own = _OWN_CHECKS[cls] = any(getattr(cls, n) is not getattr(Delegate, n) for n in _RECEIVER_INDEPENDENT)
        if own:
            return object()  # checks of its own: no message memo names this context
        return self.committee.context(self.case_id, bool(self.signatures), self.sig_check)

    # ------------------------------------------------------------------------------------------ public helpers
    @property
    def members(self) -> tuple[NodeId, ...]:
        return self.committee.members

    def leader_for(self, height: int, round: int, excluded: Any = None) -> NodeId:
        """Leader of (height, round); `excluded` defaults to the set fixed when the current height started."""
        ex = self._schedule_excluded if excluded is None else excluded
        return leader_for(self.members, height, round, ex, rotate_heights=self.rotate_heights)

    def current_round(self) -> RoundState | None:
        if self.height is None:
            return None
        return self.rounds.get((self.height, self.round))

    def instance_for(self, height: int) -> str:
        """The fingerprint of the problem instance of `height` ("" when the run has one problem)."""
        inst = self.instances
        if inst is None:
            return ""
        if callable(inst):
            return str(inst(height) or "")
        return str(inst.get(height, ""))

    def sign_proposal(
        self, height: int, round: int, payload: Payload, leader: NodeId | None = None, instance: str | None = None
    ) -> Proposal:
        """A proposal signed by this node; `instance` defaults to the instance of `height`.

        The same request in the same height (this very payload object, fields and signer) gives the proposal object
        made the first time: Ed25519 signatures are deterministic, so it is the proposal a new signature would
        make. A dishonest leader's behaviours ask again for every destination of a plan they substitute."""
        leader = leader or self.name
        instance = self.instance_for(height) if instance is None else instance
        key = (height, round, leader, instance, self.case_id, id(payload))
        got = self._signed.get(key)
        if got is not None and got[0] is payload and got[1] is self.signer:
            return got[2]
        proposal = Proposal.make(
            self.signer, case_id=self.case_id, height=height, round=round, leader=leader, payload=payload,
            instance=instance,
        )
        self._signed[key] = (payload, self.signer, proposal)
        return proposal

    def _instance_mismatch(self, proposal: Proposal) -> Verdict | None:
        """The rejection of a proposal signed for another instance than its height's (None if it matches)."""
        want = self.instance_for(proposal.height)
        if want == proposal.instance:
            return None
        got = proposal.instance[:12] or "none"
        return Verdict(False, None, (f"{WRONG_INSTANCE}: signed for {got}, height {proposal.height} is {want[:12] or 'none'}",))

    # ------------------------------------------------------------------------------------------------ dispatch
    def handle(self, event: Event) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, MessageReceived):
            self._on_message(event.src, event.msg, out)
        elif isinstance(event, VerificationDone):
            self._on_verification(event, out)
        elif isinstance(event, TimerExpired):
            self._on_timer(event.timer_id, out)
        elif isinstance(event, SolutionReady):
            self._on_solution(event, out)
        elif isinstance(event, Start):
            self._on_start(event.height, out)
        else:
            out.append(Dropped(UNEXPECTED, event=type(event).__name__))
        return out

    def receive(self, src: NodeId, msg: Any) -> list[Action]:
        """`handle(MessageReceived(src, msg))` without building the event: the same actions in the same order.
        A host's per-message entry (a delivered message is most of a run's events); use it only when `handle`
        is not overridden."""
        out: list[Action] = []
        self._on_message(src, msg, out)
        return out

    # ------------------------------------------------------------------------------------------------ heights
    def _on_start(self, height: int, out: list[Any]) -> None:
        if not isinstance(height, int) or height < 1 or (self.height is not None and height <= self.height):
            out.append(Dropped(STALE, event="Start", height=height))
            return
        if self.status == RUNNING and self.height is not None:
            out.append(CancelTimer(round_timer(self.height, self.round)))
            out.append(Abandoned(self.height, self.round))
        self.rounds = {k: v for k, v in self.rounds.items() if k[0] >= height - 1}
        self.payloads = {k: v for k, v in self.payloads.items() if k[0] >= height - 1}  # holds solutions
        self._signed = {}
        self.height = height
        self.round = 1
        self.status = RUNNING
        self._schedule_excluded = frozenset(self.excluded)
        n_candidates = len([m for m in self.members if m not in self._schedule_excluded]) or len(self.members)
        self._rounds_this_height = self.max_rounds or n_candidates
        self._enter_round(out)

    def _enter_round(self, out: list[Any]) -> None:
        assert self.height is not None
        h, r = self.height, self.round
        leader = self.leader_for(h, r)
        self.rounds[(h, r)] = self._rs = RoundState(h, r, leader)
        out.append(StartTimer(round_timer(h, r), self.window))
        out.append(RoundStarted(h, r, leader))
        if leader == self.name:
            out.append(Solve(h, r))
        self._replay(out)

    def _replay(self, out: list[Any]) -> None:
        buffered, self._buffer = self._buffer, []
        for src, msg in buffered:
            self._on_message(src, msg, out)

    def _on_timer(self, timer_id: Any, out: list[Any]) -> None:
        if timer_id != round_timer(self.height or 0, self.round) or self.status != RUNNING:
            return  # a stale timer: nothing to do
        assert self.height is not None
        h, r = self.height, self.round
        rs = self.rounds[(h, r)]
        if rs.valid:
            cost, digest = min((c, d) for d, (c, _) in rs.valid.items())
            self._decide(rs, digest, cost, rs.valid[digest][1], out)
            return
        self._exclude(rs.leader, h, r, "timeout: no valid proposal in the window", evidence=False, out=out)
        if r >= self._rounds_this_height:
            self.status = GAVE_UP
            out.append(GaveUp(h, r))
            return
        self.round = r + 1
        self._enter_round(out)

    def _decide(self, rs: RoundState, digest: str, cost: float, payload: Payload, out: list[Any]) -> None:
        self.status = DECIDED
        dec = Decision.make(
            self.signer,
            height=rs.height,
            round=rs.round,
            leader=rs.leader,
            digest=digest,
            cost=cost,
            delegate=self.name,
            case_id=self.case_id,
        )
        self.decisions[rs.height] = dec
        out.append(Decide(rs.height, rs.round, digest, cost, rs.leader, payload.label))
        for dst in self.members:
            if dst != self.name:
                out.append(Send(dst, dec))
        for dst in self.committee.observers:
            out.append(Send(dst, dec))

    def _exclude(self, leader: NodeId, height: int, round: int, reason: str, *, evidence: bool, out: list[Any]) -> bool:
        prev = self.excluded.get(leader)
        if prev is not None and (prev.evidence or not evidence):
            return False
        self.excluded[leader] = Exclusion(leader, height, round, reason, evidence)
        out.append(Exclude(leader, height, round, reason, evidence))
        return True

    # ----------------------------------------------------------------------------------------- the leader side
    def _on_solution(self, ev: SolutionReady, out: list[Any]) -> None:
        rs = self.current_round()
        if rs is None or (ev.height, ev.round) != (rs.height, rs.round) or self.status != RUNNING:
            out.append(Dropped(STALE, event="SolutionReady"))
            return
        if rs.leader != self.name:
            out.append(Dropped(NOT_LEADER, event="SolutionReady"))
            return
        if rs.proposed:
            return
        payloads = ev.payloads  # kept as given: a host may solve a labelled plan only when it is asked for
        self.payloads[(rs.height, rs.round)] = payloads
        own_payload = payloads.get(self.own_choice) or payloads.get("optimal")
        if not isinstance(own_payload, Payload) or own_payload.problem():
            out.append(Dropped(MALFORMED, event="SolutionReady"))
            return
        rs.proposed = True
        own = self.sign_proposal(rs.height, rs.round, own_payload)
        copy = _Copy(own, (self.name,), self.name, "own")
        rs.take(own_payload.digest, copy.path)
        out.append(self._received(copy))
        if self.trust_own:
            cost = own_payload.claimed_cost if own_payload.claimed_cost is not None else 0.0
            self._own_accepted(rs, own, float(cost), out)
        else:
            self._submit(copy, out)

    def _own_accepted(self, rs: RoundState, own: Proposal, cost: float, out: list[Any]) -> None:
        rs.valid[own.payload.digest] = (cost, own.payload)
        rs.relayed = True
        payloads = self.payloads.get((rs.height, rs.round), {})
        honest = payloads.get("optimal", own.payload)
        proposal = own if honest.digest == own.payload.digest else self.sign_proposal(rs.height, rs.round, honest)
        for dst in self.members:
            if dst != self.name and dst not in self.excluded:
                out.append(Send(dst, proposal))

    # ---------------------------------------------------------------------------------------- receiving side
    def _drop(self, out: list[Any], reason: str, src: NodeId, msg: Any = None, **extra: Any) -> None:
        kind = None if msg is None else getattr(msg, "kind", type(msg).__name__)
        out.append(Dropped(reason, src, kind, **extra))

    def _on_message(self, src: NodeId, msg: Any, out: list[Any]) -> None:
        t = type(msg)
        if t is Relay or t is Decision:
            # A copy whose checks that need no round state have passed already, at another receiver of this very
            # object from the same sender, under the same context: its memo (`_taken`: context, sender, note, and
            # for a relay what the round state needs) says so. A decision is then only noted; a relay in the
            # current round from a new path is taken with the memo's `Received` note (equal to the one the general
            # path makes) and judged (a cached acceptance once the round is relayed: recorded as valid, as
            # `_judge` does). Anything else, or a memo of another context or sender, takes the general path below
            # (which keeps the memo).
            memo = msg._taken
            if memo is not None and memo[0] is self._ctx and memo[1] == src:
                if t is Decision:
                    out.append(memo[2])
                    return
                _, _, note, h, r, leader, path, digest, key, payload = memo
                rs = self._rs
                if (rs is not None and rs.round == r and rs.height == h and rs.leader == leader and
                        self.status == RUNNING and self.name not in path):
                    paths = rs.seen_paths.get(digest)
                    if paths is not None:
                        n = len(paths)
                        paths.add(path)
                        if len(paths) > n:  # a new path: taken (else a duplicate, for the general path)
                            out.append(note)
                            if rs.relayed and self._plain_judging and self.instances is None:
                                verdict = self.cache.get(key)
                                if verdict is not None and verdict.accepted:
                                    rs.valid[digest] = (verdict.cost, payload)
                                    return
                            self._judge(rs, msg.proposal, path, src, msg, out)
                            return
        problem = message_problem(msg)
        if problem is not None:
            self._drop(out, MALFORMED, src, msg, detail=problem)
            return
        if src not in self.committee:
            self._drop(out, NOT_MEMBER, src, msg)
            return
        try:
            if t is Decision:  # most messages: every delegate's decision reaches every other one
                note = DecisionSeen(src, msg.height, msg.digest)
                out.append(note)
                if type(self._ctx) is tuple:
                    msg.__dict__["_taken"] = (self._ctx, src, note)
            elif isinstance(msg, Proposal):
                self._on_copy(src, msg, (msg.leader,), None, out)
            elif isinstance(msg, Relay):
                self._on_copy(src, msg.proposal, msg.path, msg, out)
            elif isinstance(msg, MisbehaviourProof):
                self._on_proof(src, msg, out)
            elif isinstance(msg, Decision):
                out.append(DecisionSeen(src, msg.height, msg.digest))
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # hostile content must not crash us
            self._drop(out, MALFORMED, src, msg, detail=f"{type(exc).__name__}: {exc}")

    def _pk(self, name: NodeId) -> bytes | None:
        return self.committee.public_key(name)

    def _path_ok(self, relay: Relay) -> bool:
        """Whether a relay's path is well formed here: from the leader, no repeats, ending at the relayer, members
        only. A pure function of the relay and the committee: kept on the relay object per committee, since one
        relay object reaches every receiver."""
        memo = relay.__dict__
        committee = self.committee
        got = memo.get("_path_ok")
        if got is not None and got[0] is committee:
            return got[1]
        path = relay.path
        ok = not (
            len(path) < 2
            or path[0] != relay.proposal.leader
            or len(set(path)) != len(path)
            or path[-1] != relay.relayer
            or any(p not in committee for p in path)
        )
        memo["_path_ok"] = (committee, ok)
        return ok

    def _bad_signer(self, proposal: Proposal, relay: Relay | None) -> NodeId | None:
        """Whose signature on a copy fails: the leader's on the proposal (checked first), else the relayer's on the
        relay, else None. A pure function of the message object, the check and the committee's keys: kept on the
        object per (check, keys), since one object reaches every receiver."""
        memo = (relay if relay is not None else proposal).__dict__
        check, keys = self.sig_check, self.committee.keys
        got = memo.get("_bad_signer")
        if got is not None and got[1] is keys and (got[0] is check or got[0] == check):  # == : `cache.check` each time
            return got[2]
        pk = self._pk if keys is None else keys.get  # the committee's keys (None when it has none)
        bad = None
        public = pk(proposal.leader)
        if not (signed_on_demand(proposal, public, check) or check(public, proposal.signature, proposal.signing_bytes())):
            bad = proposal.leader
        elif relay is not None:
            public = pk(relay.relayer)
            if not (signed_on_demand(relay, public, check) or check(public, relay.signature, relay.signing_bytes())):
                bad = relay.relayer
        memo["_bad_signer"] = (check, keys, bad)
        return bad

    def _on_copy(
        self, src: NodeId, proposal: Proposal, path: tuple[NodeId, ...], relay: Relay | None, out: list[Any]
    ) -> None:
        """The checks of a received copy that need no round state: case, sender, path, signatures."""
        if proposal.case_id != self.case_id:
            self._drop(out, WRONG_CASE, src, proposal, **_info(proposal, path))
            return
        if proposal.leader not in self.committee:
            self._drop(out, NOT_MEMBER, src, proposal, **_info(proposal, path))
            return
        if relay is None:
            if src != proposal.leader:
                self._drop(out, SENDER_MISMATCH, src, proposal, **_info(proposal, path))
                return
        else:
            if not self._path_ok(relay):
                self._drop(out, BAD_PATH, src, relay, **_info(proposal, path))
                return
            if relay.relayer != src:
                self._drop(out, SENDER_MISMATCH, src, relay, **_info(proposal, path))
                return
            if self.name in path:
                self._drop(out, LOOP, src, relay, **_info(proposal, path))
                return
        if self.signatures:
            bad = self._bad_signer(proposal, relay)
            if bad is not None:
                self._drop(out, BAD_SIGNATURE, src, relay or proposal, signer=bad, **_info(proposal, path))
                return
        note = None
        if relay is not None and type(relay) is Relay and type(self._ctx) is tuple:
            # every check so far holds for any receiver of this relay from `src` under this context but the loop
            # check (this receiver's own): kept on the relay for the others (`_on_message`)
            q = proposal.payload
            h, r, leader, digest = proposal.height, proposal.round, proposal.leader, q.digest
            note = Received(h, r, leader, path, src, digest, q.label, q.claimed_cost, _hops(len(path)))
            relay.__dict__["_taken"] = (self._ctx, src, note, h, r, leader, path, digest, (digest, proposal.instance), q)
        self._on_signed_copy(src, proposal, path, relay, out, note)

    def _on_signed_copy(
        self, src: NodeId, proposal: Proposal, path: tuple[NodeId, ...], relay: Relay | None, out: list[Any],
        note: Received | None = None,
    ) -> None:
        """A well-formed, signed copy: buffered, dropped by the round state, or taken (`Received`) and judged."""
        h, r = proposal.height, proposal.round
        height = self.height
        if height is None or h > height or (h == height and r > self.round):
            if len(self._buffer) >= self.buffer_limit:
                self._drop(out, BUFFER_FULL, src, relay or proposal, **_info(proposal, path))
            else:
                self._buffer.append((src, relay or proposal))
            return
        if h < height or r < self.round:
            self._drop(out, STALE, src, relay or proposal, **_info(proposal, path))
            return
        if self.status != RUNNING:
            self._drop(out, HEIGHT_CLOSED, src, relay or proposal, **_info(proposal, path))
            return
        rs = self.rounds[(h, r)]
        leader = proposal.leader
        if leader != rs.leader:
            self._drop(out, NOT_LEADER, src, relay or proposal, **_info(proposal, path))
            return
        payload = proposal.payload
        digest = payload.digest
        if not rs.take(digest, path):
            self._drop(out, DUPLICATE, src, relay or proposal, **_info(proposal, path))
            return
        if note is None:
            note = Received(h, r, leader, path, src, digest, payload.label, payload.claimed_cost, _hops(len(path)))
        out.append(note)
        self._judge(rs, proposal, path, src, relay, out)

    def _judge(
        self, rs: RoundState, proposal: Proposal, path: tuple[NodeId, ...], src: NodeId, relay: Relay | None,
        out: list[Any],
    ) -> None:
        """A copy just taken in the current round (`rs`): rejected for its instance, accepted unchecked from a
        trusted leader, recorded as valid by a cached acceptance once the round is relayed, or submitted."""
        payload = proposal.payload
        digest = payload.digest
        if self.instances is not None:
            wrong = self._instance_mismatch(proposal)
            if wrong is not None:  # rejected by the signed fingerprint alone: no verification
                self._apply(_Copy(proposal, path, src, "direct" if relay is None else "relay"), wrong, out)
                return
        if relay is None and proposal.leader in self.trusted_leaders:
            cost = float(payload.claimed_cost) if payload.claimed_cost is not None else 0.0
            out.append(AcceptedUnchecked(digest, proposal.leader))
            self._accept(_Copy(proposal, path, src, "direct"), cost, out)
            return
        if self._plain_judging and rs.relayed:
            # what _submit -> _apply -> _accept do with a cached acceptance once this round is relayed (the
            # round is the current one, checked above): the plan is recorded as valid, nothing is sent
            verdict = self.cache.get((digest, proposal.instance))
            if verdict is not None and verdict.accepted:
                rs.valid[digest] = (verdict.cost, payload)
                return
        self._submit(_Copy(proposal, path, src, "direct" if relay is None else "relay"), out)

    @staticmethod
    def _received(copy: _Copy) -> Received:
        p = copy.proposal
        via = "own" if copy.via == "own" else _hops(len(copy.path))
        q = p.payload
        return Received(p.height, p.round, p.leader, copy.path, copy.src, q.digest, q.label, q.claimed_cost, via)

    def _submit(self, copy: _Copy, out: list[Any]) -> None:
        """Apply the cached verdict for the copy's (digest, instance) or ask the host to verify (once each)."""
        p = copy.proposal
        digest = p.payload.digest
        key = (digest, p.instance)
        verdict = self.cache.get(key)
        if verdict is not None:
            self._apply(copy, verdict, out)
            return
        waiting = self.pending.get(key)
        if waiting is not None:
            waiting.append(copy)
            return
        self.pending[key] = [copy]
        out.append(Verify(digest, p.payload, p.height, self.verify_charge, p.instance))

    def _on_verification(self, ev: VerificationDone, out: list[Any]) -> None:
        if not isinstance(ev.verdict, Verdict):
            out.append(Dropped(MALFORMED, event="VerificationDone"))
            return
        key = (ev.digest, ev.instance)
        copies = self.pending.pop(key, None)
        if not copies:
            out.append(Dropped(UNEXPECTED, event="VerificationDone"))
            return
        if not ev.digest_ok:
            bad, rest = copies[0], copies[1:]
            self._drop(out, DIGEST_MISMATCH, bad.src, bad.proposal, path=bad.path, digest=ev.digest)
            if rest:
                self.pending[key] = rest
                p = rest[0].proposal
                out.append(Verify(ev.digest, p.payload, p.height, self.verify_charge, p.instance))
            return
        verdict = ev.verdict.checked()
        self.cache[key] = verdict
        out.append(Verified(ev.digest, verdict))
        for c in copies:
            self._apply(c, verdict, out)

    def _apply(self, copy: _Copy, verdict: Verdict, out: list[Any]) -> None:
        p = copy.proposal
        if copy.via == "proof":
            if verdict.accepted:
                self._drop(out, FALSE_ACCUSATION, copy.src, None, leader=p.leader, digest=p.payload.digest)
            else:
                self._evidence(p, verdict, out)
            return
        rs = self.rounds.get((p.height, p.round))
        current = (
            rs is not None and self.status == RUNNING and (p.height, p.round) == (self.height, self.round)
        )
        if copy.via == "own":
            if rs is None or not current:
                return
            if verdict.accepted:
                assert verdict.cost is not None
                self._own_accepted(rs, p, verdict.cost, out)
            else:
                out.append(OwnPlanRejected(p.payload.digest, verdict.reasons))
            return
        if verdict.accepted:
            if current:
                assert verdict.cost is not None
                self._accept(copy, verdict.cost, out)
            return
        out.append(Rejected(p.height, p.round, p.leader, copy.path, p.payload.digest, verdict.reasons))
        if self.signatures:
            self._evidence(p, verdict, out)

    def _accept(self, copy: _Copy, cost: float, out: list[Any]) -> None:
        p = copy.proposal
        rs = self.rounds[(p.height, p.round)]
        rs.valid[p.payload.digest] = (cost, p.payload)
        if rs.relayed:
            return
        rs.relayed = True
        path = copy.path + (self.name,)
        relay = Relay.make(self.signer, proposal=p, path=path, relayer=self.name)
        for dst in self.members:
            if dst in path or dst == copy.src or dst in self.excluded:
                continue
            out.append(Send(dst, relay))

    # --------------------------------------------------------------------------------------------- evidence
    def _evidence(self, proposal: Proposal, verdict: Verdict, out: list[Any]) -> None:
        leader = proposal.leader
        if leader == self.name or leader in self.trusted_leaders:
            return
        reason = "failed verification: " + ("; ".join(verdict.reasons) or "rejected")
        self._exclude(leader, proposal.height, proposal.round, reason, evidence=True, out=out)
        if leader in self.proofs_sent:
            return
        self.proofs_sent.add(leader)
        proof = MisbehaviourProof.make(self.signer, proposal=proposal, reason=reason, reporter=self.name)
        for dst in self.members:
            if dst not in (self.name, leader):
                out.append(Send(dst, proof))

    def _on_proof(self, src: NodeId, proof: MisbehaviourProof, out: list[Any]) -> None:
        p = proof.proposal
        if src != proof.reporter:
            self._drop(out, SENDER_MISMATCH, src, proof)
            return
        if not self.signatures:
            self._drop(out, UNSIGNED_PROOF, src, proof)
            return
        if p.case_id != self.case_id:
            self._drop(out, WRONG_CASE, src, proof)
            return
        if p.leader not in self.committee:
            self._drop(out, NOT_MEMBER, src, proof)
            return
        public = self._pk(proof.reporter)
        if not (signed_on_demand(proof, public, self.sig_check) or
                self.sig_check(public, proof.signature, proof.signing_bytes())):
            self._drop(out, BAD_SIGNATURE, src, proof, signer=proof.reporter)
            return
        public = self._pk(p.leader)
        if not (signed_on_demand(p, public, self.sig_check) or self.sig_check(public, p.signature, p.signing_bytes())):
            self._drop(out, BAD_SIGNATURE, src, proof, signer=p.leader)
            return
        ex = self.excluded.get(p.leader)
        if (ex is not None and ex.evidence) or p.leader in self.trusted_leaders or p.leader == self.name:
            return  # nothing to learn (or, for a colluder, nothing it wants to learn)
        out.append(ProofReceived(src, p.leader, p.payload.digest))
        copy = _Copy(p, (p.leader,), src, "proof")
        wrong = self._instance_mismatch(p) if self.instances is not None else None
        if wrong is not None:  # the leader signed a plan for another instance: the signature is the evidence
            self._apply(copy, wrong, out)
            return
        self._submit(copy, out)
