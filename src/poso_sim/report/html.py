"""HTML renderings for notebooks: a plan, a certificate, a scenario run's outcome and the paper's Table 3.

Each function returns a self-contained ``<div>`` (inline styles only, escaped text) that Jupyter shows as is.
The classes' ``_repr_html_`` methods call these, e.g. ``def _repr_html_(self): return solution_html(self)``;
the functions also work on their own: ``IPython.display.HTML(table3_html(result))``. :func:`solution_html` and
:func:`outcome_html` live beside their types (:mod:`poso_sim.nlp.solution`, :mod:`poso_sim.scenarios.display`)
and are re-exported here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from poso_sim.htmlkit import div, escape, fmt, grid, kv_table, verdict
from poso_sim.nlp.solution import solution_html
from poso_sim.report.table3 import table3_html  # re-exported: the renderings of a report in one module
from poso_sim.scenarios.display import outcome_html

__all__ = ["solution_html", "certificate_html", "outcome_html", "table3_html", "frame_html"]

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
    rows: list[tuple[str, Any]] = [("verdict", verdict(accepted, "accepted", "rejected"))]
    reasons = list(getattr(cert, "reasons", []) or [])
    if reasons:
        rows.append(("reasons", escape("; ".join(map(str, reasons)))))
    rows.append(("true cost", escape(f"{fmt(getattr(cert, 'cost', float('nan')), 3)} $")))
    for label, attr, tkey in measures:
        v = getattr(cert, attr, float("nan"))
        t = tol.get(tkey)
        passed = isinstance(v, float) and isinstance(t, (int, float)) and v <= t
        mark = "" if t is None or not isinstance(v, float) or math.isnan(v) else (" ✓" if passed else " ✗")
        rows.append((label, escape(f"{fmt(v)}" + (f"  (tol {fmt(float(t))})" if t is not None else "") + mark)))
    if getattr(cert, "repaired", False):
        rows.append(("multipliers", "found by the multiplier decision"))
    rows.append(("check time", escape(f"{fmt(float(getattr(cert, 'seconds', 0.0)), 3)} s")))
    digest = str(getattr(cert, "digest", "") or "")
    if digest:
        rows.append(("digest", f"<code>{escape(digest[:16])}…</code>"))
    parts = [kv_table(rows)]
    worst = list(getattr(cert, "worst", []) or [])
    if worst:
        parts.append(
            grid(["measure", "entry", "value"],
                  [[escape(str(w.get("measure", ""))), f"<code>{escape(str(w.get('name', '')))}</code>",
                    escape(fmt(w.get("value")))] for w in worst[:15]])
        )
    return div("KKT certificate", *parts)


# ------------------------------------------------------------------------------------------------ Table 3
def frame_html(df: Any, title: str = "") -> str:
    """A DataFrame as a compact HTML table (for reports that mix frames with the renderings above)."""
    return div(title, df.to_html(border=0, float_format=lambda v: f"{v:.4g}"))
