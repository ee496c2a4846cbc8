"""Problem-size statistics of a built model (rows, columns, Jacobian structure), used by tests and docs."""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo
from pyomo.core.expr.visitor import identify_variables
from pyomo.repn.standard_repn import generate_standard_repn


def _row_stats(con: Any, nonlinear: bool) -> tuple[int, int]:
    body = con.body
    nnz = len({id(v) for v in identify_variables(body, include_fixed=True)})
    if not nonlinear:
        return nnz, 0
    repn = generate_standard_repn(body, compute_values=False, quadratic=False)
    return nnz, len({id(v) for v in repn.nonlinear_vars})


def model_sizes(model: pyo.ConcreteModel, *, nonlinear: bool = True) -> dict[str, Any]:
    """Counts of a model's active components.

    Returns ``variables``, ``equalities``, ``inequalities``, ``constraints``, ``jacobian_nnz`` (distinct
    variables per constraint body, summed), ``nonlinear_nnz`` (variables entering a body nonlinearly;
    only if ``nonlinear``), and ``families``: per constraint component ``{rows, sense, nnz, nonlinear_nnz}``
    with sense ``"="``, ``">="``, ``"<="`` or ``"range"``.
    """
    n_var = sum(1 for _ in model.component_data_objects(pyo.Var, active=True, descend_into=True))
    fams: dict[str, dict[str, Any]] = {}
    eq = ineq = nnz_total = nl_total = 0
    for comp in model.component_objects(pyo.Constraint, active=True, descend_into=True):
        rows = nnz = nl = 0
        sense = None
        for con in comp.values():
            if not con.active:
                continue
            rows += 1
            if con.equality:
                eq += 1
                s = "="
            else:
                ineq += 1
                s = ">=" if con.upper is None else "<=" if con.lower is None else "range"
            sense = s if sense in (None, s) else "mixed"
            a, b = _row_stats(con, nonlinear)
            nnz += a
            nl += b
        fams[comp.local_name] = {"rows": rows, "sense": sense, "nnz": nnz, "nonlinear_nnz": nl if nonlinear else None}
        nnz_total += nnz
        nl_total += nl
    return {
        "variables": n_var,
        "equalities": eq,
        "inequalities": ineq,
        "constraints": eq + ineq,
        "jacobian_nnz": nnz_total,
        "nonlinear_nnz": nl_total if nonlinear else None,
        "families": fams,
    }
