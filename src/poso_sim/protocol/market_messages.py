"""The iterative market's messages, host requests and notes (the trading half of PoSo; docs/trading.md).

Messages follow the dispatch's conventions (`poso_sim.protocol.messages`): frozen dataclasses with a class-level
`kind`, a `version`, canonical `encode()` and, when signed, `signing_bytes()` = ``b"poso-sim/protocol/<kind>/"`` +
canonical(every field but the signature).

| message | fields | signed by |
|---|---|---|
| `Demand` | `market, round, hub, gas, elec, heat` | the hub |
| `ForwardedDemand` | `demand` (unchanged, with the hub's signature), `path` (the forwarders), `signatures` | each forwarder, over the demand and the path up to itself |
| `Prices` | `market, round, delegate, gas, elec, heat` (one price per zone), `end` | the delegate (one vector per round, sent to every hub; a hub reads its zone's heat) |
| `EquivocationProof` | `first`, `second` (two signed demands of one hub and round that differ), `reporter` | - (self-contained: both hub signatures) |

`Prices.round` is the round whose demands the prices answer: the prices of round k+1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .events import Note, _other_note, _same_note
from .identity import NodeId, Signer
from .messages import DOMAIN, VERSION, _Message, canonical

__all__ = [
    "Demand", "ForwardedDemand", "Prices", "EquivocationProof", "MARKET_MESSAGES", "market_message_problem",
    "Respond", "ResponseReady",
    "DemandMade", "DemandReceived", "HubExcluded", "ProofChecked", "PricesComputed", "PricesReceived", "PricesAdopted",
    "NoPriceMajority", "MarketEnded", "Settled", "MARKET_NOTES",
]


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _name(x: object) -> bool:
    return isinstance(x, str) and 0 < len(x) <= 64


def _round(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


class _Cached(_Message):
    """Signing bytes and encoding computed once per message object (a demand is checked by every delegate,
    forwarded copies included; messages are immutable, so the bytes never change)."""

    @functools.cached_property
    def _signing(self) -> bytes:
        return _Message.signing_bytes(self)

    def signing_bytes(self) -> bytes:
        return self._signing

    @functools.cached_property
    def _encoded(self) -> bytes:
        return _Message.encode(self)

    def encode(self) -> bytes:
        return self._encoded


@dataclass(frozen=True)
class Demand(_Cached):
    """A hub's demand triple for a round (electricity negative = selling), signed by the hub."""

    kind: ClassVar[str] = "demand"
    market: str
    round: int
    hub: NodeId
    gas: float
    elec: float
    heat: float
    signature: bytes = b""
    version: int = VERSION

    def body(self) -> dict[str, Any]:
        return {"market": self.market, "round": self.round, "hub": self.hub, "gas": float(self.gas),
                "elec": float(self.elec), "heat": float(self.heat)}

    @property
    def values(self) -> tuple[float, float, float]:
        return (float(self.gas), float(self.elec), float(self.heat))

    @classmethod
    def make(cls, signer: Signer, *, market: str, round: int, hub: NodeId,
             values: tuple[float, float, float]) -> "Demand":
        g, e, h = (float(v) for v in values)
        return cls(market, round, hub, g, e, h)._signed(signer)

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not isinstance(self.market, str) or not _round(self.round) or not _name(self.hub):
            return "market/round/hub malformed"
        if not all(_num(v) for v in (self.gas, self.elec, self.heat)):
            return "demand values must be finite numbers"
        if not isinstance(self.signature, (bytes, bytearray)):
            return "signature is not bytes"
        return None


