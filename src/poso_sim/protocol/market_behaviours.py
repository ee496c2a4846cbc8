"""Dishonest hubs and market delegates, as filters on the honest machines' outgoing actions.

The reference's seven keys (TRADING.md, "Dishonest behaviours"):

| behaviour | keys | effect |
|---|---|---|
| `DemandIgnore(targets)` | `demand_ignore` | a hub sends no demand to the target delegates |
| `DemandScale(targets, rate)` | `demand_target` + `demand_rate` | a hub sends the targets its demand times the rate, signed |
| `PriceIgnore(hubs)` | `price_ignore` | a delegate sends no prices to the target hubs |
| `PriceScale(hubs, rate)` | `price_target` + `price_rate` | a delegate sends the target hubs its prices times the rate, signed |
| `BroadcastIgnore(targets)` | `broadcast_ignore` | a delegate forwards no demand to the target delegates |
| `BroadcastCollusion(hubs, targets, rate, signers)` | `broadcast_collusion` + `broadcast_target` + `broadcast_rate` | when forwarding a colluding hub's demand to a target delegate it sends the demand times the rate, signed with the colluding hub's key (the hub colludes) and its own link signed afresh; without the hub's key the copy keeps the hub's old signature and fails the check |

`BehavingMarketNode(machine, behaviours)` has the machine's `handle` contract: every action passes each
behaviour's `outgoing(action, node)` in turn.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

from .behaviours import pass_outgoing
from .events import Send
from .identity import NodeId, Signer
from .market_messages import Demand, ForwardedDemand, Prices

__all__ = [
    "MarketBehaviour", "BehavingMarketNode", "DemandIgnore", "DemandScale", "PriceIgnore", "PriceScale",
    "BroadcastIgnore", "BroadcastCollusion", "MARKET_KEYS", "HUB_KEYS", "DELEGATE_KEYS",
]

#: the reference's keys, by who may carry them
HUB_KEYS = ("demand_ignore", "demand_target", "demand_rate")
DELEGATE_KEYS = ("price_ignore", "price_target", "price_rate", "broadcast_ignore", "broadcast_collusion",
                 "broadcast_target", "broadcast_rate")
MARKET_KEYS = HUB_KEYS + DELEGATE_KEYS


def _scaled(values: Sequence[float], rate: float) -> tuple[float, float, float]:
    g, e, h = (float(v) * rate for v in values)
    return (g, e, h)


class MarketBehaviour:
    """Base: passes every action through unchanged."""

    def outgoing(self, action: Any, node: "BehavingMarketNode") -> list[Any]:
        return [action]


class DemandIgnore(MarketBehaviour):
    def __init__(self, targets: Iterable[NodeId]) -> None:
        self.targets = frozenset(targets)

    def outgoing(self, action: Any, node: "BehavingMarketNode") -> list[Any]:
        if isinstance(action, Send) and isinstance(action.msg, Demand) and action.dst in self.targets:
            return []
        return [action]


class DemandScale(MarketBehaviour):
    def __init__(self, targets: Iterable[NodeId], rate: float) -> None:
        self.targets, self.rate = frozenset(targets), float(rate)

    def outgoing(self, action: Any, node: "BehavingMarketNode") -> list[Any]:
        m = action.msg if isinstance(action, Send) else None
        if isinstance(m, Demand) and action.dst in self.targets and m.hub == node.name:
            lie = Demand.make(node.signer, market=m.market, round=m.round, hub=m.hub, values=_scaled(m.values, self.rate))
            return [replace(action, msg=lie)]
        return [action]


class PriceIgnore(MarketBehaviour):
    def __init__(self, hubs: Iterable[NodeId]) -> None:
        self.hubs = frozenset(hubs)

    def outgoing(self, action: Any, node: "BehavingMarketNode") -> list[Any]:
        if isinstance(action, Send) and isinstance(action.msg, Prices) and action.dst in self.hubs:
            return []
        return [action]


class PriceScale(MarketBehaviour):
    def __init__(self, hubs: Iterable[NodeId], rate: float) -> None:
        self.hubs, self.rate = frozenset(hubs), float(rate)
        self._last: tuple[Prices, Prices] | None = None  # (honest vector, its lie): signed once per round

    def outgoing(self, action: Any, node: "BehavingMarketNode") -> list[Any]:
        m = action.msg if isinstance(action, Send) else None
        if isinstance(m, Prices) and action.dst in self.hubs:
            if self._last is None or self._last[0] is not m:
                lie = Prices.make(node.signer, market=m.market, round=m.round, delegate=m.delegate,
                                  vector=tuple(v * self.rate for v in m.vector), end=m.end)
                self._last = (m, lie)
            return [replace(action, msg=self._last[1])]
        return [action]


class BroadcastIgnore(MarketBehaviour):
    def __init__(self, targets: Iterable[NodeId]) -> None:
        self.targets = frozenset(targets)

    def outgoing(self, action: Any, node: "BehavingMarketNode") -> list[Any]:
        if isinstance(action, Send) and isinstance(action.msg, ForwardedDemand) and action.dst in self.targets:
            return []
        return [action]


class BroadcastCollusion(MarketBehaviour):
    """`signers`: the colluding hubs' signers (a hub that colludes signs the altered demand)."""

    def __init__(self, hubs: Iterable[NodeId], targets: Iterable[NodeId], rate: float,
                 signers: Mapping[NodeId, Signer] | None = None) -> None:
        self.hubs, self.targets, self.rate = frozenset(hubs), frozenset(targets), float(rate)
        self.signers = dict(signers or {})

    def outgoing(self, action: Any, node: "BehavingMarketNode") -> list[Any]:
        m = action.msg if isinstance(action, Send) else None
        if isinstance(m, ForwardedDemand) and action.dst in self.targets and m.demand.hub in self.hubs:
            d = m.demand
            values = _scaled(d.values, self.rate)
            signer = self.signers.get(d.hub)
            lie = (Demand.make(signer, market=d.market, round=d.round, hub=d.hub, values=values) if signer is not None
                   else replace(d, gas=values[0], elec=values[1], heat=values[2]))
            # its own link signed afresh over the altered demand (the earlier forwarders' links then fail)
            prev = ForwardedDemand(lie, m.path[:-1], m.signatures[:-1])
            return [replace(action, msg=prev.extend(node.signer, m.forwarder))]
        return [action]


class BehavingMarketNode:
    """A hub or market delegate with behaviours attached (same `handle` contract as the machine)."""

    def __init__(self, machine: Any, behaviours: Sequence[MarketBehaviour], signer: Signer) -> None:
        self.machine = machine
        self.behaviours = list(behaviours)
        self.signer = signer

    @property
    def name(self) -> NodeId:
        return self.machine.name

    def handle(self, event: Any) -> list[Any]:
        return pass_outgoing(self.behaviours, self.machine.handle(event), self)
