"""Pyomo models of the trading case, built per component: one hub's best response and the centralised clearing.

A hub (a Pyomo block: the model itself for one hub, ``hub[h]`` in the market) has

* ``flow[b]``: the flow on branch ``b`` (every branch but those from the outside node 1000), bounded by the device
  limits; purchase branches by the declared ``purchase_bounds``; storage and cooling purchase fixed at 0;
* ``bus_balance[c]`` for c in gas, elec, heat, cool: inflow - outflow = ``demand[c]`` (a mutable Param: the hour);
* ``conv_out1[node]`` / ``conv_out2[node]``: each converter's output curve;
* renewable outputs bounded by ``renew_max[node]`` (a mutable Param: the hour); the plant between its limits;
* ``buy[c]`` (gas, elec, heat): the purchase, and ``own_cost``: the plant's cost b P^2 + c P.

The hub model minimises ``price[gas] buy[gas] + price[elec] buy[elec] + price[heat] buy[heat] + own_cost`` with the
prices as mutable Params: compiled once, every price and hour is a parameter update.

The market model (:func:`build_market_model`) holds every hub, the grid ``grid`` in [0, Emax] at the tariff, the
zone heat sources ``heat_source[z]`` in [0, capacity] at their price, gas at the tariff, and the balance rows
``elec_balance`` (sum of the hubs' electricity purchases = grid supply) and ``heat_balance[z]``; their multipliers
are the clearing prices (docs/cases/trading.md).
"""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo

from .params import hub_parameters, market_parameters  # noqa: F401 - re-exported: the Params' data by name
from .schema import (
    BUS_NODE, CARRIERS, ONE_OUTPUT, OUTSIDE, PLANT, RENEWABLE, STORAGE, TWO_OUTPUT, TradingCase, TradingHub,
    _hour_index,
)

TRADED = ("gas", "elec", "heat")
#: the hub model's price Params, in the order of a price triple
PRICE_PARAMS = ("price[gas]", "price[elec]", "price[heat]")


# ------------------------------------------------------------------------------------------------ hub components
def _flow_bounds(h: TradingHub) -> tuple[dict[int, tuple[Any, Any]], set[int]]:
    """Bounds of each modelled branch (``None``: a Param bound, set later) and the branches fixed at 0."""
    bounds: dict[int, tuple[Any, Any]] = {}
    fixed: set[int] = {h.purchase_branch("cool")}
    for c in TRADED:
        bounds[h.purchase_branch(c)] = tuple(getattr(h.purchase_bounds, c))
    for d in h.devices:
        if d.type in STORAGE:
            fixed |= {d.input, d.out1}
        elif d.type in RENEWABLE:
            bounds[d.out1] = (0.0, None)
        elif d.type == PLANT:
            bounds[d.out1] = (d.out1_max, d.in_max)
            if d.in_max == 0:
                fixed.add(d.out1)
        else:
            bounds[d.input] = (0.0, d.in_max)
            bounds[d.out1] = (0.0, d.out1_max)
            if d.out2:
                bounds[d.out2] = (0.0, d.out2_max)
    return bounds, fixed


def add_hour_data(b: Any, h: TradingHub, hour: int) -> None:
    """Mutable Params of the hour: ``demand[c]`` and ``renew_max[node]``."""
    i = _hour_index(hour)
    b.demand = pyo.Param(CARRIERS, mutable=True, initialize={c: getattr(h.loads, c)[i] for c in CARRIERS})
    renew = {d.node: (h.renewable_max.pv if d.kind == "PV" else h.renewable_max.wt)[i] for d in h.devices_of(*RENEWABLE)}
    b.renew_max = pyo.Param(sorted(renew), mutable=True, initialize=renew)


