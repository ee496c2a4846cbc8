"""Events (inputs) and actions (outputs) of the protocol state machines.

A host feeds one event at a time to `machine.handle(event)` and carries out the returned actions in order.
Nothing here does I/O, reads a clock or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping

from .identity import NodeId
from .messages import Block, Payload

TimerId = Hashable


# ----------------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Start:
    """Begin `height` at round 1 (abandons an unfinished earlier height)."""

    height: int


@dataclass(frozen=True)
class MessageReceived:
    """`msg` arrived from `src`. `src` is the transport-level sender (the runtime's authenticated channel), not
    a claim made inside the message."""

    src: NodeId
    msg: Any


@dataclass(frozen=True)
class TimerExpired:
    timer_id: TimerId


@dataclass(frozen=True)
class VerificationDone:
    """The host's answer to `Verify`: `accepted`, the recomputed true cost, reasons for a rejection.

    `digest_ok=False` means the attached solution does not hash to the digest: the carrier, not the leader,
    is at fault; the protocol then drops that copy without caching a verdict for the digest."""

    digest: str
    accepted: bool
    cost: float | None = None
    reasons: tuple[str, ...] = ()
    digest_ok: bool = True


@dataclass(frozen=True)
class SolutionReady:
    """The host solved for the leader of (height, round). `payloads` maps a label to a payload; the honest
    leader proposes `payloads["optimal"]`; behaviours may pick others ("tampered", "feasible", "forged")."""

    height: int
    round: int
    payloads: Mapping[str, Payload]


Event = Start | MessageReceived | TimerExpired | VerificationDone | SolutionReady


# ---------------------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Send:
    """Put `msg` on the wire to `dst`; `delay` extra virtual seconds before it leaves (Delay behaviour)."""

    dst: NodeId
    msg: Any
    delay: float = 0.0


@dataclass(frozen=True)
class Broadcast:
    """Same message to several destinations. The machines emit individual `Send`s; hosts and behaviours must
    still accept this action (see `expand`)."""

    dsts: tuple[NodeId, ...]
    msg: Any
    delay: float = 0.0


@dataclass(frozen=True)
class StartTimer:
    """Fire `TimerExpired(timer_id)` after `delay_seconds` of virtual time (restarting a running timer with the
    same id replaces it)."""

    timer_id: TimerId
    delay_seconds: float


@dataclass(frozen=True)
class CancelTimer:
    timer_id: TimerId


@dataclass(frozen=True)
class Verify:
    """Verify the solution behind `digest` for `height` against this node's own copy of the problem and reply
    with `VerificationDone(digest, ...)`. `charge`: virtual seconds to charge before replying (None: the host
    charges the measured cost)."""

    digest: str
    payload: Payload
    height: int | None = None
    charge: float | None = 0.0


@dataclass(frozen=True)
class Solve:
    """This node leads (height, round): solve and reply with `SolutionReady(height, round, payloads)`."""

    height: int
    round: int


@dataclass(frozen=True)
class Decide:
    height: int
    round: int
    digest: str
    cost: float
    leader: NodeId = ""
    label: str = ""


@dataclass(frozen=True)
class Exclude:
    """`leader` is excluded from leading future rounds. `evidence=True`: backed by a verified misbehaviour
    proof (all honest delegates converge on it); False: local, timeout-driven."""

    leader: NodeId
    height: int
    round: int
    reason: str
    evidence: bool = False


@dataclass(frozen=True)
class Record:
    """A trace entry for reports (no effect on the protocol)."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Execute:
    """A normal node executes the block's plan (it has been appended to its chain)."""

    block: Block


Action = Send | Broadcast | StartTimer | CancelTimer | Verify | Solve | Decide | Exclude | Record | Execute


def expand(actions: list[Any]) -> list[Any]:
    """Replace every Broadcast by one Send per destination (order kept)."""
    out: list[Any] = []
    for a in actions:
        if isinstance(a, Broadcast):
            out.extend(Send(d, a.msg, a.delay) for d in a.dsts)
        else:
            out.append(a)
    return out
