"""The packaged problems ``trading`` and ``trading-night`` (the trading case's market clearing of one hour) and
``trading-day`` (the whole day with storage) as problem definitions of the registry (:mod:`poso_sim.nlp.problems`),
which names them by ``"poso_sim.cases.trading.problem:trading_problem"`` (``:trading_night_problem``,
``:trading_day_problem``) and imports no case."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from poso_sim.cases.trading.loader import MarketInstance, load_trading_case, market_instance
from poso_sim.cases.trading.params import market_parameters
from poso_sim.nlp.problems import ProblemDefinition

__all__ = ["trading_problem", "trading_night_problem", "trading_day_problem"]


def _build(data: Any, variant: str) -> Any:
    from poso_sim.cases.trading.model import build_market_model  # the builder imports Pyomo (0.7 s beside scipy)

    return build_market_model(data.case, data.hour, variant)


def _data_key(data: Any) -> bytes:
    return data.key()


def _structure(data: Any) -> bytes:
    return data.case.model_dump_json().encode()  # every hour of the case shares one compiled structure


def _parameters(data: Any) -> Any:
    return market_parameters(data.case, data.hour)


def trading_problem() -> ProblemDefinition:
    """The trading case's centralised market clearing of one hour (hour 12): twelve hubs, the grid and the zone
    heat sources; the balance rows' multipliers are the prices (docs/cases/trading.md). Parametric: another hour,
    ``load_instance("trading", market_instance(hour=h))``, is the same compiled structure with that hour's data."""
    root = Path(__file__).resolve().parent
    return ProblemDefinition(
        build=_build,
        cost_expression="total_cost",
        expressions=("cost_gas", "cost_plants", "cost_grid", "cost_heat"),
        load=market_instance,
        data_key=_data_key,
        structure_key=_structure,
        parameters=_parameters,
        source_files=tuple(str(p) for p in sorted(root.rglob("*.py"))),
        description="Twelve energy hubs: centralised market clearing of hour 12 (the paper's trading system)",
        priced_rows=("elec_balance", "heat_balance"),
        cost_unit="RMB",
    )


def _load_night(case: str) -> Any:
    return MarketInstance(load_trading_case("trading"), 1)


def trading_night_problem() -> ProblemDefinition:
    """The trading case's centralised clearing of hour 1, a night hour whose heat prices are not unique (every
    hub's heat comes from devices at their limits): the price intervals and the settlement rule matter
    (docs/certificate.md, "Priced rows")."""
    return dataclasses.replace(
        trading_problem(), load=_load_night,
        description="Twelve energy hubs: centralised market clearing of hour 1 (degenerate heat prices)",
    )


def _load_day(case: str) -> Any:
    return load_trading_case("trading")


def _build_day(data: Any, variant: str) -> Any:
    from poso_sim.cases.trading.day import build_day_model  # the builder imports Pyomo (0.7 s beside scipy)

    return build_day_model(data, variant)


def trading_day_problem() -> ProblemDefinition:
    """The trading case's centralised clearing of all 24 hours with the hubs' heat and cooling storage active
    (:mod:`poso_sim.cases.trading.day`); 24 electricity and 72 zone heat prices."""
    root = Path(__file__).resolve().parent
    return ProblemDefinition(
        build=_build_day,
        cost_expression="total_cost",
        expressions=("cost_gas", "cost_plants", "cost_grid", "cost_heat"),
        load=_load_day,
        source_files=tuple(str(p) for p in sorted(root.rglob("*.py"))),
        description="Twelve energy hubs: centralised market clearing of a whole day with storage",
        priced_rows=("elec_balance", "heat_balance"),
        cost_unit="RMB",
    )