def add_flows(b: Any, h: TradingHub) -> None:
    bounds, fixed = _flow_bounds(h)
    modelled = [br.id for br in h.branches if br.src != OUTSIDE]
    renew_out = {d.out1: d.node for d in h.devices_of(*RENEWABLE)}
    start = h.start or [0.0] * len(h.branches)

    def bound(_b, k):
        if k in renew_out:
            return (0.0, _b.renew_max[renew_out[k]])
        return bounds.get(k, (None, None))

    def init(_b, k):
        lo, hi = (0.0, pyo.value(_b.renew_max[renew_out[k]])) if k in renew_out else bounds.get(k, (None, None))
        v = 0.0 if k in fixed else start[k - 1]
        v = max(v, lo) if isinstance(lo, float) else v
        return min(v, hi) if isinstance(hi, float) else v

    b.flow = pyo.Var(modelled, bounds=bound, initialize=init)
    for k in sorted(fixed):
        b.flow[k].fix(0.0)


def add_buses(b: Any, h: TradingHub) -> None:
    """At each load bus: inflow - outflow = the hour's load."""
    inflow = {c: [br.id for br in h.branches if br.dst == n and br.src != OUTSIDE] for c, n in BUS_NODE.items()}
    outflow = {c: [br.id for br in h.branches if br.src == n] for c, n in BUS_NODE.items()}
    b.bus_balance = pyo.Constraint(
        CARRIERS,
        rule=lambda _b, c: sum(_b.flow[k] for k in inflow[c]) - sum(_b.flow[k] for k in outflow[c]) == _b.demand[c],
    )


def _curves(h: TradingHub) -> dict[tuple[int, int], tuple[Any, float, float, float]]:
    """{(node, output 1|2): (device, quad, lin, const)} of every converter output."""
    out = {}
    for d in h.devices_of(*TWO_OUTPUT, *ONE_OUTPUT):
        k = d.curve
        if d.type in TWO_OUTPUT:
            out[d.node, 1] = (d, k.a, k.c, k.e)
            out[d.node, 2] = (d, k.b, k.d, k.f)
        else:
            out[d.node, 1] = (d, k.b, k.c, k.d)
    return out


def add_converters(b: Any, h: TradingHub, relaxed: bool = False) -> None:
    """Output curves: two-output out1 = a in^2 + c in + e, out2 = b in^2 + d in + f; one-output out = b in^2 + c in + d.

    ``relaxed``: each output at most its curve (out <= curve), a convex set when every curve is concave: the
    relaxation's optimum bounds the problem's from below (:func:`build_hub_model`)."""
    curves = _curves(h)
    if relaxed:
        bad = [(n, k) for (n, k), (_d, quad, _l, _c) in curves.items() if quad > 0]
        if bad:
            raise ValueError(f"hub {h.id}: the relaxation is convex only for concave curves; node {bad[0][0]}'s "
                             f"output {bad[0][1]} is convex")

    def rule(k: int):
        def curve(_b, n):
            d, quad, lin, const = curves[n, k]
            x, out = _b.flow[d.input], _b.flow[d.out1 if k == 1 else d.out2]
            expr = quad * x**2 + lin * x + const
            return out <= expr if relaxed else out == expr
        return curve

    conv = sorted({n for n, _k in curves})
    two = sorted(n for n, k in curves if k == 2)

    b.conv_out1 = pyo.Constraint(conv, rule=rule(1))
    b.conv_out2 = pyo.Constraint(two, rule=rule(2))


def add_purchases_and_cost(b: Any, h: TradingHub) -> None:
    """``buy[c]``: what the hub buys (negative: sells); ``own_cost``: the plant's b P^2 + c P."""
    branch = {c: h.purchase_branch(c) for c in TRADED}
    b.buy = pyo.Expression(TRADED, rule=lambda _b, c: _b.flow[branch[c]])
    p = h.plant
    if p is None or p.in_max == 0:
        b.own_cost = pyo.Expression(expr=0.0)
    else:
        b.own_cost = pyo.Expression(expr=p.curve.b * b.flow[p.out1] ** 2 + p.curve.c * b.flow[p.out1])


def add_hub(b: Any, h: TradingHub, hour: int, relaxed: bool = False) -> None:
    """Every component of one hub on the block ``b``."""
    add_hour_data(b, h, hour)
    add_flows(b, h)
    add_buses(b, h)
    add_converters(b, h, relaxed)
    add_purchases_and_cost(b, h)


