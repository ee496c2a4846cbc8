"""The centralised clearing of one hour, its prices, and the gap of an iterated market to it; settlement.

* :func:`clear_market` solves the clearing problem (:func:`poso_sim.cases.trading.build_market_model`) and reads
  the prices from its balance rows' multipliers (:func:`clearing_from_point` does it for any primal-dual point,
  e.g. a verified plan of the registered problem ``trading``);
* :func:`compare` states the gap between an iteration's final prices and demands and the clearing;
* :func:`settlement` gives each hub's payment at given prices (negative: the hub is paid).

Prices are :class:`Prices`: one gas price, one electricity price, one heat price per zone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from poso_sim.cases.trading import TradingCase, build_market_model, load_trading_case, market_parameters
from poso_sim.common import OK_STATUSES
from poso_sim.errors import ConfigError
from poso_sim.nlp import compile_nlp
from poso_sim.solvers.casadi_ipopt import CasadiIpoptBackend

Triple = tuple[float, float, float]
CARRIERS = ("gas", "elec", "heat")


@dataclass(frozen=True)
class Prices:
    """Market prices: gas, electricity, and heat per zone (zone z at ``heat[z - 1]``)."""

    gas: float
    elec: float
    heat: tuple[float, ...]

    @classmethod
    def of(cls, value: Prices | Sequence[float]) -> Prices:
        """``Prices`` as they are, or from ``(gas, elec, heat_1, heat_2, heat_3)``."""
        if isinstance(value, Prices):
            return value
        v = [float(x) for x in value]
        if len(v) < 3 or not np.all(np.isfinite(v)):
            raise ConfigError(f"prices: expected (gas, elec, heat per zone), got {value!r}")
        return cls(v[0], v[1], tuple(v[2:]))

    def for_hub(self, case: TradingCase, hub: int) -> Triple:
        """The triple a hub pays: (gas, electricity, its zone's heat)."""
        return self.gas, self.elec, self.heat[case.zone_of(hub) - 1]

    def by_hub(self, case: TradingCase) -> dict[int, Triple]:
        return {h: self.for_hub(case, h) for h in case.hub_ids}

    def vector(self) -> tuple[float, ...]:
        return (self.gas, self.elec, *self.heat)


@dataclass(frozen=True)
class Clearing:
    """The centralised clearing of one hour: prices (balance-row multipliers), each hub's purchases, the outside
    supplies, the total cost."""

    hour: int
    prices: Prices
    allocation: dict[int, Triple]
    grid: float
    heat_sources: tuple[float, ...]
    cost: float
    status: str = "optimal"
    lower_bound: float | None = None  # the convex relaxation's optimum, when asked for (clear_market(check_global))


#: an imbalance the iteration may end with: it stops when the price change is below 1e-3, i.e. when the excess
#: demand is below about (20 + 0.1 n) 1e-3 MW after n updates (0.22 MW at the reference's 2 000 rounds)
BALANCE_TOLERANCE = 0.25


@dataclass(frozen=True)
class Gap:
    """An iteration's final state against the clearing: ``price`` (iteration - clearing, per carrier and zone),
    ``demand`` per hub (iteration - clearing allocation), their largest absolute values, ``imbalance`` (how far the
    hubs' net electricity and zone heat demands lie outside what the outside suppliers can give: 0 when cleared),
    and notes saying where a gap comes from."""

    price: dict[str, Any]
    demand: dict[int, Triple]
    max_price: float
    max_demand: float
    notes: list[str] = field(default_factory=list)
    imbalance: dict[str, Any] = field(default_factory=dict)


def clearing_from_point(nlp: Any, x: np.ndarray, y: np.ndarray, case: TradingCase, hour: int = 12,
                        status: str = "optimal") -> Clearing:
    """The clearing's prices and allocation read from a primal-dual point of the clearing problem ``nlp``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    gas = case.tariff(hour)[0]
    elec = float(y[nlp.row_index("elec_balance")])
    heat = tuple(float(y[nlp.row_index(f"heat_balance[{z}]")]) for z in case.zones)

    def value(name: str) -> float:
        return float(x[nlp.var_index(name)]) if name in set(nlp.x_names) else 0.0  # a fixed variable: 0

    allocation = {
        h.id: tuple(value(f"hub[{h.id}].flow[{h.purchase_branch(c)}]") for c in CARRIERS) for h in case.hubs
    }
    sources = tuple(value(f"heat_source[{z}]") for z in case.zones)
    cost = float(nlp.expr("total_cost", x)) if nlp.has_expr("total_cost") else float(nlp.f(x))
    return Clearing(hour, Prices(gas, elec, heat), allocation, value("grid"), sources, cost, status)  # type: ignore[arg-type]


def clear_market(case: TradingCase | None = None, hour: int = 12, *, check_global: bool = False) -> Clearing:
    """Solve the clearing problem of ``hour`` (CasADi's Ipopt from the case's start point) and read its prices.

    ``check_global``: also solve the convex relaxation (converter outputs at most their curves) and keep its optimum
    as ``lower_bound``: the clearing is the global optimum when its cost meets it."""
    case = case or load_trading_case()
    try:
        case.check_hour(hour)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    nlp, raw = _solve_clearing(case, hour, relaxed=False)
    clearing = clearing_from_point(nlp, raw.x, raw.y, case, hour, raw.status)
    if check_global:
        _, relaxed = _solve_clearing(case, hour, relaxed=True)
        clearing = dataclasses.replace(clearing, lower_bound=float(relaxed.objective))
    return clearing


def _solve_clearing(case: TradingCase, hour: int, relaxed: bool) -> tuple[Any, Any]:
    model = build_market_model(case, hour, relaxed=relaxed)
    nlp = compile_nlp(model).with_data(market_parameters(case, hour))
    options = {"tol": 1e-10, "bound_relax_factor": 0.0} if relaxed else {"tol": 1e-9}  # a bound: no relaxed bounds
    raw = CasadiIpoptBackend().solve(nlp, nlp.x0, options=options)
    if raw.status not in OK_STATUSES:
        what = "relaxed clearing" if relaxed else "clearing"
        raise ConfigError(f"the {what} of hour {hour} did not solve ({raw.status}: {raw.message})")
    return nlp, raw


def settlement(case: TradingCase, prices: Prices | Sequence[float], demands: Mapping[int, Triple]) -> dict[int, float]:
    """Each hub's payment at ``prices`` for its ``demands`` (gas, elec, heat; negative amounts are sales)."""
    p = Prices.of(prices)
    return {h: float(np.dot(p.for_hub(case, h), d)) for h, d in demands.items()}


def compare(case: TradingCase, clearing: Clearing, prices: Prices | Sequence[float],
            demands: Mapping[int, Triple], *, balance_tolerance: float = BALANCE_TOLERANCE) -> Gap:
    """The gap of an iteration's final ``prices`` and ``demands`` to ``clearing``, with notes on its causes (an
    imbalance within ``balance_tolerance`` MW is the iteration's end tolerance and is not noted)."""
    p = Prices.of(prices)
    c = clearing.prices
    price = {"gas": p.gas - c.gas, "elec": p.elec - c.elec, "heat": tuple(a - b for a, b in zip(p.heat, c.heat))}
    demand = {h: tuple(float(a - b) for a, b in zip(d, clearing.allocation[h])) for h, d in demands.items()}
    max_price = max(abs(price["gas"]), abs(price["elec"]), *(abs(v) for v in price["heat"]))
    max_demand = max((abs(v) for d in demand.values() for v in d), default=0.0)
    imbalance = _imbalance(case, clearing.hour, demands)
    notes = _notes(case, clearing, p, demands, imbalance, balance_tolerance)
    return Gap(price, demand, max_price, max_demand, notes, imbalance)  # type: ignore[arg-type]


def _outside(value: float, lo: float, hi: float) -> float:
    return value - hi if value > hi else value - lo if value < lo else 0.0


def _imbalance(case: TradingCase, hour: int, demands: Mapping[int, Triple]) -> dict[str, Any]:
    """How far the net demands lie outside the outside suppliers' ranges (positive: short, negative: surplus)."""
    net_e = sum(d[1] for d in demands.values())
    heat = tuple(
        _outside(sum(demands[h][2] for h in case.hubs_in_zone(z) if h in demands), 0.0,
                 case.heat_sources.capacity[z - 1])
        for z in case.zones
    )
    return {"elec": _outside(net_e, 0.0, case.grid_cap(hour)), "heat": heat}


def _notes(case: TradingCase, clearing: Clearing, p: Prices, demands: Mapping[int, Triple],
           imbalance: dict[str, Any], tol: float) -> list[str]:
    """Where the gaps come from: the band rule's dead zone, missing hubs, balances left open."""
    notes = []
    tariff = case.tariff(clearing.hour)[1]
    src = case.heat_sources
    if abs(p.elec - tariff) <= 0.01 or any(abs(h - src.price) <= 0.01 for h in p.heat):
        notes.append("a price within 0.01 of its outside supplier's price is in the band rule's middle band: the "
                     "iteration stops moving it while the clearing prices it exactly")
    missing = sorted(set(case.hub_ids) - set(demands))
    if missing:
        notes.append(f"hubs {missing} sent no final demand: their clearing allocation is not compared")
    if abs(imbalance["elec"]) > tol:
        notes.append(f"the hubs' net electricity demand lies {imbalance['elec']:+.3f} MW outside the grid's "
                     f"[0, Emax]: not cleared")
    for z, gap in zip(case.zones, imbalance["heat"]):
        if abs(gap) > tol:
            notes.append(f"zone {z}: the net heat demand lies {gap:+.3f} MW outside its source's "
                         f"[0, {src.capacity[z - 1]}]: not cleared")
    return notes
