"""The runner: binds the protocol machines to simulated nodes and carries out their actions in virtual time.

One simulated node per delegate and per normal node on a `poso_sim.sim.Network`. A message delivered to a node
becomes `MessageReceived(src, payload)` for its machine (events to a `BehavingDelegate` also carry the virtual
`time`, which behaviours may read); the machine's actions are carried out in order:

* `Send` -> `network.send` (kind = the message kind, a short summary for the trace), after `Send.delay`;
* `StartTimer` / `CancelTimer` -> node timers (a restarted timer replaces the running one);
* `Verify` -> the verification service (the payload source's `verify`, or the `verifier` given), after a
  check that the attached solution hashes to the digest; verdicts are memoised by digest in the run's
  `Session`; answered with `VerificationDone` after the charge (`Verify.charge` seconds, or the measured wall
  time when None);
* `Solve` -> the source's labelled plans, answered with `SolutionReady` after `solve_time` virtual seconds;
* notes and outcomes (`Decide`, `Exclude`, `Execute`) -> the run log (`poso_sim.scenarios.log.RunLog`), and a
  `user` event in the kernel trace (not for `Exclude`; in compact mode only for the entries the log keeps).

Heights run one after the other: `Start(h)` to every node, then the runner waits until every running delegate
has decided or given up and every normal node has executed or timed out (the typed actions of `HEIGHT_ENDS`,
bounded by a deadline), lets the messages in flight land, and starts h+1.

Public extension points (`Runner(...)`, `run_scenario(...)`, `arun_scenario(...)`): `verifier` (a verification
service: `(payload, height) -> Verdict`), `signature_cache` (a `SignatureCache` the machines check signatures
through), `observers` (callables given each run-log entry as it is appended), `delegate_factory` (builds each
delegate: `(name, committee, keys, **options) -> Delegate`) and `session` (shared memo state).

Deterministic: the same scenario and seed give the same trace and run-log digests in any process (unless
verification is charged by measured wall time).

Compact mode: a run of more than `COMPACT_ABOVE` delegates (or any run given `log_mode="compact"`) records less,
so that a message costs little more than its delivery and memory no longer grows as N^2 with the log:
* the run log is compact (`poso_sim.scenarios.log`: each per-copy note - `Received`, `DecisionSeen`, `Dropped`
  per reason - kept once per height and node, the first one; the later copies only counted in `log.omitted`:
  no entry is made for them, unless observers want to see them, and no user event);
* the kernel trace records `COMPACT_TRACE_EVENTS`: deliveries, drops, timers, faults and user events, but no
  sends (a message's `deliver` or `drop` record carries its id, ends, kind, size and summary); its user events
  are those of the log entries kept; and it keeps only its digest (`Trace(keep=False)`: records hashed as they
  come) unless a `trace_path` asks for the records. A run given `trace_events` records those.
A compact run's trace and log digests are therefore not the full run's, but are as deterministic (the same
scenario, seed and mode give the same digests in any process); everything else the result shows (decisions,
exclusions, blocks, the executed plan, messages and messages by kind, drops, verifications, the first copy of
each per-copy note per height and node) is the full run's. `log_mode="full"` keeps everything whatever N.

Cost per message: one relay object reaches every receiver, so what is a pure function of the message (its
canonical bytes, its validation, its trace summary) is computed once per object, and each distinct Ed25519 check
once per run (a run given no `signature_cache` checks through a `SignatureCache` of its own). While runs are
under way the garbage collector's young-generation threshold is raised (`gc_tuned`); it is restored when the
last run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from poso_sim.protocol import (
    HEIGHT_ENDS,
    BehavingDelegate,
    CancelTimer,
    Committee,
    Decide,
    Decision,
    DecisionSeen,
    Delegate,
    Dropped,
    Exclude,
    Execute,
    MessageReceived,
    MisbehaviourProof,
    NormalNode,
    Note,
    Payload,
    Proposal,
    Received,
    Relay,
    Send,
    SignatureCache,
    SolutionReady,
    Solve,
    Start,
    StartTimer,
    TimerExpired,
    VerificationDone,
    Verdict,
    Verify,
    make_committee,
)
from poso_sim.errors import ScenarioError
from poso_sim.protocol.delegate import MEASURED, VerifyCost
from poso_sim.sim import Network, Trace, run

from .log import (_SCALARS, COMPACT_ABOVE, COMPACT_TRACE_EVENTS, KINDS, PER_COPY, Entry, RunLog, item_fields,
                  kind_of, plain, plain_value)
from .model import Scenario, resolve_scenario
from .payloads import LABELS, PayloadSource, RealPayloads, StubPayloads, solution_matches
from .instances import InstancePayloads, SolveTimes, resolve_instances
from .market import payload_source
from .session import Session, default_session

__all__ = ["RunResult", "run_scenario", "arun_scenario", "Runner", "make_runner", "VerificationService", "needed_labels"]

#: a verification service: the verdict on one attached solution for a height. It may have a `key` (str): then
#: its verdicts are memoised in the session under that key; without one they are memoised for the run only.
VerificationService = Callable[[Payload, "int | None"], Verdict]

_DIGEST_MISMATCH = Verdict(False, None, ("solution does not hash to the digest",))

#: the garbage collector's thresholds while a run is under way: a run allocates millions of short-lived,
#: acyclic objects (events, log entries, messages in flight); the default (700, 10, 10) collects every 700
_RUN_GC_THRESHOLD = (50_000, 10, 10)
_gc_lock = threading.Lock()
_gc_state: dict[str, Any] = {"runs": 0, "saved": None}


@contextlib.contextmanager
def gc_tuned() -> Any:
    """Raise the collector's young-generation threshold for the duration, then restore it. Nested and
    concurrent uses (runs in threads) share one setting; the last one to leave restores what the first one
    found."""
    with _gc_lock:
        st = _gc_state
        if st["runs"] == 0:
            st["saved"] = gc.get_threshold()
            gc.set_threshold(*_RUN_GC_THRESHOLD)
        st["runs"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            st["runs"] -= 1
            if st["runs"] == 0:
                gc.set_threshold(*st["saved"])


_NOTHING = object()  # no message sent yet
#: a log `Entry` from a (t, node, item) tuple, without the Python-level `__new__` of the named tuple (same value)
_new_entry = tuple.__new__


def _receiver(machine: Any) -> Callable[[str, Any, list[Any]], None] | None:
    """`machine._on_message`, which appends to a list what `machine.handle(MessageReceived(src, msg))` returns, when
    the machine is a `Delegate` or `NormalNode` whose `handle` and `receive` are not overridden (its `receive` is
    then that list), else None."""
    cls = type(machine)
    for base in (Delegate, NormalNode):
        if isinstance(machine, base) and cls.handle is base.handle and cls.receive is base.receive:
            return machine._on_message
    return None


def _fmt_cost(c: Any) -> str:
    return "?" if c is None else f"{float(c):.2f}"


def summarize(msg: Any) -> str:
    """One short line describing a protocol message (goes into the trace)."""
    if isinstance(msg, Proposal):
        p = msg.payload
        return f"h{msg.height} r{msg.round} {msg.leader} {p.label or '?'} {p.digest[:8]} ${_fmt_cost(p.claimed_cost)}"
    if isinstance(msg, Relay):
        q = msg.proposal
        return f"h{q.height} r{q.round} {'>'.join(msg.path)} {q.payload.label or '?'} {q.payload.digest[:8]}"
    if isinstance(msg, MisbehaviourProof):
        q = msg.proposal
        return f"proof against {q.leader} h{q.height} r{q.round} {q.payload.digest[:8]} by {msg.reporter}"
    if isinstance(msg, Decision):
        return f"h{msg.height} r{msg.round} {msg.delegate} decides {msg.leader}'s {msg.digest[:8]} ${_fmt_cost(msg.cost)}"
    return type(msg).__name__


@dataclass
class RunResult:
    """Everything a run produced. `log` is the run log every view below is read from; `to_json()` is the
    `poso-sim run --json` object."""

    scenario: Scenario
    seed: int
    delegates: list[str]
    normals: list[str]
    dishonest: list[str]
    log: RunLog
    costs: dict[str, float | None]
    labels: dict[str, str | None]
    messages: int
    messages_by_kind: dict[str, int]
    network: dict[str, Any]
    virtual_seconds: float
    wall_seconds: float
    trace_digest: str
    trace: Trace
    verifications: int
    heights_run: int
    height_timeouts: list[int] = field(default_factory=list)
    #: one entry per height of a chain of instances: {height, name, case, fingerprint} (empty: one problem)
    instances: list[dict[str, Any]] = field(default_factory=list)
    #: height -> virtual seconds a solve of that height takes at speed 1 (only when `solve_time` is a model)
    solve_seconds: dict[int, float] = field(default_factory=dict)

    # ---- views of the log
    @functools.cached_property
    def records(self) -> list[dict[str, Any]]:
        """The log as flat rows (`RunLog.rows`)."""
        return self.log.rows()

    @functools.cached_property
    def decisions(self) -> dict[str, dict[int, dict[str, Any]]]:
        """delegate -> height -> its decision (round, leader, digest, cost, label, t)."""
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for e in self.log.of(Decide):
            a = e.item
            out.setdefault(e.node, {})[a.height] = {
                "height": a.height, "round": a.round, "leader": a.leader, "digest": a.digest, "cost": a.cost,
                "label": a.label or self.labels.get(a.digest), "t": e.t,
            }
        return out

    @functools.cached_property
    def exclusions(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for e in self.log.of(Exclude):
            a = e.item
            out.setdefault(e.node, []).append({
                "leader": a.leader, "height": a.height, "round": a.round, "reason": a.reason,
                "evidence": a.evidence, "t": e.t,
            })
        return out

    @functools.cached_property
    def blocks(self) -> dict[str, list[dict[str, Any]]]:
        """normal node -> the blocks it executed, in chain order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for e in self.log.of(Execute):
            b = e.item.block
            out.setdefault(e.node, []).append({
                **b.fields(), "certificate": len(b.decisions), "deciders": [d.delegate for d in b.decisions], "t": e.t,
            })
        return out

    # ---- outcomes
    @property
    def honest(self) -> list[str]:
        return [d for d in self.delegates if d not in self.dishonest]

    def executed_at(self, height: int = 1) -> dict[str, Any] | None:
        """The plan the normal nodes executed at `height` (the most common block if they disagree)."""
        by_content: dict[tuple, list[str]] = {}
        blocks: dict[tuple, dict[str, Any]] = {}
        for n in self.normals:
            for b in self.blocks.get(n, []):
                if b["height"] == height:
                    key = (b["round"], b["leader"], b["digest"], b["cost"])
                    by_content.setdefault(key, []).append(n)
                    blocks[key] = b
        if not by_content:
            return None
        key = max(by_content, key=lambda k: (len(by_content[k]), k[2]))
        b = blocks[key]
        votes = sorted(d for d, hs in self.decisions.items() if height in hs
                       and (hs[height]["digest"], hs[height]["leader"], hs[height]["round"]) == (b["digest"], b["leader"], b["round"]))
        return {
            "height": height,
            "round": b["round"],
            "leader": b["leader"],
            "digest": b["digest"],
            "cost": b["cost"],
            "true_cost": self.costs.get(b["digest"]),
            "label": self.labels.get(b["digest"]),
            "votes": len(votes),
            "voters": votes,
            "certificate": b["certificate"],
            "nodes": sorted(by_content[key]),
            "agreement": len(by_content) == 1 and len(by_content[key]) == len(self.normals),
        }

    @property
    def executed(self) -> dict[str, Any] | None:
        return self.executed_at(1)

    def excluded_by_honest(self) -> list[str]:
        """Leaders excluded by every honest delegate (evidence or timeout)."""
        honest = self.honest
        if not honest:
            return []
        sets = [{e["leader"] for e in self.exclusions.get(d, [])} for d in honest]
        common = set.intersection(*sets)
        return [d for d in self.delegates if d in common]

    def decisions_at(self, height: int = 1) -> dict[str, dict[str, Any] | None]:
        return {d: self.decisions.get(d, {}).get(height) for d in self.delegates}

    def _repr_html_(self) -> str:
        from .display import outcome_html

        return outcome_html(self)

    def to_json(self) -> dict[str, Any]:
        heights = []
        for h in range(1, self.heights_run + 1):
            heights.append({"height": h, "executed": self.executed_at(h), "decisions": self.decisions_at(h)})
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "case": self.scenario.case,
            "signatures": self.scenario.signatures,
            "window": self.scenario.window,
            "delegates": self.delegates,
            "dishonest": self.dishonest,
            "normal_nodes": self.normals,
            "executed": self.executed,
            "excluded": self.excluded_by_honest(),
            "exclusions": {d: self.exclusions.get(d, []) for d in self.delegates},
            "decisions": self.decisions_at(1),
            "heights": heights,
            "chains": {n: [b["hash"] for b in self.blocks.get(n, [])] for n in self.normals},
            "messages": self.messages,
            "messages_by_kind": self.messages_by_kind,
            "network": self.network,
            "verifications": self.verifications,
            "virtual_seconds": self.virtual_seconds,
            "wall_seconds": self.wall_seconds,
            "trace_digest": self.trace_digest,
            "log_digest": self.log.digest(),
            "height_timeouts": self.height_timeouts,
            **({"log": {"mode": "compact", "entries": len(self.log), "omitted": dict(sorted(self.log.omitted.items()))}}
               if self.log.mode == "compact" else {}),
            **({"instances": self.instances} if self.instances else {}),
            **({"solve_seconds": {str(h): s for h, s in sorted(self.solve_seconds.items())}} if self.solve_seconds else {}),
        }


