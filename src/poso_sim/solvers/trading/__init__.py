"""The trading wing of the solvers layer: each hub's best response at given prices (:class:`HubResponder`).

See docs/cases/trading.md.
"""

from .responder import BestResponseError, HubResponder

__all__ = ["BestResponseError", "HubResponder"]