@dataclass(frozen=True)
class ForwardedDemand(_Message):
    """A hub's signed demand passed on between delegates. `path`: the forwarders in order (the last one sent this
    copy); `signatures[i]`: `path[i]`'s signature over the demand (with the hub's signature) and `path[:i + 1]`, so
    the length of the chain cannot be faked (docs/trading.md, "Forwarding")."""

    kind: ClassVar[str] = "forward"
    demand: Demand
    path: tuple[NodeId, ...]
    signatures: tuple[bytes, ...] = ()
    version: int = VERSION

    @property
    def forwarder(self) -> NodeId:
        return self.path[-1]

    def body(self) -> dict[str, Any]:
        return {"demand": self.demand.encode().decode(), "path": list(self.path)}

    @staticmethod
    def link_bytes(demand: Demand, path: tuple[NodeId, ...]) -> bytes:
        """What the last forwarder of `path` signs."""
        return DOMAIN + b"forward/" + canonical({"v": VERSION, "demand": demand.encode().decode(), "path": list(path)})

    def extend(self, signer: Signer, forwarder: NodeId) -> "ForwardedDemand":
        """This copy forwarded once more by `forwarder`."""
        path = self.path + (forwarder,)
        return ForwardedDemand(self.demand, path, self.signatures + (signer.sign(self.link_bytes(self.demand, path)),))

    @classmethod
    def first(cls, signer: Signer, demand: Demand, forwarder: NodeId) -> "ForwardedDemand":
        """A hub's demand forwarded by the first delegate."""
        return cls(demand, (), ()).extend(signer, forwarder)

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not isinstance(self.demand, Demand):
            return "forward does not carry a Demand"
        if not isinstance(self.path, tuple) or not self.path or not all(_name(x) for x in self.path):
            return "path is not a non-empty tuple of names"
        if len(set(self.path)) != len(self.path):
            return "path repeats a forwarder"
        if not isinstance(self.signatures, tuple) or len(self.signatures) != len(self.path) or \
                not all(isinstance(x, (bytes, bytearray)) for x in self.signatures):
            return "one signature per forwarder expected"
        return self.demand.problem()


@dataclass(frozen=True)
class Prices(_Cached):
    """A delegate's prices after `round`: gas, electricity, the heat price of every zone, and the end flag. One
    signed vector per delegate and round goes to every hub in the market; a hub reads gas, electricity and its
    own zone's heat (`triple(zone)`)."""

    kind: ClassVar[str] = "prices"
    market: str
    round: int
    delegate: NodeId
    gas: float
    elec: float
    heat: tuple[float, ...]
    end: bool = False
    signature: bytes = b""
    version: int = VERSION

    def body(self) -> dict[str, Any]:
        return {"market": self.market, "round": self.round, "delegate": self.delegate, "gas": float(self.gas),
                "elec": float(self.elec), "heat": [float(h) for h in self.heat], "end": bool(self.end)}

    @property
    def vector(self) -> tuple[float, ...]:
        """(gas, electricity, heat of zone 1, ..., heat of zone Z)."""
        return (float(self.gas), float(self.elec)) + tuple(float(h) for h in self.heat)

    def triple(self, zone: int) -> tuple[float, float, float]:
        """(gas, electricity, heat) for a hub of `zone` (1-based)."""
        return (float(self.gas), float(self.elec), float(self.heat[zone - 1]))

    @classmethod
    def make(cls, signer: Signer, *, market: str, round: int, delegate: NodeId, vector: tuple[float, ...],
             end: bool) -> "Prices":
        v = tuple(float(x) for x in vector)
        return cls(market, round, delegate, v[0], v[1], v[2:], bool(end))._signed(signer)

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not isinstance(self.market, str) or not _round(self.round) or not _name(self.delegate):
            return "market/round/delegate malformed"
        if not isinstance(self.heat, tuple) or not self.heat:
            return "heat must be a non-empty tuple of zone prices"
        if not all(_num(v) for v in (self.gas, self.elec, *self.heat)) or not isinstance(self.end, bool):
            return "prices must be finite numbers and end a bool"
        if not isinstance(self.signature, (bytes, bytearray)):
            return "signature is not bytes"
        return None


@dataclass(frozen=True)
class EquivocationProof(_Message):
    """Two demands of one hub for one round that differ, each with the hub's signature: the hub equivocated."""

    kind: ClassVar[str] = "equivocation"
    first: Demand
    second: Demand
    reporter: NodeId
    version: int = VERSION

    def body(self) -> dict[str, Any]:
        return {"first": self.first.encode().decode(), "second": self.second.encode().decode(),
                "reporter": self.reporter}

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not (isinstance(self.first, Demand) and isinstance(self.second, Demand)):
            return "proof does not carry two Demands"
        p = self.first.problem() or self.second.problem()
        if p:
            return p
        f, s = self.first, self.second
        if (f.market, f.round, f.hub) != (s.market, s.round, s.hub):
            return "the two demands are not of one hub, market and round"
        if f.values == s.values:
            return "the two demands do not differ"
        if not _name(self.reporter):
            return "reporter is not a name"
        return None


