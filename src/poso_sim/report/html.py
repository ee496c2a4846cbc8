"""HTML renderings for notebooks: a plan, a certificate, a scenario run's outcome and the paper's Table 3.

Each function returns a self-contained ``<div>`` (inline styles only, escaped text) that Jupyter shows as is.
The classes' ``_repr_html_`` methods call these, e.g. ``def _repr_html_(self): return solution_html(self)``;
the functions also work on their own: ``IPython.display.HTML(table3_html(result))``. :func:`solution_html`,
:func:`certificate_html` and :func:`outcome_html` live beside their types (:mod:`poso_sim.nlp.solution`,
:mod:`poso_sim.kkt.certificate`, :mod:`poso_sim.scenarios.display`) and are re-exported here.
"""

from __future__ import annotations

from typing import Any

from poso_sim.htmlkit import div
from poso_sim.kkt.certificate import certificate_html
from poso_sim.nlp.solution import solution_html
from poso_sim.report.table3 import table3_html  # re-exported: the renderings of a report in one module
from poso_sim.scenarios.display import outcome_html

__all__ = ["solution_html", "certificate_html", "outcome_html", "table3_html", "frame_html"]


# ------------------------------------------------------------------------------------------------ Table 3
def frame_html(df: Any, title: str = "") -> str:
    """A DataFrame as a compact HTML table (for reports that mix frames with the renderings above)."""
    return div(title, df.to_html(border=0, float_format=lambda v: f"{v:.4g}"))
