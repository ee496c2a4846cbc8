"""Events (inputs), actions (outputs) and the verdict of the protocol state machines.

A host feeds one event at a time to `machine.handle(event)` and carries out the returned actions in order.
Nothing here does I/O, reads a clock or sleeps. Every event has an optional `time` (virtual seconds) that the
host stamps; the machines never need it, some behaviours do (`Crash(at_time)`).

Actions are of two sorts: *effects* the host carries out (`Send`, `StartTimer`, `CancelTimer`, `Verify`,
`Solve`) or records as outcomes (`Decide`, `Exclude`, `Execute`), and *notes* (`Note`s: what a machine
observed, dropped or concluded; immutable named tuples) that change nothing outside the machine but are part of the run's
record. The host that keeps a run log stamps each with (virtual time, node); see poso_sim.scenarios.log.
`Decide`, `GaveUp`, `Execute`, `NoMajority` and `Crashed` end a node's part in a height.
"""

from __future__ import annotations

import abc
import math
from dataclasses import MISSING, dataclass, fields
from typing import Any, Hashable, Mapping, NamedTuple

from .identity import NodeId
from .messages import Block, Payload

TimerId = Hashable


def _fields_at_once(cls: type) -> type:
    """Give a frozen dataclass an ``__init__`` that writes its fields into the object's ``__dict__`` at once,
    with the same parameters and defaults as the generated one (which sets each through ``object.__setattr__``,
    about twice the cost). For the events and actions made once per message or step of a run."""
    params, ns = [], {}
    for f in fields(cls):
        if f.default_factory is not MISSING:  # type: ignore[misc]
            raise TypeError(f"{cls.__name__}.{f.name}: a default factory is not supported")
        if f.default is MISSING:
            params.append(f.name)
        else:
            ns["_default_" + f.name] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"    d[{f.name!r}] = {f.name}\n" for f in fields(cls))
    exec(f"def __init__(self, {', '.join(params)}):\n    d = self.__dict__\n{body}", ns)
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


# ---------------------------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class Verdict:
    """The one verdict on a plan: accepted or not, its recomputed true cost, the reasons for a rejection.

    A verification service returns it, `VerificationDone` carries it to the machine, the machine caches it by
    digest and notes it (`Verified`). `from_certificate` derives it from a certificate (anything with
    `accepted`, `cost` and `reasons`, e.g. `poso_sim.kkt.Certificate`).

    `prices`: on a plan with priced rows (a market), one `(row, low, high, settlement)` per priced row - the
    interval of valid prices at the plan's point and the settlement price (docs/certificate.md, "Priced rows")."""

    accepted: bool
    cost: float | None = None
    reasons: tuple[str, ...] = ()
    prices: tuple[tuple[str, float, float, float], ...] = ()

    @classmethod
    def from_certificate(cls, cert: Any) -> "Verdict":
        cost = getattr(cert, "cost", None)
        rows = (getattr(cert, "prices", None) or {}).get("rows", ())
        prices = tuple((str(r["name"]), float(r["low"]), float(r["high"]), float(r["settlement"])) for r in rows)
        return cls(bool(cert.accepted), None if cost is None else float(cost),
                   tuple(str(r) for r in (getattr(cert, "reasons", ()) or ())), prices)

    def checked(self) -> "Verdict":
        """This verdict, turned into a rejection if it accepts without a finite cost."""
        if self.accepted and (self.cost is None or not math.isfinite(float(self.cost))):
            return Verdict(False, self.cost, self.reasons + ("verifier returned no finite cost",))
        return self


# ----------------------------------------------------------------------------------------------------- events
@_fields_at_once
@dataclass(frozen=True)
class Start:
    """Begin `height` at round 1 (abandons an unfinished earlier height)."""

    height: int
    time: float | None = None


@_fields_at_once
@dataclass(frozen=True)
class MessageReceived:
    """`msg` arrived from `src`. `src` is the transport-level sender (the runtime's authenticated channel), not
    a claim made inside the message."""

    src: NodeId
    msg: Any
    time: float | None = None


@_fields_at_once
@dataclass(frozen=True)
class TimerExpired:
    timer_id: TimerId
    time: float | None = None


@_fields_at_once
@dataclass(frozen=True)
class VerificationDone:
    """The host's answer to `Verify`: the `verdict` on the plan behind `digest`.

    `digest_ok=False` means the attached solution does not hash to the digest: the carrier, not the leader,
    is at fault; the protocol then drops that copy without caching a verdict for the digest."""

    digest: str
    verdict: Verdict
    digest_ok: bool = True
    time: float | None = None
    instance: str = ""  # the instance the verdict is about (`Verify.instance`, echoed)


@dataclass(frozen=True)
class SolutionReady:
    """The host solved for the leader of (height, round). `payloads` maps a label to a payload; the honest
    leader proposes `payloads["optimal"]`; behaviours may pick others ("tampered", "feasible", "forged")."""

    height: int
    round: int
    payloads: Mapping[str, Payload]
    time: float | None = None


# ---------------------------------------------------------------------------------------------------- actions
@_fields_at_once
@dataclass(frozen=True)
class Send:
    """Put `msg` on the wire to `dst`; `delay` extra virtual seconds before it leaves (Delay behaviour)."""

    dst: NodeId
    msg: Any
    delay: float = 0.0


@_fields_at_once
@dataclass(frozen=True)
class StartTimer:
    """Fire `TimerExpired(timer_id)` after `delay_seconds` of virtual time (restarting a running timer with the
    same id replaces it)."""

    timer_id: TimerId
    delay_seconds: float


