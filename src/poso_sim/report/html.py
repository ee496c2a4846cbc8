"""HTML renderings for notebooks: a plan, a certificate, a scenario run's outcome and the paper's Table 3.

Each function returns a self-contained ``<div>`` (inline styles only, escaped text) that Jupyter shows as is.
The classes' ``_repr_html_`` methods call these, e.g. ``def _repr_html_(self): return solution_html(self)``;
the functions also work on their own: ``IPython.display.HTML(table3_html(result))``.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["solution_html", "certificate_html", "outcome_html", "table3_html", "frame_html"]

_TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px;margin:4px 0"
_TH = "border:1px solid #bbb;padding:2px 8px;background:#f2f2f2;text-align:left"
_TD = "border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top"
_OK = "color:#1a7f37;font-weight:bold"
_BAD = "color:#c62828;font-weight:bold"


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e7):
            return f"{v:.3e}"
        return f"{v:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{v:.{digits}f}" else f"{v:.{digits}f}"
    return str(v)


def _kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(
        f'<tr><th style="{_TH}">{escape(k)}</th><td style="{_TD}">{v}</td></tr>' for k, v in rows
    )
    return f'<table style="{_TABLE}">{body}</table>'


def _grid(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f'<th style="{_TH}">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{_TD}">{c}</td>' for c in row) + "</tr>" for row in rows)
    return f'<table style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _verdict(ok: bool, yes: str, no: str) -> str:
    return f'<span style="{_OK if ok else _BAD}">{escape(yes if ok else no)}</span>'


def _div(title: str, *parts: str) -> str:
    return f'<div><div style="font-weight:bold;margin:2px 0">{escape(title)}</div>{"".join(parts)}</div>'


# ------------------------------------------------------------------------------------------------ Solution
def solution_html(sol: Any) -> str:
    """A :class:`~poso_sim.solvers.Solution`: status, true cost and its parts, objective, violation, sizes,
    iterations, stages, digest."""
    status = str(getattr(sol, "status", "unknown"))
    ok = status in ("optimal", "acceptable")
    cb: Mapping[str, float] = getattr(sol, "cost_breakdown", None) or {}
    cost = getattr(sol, "cost", float("nan"))
    rows: list[tuple[str, Any]] = [
        ("case / objective", escape(f"{getattr(sol, 'case', '') or '?'} / {getattr(sol, 'variant', '') or '?'}")),
        ("status", _verdict(ok, status, status)),
        ("true cost", escape(f"{_fmt(cost, 3)} $")),
    ]
    rows += [(f"  {part}", escape(f"{_fmt(float(v), 3)} $")) for part, v in cb.items()]
    variant = getattr(sol, "variant", "")
    if variant and variant != "true":
        rows.append(("objective value", escape(_fmt(getattr(sol, "objective", float("nan")), 3))))
    rows += [
        ("constraint violation", escape(_fmt(getattr(sol, "constraint_violation", float("nan"))))),
        ("variables / rows", escape(f"{getattr(sol, 'n', '?')} / {getattr(sol, 'm', '?')}")),
        ("iterations", escape(_fmt(getattr(sol, "iterations", None)))),
        ("solve time", escape(f"{_fmt(getattr(sol, 'solve_seconds', float('nan')), 2)} s")),
        ("solver", escape(str(getattr(sol, "solver", "") or "–"))),
        ("digest", f"<code>{escape(str(getattr(sol, 'digest', ''))[:16])}…</code>"),
    ]
    parts = [_kv_table(rows)]
    stages = getattr(sol, "stages", None) or []
    if stages:
        parts.append(
            _grid(
                ["stage", "iterations", "seconds", "objective", "status"],
                [[escape(str(s.get("name", ""))), escape(_fmt(s.get("iterations"))),
                  escape(_fmt(s.get("seconds"), 2)), escape(_fmt(s.get("objective"), 4)),
                  escape(str(s.get("status", "")))] for s in stages],
            )
        )
    return _div("Solution", *parts)


# ------------------------------------------------------------------------------------------------ Certificate
def certificate_html(cert: Any) -> str:
    """A KKT :class:`~poso_sim.kkt.Certificate`: verdict, reasons, the four scaled measures against their
    tolerances, the worst entries, repair and timing."""
    accepted = bool(getattr(cert, "accepted", False))
    tol: Mapping[str, Any] = getattr(cert, "tolerances", None) or {}
    measures = [
        ("primal residual", "primal_residual", "primal"),
        ("stationarity (dual) residual", "dual_residual", "dual"),
        ("multiplier sign violation", "sign_violation", "sign"),
        ("complementarity", "complementarity", "complementarity"),
    ]
    rows: list[tuple[str, Any]] = [("verdict", _verdict(accepted, "accepted", "rejected"))]
    reasons = list(getattr(cert, "reasons", []) or [])
    if reasons:
        rows.append(("reasons", escape("; ".join(map(str, reasons)))))
    rows.append(("true cost", escape(f"{_fmt(getattr(cert, 'cost', float('nan')), 3)} $")))
    for label, attr, tkey in measures:
        v = getattr(cert, attr, float("nan"))
        t = tol.get(tkey)
        passed = isinstance(v, float) and isinstance(t, (int, float)) and v <= t
        mark = "" if t is None or not isinstance(v, float) or math.isnan(v) else (" ✓" if passed else " ✗")
        rows.append((label, escape(f"{_fmt(v)}" + (f"  (tol {_fmt(float(t))})" if t is not None else "") + mark)))
    if getattr(cert, "repaired", False):
        rows.append(("multipliers", "re-derived (repair)"))
    rows.append(("check time", escape(f"{_fmt(float(getattr(cert, 'seconds', 0.0)), 3)} s")))
    digest = str(getattr(cert, "digest", "") or "")
    if digest:
        rows.append(("digest", f"<code>{escape(digest[:16])}…</code>"))
    parts = [_kv_table(rows)]
    worst = list(getattr(cert, "worst", []) or [])
    if worst:
        parts.append(
            _grid(["measure", "entry", "value"],
                  [[escape(str(w.get("measure", ""))), f"<code>{escape(str(w.get('name', '')))}</code>",
                    escape(_fmt(w.get("value")))] for w in worst[:15]])
        )
    return _div("KKT certificate", *parts)


# ------------------------------------------------------------------------------------------------ run outcome
def _cost(c: Any) -> str:
    return "?" if c is None else f"{float(c):.2f} $"


def outcome_html(result: Any) -> str:
    """A scenario run (``RunResult``): the set-up, per height each delegate's decision and what the normal nodes
    executed, the excluded leaders, message counts and the trace digest."""
    scn = result.scenario
    j = result.to_json()
    head = [
        ("scenario", escape(f"{scn.name} (case {scn.case}, seed {result.seed})")),
        ("delegates", escape(", ".join(result.delegates))),
        ("dishonest", escape(", ".join(result.dishonest) or "none")),
        ("excluded by every honest delegate", escape(", ".join(j.get("excluded") or []) or "none")),
        ("messages", escape(f"{j.get('messages')}  ({', '.join(f'{k} {v}' for k, v in sorted((j.get('messages_by_kind') or {}).items()))})")),
        ("virtual time", escape(f"{_fmt(float(j.get('virtual_seconds', 0.0)), 3)} s")),
        ("trace digest", f"<code>{escape(str(j.get('trace_digest', ''))[:16])}…</code>"),
    ]
    parts = [_kv_table(head)]
    for h in j.get("heights", []):
        rows = []
        for d, dec in h["decisions"].items():
            who = escape(d) + (" <i>(dishonest)</i>" if d in result.dishonest else "")
            if dec is None:
                rows.append([who, "–", "no decision", "–"])
            else:
                good = dec.get("label") in (None, "optimal")
                rows.append([who, escape(str(dec.get("round"))), escape(f"{dec.get('leader')}'s {dec.get('label') or 'plan'}"),
                             _verdict(good, _cost(dec.get("cost")), _cost(dec.get("cost")))])
        ex = h.get("executed")
        if ex is None:
            rows.append(["<b>normal nodes</b>", "–", "nothing executed", "–"])
        else:
            true_cost = ex["true_cost"] if ex.get("true_cost") is not None else ex.get("cost")
            rows.append([f"<b>normal nodes</b> {escape(', '.join(ex['nodes']))}", escape(str(ex["round"])),
                         escape(f"executed {ex['leader']}'s {ex.get('label') or 'plan'} ({ex['votes']} of "
                                f"{len(result.delegates)} votes)"),
                         _verdict(ex.get("label") in (None, "optimal"), _cost(true_cost), _cost(true_cost))])
        parts.append(f'<div style="margin-top:4px">height {h["height"]}</div>')
        parts.append(_grid(["delegate", "round", "decision", "cost"], rows))
    return _div(f"Run of {scn.name}", *parts)


# ------------------------------------------------------------------------------------------------ Table 3
def table3_html(phases_or_result: Any, height: int | None = None, *, decimals: int = 0) -> str:
    """The paper's Table 3: one table per phase ("Leader is X"), one row per receiving delegate, columns R1
    (direct from the leader; the leader's own plan in its own row), R2 (relayed once), ... A cell lists
    ``<$COST>PATH`` entries; a copy that failed the KKT check is struck out and marked.

    Accepts a ``RunResult`` (then rejected copies are marked) or the phases of
    :func:`poso_sim.report.table3.table3`."""
    from poso_sim.report.table3 import cell, failed_copies, table3

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
        parts.append(_grid(["row"] + list(ph.cols), rows))
    title = "Table 3: communication records" + (f" of {result.scenario.name}" if result is not None else "")
    return _div(title, *parts)


def frame_html(df: Any, title: str = "") -> str:
    """A DataFrame as a compact HTML table (for reports that mix frames with the renderings above)."""
    return _div(title, df.to_html(border=0, float_format=lambda v: f"{v:.4g}"))
