"""poso_sim.report: the paper's Table 3, the reference's record names and text accounts of a run."""

from .table3 import Phase, cell, record_names, render_table3, table3, table3_json
from .text import render_run

__all__ = ["Phase", "cell", "table3", "table3_json", "render_table3", "record_names", "render_run"]