def needed_labels(scenario: Scenario, behaviours: dict[str, list[Any]] | None = None) -> tuple[str, ...]:
    """The plan labels a run of `scenario` can use: "optimal" and those of its behaviours (`behaviours`: the
    scenario's `behaviour_objects()` when already built)."""
    want = {"optimal"}
    for bs in (scenario.behaviour_objects() if behaviours is None else behaviours).values():
        for b in bs:
            want.update(b.payload_labels())
    return tuple(lbl for lbl in LABELS if lbl in want) + tuple(sorted(want - set(LABELS)))


class Runner:
    """One run of a scenario (use `run_scenario` / `arun_scenario`); see the module docstring for the hooks."""

    def __init__(
        self,
        scenario: Scenario,
        source: PayloadSource,
        *,
        seed: int | None = None,
        verify_cost: VerifyCost | None = None,
        trace_events: Any = None,
        session: Session | None = None,
        verifier: VerificationService | None = None,
        signature_cache: SignatureCache | None = None,
        observers: Iterable[Callable[[Any], Any]] = (),
        delegate_factory: Callable[..., Delegate] | None = None,
        log_mode: str | None = None,
        keep_trace: bool | None = None,
    ) -> None:
        self.scn = scenario
        self.source = source
        self.seed = scenario.seed if seed is None else int(seed)
        vc = scenario.verify_cost if verify_cost is None else verify_cost
        self.verify_cost: VerifyCost = vc
        self.names = scenario.delegate_names
        self.normals = scenario.normal_names
        self.dishonest = scenario.dishonest
        self.session = session if session is not None else default_session()
        if verifier is None:
            self.verifier: VerificationService = source.verify
            key = source.key
        else:
            self.verifier = verifier
            key = getattr(verifier, "key", None)
        self._verdicts = self.session.verdicts if key is not None else {}
        self._verifier_key = key if key is not None else ""
        # each distinct (key, signature, bytes) is checked once per run: N receivers check the same signature
        self.signature_cache = signature_cache if signature_cache is not None else SignatureCache()
        self.sig_check = self.signature_cache.check
        self.delegate_factory = delegate_factory or Delegate
        # a large committee keeps a compact log, traces no sends and keeps only the trace's digest (module docstring)
        mode = log_mode if log_mode is not None else ("compact" if len(self.names) > COMPACT_ABOVE else "full")
        self.log = RunLog(observers, mode)
        if trace_events is None and mode == "compact":
            trace_events = COMPACT_TRACE_EVENTS
        self.trace = Trace(events=trace_events, keep=keep_trace if keep_trace is not None else mode == "full")
        self._entries, self._observers = self.log.entries, self.log.observers
        self._first_copy = None if mode == "full" else self.log.first_copy
        self.timers: dict[tuple[str, Any], Any] = {}
        self.verifications = 0
        self.height = 0
        self.finished: set[str] = set()
        self._done: asyncio.Future[None] | None = None
        self.height_timeouts: list[int] = []
        self.by_kind: Counter[str] = Counter()
        self._summaries = self.trace.wants("send") or self.trace.wants("deliver")
        self._last_sent: Any = _NOTHING  # the last message sent, its kind and summary: a broadcast sends one object N times
        self._last_kind = ""
        self._last_summary: str | None = None
        self._node_of: dict[str, Any] = {}  # name -> its node of the network (`_handler`)
        self._users = self.trace.wants("user")
        self._cancel_lock = threading.Lock()
        self._cancelled = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.end_time = 0.0
        self.solve_times = SolveTimes(scenario.solve_time, source)
        self._behaviours: dict[str, list[Any]] | None = None  # built by `prepare` for `_build`
        self.solve_seconds: dict[int, float] = {}

    # ---- setup
    def prepare(self) -> None:
        """Make the plans this run can use ready (solve or load them) before the clock starts."""
        prep = getattr(self.source, "prepare", None)
        if prep is not None:
            # the run's behaviour objects (stateful, one set per run) are built here once and used by `_build`
            self._behaviours = self.scn.behaviour_objects()
            prep(needed_labels(self.scn, self._behaviours))
        if self.solve_times.modelled:
            self.solve_times.load()
            self._solve_delay = {(h, n): self.solve_times.seconds(h, n)
                                 for h in range(1, self.scn.heights + 1) for n in self.names}
            self.solve_times.save()

    def _instances(self) -> dict[int, str] | None:
        fps = getattr(self.source, "instance_fingerprints", None)
        if not fps:
            return None
        return {h: fps[h] for h in range(1, self.scn.heights + 1) if h in fps}

    def _build(self) -> None:
        scn = self.scn
        try:  # the virtual clock the network reads (`Network.now`), read directly by the handlers and `_log`
            self._clock = asyncio.get_running_loop().time
        except RuntimeError:  # built outside a loop: through the network
            self._clock = lambda: self.net.now
        if scn.signatures or self.delegate_factory is not Delegate:
            committee, keys = make_committee(
                self.names, self.normals, seed=b"poso-sim/scenario/%d" % self.seed, signatures=scn.signatures
            )
        else:  # nothing is signed or checked: the delegates need no key pairs (30 µs each to derive)
            committee, keys = Committee(self.names, None, self.normals), dict.fromkeys(self.names)
        self.committee = committee
        if scn.signatures and hasattr(self.signature_cache, "vouch"):
            # every signature a simulated delegate makes is noted as valid in the run's signature cache, so the
            # checks of it (by every receiver) compute nothing; a forged or altered one is still computed
            keys = {name: kp.noting(self.signature_cache) for name, kp in keys.items()}
        n = len(self.names)
        charge: Any = None if self.verify_cost == MEASURED else float(self.verify_cost)
        behaviours = self._behaviours if self._behaviours is not None else scn.behaviour_objects()
        self._behaviours = None
        self.machines: dict[str, Any] = {}
        self._timed: set[str] = set()  # nodes whose events carry the virtual time
        src = self.source
        instances = self._instances()
        extra: dict[str, Any] = {} if instances is None else {"instances": instances}
        for name in self.names:
            d = self.delegate_factory(
                name, committee, keys[name], case_id=scn.case, window=scn.window, signatures=scn.signatures,
                verify_cost=charge, rotate_heights=scn.rotate_heights, max_rounds=scn.max_rounds,
                sig_check=self.sig_check, **extra,
            )
            if behaviours.get(name):
                self.machines[name] = BehavingDelegate(d, behaviours[name], payload_source=src.payloads)
                self._timed.add(name)  # behaviours may read the virtual time (Crash(at_time))
            else:
                self.machines[name] = d
        solve = (max(self._solve_delay.values(), default=0.0) if self.solve_times.modelled
                 else float(scn.solve_time))  # type: ignore[arg-type]
        timeout = scn.normal_timeout or (scn.window + solve) * (n + 1)
        self.normal_timeout = timeout
        for o in self.normals:
            self.machines[o] = NormalNode(
                o, committee, signatures=scn.signatures, case_id=scn.case, timeout=timeout, sig_check=self.sig_check
            )
        self.net = Network(
            self.names + self.normals,
            latency=scn.network.build_latency(),
            seed=self.seed,
            faults=scn.build_faults(),
            trace=self.trace,
        )
        # the network reaches the runner only through the message handlers and crash callbacks (`release`)
        for name in self.names + self.normals:
            node = self.net.node(name)
            node.on_message(self._handler(name))
            node.on_crash(self._check_height)

    def _handler(self, name: str) -> Any:
        net, feed, clock = self.net, self.feed, self._clock
        self._node_of[name] = net.node(name)
        machine = self.machines[name]
        on_message = _receiver(machine)
        cls = type(machine)
        if (isinstance(machine, BehavingDelegate) and cls.handle is BehavingDelegate.handle
                and cls.receive is BehavingDelegate.receive):  # `handle(MessageReceived(...))` without the event
            receive, carry_out = machine.receive, self._carry_out

            def handler(msg: Any) -> None:
                carry_out(name, receive(msg.src, msg.payload, clock()))

        elif name in self._timed:

            def handler(msg: Any) -> None:
                feed(name, MessageReceived(msg.src, msg.payload, clock()))

        elif on_message is None:

            def handler(msg: Any) -> None:
                feed(name, MessageReceived(msg.src, msg.payload))

        else:  # the machine's own `handle(MessageReceived(src, msg))`, without the event object
            handler = self._note_handler(name, on_message)
        return handler

    def _note_handler(self, name: str, on_message: Callable[[str, Any, list[Any]], None]) -> Callable[[Any], None]:
        """The handler of a plain machine. What a delivered message mostly yields, one per-copy note (`Received`,
        `DecisionSeen`), is logged here; anything else goes to `_carry_out`. In compact mode the heights whose first
        note of each kind this node has logged are known here (the log's first-copy set only grows), so a later
        copy costs its count; the same entries, counts and observer calls as `_log`."""
        carry_out, log, clock = self._carry_out, self._log, self._clock
        entries, observers, counts = self._entries, self._observers, self.log.counts
        compact = self._first_copy is not None
        direct = not compact and not self._users  # a full log without user events: the entry is all there is
        received_at: set[int] = set()  # compact: heights whose first note of the kind this node has logged
        seen_at: set[int] = set()
        received, seen = KINDS[Received], KINDS[DecisionSeen]

        def handler(msg: Any) -> None:
            out: list[Any] = []
            on_message(msg.src, msg.payload, out)
            if len(out) == 1:
                a = out[0]
                t = type(a)
                if t is Received:
                    heights, kind = received_at, received
                elif t is DecisionSeen:
                    heights, kind = seen_at, seen
                else:
                    carry_out(name, out)
                    return
                if compact:
                    if a.height in heights:  # a later copy: counted only (as `RunLog.keeps` counts it)
                        counts[kind] = counts.get(kind, 0) + 1
                        if observers:
                            e = Entry(clock(), name, a)
                            for obs in observers:
                                obs(e)
                        return
                    log(name, a)
                    heights.add(a.height)
                elif direct and not observers:
                    entries.append(_new_entry(Entry, (clock(), name, a)))
                else:
                    log(name, a)
                return
            carry_out(name, out)

        return handler

    def _time(self, name: str) -> float | None:
        """The virtual time to stamp on an event for `name` (None for a machine that never reads it)."""
        return self._clock() if name in self._timed else None

    # ---- the host loop
    def feed(self, name: str, event: Any) -> None:
        self._carry_out(name, self.machines[name].handle(event))

    def _carry_out(self, name: str, actions: Iterable[Any]) -> None:
        """`_do` each action in order; the two a message mostly yields (an immediate `Send`, a logged note) are
        told apart by their exact type first. Consecutive immediate sends of one message object (a broadcast, a
        relay to every member) go out as one `_send_many`: the same messages, ids and trace as one by one."""
        send_many, log, do = self._send_many, self._log, self._do
        msg: Any = _NOTHING
        dsts: list[Any] = []
        for a in actions:
            t = type(a)
            if t is Send and not a.delay > 0:
                if a.msg is msg:
                    dsts.append(a.dst)
                    continue
                if dsts:
                    send_many(name, dsts, msg)
                msg, dsts = a.msg, [a.dst]
                continue
            if dsts:
                send_many(name, dsts, msg)
                msg, dsts = _NOTHING, []
            if t in KINDS:
                log(name, a)
            else:
                do(name, a)
        if dsts:
            send_many(name, dsts, msg)

    def _do(self, name: str, a: Any) -> None:
        net = self.net
        t = type(a)
        if isinstance(a, Send):
            if a.delay > 0:
                net.node(name).arm_timer(a.delay, self._send, name, a.dst, a.msg, name="delayed send")
            else:
                self._send(name, a.dst, a.msg)
        elif t is not StartTimer and t is not CancelTimer and t is not Verify and (t in KINDS or isinstance(a, Note)):
            self._log(name, a)  # (the exact types first: `Note` is an ABC, whose isinstance is a Python call)
        elif isinstance(a, StartTimer):
            key = (name, a.timer_id)
            old = self.timers.pop(key, None)
            if old is not None:
                old.cancel()
            label = ":".join(str(x) for x in a.timer_id) if isinstance(a.timer_id, tuple) else str(a.timer_id)
            self.timers[key] = net.node(name).arm_timer(a.delay_seconds, self._fire, name, a.timer_id, name=label)
        elif isinstance(a, CancelTimer):
            old = self.timers.pop((name, a.timer_id), None)
            if old is not None:
                old.cancel()
        elif isinstance(a, Verify):
            verdict, seconds, ok = self._verify(a.payload, a.height, a.instance)
            charge = a.charge if a.charge is not None else seconds
            net.node(name).arm_timer(max(0.0, float(charge)), self._verified, name, a.digest, verdict, ok,
                                     a.instance, name="verified")
        elif isinstance(a, Solve):
            if self.solve_times.modelled:
                delay = self._solve_delay.get((a.height, name))
                if delay is None:
                    delay = self._solve_delay[(a.height, name)] = self.solve_times.seconds(a.height, name)
                if a.height not in self.solve_seconds:
                    self.solve_seconds[a.height] = self.solve_times.seconds(a.height)  # at speed 1
            else:
                delay = self.scn.solve_time  # type: ignore[assignment]
            net.node(name).arm_timer(delay, self._solved, name, a.height, a.round, name="solved")
        else:
            raise TypeError(f"{name}: the machine returned an unknown action {a!r}")

    def _verify(self, payload: Payload, height: int | None, instance: str = "") -> tuple[Verdict, float, bool]:
        """(verdict, measured seconds of its one real verification, whether the solution matches the digest).
        Memoised by (verifier, instance, digest): a plan's verdict on one instance says nothing of another."""
        if not solution_matches(payload):
            return _DIGEST_MISMATCH, 0.0, False
        key = (self._verifier_key + ("@" + instance if instance else ""), payload.digest)
        hit = self._verdicts.get(key)
        if hit is None:
            t0 = time.perf_counter()
            verdict = self.verifier(payload, height)
            hit = self._verdicts[key] = (verdict, time.perf_counter() - t0)
            self.verifications += 1
        return hit[0], hit[1], True

    def _verified(self, name: str, digest: str, verdict: Verdict, ok: bool, instance: str = "") -> None:
        self.feed(name, VerificationDone(digest, verdict, ok, self._time(name), instance))

    def _solved(self, name: str, height: int, round: int) -> None:
        self.feed(name, SolutionReady(height, round, self.source.payloads(height), self._time(name)))

    def _log(self, name: str, a: Any) -> None:
        kind = type(a)
        first_copy = self._first_copy
        if first_copy is not None and kind in PER_COPY and not first_copy(name, a):
            # compact: a later copy of a per-copy note is only counted (no entry, no user event)
            if self._observers:
                e = Entry(self._clock(), name, a)
                for obs in self._observers:
                    obs(e)
            return
        now = self._clock()
        e = _new_entry(Entry, (now, name, a))
        self._entries.append(e)
        if self._observers:
            for obs in self._observers:
                obs(e)
        if self._users:
            if kind is not Exclude:
                if kind is Received or kind is DecisionSeen:  # the per-copy notes: `plain(item_fields(a))` in one pass
                    data = {k: v if type(v) in _SCALARS else plain_value(v) for k, v in zip(kind._fields, a)}
                    data["node"] = name
                else:
                    data = item_fields(a)
                    data["node"] = name
                    if kind is Dropped and "message" in data:
                        data["kind"] = data.pop("message")  # the trace's user-event data keeps its original keys
                    data = plain(data)
                self.trace.append(now, "user", name, None, kind_of(kind), None, None, None, data)
        if isinstance(a, HEIGHT_ENDS):
            h = a.block.height if isinstance(a, Execute) else getattr(a, "height", self.height)
            if h == self.height:
                self.finished.add(name)
                self._check_height()

    def _send(self, src: str, dst: str, msg: Any) -> None:
        node_of = self._node_of  # every node of the network once built (`_handler`)
        if dst not in node_of and dst not in self.net:
            self._log(src, Dropped("unknown destination", dst=dst))
            return
        if msg is self._last_sent:  # a broadcast sends one object to every destination in a row
            kind, summary = self._last_kind, self._last_summary
        else:
            kind, summary = self._describe(msg)
        by_kind = self.by_kind
        by_kind[kind] = by_kind[kind] + 1
        node = node_of.get(src)
        if node is None:
            node = self.net.node(src)
        node.send(dst, msg, kind=kind, summary=summary)

    def _describe(self, msg: Any) -> tuple[str, str | None]:
        """The trace's kind and summary of a message sent for the first time (kept for the sends of the same
        object that follow it: a broadcast)."""
        kind = getattr(msg, "kind", None) or type(msg).__name__
        summary = summarize(msg) if self._summaries else None
        self._last_sent, self._last_kind, self._last_summary = msg, kind, summary
        return kind, summary

    def _send_many(self, src: str, dsts: list[Any], msg: Any) -> None:
        """`_send` of one message to each of `dsts`, in order, through one `Node.send_many` (`_send` itself for
        a single destination)."""
        if len(dsts) == 1:
            self._send(src, dsts[0], msg)
            return
        node_of = self._node_of
        if not all(map(node_of.__contains__, dsts)):  # an unknown destination is logged in its place
            for dst in dsts:
                self._send(src, dst, msg)
            return
        if msg is self._last_sent:
            kind, summary = self._last_kind, self._last_summary
        else:
            kind, summary = self._describe(msg)
        by_kind = self.by_kind
        by_kind[kind] = by_kind[kind] + len(dsts)
        node = node_of.get(src)
        if node is None:
            node = self.net.node(src)
        node.send_many(dsts, msg, kind=kind, summary=summary)

    def _fire(self, name: str, timer_id: Any) -> None:
        self.timers.pop((name, timer_id), None)
        self.feed(name, TimerExpired(timer_id, self._time(name)))

    def _live(self, name: str) -> bool:
        m = self.machines[name]
        if isinstance(m, BehavingDelegate) and m.crashed:
            return False
        return not self.net.node(name).crashed

    def _check_height(self) -> None:
        fut = self._done
        if fut is None or fut.done():
            return
        for n in self.names:
            if n not in self.finished and self._live(n):
                return
        for n in self.normals:
            if n not in self.finished and self._live(n):
                return
        fut.set_result(None)

    # ---- cancellation (from any thread)
    def cancel(self) -> None:
        """Stop the run: its task on the virtual loop is cancelled (at once if it has not started)."""
        with self._cancel_lock:
            self._cancelled = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile: the run is over anyway
                pass

    def _stop_if_cancelled(self) -> None:
        # `wait_for` may swallow a cancellation that lands as the awaited height completes (the same virtual
        # instant): the flag makes the stop certain at the next height boundary
        if self._cancelled:
            raise asyncio.CancelledError()

    async def main(self) -> None:
        with self._cancel_lock:
            if self._cancelled:
                raise asyncio.CancelledError()
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            with gc_tuned():
                await self._main()
        finally:
            with self._cancel_lock:
                self._loop = self._task = None

    async def _main(self) -> None:
        self._build()
        loop = asyncio.get_running_loop()
        scn = self.scn
        deadline = self.normal_timeout + scn.window + 1.0
        for h in range(1, scn.heights + 1):
            self._stop_if_cancelled()
            self.height = h
            self.finished = set()
            self._done = loop.create_future()
            self.net.record("height_start", {"height": h})
            for name in self.names + self.normals:
                if not self.net.node(name).crashed:
                    self.feed(name, Start(h, self._time(name)))
            self._check_height()
            try:
                await asyncio.wait_for(asyncio.shield(self._done), deadline)
            except TimeoutError:
                self.height_timeouts.append(h)
                self.net.record("height_timeout", {"height": h})
            self._stop_if_cancelled()
            # let the messages of this height land before the next one starts
            try:
                await asyncio.wait_for(self.net.idle(), max(scn.window, 1.0))
            except TimeoutError:
                pass
        self._done = None
        self.end_time = loop.time()

    def simulate(self) -> float:
        """Run the (prepared) scenario on the virtual-time kernel in the calling thread; the wall seconds it took.
        The one body of `run_scenario`, `arun_scenario` (on its worker thread) and the sweeps' runs."""
        t0 = time.perf_counter()
        run(self.main())
        return time.perf_counter() - t0

    def release(self) -> None:
        """Unhook the runner from its network once the run is over and read (`Network.release`: the nodes drop
        their handlers and crash callbacks, the network its own cycles), so dropping the runner frees the run's
        machines, log and network by reference counting at once instead of leaving them to the cycle collector
        (a sweep runs thousands of runs in one process). The runner's log, counters and network statistics stay
        readable; it cannot be run again."""
        net = getattr(self, "net", None)
        if net is not None:  # built
            net.release()

    # ---- the result
    def finish(self, wall: float, trace_path: str | None = None) -> RunResult:
        """The run's result, after writing the kernel trace to `trace_path` (JSON lines) if one is given."""
        if trace_path:
            self.trace.to_jsonl(trace_path)
        return self.result(wall)

    def result(self, wall: float) -> RunResult:
        source, net = self.source, self.net
        digests = {getattr(e.item, "digest", None) for e in self.log} - {None}
        solved = getattr(source, "solved", None)
        digests |= {p.digest for p in (solved() if solved is not None else source.payloads(1)).values()}
        costs = {d: source.cost_of(d) for d in sorted(digests)}
        labels = {d: source.label_of(d) for d in sorted(digests)}
        scn = self.scn
        return RunResult(
            scenario=scn,
            seed=self.seed,
            delegates=self.names,
            normals=self.normals,
            dishonest=self.dishonest,
            log=self.log,
            costs=costs,
            labels=labels,
            messages=net.sent,
            messages_by_kind=dict(sorted(self.by_kind.items())),
            network=net.stats(),
            virtual_seconds=self.end_time,
            wall_seconds=wall,
            trace_digest=self.trace.digest(),
            trace=self.trace,
            verifications=self.verifications,
            heights_run=scn.heights,
            height_timeouts=self.height_timeouts,
            instances=self._instance_rows(),
            solve_seconds=dict(self.solve_seconds),
        )

    def _instance_rows(self) -> list[dict[str, Any]]:
        src = self.source
        fps = self._instances()
        if not fps or not hasattr(src, "instance"):
            return []
        rows = []
        for h in range(1, self.scn.heights + 1):
            inst = src.instance(h)
            rows.append({"height": h, "name": inst.name, "case": inst.case, "fingerprint": fps.get(h, "")})
        return rows


