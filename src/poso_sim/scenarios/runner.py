"""The runner: binds the protocol machines to simulated nodes and carries out their actions in virtual time.

One simulated node per delegate and per normal node on a `poso_sim.sim.Network`. A message delivered to a node
becomes `MessageReceived(src, payload)` for its machine; the machine's actions are carried out in order:

* `Send` -> `network.send` (kind = the message kind, a short summary for the trace), after `Send.delay`;
* `StartTimer` / `CancelTimer` -> node timers (a restarted timer replaces the running one);
* `Verify` -> the payload source's verifier (memoised by digest, per process), answered with
  `VerificationDone` after the charge (`Verify.charge` seconds, or the measured wall time when None);
* `Solve` -> the source's labelled plans, answered with `SolutionReady` after `solve_time` virtual seconds;
* `Record` -> the run's record list (and a `user` event in the trace);
* `Decide` / `Exclude` / `Execute` -> the outcomes.

Heights run one after the other: `Start(h)` to every node, then the runner waits until every running delegate
has decided or given up and every normal node has executed or timed out (bounded by a deadline), lets the
messages in flight land, and starts h+1.

Deterministic: the same scenario and seed give the same trace digest in any process (unless verification is
charged by measured wall time).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from poso_sim.protocol import (
    BehavingDelegate,
    CancelTimer,
    Decide,
    Decision,
    Delegate,
    Exclude,
    Execute,
    MessageReceived,
    MisbehaviourProof,
    NormalNode,
    Proposal,
    Record,
    Relay,
    Send,
    SolutionReady,
    Solve,
    Start,
    StartTimer,
    TimerExpired,
    VerificationDone,
    Verify,
    make_committee,
)
from poso_sim.sim import Network, Trace, run

from .model import Scenario, resolve_scenario
from .payloads import PayloadSource, StubPayloads

__all__ = ["RunResult", "run_scenario", "Runner"]


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


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return repr(v)


@dataclass
class RunResult:
    """Everything a run produced. `to_json()` is the `poso-sim run --json` object."""

    scenario: Scenario
    seed: int
    delegates: list[str]
    normals: list[str]
    dishonest: list[str]
    records: list[dict[str, Any]]
    decisions: dict[str, dict[int, dict[str, Any]]]
    exclusions: dict[str, list[dict[str, Any]]]
    blocks: dict[str, list[dict[str, Any]]]
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
            "height_timeouts": self.height_timeouts,
        }


class Runner:
    """One run of a scenario (use `run_scenario`)."""

    def __init__(
        self,
        scenario: Scenario,
        source: PayloadSource,
        *,
        seed: int | None = None,
        verify_cost: float | str | None = None,
        trace_events: Any = None,
    ) -> None:
        self.scn = scenario
        self.source = source
        self.seed = scenario.seed if seed is None else int(seed)
        vc = scenario.verify_cost if verify_cost is None else verify_cost
        self.verify_cost: float | str = vc
        self.names = scenario.delegate_names
        self.normals = scenario.normal_names
        self.dishonest = scenario.dishonest
        self.trace = Trace(events=trace_events)
        self.records: list[dict[str, Any]] = []
        self.decisions: dict[str, dict[int, dict[str, Any]]] = {}
        self.exclusions: dict[str, list[dict[str, Any]]] = {}
        self.blocks: dict[str, list[dict[str, Any]]] = {}
        self.timers: dict[tuple[str, Any], Any] = {}
        self.verifications = 0
        self.height = 0
        self.finished: set[str] = set()
        self._done: asyncio.Future[None] | None = None
        self.height_timeouts: list[int] = []
        self.by_kind: Counter[str] = Counter()
        self._summaries = self.trace.wants("send") or self.trace.wants("deliver")
        self._users = self.trace.wants("user")

    # ---- setup
    def _build(self) -> None:
        scn = self.scn
        committee, keys = make_committee(
            self.names, self.normals, seed=b"poso-sim/scenario/%d" % self.seed, signatures=scn.signatures
        )
        self.committee = committee
        n = len(self.names)
        charge: Any = None if self.verify_cost == "measured" else float(self.verify_cost)
        behaviours = scn.behaviour_objects()
        self.machines: dict[str, Any] = {}
        src = self.source
        for name in self.names:
            d = Delegate(
                name, committee, keys[name], case_id=scn.case, window=scn.window, signatures=scn.signatures,
                verify_cost=charge, rotate_heights=scn.rotate_heights, max_rounds=scn.max_rounds,
            )
            if behaviours.get(name):
                self.machines[name] = BehavingDelegate(d, behaviours[name], payload_source=src.payloads)
            else:
                self.machines[name] = d
        timeout = scn.normal_timeout or (scn.window + scn.solve_time) * (n + 1)
        self.normal_timeout = timeout
        for o in self.normals:
            self.machines[o] = NormalNode(o, committee, signatures=scn.signatures, case_id=scn.case, timeout=timeout)
        self.net = Network(
            self.names + self.normals,
            latency=scn.network.build_latency(),
            seed=self.seed,
            faults=scn.build_faults(),
            trace=self.trace,
        )
        for name in self.names + self.normals:
            node = self.net.node(name)
            node.on_message(self._handler(name))
            node.on_crash(self._check_height)

    def _handler(self, name: str) -> Any:
        def handler(msg: Any) -> None:
            self.feed(name, MessageReceived(msg.src, msg.payload))

        return handler

    # ---- the host loop
    def feed(self, name: str, event: Any) -> None:
        m = self.machines[name]
        if isinstance(m, BehavingDelegate):
            actions = m.handle(event, now=self.net.now)
        else:
            actions = m.handle(event)
        for a in actions:
            self._do(name, a)

    def _do(self, name: str, a: Any) -> None:
        net = self.net
        if isinstance(a, Send):
            if a.delay > 0:
                net.node(name).set_timer(a.delay, self._send, name, a.dst, a.msg, name="delayed send")
            else:
                self._send(name, a.dst, a.msg)
        elif isinstance(a, StartTimer):
            key = (name, a.timer_id)
            old = self.timers.pop(key, None)
            if old is not None:
                old.cancel()
            label = ":".join(str(x) for x in a.timer_id) if isinstance(a.timer_id, tuple) else str(a.timer_id)
            self.timers[key] = net.node(name).set_timer(a.delay_seconds, self._fire, name, a.timer_id, name=label)
        elif isinstance(a, CancelTimer):
            old = self.timers.pop((name, a.timer_id), None)
            if old is not None:
                old.cancel()
        elif isinstance(a, Verify):
            before = getattr(self.source, "verifications", 0)
            res = self.source.verify(a.payload, a.height)
            self.verifications += getattr(self.source, "verifications", 0) - before
            charge = a.charge if a.charge is not None else res.seconds
            ev = VerificationDone(a.digest, res.accepted, res.cost, res.reasons, res.digest_ok)
            net.node(name).set_timer(max(0.0, float(charge)), self.feed, name, ev, name="verified")
        elif isinstance(a, Solve):
            ev = SolutionReady(a.height, a.round, dict(self.source.payloads(a.height)))
            net.node(name).set_timer(self.scn.solve_time, self.feed, name, ev, name="solved")
        elif isinstance(a, Record):
            self._record(name, a)
        elif isinstance(a, Decide):
            self.decisions.setdefault(name, {})[a.height] = {
                "height": a.height, "round": a.round, "leader": a.leader, "digest": a.digest, "cost": a.cost,
                "label": a.label or self.source.label_of(a.digest), "t": net.now,
            }
        elif isinstance(a, Exclude):
            self.exclusions.setdefault(name, []).append({
                "leader": a.leader, "height": a.height, "round": a.round, "reason": a.reason,
                "evidence": a.evidence, "t": net.now,
            })
        elif isinstance(a, Execute):
            b = a.block
            self.blocks.setdefault(name, []).append({
                "height": b.height, "round": b.round, "leader": b.leader, "digest": b.digest, "cost": b.cost,
                "hash": b.hash, "prev_hash": b.prev_hash, "certificate": len(b.decisions),
                "deciders": [d.delegate for d in b.decisions], "t": net.now,
            })

    def _send(self, src: str, dst: str, msg: Any) -> None:
        if dst not in self.net:
            self._record(src, Record("dropped", {"node": src, "reason": "unknown destination", "dst": dst}))
            return
        kind = getattr(msg, "kind", None) or type(msg).__name__
        self.by_kind[kind] += 1
        self.net.node(src).send(dst, msg, kind=kind, summary=summarize(msg) if self._summaries else None)

    def _fire(self, name: str, timer_id: Any) -> None:
        self.timers.pop((name, timer_id), None)
        self.feed(name, TimerExpired(timer_id))

    def _record(self, name: str, a: Record) -> None:
        data = a.data
        rec = {"t": self.net.now, "kind": a.kind, **data}
        rec.setdefault("node", name)
        self.records.append(rec)
        if self._users:
            self.net.record(a.kind, _jsonable(data), node=name)
        if a.kind in ("decided", "gave_up", "executed", "no_majority", "crashed") and data.get("height", self.height) == self.height:
            self.finished.add(name)
            self._check_height()

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

    async def main(self) -> None:
        self._build()
        loop = asyncio.get_running_loop()
        scn = self.scn
        deadline = self.normal_timeout + scn.window + 1.0
        for h in range(1, scn.heights + 1):
            self.height = h
            self.finished = set()
            self._done = loop.create_future()
            self.net.record("height_start", {"height": h})
            for name in self.names + self.normals:
                if not self.net.node(name).crashed:
                    self.feed(name, Start(h))
            self._check_height()
            try:
                await asyncio.wait_for(asyncio.shield(self._done), deadline)
            except TimeoutError:
                self.height_timeouts.append(h)
                self.net.record("height_timeout", {"height": h})
            # let the messages of this height land before the next one starts
            try:
                await asyncio.wait_for(self.net.idle(), max(scn.window, 1.0))
            except TimeoutError:
                pass
        self._done = None
        self.end_time = loop.time()


def run_scenario(
    scenario: Scenario | str,
    *,
    payloads: PayloadSource | str | None = None,
    seed: int | None = None,
    verify_cost: float | str | None = None,
    trace_path: str | None = None,
    trace_events: Any = None,
) -> RunResult:
    """Run a scenario (a Scenario, a packaged name or a file path) in virtual time.

    `payloads`: a PayloadSource, "stub" or "real" (default "real", the cached solutions and the KKT certificate);
    `seed` overrides the scenario's; `verify_cost` overrides its verification charge (seconds or "measured");
    `trace_path` writes the trace as JSON lines."""
    scn = resolve_scenario(scenario)
    if payloads is None or payloads == "real":
        from .payloads import RealPayloads

        source: PayloadSource = RealPayloads(scn.case)
    elif payloads == "stub":
        source = StubPayloads(scn.case)
    else:
        source = payloads  # type: ignore[assignment]
    runner = Runner(scn, source, seed=seed, verify_cost=verify_cost, trace_events=trace_events)
    if hasattr(source, "plans"):
        source.plans()  # solve (or load) before the clock starts: not part of the simulated time
    t0 = time.perf_counter()
    run(runner.main())
    wall = time.perf_counter() - t0
    net = runner.net
    digests = {r.get("digest") for r in runner.records if r.get("digest")}
    digests |= {p.digest for p in source.payloads(1).values()}
    costs = {d: source.cost_of(d) for d in sorted(digests)}
    labels = {d: source.label_of(d) for d in sorted(digests)}
    if trace_path:
        runner.trace.to_jsonl(trace_path)
    return RunResult(
        scenario=scn,
        seed=runner.seed,
        delegates=runner.names,
        normals=runner.normals,
        dishonest=runner.dishonest,
        records=runner.records,
        decisions=runner.decisions,
        exclusions=runner.exclusions,
        blocks=runner.blocks,
        costs=costs,
        labels=labels,
        messages=net.sent,
        messages_by_kind=dict(sorted(runner.by_kind.items())),
        network=net.stats(),
        virtual_seconds=runner.end_time,
        wall_seconds=wall,
        trace_digest=runner.trace.digest(),
        trace=runner.trace,
        verifications=runner.verifications,
        heights_run=scn.heights,
        height_timeouts=runner.height_timeouts,
    )
