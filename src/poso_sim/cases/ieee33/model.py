"""Pyomo models on a radial feeder: the day-ahead dispatch NLP (exact DistFlow) and the base-case power flow.

Per unit on the case's ``base_mva`` and ``base_kv``; hourly periods. See docs/cases/ieee33.md for the equations.
"""

from __future__ import annotations

from typing import Callable

import pyomo.environ as pyo

from .loader import load_case
from .powerflow import Topology, power_flow, topology
from .schema import HOURS, FeederCase

#: Variants a leader may solve: the true cost, a dishonest leader's doctored objective, a forced unit.
VARIANTS = ("true", "tampered", "feasible")

#: Named cost expressions of the dispatch model ($ over the horizon); ``true_cost`` is their sum.
COST_EXPRESSIONS = ("true_cost", "cost_grid", "cost_dg", "cost_battery")

#: Start values put every DG at this share of its active range (a power flow at that injection fills the rest).
_START_SHARE = 0.75


def _sum(terms) -> object:
    terms = list(terms)
    return pyo.quicksum(terms) if terms else 0.0


def _add_network(
    m: pyo.ConcreteModel,
    t: Topology,
    *,
    p_gen: Callable[[int, int], object],
    q_gen: Callable[[int, int], object],
    load: Callable[[int], float],
    v_bounds: tuple[float, float] | None,
) -> None:
    """Flows, currents, voltages and the DistFlow equations on ``m.T`` (the substation rows use ``m.P_grid``,
    ``m.Q_grid``).

    ``p_gen(j, t)`` / ``q_gen(j, t)``: generation injected at bus ``j`` (an expression, 0 where nothing is
    connected); ``load(t)``: share of the peak load; ``v_bounds``: squared voltage limits, ``None`` for a power flow
    without limits (and without current limits)."""
    fed = list(t.fed)
    m.LINES = pyo.Set(initialize=fed, ordered=True, doc="lines, by the bus they feed")
    m.P = pyo.Var(m.LINES, m.T, initialize=0.0, doc="sending-end active flow (pu)")
    m.Q = pyo.Var(m.LINES, m.T, initialize=0.0, doc="sending-end reactive flow (pu)")
    if v_bounds is not None:
        m.l = pyo.Var(m.LINES, m.T, bounds=lambda _m, j, _t: (0.0, t.l_max[j]), initialize=0.0, doc="|I|^2 (pu)")
        m.v = pyo.Var(m.LINES, m.T, bounds=v_bounds, initialize=t.v0, doc="|V|^2 at the fed bus (pu)")
    else:
        m.l = pyo.Var(m.LINES, m.T, bounds=(0.0, None), initialize=0.0, doc="|I|^2 (pu)")
        m.v = pyo.Var(m.LINES, m.T, bounds=(0.0, None), initialize=t.v0, doc="|V|^2 at the fed bus (pu)")

    def v_of(bus, tt):
        return t.v0 if bus == t.root else m.v[bus, tt]

    def p_balance(_m, j, tt):
        out = _sum(m.P[k, tt] for k in t.children[j])
        return m.P[j, tt] - t.r[j] * m.l[j, tt] - out + p_gen(j, tt) == t.p_load[j] * load(tt)

    def q_balance(_m, j, tt):
        out = _sum(m.Q[k, tt] for k in t.children[j])
        return m.Q[j, tt] - t.x[j] * m.l[j, tt] - out + q_gen(j, tt) == t.q_load[j] * load(tt)

    m.PBalance = pyo.Constraint(m.LINES, m.T, rule=p_balance, doc="active power balance at the fed bus")
    m.QBalance = pyo.Constraint(m.LINES, m.T, rule=q_balance, doc="reactive power balance at the fed bus")
    root = t.root
    m.RootP = pyo.Constraint(
        m.T,
        rule=lambda _m, tt: m.P_grid[tt] + p_gen(root, tt) - _sum(m.P[k, tt] for k in t.children[root])
        == t.p_load[root] * load(tt),
    )
    m.RootQ = pyo.Constraint(
        m.T,
        rule=lambda _m, tt: m.Q_grid[tt] + q_gen(root, tt) - _sum(m.Q[k, tt] for k in t.children[root])
        == t.q_load[root] * load(tt),
    )

    def drop(_m, j, tt):
        r, x = t.r[j], t.x[j]
        return (
            m.v[j, tt] - v_of(t.parent[j], tt) + 2 * (r * m.P[j, tt] + x * m.Q[j, tt]) - (r * r + x * x) * m.l[j, tt]
            == 0
        )

    m.VoltageDrop = pyo.Constraint(m.LINES, m.T, rule=drop, doc="voltage drop along the line")
    m.Current = pyo.Constraint(
        m.LINES,
        m.T,
        rule=lambda _m, j, tt: m.l[j, tt] * v_of(t.parent[j], tt) - m.P[j, tt] ** 2 - m.Q[j, tt] ** 2 == 0,
        doc="l v = P^2 + Q^2 (exact, nonconvex)",
    )


