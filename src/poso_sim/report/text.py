"""A readable account of a run: who sent what, who decided, what the normal nodes executed."""

from __future__ import annotations

from typing import Any

__all__ = ["render_run"]


def _cost(c: Any) -> str:
    return "?" if c is None else f"{float(c):.2f} $"


def render_run(result: Any, *, events: bool = True, max_events: int = 400) -> str:
    scn = result.scenario
    j = result.to_json()
    out: list[str] = []
    out.append(f"scenario {scn.name} (case {scn.case}, seed {result.seed}, window {scn.window} s, "
               f"signatures {'on' if scn.signatures else 'off'}, {scn.heights} height(s))")
    out.append(f"delegates {', '.join(result.delegates)}; dishonest: {', '.join(result.dishonest) or 'none'}; "
               f"normal nodes {', '.join(result.normals) or 'none'}")
    if events:
        out.append("")
        out.append("events:")
        shown = 0
        for r in result.records:
            line = _event_line(r, result)
            if line is None:
                continue
            shown += 1
            if shown > max_events:
                out.append(f"  ... ({sum(1 for x in result.records if _event_line(x, result)) - max_events} more)")
                break
            out.append(f"  {r['t']:8.3f}s  {line}")
    for h in j["heights"]:
        out.append("")
        out.append(f"height {h['height']}:")
        for d, dec in h["decisions"].items():
            tag = " (dishonest)" if d in result.dishonest else ""
            if dec is None:
                out.append(f"  {d}{tag}: no decision")
            else:
                out.append(f"  {d}{tag}: decided {dec['leader']}'s {dec['label'] or 'plan'} ({_cost(dec['cost'])}) "
                           f"in round {dec['round']}")
        ex = h["executed"]
        if ex is None:
            out.append("  normal nodes: nothing executed")
        else:
            out.append(f"  normal nodes {', '.join(ex['nodes'])}: executed {ex['leader']}'s {ex['label'] or 'plan'} "
                       f"({_cost(ex['true_cost'] if ex['true_cost'] is not None else ex['cost'])}), round {ex['round']}, "
                       f"decided by {ex['votes']} of {len(result.delegates)}"
                       + ("" if ex["agreement"] else "  ** normal nodes disagree **"))
    out.append("")
    out.append(f"excluded by the honest delegates: {', '.join(j['excluded']) or 'none'}")
    out.append(f"messages {j['messages']} ({', '.join(f'{k} {v}' for k, v in j['messages_by_kind'].items())}); "
               f"dropped by the network {j['network']['dropped']}")
    out.append(f"virtual time {j['virtual_seconds']:.3f} s, wall time {j['wall_seconds']:.3f} s, "
               f"verifications {j['verifications']}")
    out.append(f"trace digest {j['trace_digest']}")
    return "\n".join(out) + "\n"


def _event_line(r: dict[str, Any], result: Any) -> str | None:
    k = r["kind"]
    n = r.get("node")
    if k == "round_start":
        return f"{n}: height {r['height']} round {r['round']} starts, leader {r['leader']}" if n == r["leader"] else None
    if k == "received":
        cost = result.costs.get(r["digest"]) or r.get("claimed_cost")
        if r["via"] == "own":
            return f"{n}: solved; own plan {r.get('label') or ''} ({_cost(cost)})"
        return f"{n}: got {r['leader']}'s {r.get('label') or 'plan'} ({_cost(cost)}) via {'>'.join(r['path'])} [{r['via']}]"
    if k == "rejected":
        return f"{n}: rejected {r['leader']}'s plan via {'>'.join(r['path'])}: {', '.join(r['reasons'])}"
    if k == "accepted_unchecked":
        return f"{n}: accepted {r['leader']}'s plan without checking it"
    if k == "proof_received":
        return f"{n}: misbehaviour proof against {r['leader']} from {r['src']}"
    if k == "decided":
        return f"{n}: DECIDES {r['leader']}'s {r.get('label') or 'plan'} ({_cost(r['cost'])}) h{r['height']} r{r['round']}"
    if k == "gave_up":
        return f"{n}: gave up height {r['height']} after {r['rounds']} rounds"
    if k == "executed":
        return f"{n}: EXECUTES {r['leader']}'s plan ({_cost(r['cost'])}) h{r['height']}, {r['votes']} decisions"
    if k == "no_majority":
        return f"{n}: no majority for height {r['height']}"
    if k == "own_plan_rejected":
        return f"{n}: its own plan fails verification"
    if k == "conflicting_decisions":
        return f"{n}: conflicting decisions from {r['delegate']}"
    if k == "crashed":
        return f"{n}: crashed"
    if k == "dropped" and r.get("reason") not in ("duplicate", "loop", "height closed", "stale"):
        return f"{n}: dropped a {r.get('message', 'message')} from {r.get('src')}: {r['reason']}"
    return None