MARKET_MESSAGES = (Demand, ForwardedDemand, Prices, EquivocationProof)


def market_message_problem(msg: object) -> str | None:
    """None if `msg` is a well-formed market message, else a short reason (never raises)."""
    if not isinstance(msg, MARKET_MESSAGES):
        return f"not a market message ({type(msg).__name__})"
    try:
        return msg.problem()
    except Exception as exc:  # noqa: BLE001 - a hostile object must never crash a node
        return f"malformed ({type(exc).__name__})"


# ------------------------------------------------------------------------------------- host request and answer
@dataclass(frozen=True)
class Respond:
    """Action of a hub: compute its best response at `prices` (gas, electricity, its zone's heat) for `round`
    and answer with `ResponseReady(round, demand)` (like the dispatch's `Solve`)."""

    hub: NodeId
    round: int
    prices: tuple[float, float, float]


@dataclass(frozen=True)
class ResponseReady:
    """The host's answer to `Respond`: the hub's demand (gas, electricity, heat) for `round`."""

    round: int
    demand: tuple[float, float, float]
    time: float | None = None


# ------------------------------------------------------------------------------------------------------ notes
class DemandMade(NamedTuple):
    """A hub made its demand for `round` at `prices` (its best response; what it signs and sends)."""

    round: int
    prices: tuple[float, float, float]
    demand: tuple[float, float, float]


class DemandReceived(NamedTuple):
    """A delegate took a copy of `hub`'s demand: `via` "R1" (direct from the hub), "R2" (forwarded once, by
    `src`), "R3" (twice: `path` = the forwarders in order)..."""

    round: int
    hub: NodeId
    src: NodeId
    via: str
    demand: tuple[float, float, float]
    path: tuple[NodeId, ...] = ()


class HubExcluded(NamedTuple):
    """A delegate excluded `hub` from the market from `round` on. `evidence`: backed by two signed demands (an
    equivocation; `first`/`second` are their values), else local (`silent`)."""

    hub: NodeId
    round: int
    reason: str
    evidence: bool
    first: tuple[float, ...] = ()
    second: tuple[float, ...] = ()


class ProofChecked(NamedTuple):
    """A delegate checked an equivocation proof from `src` against `hub` (both signatures valid)."""

    src: NodeId
    hub: NodeId
    round: int


class PricesComputed(NamedTuple):
    """A delegate's price update after `round` (update number `n`): the new prices (gas, electricity, heat per
    zone), the norm of the change, the end flag, the hubs in the balance and those counted from an older demand."""

    round: int
    n: int
    prices: tuple[float, ...]
    change: float
    end: bool
    hubs: int
    kept: tuple[NodeId, ...]
    excess: tuple[float, ...]


class PricesReceived(NamedTuple):
    round: int
    delegate: NodeId
    prices: tuple[float, float, float]
    end: bool


class PricesAdopted(NamedTuple):
    """A hub took the price triple that a majority of delegates sent after `round`."""

    round: int
    prices: tuple[float, float, float]
    votes: int
    end: bool


class NoPriceMajority(NamedTuple):
    """A hub's wait for the prices after `round` timed out without a majority; `votes` = the largest count."""

    round: int
    votes: int


class MarketEnded(NamedTuple):
    """A delegate's part in the market is over after `round`: `reason` "converged" or "round limit"."""

    round: int
    reason: str
    prices: tuple[float, ...]


class Settled(NamedTuple):
    """A hub received the end flag with a majority: its final prices and its last demand (what it settles)."""

    round: int
    prices: tuple[float, float, float]
    demand: tuple[float, float, float]


MARKET_NOTES = (DemandMade, DemandReceived, HubExcluded, ProofChecked, PricesComputed, PricesReceived, PricesAdopted,
                NoPriceMajority, MarketEnded, Settled)

for _cls in MARKET_NOTES:  # equal only to a note of the same type, like the dispatch's notes
    Note.register(_cls)
    _cls.__eq__ = _same_note  # type: ignore[assignment,method-assign]
    _cls.__ne__ = _other_note  # type: ignore[assignment,method-assign]
    _cls.__hash__ = tuple.__hash__  # type: ignore[assignment,method-assign]
del _cls
