"""Stdlib-only building blocks of the notebook HTML renderings (no other poso_sim import).

Every layer's types may render themselves with these (``Solution._repr_html_`` in :mod:`poso_sim.nlp`, a run's
outcome in :mod:`poso_sim.scenarios`) without importing the report layer; :mod:`poso_sim.report.html` builds
the remaining renderings on the same blocks. Text passed as a cell is inserted as is: escape it first.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable, Sequence

__all__ = ["escape", "fmt", "kv_table", "grid", "verdict", "div", "TABLE", "TH", "TD", "OK", "BAD"]

TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px;margin:4px 0"
TH = "border:1px solid #bbb;padding:2px 8px;background:#f2f2f2;text-align:left"
TD = "border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top"
OK = "color:#1a7f37;font-weight:bold"
BAD = "color:#c62828;font-weight:bold"


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a table cell: ``–`` for None/NaN, yes/no for booleans, scientific for tiny/huge values."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e7):
            return f"{v:.3e}"
        text = f"{v:.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(v)


def kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column table: escaped key, value inserted as is."""
    body = "".join(f'<tr><th style="{TH}">{escape(k)}</th><td style="{TD}">{v}</td></tr>' for k, v in rows)
    return f'<table style="{TABLE}">{body}</table>'


def grid(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table with an escaped header row; cells inserted as is."""
    head = "".join(f'<th style="{TH}">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{TD}">{c}</td>' for c in row) + "</tr>" for row in rows)
    return f'<table style="{TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def verdict(ok: bool, yes: str, no: str) -> str:
    """``yes`` in green when ``ok``, else ``no`` in red."""
    return f'<span style="{OK if ok else BAD}">{escape(yes if ok else no)}</span>'


def div(title: str, *parts: str) -> str:
    """A titled ``<div>`` holding ``parts``."""
    return f'<div><div style="font-weight:bold;margin:2px 0">{escape(title)}</div>{"".join(parts)}</div>'
