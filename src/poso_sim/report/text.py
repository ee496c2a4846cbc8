"""A readable account of a run (read from its run log): who sent what, who decided, what the normal nodes
executed, what was dropped."""

from __future__ import annotations

from typing import Any

from poso_sim.protocol import (
    AcceptedUnchecked,
    ConflictingDecisions,
    Crashed,
    Decide,
    Dropped,
    Execute,
    GaveUp,
    NoMajority,
    OwnPlanRejected,
    ProofReceived,
    Received,
    Rejected,
    RoundStarted,
)
from poso_sim.nlp.problems import cost_unit
from poso_sim.protocol.delegate import DUPLICATE, HEIGHT_CLOSED, LOOP, STALE

__all__ = ["render_run"]


def _cost(c: Any, unit: str = "$") -> str:
    return "?" if c is None else f"{float(c):.2f} {unit}"


def render_run(result: Any, *, events: bool = True, max_events: int = 400) -> str:
    scn = result.scenario
    j = result.to_json()
    unit = cost_unit(scn.case)
    out: list[str] = []
    out.append(f"scenario {scn.name} (case {scn.case}, seed {result.seed}, window {scn.window} s, "
               f"signatures {'on' if scn.signatures else 'off'}, {scn.heights} height(s))")
    out.append(f"delegates {', '.join(result.delegates)}; dishonest: {', '.join(result.dishonest) or 'none'}; "
               f"normal nodes {', '.join(result.normals) or 'none'}")
    if events:
        out.append("")
        out.append("events:")
        lines = [(e.t, line) for e in result.log if (line := _event_line(e.node, e.item, result, unit)) is not None]
        for t, line in lines[:max_events]:
            out.append(f"  {t:8.3f}s  {line}")
        if len(lines) > max_events:
            out.append(f"  ... ({len(lines) - max_events} more)")
    for h in j["heights"]:
        out.append("")
        out.append(f"height {h['height']}:")
        for d, dec in h["decisions"].items():
            tag = " (dishonest)" if d in result.dishonest else ""
            if dec is None:
                out.append(f"  {d}{tag}: no decision")
            else:
                out.append(f"  {d}{tag}: decided {dec['leader']}'s {dec['label'] or 'plan'} ({_cost(dec['cost'], unit)}) "
                           f"in round {dec['round']}")
        ex = h["executed"]
        if ex is None:
            out.append("  normal nodes: nothing executed")
        else:
            out.append(f"  normal nodes {', '.join(ex['nodes'])}: executed {ex['leader']}'s {ex['label'] or 'plan'} "
                       f"({_cost(ex['true_cost'] if ex['true_cost'] is not None else ex['cost'], unit)}), round {ex['round']}, "
                       f"decided by {ex['votes']} of {len(result.delegates)}"
                       + ("" if ex["agreement"] else "  ** normal nodes disagree **"))
    out.append("")
    out.append(f"excluded by the honest delegates: {', '.join(j['excluded']) or 'none'}")
    out.append(f"messages {j['messages']} ({', '.join(f'{k} {v}' for k, v in j['messages_by_kind'].items())}); "
               f"dropped by the network {j['network']['dropped']}")
    out.append(f"virtual time {j['virtual_seconds']:.3f} s, wall time {j['wall_seconds']:.3f} s, "
               f"verifications {j['verifications']}")
    compact = j.get("log")  # a compact run: its log keeps each per-copy note once, its trace has no sends
    out.append(f"trace digest {j['trace_digest']}" + (
        f" (compact run: {compact['entries']} log entries kept, "
        f"{', '.join(f'{k} {v}' for k, v in compact['omitted'].items()) or 'none'} omitted)" if compact else ""))
    return "\n".join(out) + "\n"


#: drop reasons too common to be worth a line (copies arriving late or twice)
_QUIET_DROPS = (DUPLICATE, LOOP, HEIGHT_CLOSED, STALE)


def _event_line(n: str, r: Any, result: Any, unit: str = "$") -> str | None:
    if isinstance(r, RoundStarted):
        return f"{n}: height {r.height} round {r.round} starts, leader {r.leader}" if n == r.leader else None
    if isinstance(r, Received):
        cost = result.costs.get(r.digest) or r.claimed_cost
        if r.via == "own":
            return f"{n}: solved; own plan {r.label or ''} ({_cost(cost, unit)})"
        return f"{n}: got {r.leader}'s {r.label or 'plan'} ({_cost(cost, unit)}) via {'>'.join(r.path)} [{r.via}]"
    if isinstance(r, Rejected):
        return f"{n}: rejected {r.leader}'s plan via {'>'.join(r.path)}: {', '.join(r.reasons)}"
    if isinstance(r, AcceptedUnchecked):
        return f"{n}: accepted {r.leader}'s plan without checking it"
    if isinstance(r, ProofReceived):
        return f"{n}: misbehaviour proof against {r.leader} from {r.src}"
    if isinstance(r, Decide):
        return f"{n}: DECIDES {r.leader}'s {r.label or 'plan'} ({_cost(r.cost, unit)}) h{r.height} r{r.round}"
    if isinstance(r, GaveUp):
        return f"{n}: gave up height {r.height} after {r.rounds} rounds"
    if isinstance(r, Execute):
        b = r.block
        return f"{n}: EXECUTES {b.leader}'s plan ({_cost(b.cost, unit)}) h{b.height}, {len(b.decisions)} decisions"
    if isinstance(r, NoMajority):
        return f"{n}: no majority for height {r.height}"
    if isinstance(r, OwnPlanRejected):
        return f"{n}: its own plan fails verification"
    if isinstance(r, ConflictingDecisions):
        return f"{n}: conflicting decisions from {r.delegate}"
    if isinstance(r, Crashed):
        return f"{n}: crashed"
    if isinstance(r, Dropped) and r.reason not in _QUIET_DROPS:
        what = r.message or (f"{r.event} event" if r.event else "message")
        return f"{n}: dropped a {what}{'' if r.src is None else ' from ' + r.src}: {r.reason}"
    return None