def make_runner(
    scenario: Scenario | str,
    payloads: PayloadSource | str | None = None,
    *,
    seed: int | None = None,
    verify_cost: VerifyCost | None = None,
    trace_events: Any = None,
    **hooks: Any,
) -> Runner:
    """The `Runner` of a scenario (a Scenario, a packaged name or a file path) on `payloads` (a PayloadSource,
    "stub" or "real"/None: the instances' plans, or the case's): the one construction behind `run_scenario`,
    `arun_scenario` and the sweeps' runs. `hooks` are the Runner's keywords (`session`, `verifier`, ...)."""
    scn = resolve_scenario(scenario)
    if not isinstance(scn, Scenario):  # an iterated market (a `hubs:` file) has its own runner
        raise ScenarioError(f"{scn.name}: a trading market: run it with poso_sim.scenarios.trading_runner.run_trading")
    session = hooks.get("session")
    if (payloads is None or payloads == "real") and scn.instances is not None:
        source: PayloadSource = InstancePayloads(scn.case, resolve_instances(scn) or [], session=session,
                                                 variants=scn.variants)
    elif payloads is None or payloads == "real":
        source = payload_source(scn.case, session=session, variants=scn.variants)  # a market: MarketPayloads
    elif payloads == "stub":
        source = StubPayloads(scn.case)
    else:
        source = payloads  # type: ignore[assignment]
    return Runner(scn, source, seed=seed, verify_cost=verify_cost, trace_events=trace_events, **hooks)


