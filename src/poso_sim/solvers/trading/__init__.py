"""The trading wing of the solvers layer: each hub's best response at given prices (:class:`HubResponder`), the
centralised clearing and its prices (:func:`clear_market`), an iteration's gap to it (:func:`compare`) and the
payments (:func:`settlement`).

See docs/cases/trading.md.
"""

from .market import Clearing, Gap, Prices, clear_market, clearing_from_point, compare, settlement
from .responder import BestResponseError, HubResponder

__all__ = ["BestResponseError", "Clearing", "Gap", "HubResponder", "Prices", "clear_market", "clearing_from_point",
           "compare", "settlement"]
