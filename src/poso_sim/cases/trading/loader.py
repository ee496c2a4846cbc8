"""Loading the trading case: the packaged ``trading.json`` by name, or a case file by path; every failure is one
``CaseError`` line naming the file, the hub (where there is one) and the field."""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass
from typing import Any


from ...errors import CaseError
from ..loader import read_case_json, validate_document
from .schema import TradingCase

#: File name of the packaged case (inside this package).
PACKAGED = "trading.json"


def _hub_of(data: Any, loc: tuple) -> str:
    if len(loc) > 1 and loc[0] == "hubs" and isinstance(loc[1], int):
        try:
            return f"hub {data['hubs'][loc[1]]['id']}: "
        except (KeyError, IndexError, TypeError):
            return ""
    return ""


def trading_case_from_dict(data: Any, source: str = "<case>") -> TradingCase:
    """Validate a decoded trading-case document; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise CaseError(f"{source}: (case): expected a JSON object at the top level")
    return validate_document(TradingCase, data, source, lambda loc: _hub_of(data, loc))


def load_trading_case(name_or_path: str | Path = "trading") -> TradingCase:
    """The packaged case (``"trading"``) or the trading case in the JSON file ``name_or_path``."""
    packaged = str(name_or_path) == "trading"
    name, data = read_case_json(__package__, PACKAGED, None if packaged else name_or_path)
    return trading_case_from_dict(data, name)


@dataclass(frozen=True)
class MarketInstance:
    """The data of the centralised clearing problem: the case and the hour (1..24)."""

    case: TradingCase
    hour: int = 12

    def key(self) -> bytes:
        """Canonical bytes for cache keys: the case's JSON and the hour."""
        return self.case.model_dump_json().encode() + f"\\nhour={self.hour}".encode()


def market_instance(case: str = "trading", hour: int = 12) -> MarketInstance:
    """The clearing problem's data for a ``case:`` string: ``"trading"`` (the packaged case, hour 12)."""
    if case != "trading":
        raise CaseError(f"case {case!r}: the trading problem takes the packaged case 'trading'")
    data = load_trading_case("trading")
    try:
        data.check_hour(hour)
    except ValueError as exc:
        raise CaseError(f"{PACKAGED}: {exc}") from None
    return MarketInstance(data, hour)
