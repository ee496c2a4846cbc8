"""The trading case's centralised clearing over a whole day, with the hubs' heat and cooling storage active.

The single-hour clearing (:func:`poso_sim.cases.trading.build_market_model`) keeps storage idle, as the reference
does. Over 24 hours a hub's heat storage (HS) and cooling storage (CS) move energy between hours, so the day is
one problem: every hub of every hour (the single hour's components, ``hub[h, t]``), the grid ``grid[t]`` in
``[0, Emax(t)]`` at the hour's tariff, the zone heat sources ``heat_source[z, t]``, and per storage device its
state of charge ``soc[h, node, t]`` within the workbooks' SOC limits (sheet ``S``):

    soc[t] = c * soc[t-1] + a * charge[t] - discharge[t] / b

with the device's curve ``a`` (charging efficiency), ``b`` (discharging efficiency) and ``c`` (the share kept
from one hour to the next): 0.95, 0.95 and 0.98 for every device of the case. Charging and discharging are the
device's input and output branches, within ``In_max`` and ``Out1_max``. The workbooks give no state at the start
of the day: each store starts half full and must end the day at least as full (a day that can repeat).

The priced rows are ``elec_balance[t]`` and ``heat_balance[z, t]``: 24 electricity prices and 72 zone heat prices,
proposed and verified in one height (docs/cases/trading.md, "24 hours with storage").
"""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo

from .model import TRADED, add_hub
from .schema import HOURS, STORAGE, TradingCase

__all__ = ["build_day_model", "build_hub_day_model", "storage_devices"]


def storage_devices(case: TradingCase) -> list[tuple[int, Any]]:
    """``(hub, device)`` for every storage device of the case."""
    return [(h.id, d) for h in case.hubs for d in h.devices_of(*STORAGE)]


def _free_storage(b: Any, device: Any) -> None:
    """The single hour keeps a store's flows at 0; over a day they are charging and discharging."""
    for k, cap in ((device.input, device.in_max), (device.out1, device.out1_max)):
        v = b.flow[k]
        v.unfix()
        v.setlb(0.0)
        v.setub(float(cap))
        v.set_value(0.0)


def build_day_model(case: TradingCase, variant: str = "true") -> pyo.ConcreteModel:
    """The centralised clearing of the 24 hours of ``case`` with storage (see the module's documentation)."""
    if variant != "true":
        raise ValueError(f"unknown variant {variant!r}")
    m = pyo.ConcreteModel(name="trading-market-day")
    m.T = pyo.Set(initialize=range(1, HOURS + 1), ordered=True)
    m.HUBS = pyo.Set(initialize=case.hub_ids, ordered=True)
    m.ZONES = pyo.Set(initialize=case.zones, ordered=True)
    m.hub = pyo.Block(m.HUBS, m.T, rule=lambda b, k, t: add_hub(b, case.hub(k), t))
    stores = storage_devices(case)
    _add_storage(m, {(k, d.node): d for k, d in stores}, lambda key, t: m.hub[key[0], t])
    hs = case.heat_sources
    m.grid = pyo.Var(m.T, bounds=lambda _m, t: (0.0, case.grid_cap(t)), initialize=0.0)
    m.heat_source = pyo.Var(m.ZONES, m.T, bounds=lambda _m, z, t: (0.0, hs.capacity[z - 1]), initialize=0.0)
    for z in m.ZONES:
        if hs.capacity[z - 1] == 0:
            for t in m.T:
                m.heat_source[z, t].fix(0.0)
    m.elec_balance = pyo.Constraint(m.T, rule=lambda _m, t: sum(_m.hub[k, t].buy["elec"] for k in m.HUBS)
                                    - _m.grid[t] == 0)
    m.heat_balance = pyo.Constraint(
        m.ZONES, m.T,
        rule=lambda _m, z, t: sum(_m.hub[k, t].buy["heat"] for k in case.hubs_in_zone(z)) - _m.heat_source[z, t] == 0,
    )
    m.cost_gas = pyo.Expression(expr=sum(case.tariff(t)[0] * m.hub[k, t].buy["gas"] for k in m.HUBS for t in m.T))
    m.cost_plants = pyo.Expression(expr=sum(m.hub[k, t].own_cost for k in m.HUBS for t in m.T))
    m.cost_grid = pyo.Expression(expr=sum(case.tariff(t)[1] * m.grid[t] for t in m.T))
    m.cost_heat = pyo.Expression(expr=hs.price * sum(m.heat_source[z, t] for z in m.ZONES for t in m.T))
    m.total_cost = pyo.Expression(expr=m.cost_gas + m.cost_plants + m.cost_grid + m.cost_heat)
    m.obj = pyo.Objective(expr=m.total_cost, sense=pyo.minimize)
    return m