def run_scenario(
    scenario: Scenario | str,
    *,
    payloads: PayloadSource | str | None = None,
    seed: int | None = None,
    verify_cost: VerifyCost | None = None,
    trace_path: str | None = None,
    trace_events: Any = None,
    session: Session | None = None,
    verifier: VerificationService | None = None,
    signature_cache: SignatureCache | None = None,
    observers: Iterable[Callable[[Any], Any]] = (),
    delegate_factory: Callable[..., Delegate] | None = None,
    log_mode: str | None = None,
) -> RunResult:
    """Run a scenario (a Scenario, a packaged name or a file path) in virtual time.

    `payloads`: a PayloadSource, "stub" or "real" (default "real", the cached solutions and the KKT certificate);
    `seed` overrides the scenario's; `verify_cost` overrides its verification charge (seconds or "measured");
    `trace_path` writes the trace as JSON lines; `log_mode` ("full" or "compact"; default: compact above
    `COMPACT_ABOVE` delegates) chooses the run log's mode (a compact run traces no sends and keeps only the kernel
    trace's digest unless `trace_path` asks for the records; module docstring). The hooks (`session`, `verifier`, `signature_cache`,
    `observers`, `delegate_factory`) are described in the module docstring. Blocks the calling thread; from
    asyncio code or a notebook use `await arun_scenario(...)`."""
    runner = make_runner(scenario, payloads, seed=seed, verify_cost=verify_cost, trace_events=trace_events,
                         session=session, verifier=verifier, signature_cache=signature_cache, observers=observers,
                         delegate_factory=delegate_factory, log_mode=log_mode, keep_trace=True if trace_path else None)
    runner.prepare()  # solve (or load) before the clock starts: not part of the simulated time
    return runner.finish(runner.simulate(), trace_path)


