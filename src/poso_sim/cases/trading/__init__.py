"""The trading case: twelve multi-energy hubs buying and selling gas, electricity and heat (the paper's second
system, the reference's scene III). See docs/cases/trading.md.

Public API::

    load_trading_case("trading" | path) -> TradingCase     # the packaged case, or a case file
    TradingCase: hubs, zone_of(hub), tariff(hour), grid_cap(hour), heat_sources, first_demand, initial_prices(hour)
    build_hub_model(case, hub, hour=12) -> pyomo ConcreteModel      # one hub's best response (prices: Params)
    build_market_model(case, hour=12) -> pyomo ConcreteModel        # the centralised market clearing of one hour
"""

from poso_sim.common import lazy_exports

from .loader import PACKAGED, MarketInstance, load_trading_case, market_instance, trading_case_from_dict
from .params import hub_parameters, market_parameters
from .schema import HOURS, Branch, Device, TradingCase, TradingHub, zone_rule

# The model builders need Pyomo, a heavy import: loaded on first use (loading the case does not).
_LAZY = {"build_hub_model": "model", "build_market_model": "model", "PRICE_PARAMS": "model"}

__getattr__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "Branch",
    "Device",
    "HOURS",
    "MarketInstance",
    "PACKAGED",
    "PRICE_PARAMS",
    "TradingCase",
    "TradingHub",
    "build_hub_model",
    "build_market_model",
    "hub_parameters",
    "load_trading_case",
    "market_instance",
    "market_parameters",
    "trading_case_from_dict",
    "zone_rule",
]
