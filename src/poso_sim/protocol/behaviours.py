"""Dishonest behaviours as composable filters between a Delegate and the network.

A `BehavingDelegate` wraps a `Delegate` and a list of `Behaviour`s. For each event:
  1. every behaviour's `incoming(event, ctx)` may replace or swallow it (None) and may `ctx.emit(...)` extra
     actions;
  2. the delegate handles the (possibly changed) event;
  3. every action (the delegate's and the emitted ones) passes through every behaviour's
     `outgoing(action, ctx) -> list[action]` in list order (an emitted action skips its own emitter's filter).
`configure(ctx)` runs once at wrap time and may set the delegate's policy knobs (`own_choice`, `trust_own`,
`trusted_leaders`). Dishonest delegates are not bound by honest rules: e.g. a colluding follower decides the
tampered plan.

Payloads of the bad plans are supplied by the host: to the leader through `SolutionReady.payloads`
(labels "optimal", "tampered", "feasible", "forged"), and to any wrapped node through `payload_source(height)`
or a `SolutionReady` delivered to it while it is not the leader (the wrapper keeps it and does not pass it on).
`Behaviour.payload_labels()` says which labels a behaviour may ask for, so a host can prepare only those.
The wrapper reads virtual time from the events it handles (`event.time`, stamped by the host).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from .delegate import Delegate
from .events import Action, Crashed, DecisionSeen, Event, MessageReceived, Note, Received, Send, SolutionReady, Start
from .identity import NodeId
from .messages import Payload, Proposal, Relay


class Behaviour:
    """Base: honest pass-through.

    `passes_notes`: set True by a class whose `outgoing` returns ``[action]`` for every `Note` (it filters sends
    and host requests only); a behaving machine then hands a copy's lone note on without asking it. Only the
    class that defines `outgoing` speaks for it (a subclass that overrides `outgoing` is asked unless it says so
    itself)."""

    name = "honest"
    passes_notes = True  # (this class's `outgoing` passes everything)

    def configure(self, ctx: "BehavingDelegate") -> None:
        pass

    def incoming(self, event: Any, ctx: "BehavingDelegate") -> Any | None:
        return event

    def outgoing(self, action: Any, ctx: "BehavingDelegate") -> list[Any]:
        return [action]

    def payload_labels(self) -> tuple[str, ...]:
        """The host payload labels this behaviour may use (besides "optimal")."""
        return ()

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


def _targets(targets: Iterable[NodeId] | None) -> frozenset[NodeId] | None:
    return None if targets is None else frozenset(targets)


def _hits(targets: frozenset[NodeId] | None, dst: NodeId) -> bool:
    return targets is None or dst in targets


def _own_proposal(action: Any, ctx: "BehavingDelegate") -> Proposal | None:
    if isinstance(action, Send) and isinstance(action.msg, Proposal) and action.msg.leader == ctx.name:
        return action.msg
    return None


#: behaviour class -> (whether it has its own `incoming`, whether its `outgoing` passes notes): see `_traits`
_TRAITS: dict[type, tuple[bool, bool]] = {}


def _traits(cls: type) -> tuple[bool, bool]:
    """(own `incoming`, `outgoing` passes notes) of a behaviour class: `passes_notes` as declared by the class in
    its MRO that defines `outgoing` (False when that class does not say)."""
    got = _TRAITS.get(cls)
    if got is None:
        own_in = getattr(cls, "incoming", None) is not Behaviour.incoming
        definer = next((k for k in cls.__mro__ if "outgoing" in vars(k)), None)
        passes = definer is not None and vars(definer).get("passes_notes") is True
        got = _TRAITS[cls] = (own_in, passes)
    return got


def pass_outgoing(behaviours: Sequence[Any], actions: list[Any], machine: Any) -> list[Any]:
    """``actions`` through each behaviour's ``outgoing(action, machine)`` in turn, every action of one behaviour's
    output going to the next (a behaving machine's actions when no behaviour emitted one of its own)."""
    for b in behaviours:
        nxt: list[Any] = []
        for a in actions:
            nxt.extend(b.outgoing(a, machine))
        actions = nxt
    return actions


class BehavingDelegate:
    """A delegate with behaviours attached. Same `handle` contract as `Delegate`; `now` is the `time` of the
    last event that carried one (used by `Crash(at_time)`)."""

    def __init__(
        self,
        delegate: Delegate,
        behaviours: Sequence[Behaviour] = (),
        *,
        payload_source: Callable[[int], Mapping[str, Payload] | None] | None = None,
    ) -> None:
        self.delegate = delegate
        self.behaviours = list(behaviours)
        self.payload_source = payload_source
        self.now: float | None = None
        self.events_seen = 0
        self.crashed = False
        self.host_payloads: dict[int, list[Mapping[str, Payload]]] = {}
        self.seen: dict[tuple[int, int, NodeId], list[Proposal]] = {}
        self._emitted: list[tuple[Behaviour, Any]] = []
        for b in self.behaviours:
            b.configure(self)

    @property
    def name(self) -> NodeId:
        return self.delegate.name

    @property
    def honest(self) -> bool:
        return not self.behaviours

    def emit(self, action: Any, by: Behaviour) -> None:
        self._emitted.append((by, action))

    def payload_for(self, height: int, round: int, label: str) -> Payload | None:
        p = self.delegate.payloads.get((height, round), {}).get(label)
        for given in reversed(self.host_payloads.get(height, ())):
            if p is not None:
                break
            p = given.get(label)
        if p is None and self.payload_source is not None:
            p = (self.payload_source(height) or {}).get(label)
        return p

    def handle(self, event: Event) -> list[Action]:
        now = getattr(event, "time", None)
        if now is not None:
            self.now = now
        self.events_seen += 1
        self._emitted = []
        ev: Any = event
        for b in self.behaviours:
            ev = b.incoming(ev, self)
            if ev is None:
                break
        core: list[Any] = []
        if ev is not None:
            self._observe(ev)
            if isinstance(ev, SolutionReady):
                rs = self.delegate.current_round()
                if rs is None or rs.leader != self.name or (rs.height, rs.round) != (ev.height, ev.round):
                    ev = None  # payloads for the attacker's own use; the honest core never sees them
            if ev is not None:
                core = self.delegate.handle(ev)
        emitted, self._emitted = self._emitted, []
        if not emitted:  # the core's actions only: each behaviour's outgoing, in order, on all of them
            return pass_outgoing(self.behaviours, core, self)
        # a behaviour's own (emitted) actions pass the others' outgoing, not its own
        actions: list[tuple[Behaviour | None, Any]] = [(None, a) for a in core] + emitted
        for b in self.behaviours:
            tagged: list[tuple[Behaviour | None, Any]] = []
            for by, a in actions:
                if by is b:
                    tagged.append((by, a))
                else:
                    tagged.extend((by, x) for x in b.outgoing(a, self))
            actions = tagged
        return [a for _, a in actions]

    def receive(self, src: NodeId, msg: Any, time: float | None = None) -> list[Action]:
        """`handle(MessageReceived(src, msg, time))`: the same actions and state. A host's per-message entry; use it
        only when `handle` is not overridden. When no behaviour has an `incoming` of its own (none would see the
        event), no event object is made, and a copy's lone note (`Received`, `DecisionSeen`) skips the
        `outgoing` of behaviours that pass notes (`Behaviour.passes_notes`)."""
        bs = self.behaviours
        passes = True
        for b in bs:
            own_in, b_passes = _traits(type(b))
            if own_in:
                return self.handle(MessageReceived(src, msg, time))
            passes = passes and b_passes
        if time is not None:
            self.now = time
        self.events_seen += 1
        self._observe_message(msg)
        d = self.delegate
        cls = type(d)
        if isinstance(d, Delegate) and cls.handle is Delegate.handle and cls.receive is Delegate.receive:
            core: list[Any] = d.receive(src, msg)
        else:
            core = d.handle(MessageReceived(src, msg, time))
        self._emitted = []
        if passes and len(core) == 1 and (type(core[0]) is Received or type(core[0]) is DecisionSeen):
            return core
        return pass_outgoing(bs, core, self)

    def _observe(self, ev: Any) -> None:
        if isinstance(ev, Start) and isinstance(ev.height, int):
            keep = ev.height - 1
            self.host_payloads = {h: v for h, v in self.host_payloads.items() if h >= keep}
            self.seen = {k: v for k, v in self.seen.items() if k[0] >= keep}
        elif isinstance(ev, SolutionReady):
            self.host_payloads.setdefault(ev.height, []).append(ev.payloads)
        elif isinstance(ev, MessageReceived):
            self._observe_message(ev.msg)

    def _observe_message(self, msg: Any) -> None:
        p = msg.proposal if isinstance(msg, Relay) else msg
        if isinstance(p, Proposal) and isinstance(getattr(p, "payload", None), Payload):
            try:
                key = (int(p.height), int(p.round), str(p.leader))
            except (TypeError, ValueError):
                return
            lst = self.seen.setdefault(key, [])
            if len(lst) < 16 and p not in lst:
                lst.append(p)


# -------------------------------------------------------------------------------------------- leader attacks
class FollowerIgnore(Behaviour):
    """Leader: send no proposal to `targets` (reference `follower_ignore`)."""

    name = "follower_ignore"
    passes_notes = True

    def __init__(self, targets: Iterable[NodeId]) -> None:
        self.targets = _targets(targets)

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        if _own_proposal(action, ctx) is not None and _hits(self.targets, action.dst):
            return []
        return [action]


class LeaderSends(Behaviour):
    """Leader: send the host payload labelled `label`, properly signed, to `targets` (all if None) instead of
    the optimum. If the leader itself is a target it adopts that plan as its own, unverified."""

    name = "leader_sends"
    passes_notes = True

    def __init__(self, label: str, targets: Iterable[NodeId] | None = None) -> None:
        self.label = label
        self.targets = _targets(targets)

    def payload_labels(self) -> tuple[str, ...]:
        return (self.label,)

    def configure(self, ctx: BehavingDelegate) -> None:
        if self.targets is not None and ctx.name in self.targets:
            ctx.delegate.own_choice = self.label
            ctx.delegate.trust_own = True

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        p = _own_proposal(action, ctx)
        if p is None or not _hits(self.targets, action.dst):
            return [action]
        bad = ctx.payload_for(p.height, p.round, self.label)
        if bad is None:
            return [action]
        forged = ctx.delegate.sign_proposal(p.height, p.round, bad)
        return [Send(action.dst, forged, action.delay)]


class FollowerError(LeaderSends):
    """Reference `follower_error`: the tampered-objective plan to `targets`."""

    name = "follower_error"

    def __init__(self, targets: Iterable[NodeId]) -> None:
        super().__init__("tampered", targets)


class FollowerFeasible(LeaderSends):
    """Reference `follower_feasible`: a feasible but non-optimal plan to `targets`."""

    name = "follower_feasible"

    def __init__(self, targets: Iterable[NodeId]) -> None:
        super().__init__("feasible", targets)


class ForgedMultipliers(LeaderSends):
    """The optimal primal with forged multipliers (host payload "forged") to `targets` (all if None)."""

    name = "forged_multipliers"

    def __init__(self, targets: Iterable[NodeId] | None = None) -> None:
        super().__init__("forged", targets)


class Replay(Behaviour):
    """Leader: re-send yesterday's plan. At height h (from `from_height`, at least 2) the leader sends the optimal
    plan of height h-1 to `targets` (all if None) instead of today's, properly signed.

    `claim="own"` (default): the proposal carries the fingerprint of the instance the plan was solved for (h-1), so
    followers reject it by the signed fingerprint alone; `claim="current"`: it claims today's instance, so the
    verifier rejects it (the plan's own fingerprint and its certificate do not match today's data). Either way the
    signed proposal is evidence: the leader is excluded like any other cheater."""

    name = "replay"
    passes_notes = True

    def __init__(self, targets: Iterable[NodeId] | None = None, *, from_height: int = 2, claim: str = "own") -> None:
        if claim not in ("own", "current"):
            raise ValueError(f"replay: claim must be 'own' or 'current', got {claim!r}")
        self.targets = _targets(targets)
        self.from_height = max(2, int(from_height))
        self.claim = claim

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        p = _own_proposal(action, ctx)
        if p is None or p.height < self.from_height or not _hits(self.targets, action.dst):
            return [action]
        old = ctx.payload_for(p.height - 1, 0, "optimal")
        if old is None or old.digest == p.payload.digest:
            return [action]
        d = ctx.delegate
        instance = d.instance_for(p.height - 1) if self.claim == "own" else None
        return [Send(action.dst, d.sign_proposal(p.height, p.round, old, instance=instance), action.delay)]


class Equivocate(Behaviour):
    """Leader: different payloads to different followers; the i-th other member in rotation order gets
    `labels[i % len(labels)]`."""

    name = "equivocate"
    passes_notes = True

    def __init__(self, labels: Sequence[str] = ("optimal", "tampered")) -> None:
        self.labels = tuple(labels)

    def payload_labels(self) -> tuple[str, ...]:
        return self.labels

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        p = _own_proposal(action, ctx)
        if p is None:
            return [action]
        others = [m for m in ctx.delegate.members if m != ctx.name]
        i = others.index(action.dst) if action.dst in others else 0
        payload = ctx.payload_for(p.height, p.round, self.labels[i % len(self.labels)])
        if payload is None or payload.digest == p.payload.digest:
            return [action]
        return [Send(action.dst, ctx.delegate.sign_proposal(p.height, p.round, payload), action.delay)]


# ------------------------------------------------------------------------------------------ follower attacks
class FollowerCollusion(Behaviour):
    """Follower: accept direct proposals of `leaders` without verification, relay and decide them, and
    ignore proofs against them (reference `follower_collusion`)."""

    name = "follower_collusion"

    def __init__(self, leaders: Iterable[NodeId]) -> None:
        self.leaders = frozenset(leaders)

    def configure(self, ctx: BehavingDelegate) -> None:
        ctx.delegate.trusted_leaders |= set(self.leaders)


def _own_relay(action: Any, ctx: BehavingDelegate) -> Relay | None:
    if isinstance(action, Send) and isinstance(action.msg, Relay) and action.msg.relayer == ctx.name:
        return action.msg
    return None


class TrickIgnore(Behaviour):
    """Relay: relay nothing to `targets` (reference `follower_trick_ignore`)."""

    name = "follower_trick_ignore"
    passes_notes = True

    def __init__(self, targets: Iterable[NodeId]) -> None:
        self.targets = _targets(targets)

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        if _own_relay(action, ctx) is not None and _hits(self.targets, action.dst):
            return []
        return [action]


class TrickError(Behaviour):
    """Relay: on the first copy of a round's proposal it receives, relay the bad plan (`label`) to `targets`
    instead of what it got, and suppress its honest relays to them (reference `follower_trick_error`).

    If it holds a copy of the bad plan genuinely signed by the leader it relays that (a true proof against the
    leader). Otherwise it must forge: it puts the bad payload under the leader's name with the signature of
    the copy it got. With signatures on, receivers drop it ("bad signature"); with signatures off it is
    indistinguishable from the leader's own proposal and only verification stops it."""

    name = "follower_trick_error"
    passes_notes = True

    def __init__(self, targets: Iterable[NodeId], label: str = "tampered") -> None:
        self.targets = _targets(targets)
        self.label = label
        self._done: set[tuple[int, int, NodeId]] = set()

    def payload_labels(self) -> tuple[str, ...]:
        return (self.label,)

    def incoming(self, event: Any, ctx: BehavingDelegate) -> Any | None:
        if not isinstance(event, MessageReceived):
            return event
        msg = event.msg
        p = msg.proposal if isinstance(msg, Relay) else msg
        if not isinstance(p, Proposal) or not isinstance(getattr(p, "payload", None), Payload):
            return event
        if p.leader == ctx.name or p.case_id != ctx.delegate.case_id:
            return event
        key = (p.height, p.round, p.leader)
        if key in self._done:
            return event
        bad_payload = ctx.payload_for(p.height, p.round, self.label)
        if bad_payload is None:
            return event
        self._done.add(key)
        if p.payload.digest == bad_payload.digest:
            bad = p
        else:
            genuine = [q for q in ctx.seen.get(key, []) if q.payload.digest == bad_payload.digest]
            bad = genuine[0] if genuine else replace(p, payload=bad_payload)
        relay = Relay.make(ctx.delegate.signer, proposal=bad, path=(p.leader, ctx.name), relayer=ctx.name)
        for dst in ctx.delegate.members:
            if dst not in (ctx.name, p.leader) and _hits(self.targets, dst):
                ctx.emit(Send(dst, relay), self)
        return event

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        if _own_relay(action, ctx) is not None and _hits(self.targets, action.dst):
            return []
        return [action]


# --------------------------------------------------------------------------------------------- fault models
class Delay(Behaviour):
    """Hold every outgoing message (to `targets`, all if None) for `seconds` of virtual time."""

    name = "delay"
    passes_notes = True

    def __init__(self, seconds: float, targets: Iterable[NodeId] | None = None) -> None:
        self.seconds = float(seconds)
        self.targets = _targets(targets)

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        if isinstance(action, Send) and _hits(self.targets, action.dst):
            return [Send(action.dst, action.msg, action.delay + self.seconds)]
        return [action]


class Crash(Behaviour):
    """Stop handling anything once virtual time reaches `at_time` (needs events stamped with `time`) or after
    `after_events` events. A crashed node emits nothing but one `Crashed` note."""

    name = "crash"
    passes_notes = True

    def __init__(self, at_time: float | None = None, after_events: int | None = None) -> None:
        self.at_time = at_time
        self.after_events = after_events

    def _due(self, ctx: BehavingDelegate) -> bool:
        if self.at_time is not None and ctx.now is not None and ctx.now >= self.at_time:
            return True
        return self.after_events is not None and ctx.events_seen > self.after_events

    def incoming(self, event: Any, ctx: BehavingDelegate) -> Any | None:
        if ctx.crashed:
            return None
        if self._due(ctx):
            ctx.crashed = True
            ctx.emit(Crashed(ctx.now), self)
            return None
        return event

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        if ctx.crashed and not isinstance(action, Note):
            return []
        return [action]


class Silence(Behaviour):
    """Never send anything (keeps running internally)."""

    name = "silence"
    passes_notes = True

    def outgoing(self, action: Any, ctx: BehavingDelegate) -> list[Any]:
        return [] if isinstance(action, Send) else [action]


# ------------------------------------------------------------------------------------------ reference keys
REFERENCE_KEYS: dict[str, type[Behaviour]] = {
    "follower_ignore": FollowerIgnore,
    "follower_error": FollowerError,
    "follower_feasible": FollowerFeasible,
    "follower_collusion": FollowerCollusion,
    "follower_trick_ignore": TrickIgnore,
    "follower_trick_error": TrickError,
}


def from_reference_keys(
    options: Mapping[str, Iterable[NodeId | int]],
    id_to_name: Mapping[int, NodeId] | None = None,
) -> list[Behaviour]:
    """Behaviours of one node from the reference's option dict (values: node names, or ids mapped through
    `id_to_name`). Unknown keys raise ValueError; empty lists give no behaviour."""
    out: list[Behaviour] = []
    for key, values in options.items():
        cls = REFERENCE_KEYS.get(key)
        if cls is None:
            raise ValueError(f"unknown behaviour key {key!r} (known: {sorted(REFERENCE_KEYS)})")
        names = []
        for v in values or ():
            if isinstance(v, int) and not isinstance(v, bool):
                if id_to_name is None or v not in id_to_name:
                    raise ValueError(f"{key}: node id {v} has no name mapping")
                names.append(id_to_name[v])
            else:
                names.append(str(v))
        if names:
            out.append(cls(names))
    return out
