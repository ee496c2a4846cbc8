"""Cost expressions and the objective of each variant (true, tampered, feasible).

``cost_grid`` (price is the mutable Param ``price``), ``cost_chp``, ``cost_boiler`` and their sum
``true_cost`` are named Expressions; :data:`COST_EXPRESSIONS` lists them for compilers and reports.
"""

from __future__ import annotations

import pyomo.core as pyo  # the modelling components only: pyomo.environ adds 0.2-0.25 s of plugins a build never uses

from .data import NetworkData, fold_sum

#: The named cost Expressions every variant declares (the reported cost first).
COST_EXPRESSIONS: tuple[str, ...] = ("true_cost", "cost_grid", "cost_chp", "cost_boiler")

# Hub whose output the tampered objective rewards (IES_MODEL.md §3.1).
TAMPERED_UNIT = 3


def add_costs(m: pyo.ConcreteModel, d: NetworkData) -> None:
    T, hubs, P_CHP, H_CHP = d.T, d.hubs, m.P_CHP, m.H_CHP
    m.cost_grid = pyo.Expression(expr=fold_sum(m.price[t] * m.P_grid[t] for t in T))

    def _chp_cost():
        terms = []
        for c in d.C:
            k = hubs[c].cost
            for t in T:
                p = P_CHP[c, t] / 1000.0
                h = H_CHP[c, t] / 1000.0
                terms.append(k.a * p**2 + k.b * p + k.c * h**2 + k.d * h + k.e * h * p)
        return fold_sum(terms)

    m.cost_chp = pyo.Expression(expr=_chp_cost())
    m.cost_boiler = pyo.Expression(expr=fold_sum(hubs[c].cost.f * m.H_boiler[c, t] for c in d.C for t in T))
    m.true_cost = pyo.Expression(expr=m.cost_grid + m.cost_chp + m.cost_boiler)


def add_true_objective(m: pyo.ConcreteModel, d: NetworkData) -> None:
    m.obj = pyo.Objective(expr=m.true_cost, sense=pyo.minimize)


def add_tampered_objective(m: pyo.ConcreteModel, d: NetworkData) -> None:
    """The reference's doctored objective: rewards hub 3's output and over-weights grid cost (§3.1)."""
    u = TAMPERED_UNIT
    bonus = fold_sum(-m.P_CHP[u, t] - m.P_dis[u, t] + m.P_ch[u, t] for t in d.T)
    m.obj = pyo.Objective(expr=bonus + 1.5 * m.cost_grid + m.cost_chp + m.cost_boiler, sense=pyo.minimize)


def add_forced_unit(m: pyo.ConcreteModel, d: NetworkData, unit: int, min_kw: float) -> None:
    """``ForceCHPOn[t]: P_CHP[unit, t] - min_kw >= 0``: the feasible-but-not-optimal variant's extra rows."""
    m.ForceCHPOn = pyo.Constraint(m.T, rule=lambda _m, t: m.P_CHP[unit, t] - min_kw >= 0)
    m.feasible_unit = unit
    m.feasible_min_kw = float(min_kw)
