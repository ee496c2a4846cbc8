"""A scenario run's outcome as HTML (``RunResult._repr_html_``), on the stdlib blocks of :mod:`poso_sim.htmlkit`.

It lives beside the run so that the scenarios layer never imports the report layer;
:mod:`poso_sim.report.html` re-exports :func:`outcome_html`.
"""

from __future__ import annotations

from typing import Any

from poso_sim.nlp.problems import cost_unit
from poso_sim.scenarios.payloads import OPTIMAL_DISPATCH
from poso_sim.htmlkit import div, escape, fmt, grid, kv_table, verdict

__all__ = ["outcome_html"]


def _cost(c: Any, unit: str = "$") -> str:
    return "?" if c is None else f"{float(c):.2f} {unit}"


def outcome_html(result: Any) -> str:
    """A scenario run (``RunResult``): the set-up, per height each delegate's decision and what the normal nodes
    executed, the excluded leaders, message counts and the trace digest."""
    scn = result.scenario
    j = result.to_json()
    unit = cost_unit(scn.case)
    head = [
        ("scenario", escape(f"{scn.name} (case {scn.case}, seed {result.seed})")),
        ("delegates", escape(", ".join(result.delegates))),
        ("dishonest", escape(", ".join(result.dishonest) or "none")),
        ("excluded by every honest delegate", escape(", ".join(j.get("excluded") or []) or "none")),
        ("messages", escape(f"{j.get('messages')}  ({', '.join(f'{k} {v}' for k, v in sorted((j.get('messages_by_kind') or {}).items()))})")),
        ("virtual time", escape(f"{fmt(float(j.get('virtual_seconds', 0.0)), 3)} s")),
        ("trace digest", f"<code>{escape(str(j.get('trace_digest', ''))[:16])}…</code>"),
    ]
    parts = [kv_table(head)]
    for h in j.get("heights", []):
        rows = []
        for d, dec in h["decisions"].items():
            who = escape(d) + (" <i>(dishonest)</i>" if d in result.dishonest else "")
            if dec is None:
                rows.append([who, "–", "no decision", "–"])
            else:
                good = dec.get("label") in (None, *OPTIMAL_DISPATCH)
                rows.append([who, escape(str(dec.get("round"))), escape(f"{dec.get('leader')}'s {dec.get('label') or 'plan'}"),
                             verdict(good, _cost(dec.get("cost"), unit), _cost(dec.get("cost"), unit))])
        ex = h.get("executed")
        if ex is None:
            rows.append(["<b>normal nodes</b>", "–", "nothing executed", "–"])
        else:
            true_cost = ex["true_cost"] if ex.get("true_cost") is not None else ex.get("cost")
            rows.append([f"<b>normal nodes</b> {escape(', '.join(ex['nodes']))}", escape(str(ex["round"])),
                         escape(f"executed {ex['leader']}'s {ex.get('label') or 'plan'} ({ex['votes']} of "
                                f"{len(result.delegates)} votes)"),
                         verdict(ex.get("label") in (None, *OPTIMAL_DISPATCH), _cost(true_cost, unit), _cost(true_cost, unit))])
        parts.append(f'<div style="margin-top:4px">height {h["height"]}</div>')
        parts.append(grid(["delegate", "round", "decision", "cost"], rows))
    return div(f"Run of {scn.name}", *parts)