async def arun_scenario(
    scenario: Scenario | str,
    *,
    payloads: PayloadSource | str | None = None,
    seed: int | None = None,
    verify_cost: VerifyCost | None = None,
    trace_path: str | None = None,
    trace_events: Any = None,
    session: Session | None = None,
    verifier: VerificationService | None = None,
    signature_cache: SignatureCache | None = None,
    observers: Iterable[Callable[[Any], Any]] = (),
    delegate_factory: Callable[..., Delegate] | None = None,
    log_mode: str | None = None,
) -> RunResult:
    """`run_scenario` for asyncio programs and notebooks: the caller's event loop keeps running.

    The plans the run needs are solved (or loaded) in a worker thread, then the simulation runs on its own
    virtual-time loop in a worker thread; this coroutine only waits. Cancelling the awaiting task stops the
    simulation (its loop is cancelled and closed, its thread ends) before `CancelledError` propagates. A solve
    already under way cannot be interrupted: it finishes in its thread (its result goes to the solution cache)
    while the cancelled caller moves on. Observers are called on the simulation's thread."""
    runner = make_runner(scenario, payloads, seed=seed, verify_cost=verify_cost, trace_events=trace_events,
                         session=session, verifier=verifier, signature_cache=signature_cache, observers=observers,
                         delegate_factory=delegate_factory, log_mode=log_mode, keep_trace=True if trace_path else None)
    await asyncio.to_thread(runner.prepare)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()

    def settle(fn: Callable[..., Any], *args: Any) -> None:
        if not done.done():
            fn(*args)

    def work() -> None:
        try:
            wall = runner.simulate()
        except asyncio.CancelledError:
            loop.call_soon_threadsafe(settle, done.cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(settle, done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(settle, done.set_result, wall)

    thread = threading.Thread(target=work, name="poso-sim-run", daemon=True)
    thread.start()
    try:
        wall = await asyncio.shield(done)
    except asyncio.CancelledError:
        runner.cancel()
        while thread.is_alive():  # the simulation's loop is being cancelled and closed
            await asyncio.sleep(0.01)
        raise
    finally:
        if not thread.is_alive():
            thread.join()
    return runner.finish(wall, trace_path)
