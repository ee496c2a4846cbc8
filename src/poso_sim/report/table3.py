"""Table 3 of the paper: per phase ("Leader is X"), one row per receiving delegate, columns R1 (direct from the
leader, or the leader's own plan in its own row), R2 (relayed once), R3... A cell is ``<$COST>PATH``: COST the
payload's true cost, PATH the leader then each relay. Only solution messages (proposals and relays) appear.

Built from the run log's `Received` notes (poso_sim.protocol), so it shows exactly what each delegate accepted
for processing (well-formed, signed, from the scheduled leader), whether or not its verification then failed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from poso_sim.htmlkit import div, escape, grid
from poso_sim.protocol import OwnPlanRejected, Received, Rejected, RoundStarted

__all__ = ["Phase", "cell", "table3", "table3_html", "table3_json", "render_table3", "record_names", "failed_copies"]


@dataclass
class Phase:
    """One phase: the round (height, round) led by `leader`. `rows[node][col]` lists the cells in arrival
    order; `cols` is ["R1", "R2", ...] up to the longest path seen (at least R2)."""

    leader: str
    height: int
    round: int
    rows: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    cols: list[str] = field(default_factory=lambda: ["R1", "R2"])

    def _repr_html_(self) -> str:
        return table3_html([self])


def cell(cost: float | None, path: Iterable[str], decimals: int = 0) -> str:
    """``<$744>DG`` (decimals=0) or ``<$744.09>DG`` (decimals=2)."""
    p = "".join(path)
    if cost is None:
        return f"<$?>{p}"
    return f"<${float(cost):.{decimals}f}>{p}"


def _col(via: str) -> str:
    return "R1" if via == "own" else via


def failed_copies(result: Any, own: bool = True) -> set[tuple[str, str]]:
    """(node, digest) of the copies whose verification failed (`own`: with the leaders' own failed plans)."""
    kinds = (Rejected, OwnPlanRejected) if own else (Rejected,)
    return {(e.node, e.item.digest) for e in result.log.of(*kinds)}


def table3(result: Any, height: int | None = None) -> list[Phase]:
    """Phases of a run (`RunResult`), in (height, round) order; `height=None` = every height."""
    delegates = list(result.delegates)
    costs: Mapping[str, float | None] = result.costs
    phases: dict[tuple[int, int, str], Phase] = {}

    def phase(h: int, r: int, leader: str) -> Phase:
        key = (h, r, leader)
        ph = phases.get(key)
        if ph is None:
            ph = phases[key] = Phase(leader, h, r, {d: {} for d in delegates})
        return ph

    for t, node, item in result.log.of(RoundStarted, Received):
        if height is not None and item.height != height:
            continue
        ph = phase(item.height, item.round, item.leader)
        if isinstance(item, Received):
            cost = costs.get(item.digest)
            if cost is None:
                cost = item.claimed_cost
            ph.rows.setdefault(node, {}).setdefault(_col(item.via), []).append(
                {"cost": cost, "path": list(item.path), "digest": item.digest, "own": item.via == "own",
                 "label": item.label, "t": t}
            )
    out = sorted(phases.values(), key=lambda p: (p.height, p.round, delegates.index(p.leader) if p.leader in delegates else 0))
    for ph in out:
        hops = [int(c[1:]) for row in ph.rows.values() for c in row]
        ph.cols = [f"R{i}" for i in range(1, max([2] + hops) + 1)]
        for d in ph.rows:
            ph.rows[d] = {c: ph.rows[d].get(c, []) for c in ph.cols}
    return out


def table3_json(result: Any, height: int | None = None) -> list[dict[str, Any]]:
    """The `poso-sim table3 --json` list: ``[{"leader": "C", "height": 1, "round": 1, "rows": {"F": {"R1":
    ["<$904.17>C"], "R2": []}, ...}}, ...]`` (costs with two decimals; rows in committee order)."""
    return [
        {
            "leader": ph.leader,
            "height": ph.height,
            "round": ph.round,
            "rows": {d: {c: [cell(x["cost"], x["path"], 2) for x in cells] for c, cells in row.items()}
                     for d, row in ph.rows.items()},
        }
        for ph in table3(result, height)
    ]


def render_table3(result: Any, height: int | None = None, *, notes: bool = True) -> str:
    """Text tables as in the paper (costs rounded to $1; "–" for an empty cell). With `notes`, the leader's own
    plan is marked "(its own)" and a copy whose verification failed "(fails KKT)"."""
    rejected = failed_copies(result, own=False)
    failed_own = {(e.node, e.item.digest) for e in result.log.of(OwnPlanRejected)}
    lines: list[str] = []
    for ph in table3(result, height):
        lines.append(f'Phase "Leader is {ph.leader}" (height {ph.height}, round {ph.round})')
        grid = [["row"] + ph.cols]
        for d, row in ph.rows.items():
            cells = []
            for c in ph.cols:
                items = []
                for x in row[c]:
                    s = cell(x["cost"], x["path"], 0)
                    if notes and x["own"]:
                        s += " (its own" + (", fails KKT" if (d, x["digest"]) in failed_own else "") + ")"
                    elif notes and (d, x["digest"]) in rejected:
                        s += " (fails KKT)"
                    items.append(s)
                cells.append(", ".join(items) or "–")
            grid.append([d] + cells)
        widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
        for i, r in enumerate(grid):
            lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")
            if i == 0:
                lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def record_names(result: Any, height: int | None = None, *, use_ids: bool = True, own: bool = False) -> list[str]:
    """The reference's file names of the received solution messages, in arrival order:
    ``Optimization_data_Node<receiver>_<path joined with "via">_<md5>``, e.g.
    ``Optimization_data_Node12_9via10_<md5>`` = leader D's (9) solution relayed by E (10), stored by G (12).
    Nodes are numeric ids (`use_ids`) or names; md5 is the MD5 of the solution digest. `own` includes the
    leader's own plan."""
    ids = result.scenario.delegate_ids

    def ref(n: str) -> str:
        return str(ids.get(n, n)) if use_ids else n

    out = []
    for _, node, rec in result.log.of(Received):
        if height is not None and rec.height != height:
            continue
        if rec.via == "own" and not own:
            continue
        md5 = hashlib.md5(rec.digest.encode()).hexdigest()
        out.append(f"Optimization_data_Node{ref(node)}_{'via'.join(ref(p) for p in rec.path)}_{md5}")
    return out


def table3_html(phases_or_result: Any, height: int | None = None, *, decimals: int = 0) -> str:
    """The paper's Table 3: one table per phase ("Leader is X"), one row per receiving delegate, columns R1
    (direct from the leader; the leader's own plan in its own row), R2 (relayed once), ... A cell lists
    ``<$COST>PATH`` entries; a copy that failed the KKT check is struck out and marked.

    Accepts a ``RunResult`` (then rejected copies are marked) or the phases of
    :func:`poso_sim.report.table3.table3`."""
    if isinstance(phases_or_result, (list, tuple)):
        phases, rejected, result = list(phases_or_result), set(), None
    else:
        result = phases_or_result
        phases = table3(result, height)
        rejected = failed_copies(result)
    parts = []
    for ph in phases:
        rows = []
        for d, row in ph.rows.items():
            cells = []
            for c in ph.cols:
                items = []
                for x in row.get(c, []):
                    text = escape(cell(x["cost"], x["path"], decimals))
                    note = " <small>(its own)</small>" if x.get("own") else ""
                    if (d, x.get("digest")) in rejected:
                        text = f'<s style="color:#c62828" title="fails KKT">{text}</s>'
                        note += " <small>(fails KKT)</small>"
                    items.append(text + note)
                cells.append(", ".join(items) or "–")
            rows.append([f"<b>{escape(d)}</b>"] + cells)
        parts.append(f'<div style="margin-top:6px">Phase &ldquo;Leader is {escape(ph.leader)}&rdquo; '
                     f'<small>(height {ph.height}, round {ph.round})</small></div>')
        parts.append(grid(["row"] + list(ph.cols), rows))
    title = "Table 3: communication records" + (f" of {result.scenario.name}" if result is not None else "")
    return div(title, *parts)
