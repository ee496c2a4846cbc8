"""The normal node: collects signed Decisions and executes what a strict majority of the committee decided."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .events import (
    Action,
    CancelTimer,
    ConflictingDecisions,
    Dropped,
    Event,
    Execute,
    MessageReceived,
    NoMajority,
    Start,
    StartTimer,
    TimerExpired,
)
from .delegate import BAD_SIGNATURE, HEIGHT_CLOSED, MALFORMED, NOT_MEMBER, SENDER_MISMATCH, UNEXPECTED, WRONG_CASE
from .identity import Committee, NodeId, check_signature
from .messages import GENESIS_HASH, Block, Decision, message_problem, signed_on_demand


#: A normal node's state of one height (`_Height.status`).
HeightStatus = Literal["open", "executed", "no_majority"]
OPEN: HeightStatus = "open"
EXECUTED: HeightStatus = "executed"
NO_MAJORITY: HeightStatus = "no_majority"


def height_timer(height: int) -> tuple[str, int]:
    return ("height", height)


@dataclass
class _Height:
    votes: dict[NodeId, Decision] = field(default_factory=dict)
    conflicted: set[NodeId] = field(default_factory=set)
    status: HeightStatus = OPEN
    block_content: tuple[int, int, NodeId, str, float] | None = None
    winners: tuple[Decision, ...] = ()
    timer: bool = False
    #: content -> votes among `votes`, in order of first appearance (kept as each vote arrives: a height's
    #: N votes would otherwise be recounted N times)
    tally: Counter = field(default_factory=Counter)


class NormalNode:
    """Executes a height's plan once > N/2 committee members have sent validly signed Decisions with the same
    content (height, round, leader, digest, cost). Each delegate counts once; a delegate that sends two different
    decisions for a height is recorded as evidence and counts for nothing at that height. Blocks are appended
    in height order: a height is appended only once every lower height it knows of is closed (executed or
    timed out)."""

    def __init__(
        self,
        name: NodeId,
        committee: Committee,
        *,
        signatures: bool = True,
        case_id: str | None = None,
        timeout: float | None = None,
        sig_check: Callable[[bytes | None, bytes, bytes], bool] = check_signature,
    ) -> None:
        if signatures and committee.keys is None:
            raise ValueError("signatures are on but the committee has no public keys")
        self.name = name
        self.committee = committee
        self.signatures = signatures
        self.case_id = case_id
        self.sig_check = sig_check
        self.timeout = float(timeout) if timeout is not None else 5.3 * (committee.size + 1)
        self.chain: list[Block] = []
        self.heights: dict[int, _Height] = {}
        self.closed_upto = 0  # every height <= this is appended or skipped

    def handle(self, event: Event) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, Start):
            if isinstance(event.height, int) and event.height > self.closed_upto:
                self._height(event.height, out)
        elif isinstance(event, MessageReceived):
            self._on_message(event.src, event.msg, out)
        elif isinstance(event, TimerExpired):
            self._on_timer(event.timer_id, out)
        else:
            out.append(Dropped(UNEXPECTED, event=type(event).__name__))
        return out

    def receive(self, src: NodeId, msg: Any) -> list[Action]:
        """`handle(MessageReceived(src, msg))` without building the event (see `Delegate.receive`)."""
        out: list[Action] = []
        self._on_message(src, msg, out)
        return out

    def _height(self, h: int, out: list[Any]) -> _Height:
        st = self.heights.get(h)
        if st is None:
            st = self.heights[h] = _Height()
        if not st.timer and st.status == OPEN:
            st.timer = True
            out.append(StartTimer(height_timer(h), self.timeout))
        return st

    def _drop(self, out: list[Any], reason: str, src: NodeId, **extra: Any) -> None:
        out.append(Dropped(reason, src, **extra))

    def _on_message(self, src: NodeId, msg: Any, out: list[Any]) -> None:
        problem = message_problem(msg)
        if problem is not None:
            self._drop(out, MALFORMED, src, detail=problem)
            return
        if not isinstance(msg, Decision):
            self._drop(out, UNEXPECTED, src, message=msg.kind)
            return
        if msg.delegate not in self.committee:
            self._drop(out, NOT_MEMBER, src, delegate=msg.delegate)
            return
        if src != msg.delegate:
            self._drop(out, SENDER_MISMATCH, src, delegate=msg.delegate)
            return
        if self.case_id is not None and msg.case_id != self.case_id:
            self._drop(out, WRONG_CASE, src)
            return
        if self.signatures:
            public, check = self.committee.public_key(msg.delegate), self.sig_check
            if not (signed_on_demand(msg, public, check) or check(public, msg.signature, msg.signing_bytes())):
                self._drop(out, BAD_SIGNATURE, src, delegate=msg.delegate)
                return
        h = msg.height
        if h <= self.closed_upto:
            self._drop(out, HEIGHT_CLOSED, src, height=h)
            return
        st = self._height(h, out)
        if st.status != OPEN:
            self._drop(out, HEIGHT_CLOSED, src, height=h)
            return
        d = msg.delegate
        if d in st.conflicted:
            return
        prev = st.votes.get(d)
        if prev is not None:
            if prev.content() == msg.content():
                return  # a duplicate of the same decision
            st.conflicted.add(d)
            del st.votes[d]
            st.tally = Counter(v.content() for v in st.votes.values())  # recounted: the order of first appearance
            out.append(ConflictingDecisions(d, h, prev.content(), msg.content()))
            return
        st.votes[d] = msg
        tally = st.tally
        tally[msg.content()] += 1
        if len(tally) == 1:  # (the usual case: every vote so far for one content)
            ((content, count),) = tally.items()
        else:
            content, count = max(tally.items(), key=lambda kv: (kv[1], kv[0][3]))
        if count >= self.committee.majority:
            st.status = EXECUTED
            st.block_content = content
            st.winners = tuple(sorted((v for v in st.votes.values() if v.content() == content), key=lambda v: v.delegate))
            out.append(CancelTimer(height_timer(h)))
            self._flush(out)

    def _on_timer(self, timer_id: Any, out: list[Any]) -> None:
        if not (isinstance(timer_id, tuple) and len(timer_id) == 2 and timer_id[0] == "height"):
            return
        h = timer_id[1]
        st = self.heights.get(h)
        if st is None or st.status != OPEN:
            return
        st.status = NO_MAJORITY
        tally = Counter(v.content()[3] for v in st.votes.values())
        out.append(NoMajority(h, tuple(tally.items()), tuple(sorted(st.conflicted))))
        self._flush(out)

    def _flush(self, out: list[Any]) -> None:
        for h in sorted(self.heights):
            if h <= self.closed_upto:
                continue
            st = self.heights[h]
            if st.status == OPEN:
                break
            if st.status == EXECUTED:
                assert st.block_content is not None
                _, rnd, leader, digest, cost = st.block_content
                prev = self.chain[-1].hash if self.chain else GENESIS_HASH
                block = Block.make(
                    height=h, prev_hash=prev, leader=leader, round=rnd, digest=digest, cost=cost, decisions=st.winners
                )
                self.chain.append(block)
                out.append(Execute(block))
            self.closed_upto = h
        # forget vote details of closed heights (the blocks keep the certificates)
        for h in [h for h in self.heights if h < self.closed_upto]:
            del self.heights[h]