def _add_storage(m: Any, dev: dict[Any, Any], block: Any) -> None:
    """Each store of ``dev`` (key -> device) active over the day: its flows freed on ``block(key, t)``, its
    state of charge ``soc[key..., t]`` within the SOC limits, ``soc_balance`` per hour, ``soc_end``."""
    for key, d in dev.items():
        for t in m.T:
            _free_storage(block(key, t), d)
    keys = list(dev)
    dimen = len(keys[0]) if keys and isinstance(keys[0], tuple) else 1
    m.STORES = pyo.Set(initialize=keys, dimen=dimen, ordered=True)

    def key_of(idx: tuple) -> Any:
        return idx if dimen > 1 else idx[0]

    m.soc = pyo.Var(m.STORES, m.T, bounds=lambda _m, *i: (dev[key_of(i[:-1])].soc_min, dev[key_of(i[:-1])].soc_max),
                    initialize=lambda _m, *i: _start(dev[key_of(i[:-1])]))

    def soc_rule(_m: Any, *i: Any) -> Any:
        key, t = key_of(i[:-1]), i[-1]
        d = dev[key]
        before = _start(d) if t == 1 else _m.soc[(*i[:-1], t - 1)]
        b = block(key, t)
        return _m.soc[i] == d.curve.c * before + d.curve.a * b.flow[d.input] - b.flow[d.out1] / d.curve.b

    m.soc_balance = pyo.Constraint(m.STORES, m.T, rule=soc_rule)
    m.soc_end = pyo.Constraint(m.STORES, rule=lambda _m, *i: _m.soc[(*i, HOURS)] >= _start(dev[key_of(i)]))


def build_hub_day_model(case: TradingCase, hub: int) -> pyo.ConcreteModel:
    """One hub's own problem over the day (its storage active), the hour's prices as parameters
    (``price[c, t]`` for gas, elec, heat): all a hub needs for its own check of a day's proposal. Its variables are
    the market's ``hub[h, t].flow[b]`` as ``hub[t].flow[b]`` and ``soc[h, node, t]`` as ``soc[node, t]``."""
    h = case.hub(hub)
    m = pyo.ConcreteModel(name=f"trading-hub{hub}-day")
    m.T = pyo.Set(initialize=range(1, HOURS + 1), ordered=True)
    m.price = pyo.Param(TRADED, m.T, mutable=True, initialize=0.0)
    m.hub = pyo.Block(m.T, rule=lambda b, t: add_hub(b, h, t))
    _add_storage(m, {d.node: d for d in h.devices_of(*STORAGE)}, lambda key, t: m.hub[t])
    m.cost = pyo.Expression(expr=sum(m.price[c, t] * m.hub[t].buy[c] for c in TRADED for t in m.T)
                            + sum(m.hub[t].own_cost for t in m.T))
    m.obj = pyo.Objective(expr=m.cost, sense=pyo.minimize)
    return m


def _start(d: Any) -> float:
    """A store's state at the start (and the least at the end) of the day: half full."""
    return 0.5 * (d.soc_min + d.soc_max)