@dataclass(frozen=True)
class CancelTimer:
    timer_id: TimerId


@_fields_at_once
@dataclass(frozen=True)
class Verify:
    """Verify the solution behind `digest` for `height` against this node's own copy of the problem and reply
    with `VerificationDone(digest, ...)`. `charge`: virtual seconds to charge before replying (None: the host
    charges the measured cost). `instance`: the fingerprint of the instance to verify against ("" when the run
    has one problem); the host echoes it in `VerificationDone.instance`."""

    digest: str
    payload: Payload
    height: int | None = None
    charge: float | None = 0.0
    instance: str = ""


@dataclass(frozen=True)
class Solve:
    """This node leads (height, round): solve and reply with `SolutionReady(height, round, payloads)`."""

    height: int
    round: int


@_fields_at_once
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
class Execute:
    """A normal node executes the block's plan (it has been appended to its chain)."""

    block: Block


# ------------------------------------------------------------------------------------------------------ notes
class Note(abc.ABC):
    """What a machine observed or concluded (no effect outside the machine): `isinstance(x, Note)`.

    The notes below are immutable named tuples (cheap to make: the machines emit one per copy received) with
    typed fields; two notes are equal only if they are of the same type and have equal fields. A note of your
    own may be any immutable class that subclasses `Note` (e.g. a frozen dataclass)."""


class RoundStarted(NamedTuple):
    height: int
    round: int
    leader: NodeId


class Abandoned(NamedTuple):
    """A new `Start` abandoned this unfinished height."""

    height: int
    round: int


class Received(NamedTuple):
    """A copy of a proposal was taken for processing (well-formed, signed, from the scheduled leader).
    `via`: "own" (the leader's own plan) or "R<k>" (k = number of hops, 1 = direct from the leader)."""

    height: int
    round: int
    leader: NodeId
    path: tuple[NodeId, ...]
    src: NodeId
    digest: str
    label: str
    claimed_cost: float | None
    via: str


class Verified(NamedTuple):
    """The verdict on `digest` arrived (and is cached: once per digest per node)."""

    digest: str
    verdict: Verdict


class Rejected(NamedTuple):
    """A received copy failed verification."""

    height: int
    round: int
    leader: NodeId
    path: tuple[NodeId, ...]
    digest: str
    reasons: tuple[str, ...]


class OwnPlanRejected(NamedTuple):
    digest: str
    reasons: tuple[str, ...]


class AcceptedUnchecked(NamedTuple):
    """A colluding follower took a trusted leader's plan without verifying it."""

    digest: str
    leader: NodeId


class ProofReceived(NamedTuple):
    src: NodeId
    leader: NodeId
    digest: str


class DecisionSeen(NamedTuple):
    src: NodeId
    height: int
    digest: str


class Dropped(NamedTuple):
    """An event or message was dropped for `reason`. `message` is the kind of the dropped message, `event` the
    type of a dropped event; the other fields say what the copy claimed (None = not applicable)."""

    reason: str
    src: NodeId | None = None
    message: str | None = None
    event: str | None = None
    height: Any = None
    round: Any = None
    leader: NodeId | None = None
    path: tuple[NodeId, ...] | None = None
    digest: str | None = None
    signer: NodeId | None = None
    delegate: NodeId | None = None
    detail: str | None = None
    dst: NodeId | None = None


class GaveUp(NamedTuple):
    """Every round of `height` timed out: this delegate's part in the height is over."""

    height: int
    rounds: int


class ConflictingDecisions(NamedTuple):
    """A normal node got two different decisions from `delegate` for `height` (evidence; it counts for none)."""

    delegate: NodeId
    height: int
    first: tuple[Any, ...]
    second: tuple[Any, ...]


class NoMajority(NamedTuple):
    """A normal node's height timed out without a majority. `votes`: (digest, count) pairs."""

    height: int
    votes: tuple[tuple[str, int], ...]
    conflicted: tuple[NodeId, ...]


class Crashed(NamedTuple):
    """The node stopped (Crash behaviour) at virtual time `time`."""

    time: float | None


NOTES = (RoundStarted, Abandoned, Received, Verified, Rejected, OwnPlanRejected, AcceptedUnchecked, ProofReceived,
         DecisionSeen, Dropped, GaveUp, ConflictingDecisions, NoMajority, Crashed)


def _same_note(self: tuple, other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)  # type: ignore[arg-type]


def _other_note(self: tuple, other: object) -> bool:
    return not _same_note(self, other)


for _cls in NOTES:
    Note.register(_cls)
    _cls.__eq__ = _same_note  # type: ignore[assignment,method-assign]
    _cls.__ne__ = _other_note  # type: ignore[assignment,method-assign]
    _cls.__hash__ = tuple.__hash__  # type: ignore[assignment,method-assign]
del _cls


Event = Start | MessageReceived | TimerExpired | VerificationDone | SolutionReady
Action = (
    Send | StartTimer | CancelTimer | Verify | Solve | Decide | Exclude | Execute
    | RoundStarted | Abandoned | Received | Verified | Rejected | OwnPlanRejected | AcceptedUnchecked
    | ProofReceived | DecisionSeen | Dropped | GaveUp | ConflictingDecisions | NoMajority | Crashed
)

#: the actions that end a node's part in a height (a delegate's `Decide` / `GaveUp`, a normal node's
#: `Execute` / `NoMajority`, any node's `Crashed`)
HEIGHT_ENDS = (Decide, GaveUp, Execute, NoMajority, Crashed)