# ------------------------------------------------------------------------------------------------ models
def build_hub_model(case: TradingCase, hub: int, hour: int = 12, *, relaxed: bool = False) -> pyo.ConcreteModel:
    """The best response of ``hub``: minimise its payment at ``price[c]`` plus its plant's cost (round-1 prices).

    ``relaxed=True``: the converters' outputs at most their curves, a convex problem whatever the prices (the
    objective is linear in the purchases plus the plant's convex b P^2 + c P): its optimum is a lower bound that
    proves a best response globally optimal when they meet."""
    h = case.hub(hub)
    m = pyo.ConcreteModel(name=f"trading-hub{hub}{'-relaxed' if relaxed else ''}")
    m.price = pyo.Param(TRADED, mutable=True, initialize=dict(zip(TRADED, case.initial_prices(hour))))
    add_hub(m, h, hour, relaxed)
    m.cost = pyo.Expression(expr=sum(m.price[c] * m.buy[c] for c in TRADED) + m.own_cost)
    m.obj = pyo.Objective(expr=m.cost, sense=pyo.minimize)
    m.nlp_expressions = ("cost",)
    return m


def build_market_model(case: TradingCase, hour: int = 12, variant: str = "true", *,
                       relaxed: bool = False) -> pyo.ConcreteModel:
    """The centralised clearing of ``hour``: every hub, the grid, the zone heat sources (docs/cases/trading.md).
    ``relaxed=True``: the converters' outputs at most their curves (convex: a lower bound on the clearing's cost)."""
    if variant != "true":
        raise ValueError(f"unknown variant {variant!r}")
    m = pyo.ConcreteModel(name=f"trading-market-h{hour}")
    gas_price, elec_price = case.tariff(hour)
    m.tariff_gas = pyo.Param(mutable=True, initialize=gas_price)
    m.tariff_elec = pyo.Param(mutable=True, initialize=elec_price)
    m.grid_cap = pyo.Param(mutable=True, initialize=case.grid_cap(hour))
    m.HUBS = pyo.Set(initialize=case.hub_ids, ordered=True)
    m.ZONES = pyo.Set(initialize=case.zones, ordered=True)
    m.hub = pyo.Block(m.HUBS, rule=lambda b, k: add_hub(b, case.hub(k), hour, relaxed))
    hs = case.heat_sources
    m.grid = pyo.Var(bounds=(0.0, m.grid_cap), initialize=0.0)
    m.heat_source = pyo.Var(m.ZONES, bounds=lambda _m, z: (0.0, hs.capacity[z - 1]), initialize=0.0)
    for z in m.ZONES:
        if hs.capacity[z - 1] == 0:
            m.heat_source[z].fix(0.0)
    m.elec_balance = pyo.Constraint(expr=sum(m.hub[k].buy["elec"] for k in m.HUBS) - m.grid == 0)
    m.heat_balance = pyo.Constraint(
        m.ZONES, rule=lambda _m, z: sum(_m.hub[k].buy["heat"] for k in case.hubs_in_zone(z)) - _m.heat_source[z] == 0
    )
    m.cost_gas = pyo.Expression(expr=m.tariff_gas * sum(m.hub[k].buy["gas"] for k in m.HUBS))
    m.cost_plants = pyo.Expression(expr=sum(m.hub[k].own_cost for k in m.HUBS))
    m.cost_grid = pyo.Expression(expr=m.tariff_elec * m.grid)
    m.cost_heat = pyo.Expression(expr=hs.price * sum(m.heat_source[z] for z in m.ZONES))
    m.total_cost = pyo.Expression(expr=m.cost_gas + m.cost_plants + m.cost_grid + m.cost_heat)
    m.obj = pyo.Objective(expr=m.total_cost, sense=pyo.minimize)
    m.nlp_expressions = ("total_cost", "cost_gas", "cost_plants", "cost_grid", "cost_heat")
    return m