def _check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days: expected a positive integer, got {days!r}")
    return days


def build_model(case: FeederCase | None = None, variant: str = "true", days: int = 1) -> pyo.ConcreteModel:
    """The day-ahead dispatch NLP of ``case`` (default: the packaged IEEE 33-bus case) over ``days`` x 24 hours.

    The daily load and price profiles repeat every day; the battery's state of charge carries over from day to
    day and ends the horizon where it started. ``variant``: ``"true"`` minimises the true cost, ``"tampered"``
    a dishonest leader's objective that rewards every MWh of ``dispatch.tampered.unit``, ``"feasible"`` the true
    cost with ``dispatch.feasible.unit`` forced to at least ``min_kw``. Every variant has the variables and the
    rows of ``"true"`` first (``"feasible"`` adds its rows at the end), the Expression ``true_cost`` and its parts
    ``cost_grid``, ``cost_dg``, ``cost_battery`` ($). Variables start at the exact power flow of each hour with every
    DG at three quarters of its active range and the battery idle (Ipopt converges from there in ~90 iterations).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    days = _check_days(days)
    case = load_case() if case is None else case
    d = case.dispatch
    t = topology(case)
    base = case.base_mva
    n_t = HOURS * days
    load = [d.profiles.load[h % HOURS] for h in range(n_t)]
    price = [d.profiles.price_per_mwh[h % HOURS] for h in range(n_t)]

    m = pyo.ConcreteModel(name=f"{case.name}_{variant}_{days}d")
    m.variant = variant
    m.days = days
    m.T = pyo.Set(initialize=range(n_t), ordered=True, doc="hours")
    # the per-hour data as mutable Params: instances that differ only in loads and prices share one structure
    m.load_share = pyo.Param(m.T, initialize=dict(enumerate(load)), mutable=True, doc="share of the peak load")
    m.price = pyo.Param(m.T, initialize=dict(enumerate(price)), mutable=True, doc="grid energy price ($/MWh)")
    gens = {g.name: g for g in d.generators}
    m.G = pyo.Set(initialize=list(gens), ordered=True, doc="dispatchable generators")
    m.P_dg = pyo.Var(m.G, m.T, bounds=lambda _m, g, _t: (gens[g].p_min_kw / 1e3 / base, gens[g].p_max_kw / 1e3 / base))
    m.Q_dg = pyo.Var(
        m.G, m.T, bounds=lambda _m, g, _t: (gens[g].q_min_kvar / 1e3 / base, gens[g].q_max_kvar / 1e3 / base)
    )
    gd = d.grid
    m.P_grid = pyo.Var(m.T, bounds=(gd.p_min_kw / 1e3 / base, gd.p_max_kw / 1e3 / base), doc="import (pu)")
    m.Q_grid = pyo.Var(m.T, bounds=(gd.q_min_kvar / 1e3 / base, gd.q_max_kvar / 1e3 / base))
    bat = d.battery
    if bat is not None:
        pmax = bat.power_kw / 1e3 / base
        e_cap = bat.energy_kwh / 1e3 / base
        e0 = bat.soc_initial * e_cap
        m.P_ch = pyo.Var(m.T, bounds=(0.0, pmax), initialize=0.0, doc="battery charging (pu)")
        m.P_dis = pyo.Var(m.T, bounds=(0.0, pmax), initialize=0.0, doc="battery discharging (pu)")
        m.E = pyo.Var(m.T, bounds=(bat.soc_min * e_cap, bat.soc_max * e_cap), initialize=e0, doc="energy (pu h)")

    at_bus: dict[int, list[str]] = {}
    for g in d.generators:
        at_bus.setdefault(g.bus, []).append(g.name)

    def p_gen(j, tt):
        terms = [m.P_dg[g, tt] for g in at_bus.get(j, ())]
        if bat is not None and bat.bus == j:
            terms += [m.P_dis[tt], -m.P_ch[tt]]
        return _sum(terms)

    _add_network(
        m,
        t,
        p_gen=p_gen,
        q_gen=lambda j, tt: _sum(m.Q_dg[g, tt] for g in at_bus.get(j, ())),
        load=m.load_share.__getitem__,
        v_bounds=(d.voltage_min_pu**2, d.voltage_max_pu**2),
    )

    if bat is not None:
        eta_c, eta_d = bat.eta_charge, bat.eta_discharge
        m.SOC = pyo.Constraint(
            m.T,
            rule=lambda _m, tt: m.E[tt] - (e0 if tt == 0 else m.E[tt - 1]) - eta_c * m.P_ch[tt] + m.P_dis[tt] / eta_d
            == 0,
            doc="battery energy balance (1 h periods)",
        )
        m.SOCEnd = pyo.Constraint(expr=m.E[n_t - 1] - e0 == 0, doc="the horizon ends at the initial energy")

    # ---- costs ($ over the horizon; P in MW = pu * base) ----
    m.cost_grid = pyo.Expression(expr=_sum(base * m.price[tt] * m.P_grid[tt] for tt in m.T))

    def dg_cost(g, tt):
        c = gens[g].cost
        p = base * m.P_dg[g, tt]
        return c.c2_per_mw2h * p**2 + c.c1_per_mwh * p + c.c0_per_h

    m.cost_dg = pyo.Expression(expr=_sum(dg_cost(g, tt) for g in m.G for tt in m.T))
    if bat is not None:
        k = bat.throughput_cost_per_mwh * base
        m.cost_battery = pyo.Expression(expr=_sum(k * (m.P_ch[tt] + m.P_dis[tt]) for tt in m.T))
    else:
        m.cost_battery = pyo.Expression(expr=0.0)
    m.true_cost = pyo.Expression(expr=m.cost_grid + m.cost_dg + m.cost_battery)
    if variant == "tampered":
        u, reward = d.tampered.unit, d.tampered.reward_per_mwh
        m.obj = pyo.Objective(expr=m.true_cost - _sum(reward * base * m.P_dg[u, tt] for tt in m.T))
    else:
        m.obj = pyo.Objective(expr=m.true_cost)
    if variant == "feasible":
        u, pmin = d.feasible.unit, d.feasible.min_kw / 1e3 / base
        m.ForceDG = pyo.Constraint(m.T, rule=lambda _m, tt: m.P_dg[u, tt] - pmin >= 0)

    _initialise(m, case, t, load, bat)
    return m


def _initialise(m: pyo.ConcreteModel, case: FeederCase, t: Topology, load: list[float], bat) -> None:
    """Start values: every DG at ``_START_SHARE`` of its range, battery idle, the exact power flow of each hour."""
    d = case.dispatch
    mid = {
        g.name: (g.p_min_kw + _START_SHARE * (g.p_max_kw - g.p_min_kw), 0.5 * (g.q_min_kvar + g.q_max_kvar))
        for g in d.generators
    }
    base_kw = case.base_mva * 1e3
    inj: dict[int, tuple[float, float]] = {}
    for g in d.generators:
        p, q = inj.get(g.bus, (0.0, 0.0))
        inj[g.bus] = (p + mid[g.name][0] / base_kw, q + mid[g.name][1] / base_kw)
    flows = {}
    for tt in m.T:
        share = load[tt]
        pf = flows.get(share) or power_flow(case, load_scale=share, injections=inj, topo=t)
        flows[share] = pf
        for g in d.generators:
            m.P_dg[g.name, tt].value = mid[g.name][0] / base_kw
            m.Q_dg[g.name, tt].value = mid[g.name][1] / base_kw
        for j in t.fed:
            m.P[j, tt].value = pf.P[j]
            m.Q[j, tt].value = pf.Q[j]
            m.l[j, tt].value = pf.l[j]
            m.v[j, tt].set_value(pf.v[j], skip_validation=True)
        m.P_grid[tt].set_value(pf.p_grid, skip_validation=True)
        m.Q_grid[tt].set_value(pf.q_grid, skip_validation=True)
        if bat is not None:
            m.P_ch[tt].value = 0.0
            m.P_dis[tt].value = 0.0
            m.E[tt].value = bat.soc_initial * bat.energy_kwh / base_kw


def build_power_flow_model(case: FeederCase | None = None, *, load_scale: float = 1.0) -> pyo.ConcreteModel:
    """The base-case power flow as a square feasibility problem: the same DistFlow rows as the dispatch model,
    one period, loads scaled by ``load_scale``, no generation, no voltage or current limits, no objective.
    Variables start at a flat profile (every voltage at the substation's, zero currents)."""
    case = load_case() if case is None else case
    t = topology(case)
    m = pyo.ConcreteModel(name=f"{case.name}_power_flow")
    m.T = pyo.Set(initialize=[0], ordered=True)
    m.P_grid = pyo.Var(m.T, initialize=0.0)
    m.Q_grid = pyo.Var(m.T, initialize=0.0)
    def nothing(_j: int, _t: int) -> float:
        return 0.0

    _add_network(m, t, p_gen=nothing, q_gen=nothing, load=lambda _t: load_scale, v_bounds=None)
    base_kw = case.base_mva * 1e3
    m.loss_kw = pyo.Expression(expr=_sum(base_kw * t.r[j] * m.l[j, 0] for j in t.fed))
    return m
