"""The iterative market as sans-I/O machines: hubs send signed demands, delegates iterate the prices.

Rules (docs/trading.md; the spec's one round, step by step):

* round k: every hub signs its demand (gas, electricity, heat) for round k and sends it to every delegate;
* a delegate forwards each demand it got from the hub itself to the other delegates (once); two validly signed
  demands of one hub and round that differ are an equivocation: the hub is excluded and the two signed demands go
  to the other delegates as proof (`EquivocationProof`), who check both signatures and exclude it too;
* at its round timer (`round_timeout` virtual seconds) a delegate updates the prices from the demands it holds
  (`MarketRule.update`: the grid and zone heat-source bands, step 1/(20 + 0.1 n), gas fixed), and sends every
  hub still in the market one signed `Prices` (gas, electricity, the heat price of each zone) with the end flag
  (norm of the change < tolerance, or the round limit reached); a hub reads its own zone's heat;
* a silent hub (no demand of the round at a delegate): its last agreed demand is kept; after `silent_rounds`
  silent rounds in a row it is excluded (locally, without evidence) and leaves the balance from that round on;
* a hub takes the price triple (and end flag) that a strict majority of the delegates sent, asks the host for
  its best response at those prices (`Respond` -> `ResponseReady`) and sends its next demand; on the end flag
  it settles (`Settled`).

The machines never import a solver: a hub's best response is a host request, like the dispatch's `Solve`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .delegate import BAD_SIGNATURE, DUPLICATE, MALFORMED, SENDER_MISMATCH, STALE, UNEXPECTED, UNSIGNED_PROOF
from .events import CancelTimer, Dropped, MessageReceived, Send, Start, StartTimer, TimerExpired
from .identity import NodeId, Signer, check_signature
from .market_messages import (
    Demand,
    DemandMade,
    DemandReceived,
    EquivocationProof,
    ForwardedDemand,
    HubExcluded,
    MarketEnded,
    NoPriceMajority,
    Prices,
    PricesAdopted,
    PricesComputed,
    PricesReceived,
    ProofChecked,
    Respond,
    ResponseReady,
    Settled,
    market_message_problem,
)

__all__ = ["MarketRule", "MarketDelegate", "MarketHub", "market_timer", "phase_timer", "prices_timer", "excess_supply"]

SigCheck = Callable[[bytes | None, bytes, bytes], bool]
Triple = tuple[float, float, float]


def market_timer(round: int) -> tuple[str, int]:
    """A delegate's round timer."""
    return ("market", round)


def phase_timer(round: int, phase: int) -> tuple[str, int, int]:
    """A delegate's forwarding phase timer: phase `phase` of `round` begins."""
    return ("phase", round, phase)


def prices_timer(round: int) -> tuple[str, int]:
    """A hub's wait for the prices after its demand of `round`."""
    return ("prices", round)


def excess_supply(price: float, reference: float, cap: float, net: float, band: float) -> float:
    """The excess demand SG of one carrier against its outside supplier (price `reference`, capacity `cap`):
    above the band the supplier gives `cap`, below it gives nothing, inside it gives whatever is asked (so
    SG is the net demand when that is a surplus, else 0)."""
    if price > reference + band:
        return net - cap
    if price < reference - band:
        return net
    return net if net < 0 else 0.0


@dataclass(frozen=True)
class MarketRule:
    """The price update of one hour. Prices are (gas, electricity, heat of zone 1, ..., heat of zone Z)."""

    gas_price: float
    elec_tariff: float
    grid_cap: float
    heat_price: float
    heat_caps: tuple[float, ...]
    initial: tuple[float, ...]
    band: float = 0.01
    step_base: float = 20.0
    step_slope: float = 0.1
    tolerance: float = 1e-3

    def __post_init__(self) -> None:
        if len(self.initial) != 2 + len(self.heat_caps):
            raise ValueError(f"initial prices: expected {2 + len(self.heat_caps)} values (gas, electricity, "
                             f"one heat price per zone), got {len(self.initial)}")

    @property
    def zones(self) -> int:
        return len(self.heat_caps)

    def step(self, n: int) -> float:
        return 1.0 / (self.step_base + self.step_slope * n)

    def update(self, prices: Sequence[float], demands: Mapping[NodeId, Triple], zone_of: Mapping[NodeId, int],
               n: int, order: Sequence[NodeId]) -> tuple[tuple[float, ...], float, tuple[float, ...]]:
        """(new prices, norm of the change, excess demands (electricity, heat per zone)) after update `n` from
        `demands` (summed in `order`, so every delegate's floating-point sums agree bit for bit)."""
        elec = 0.0
        heat = [0.0] * self.zones
        for hub in order:
            d = demands.get(hub)
            if d is not None:
                elec += d[1]
                heat[zone_of[hub] - 1] += d[2]
        k = self.step(n)
        sg = [excess_supply(prices[1], self.elec_tariff, self.grid_cap, elec, self.band)]
        sg += [excess_supply(prices[2 + z], self.heat_price, self.heat_caps[z], heat[z], self.band)
               for z in range(self.zones)]
        new = (float(self.gas_price),) + tuple(prices[1 + i] + sg[i] * k for i in range(len(sg)))
        change = math.sqrt(sum((a - b) ** 2 for a, b in zip(new, prices)))
        return new, change, tuple(sg)

    def hub_triple(self, prices: Sequence[float], zone: int) -> Triple:
        return (float(prices[0]), float(prices[1]), float(prices[1 + zone]))


@dataclass
class _Round:
    copies: dict[NodeId, Demand] = field(default_factory=dict)   # hub -> the demand this delegate holds
    values: dict[NodeId, dict[Triple, Demand]] = field(default_factory=dict)  # hub -> every value accepted
    direct: set[NodeId] = field(default_factory=set)              # hubs whose own copy arrived
    seen: set[tuple[NodeId, tuple[NodeId, ...]]] = field(default_factory=set)  # (hub, path) already taken
    phase: int = 0                                                # forwarding phase (docs/trading.md)


class MarketDelegate:
    """A market delegate: collects and forwards demands, excludes equivocating and silent hubs, updates and
    sends the prices at its round timer. `keys`: node -> raw public key (hubs and delegates; None = signatures
    off). `zones`: hub -> heat zone (1-based)."""

    def __init__(
        self, name: NodeId, *, hubs: Sequence[NodeId], delegates: Sequence[NodeId], zones: Mapping[NodeId, int],
        rule: MarketRule, signer: Signer, keys: Mapping[NodeId, bytes] | None, market: str = "trading",
        round_timeout: float = 1.0, max_rounds: int = 2000, silent_rounds: int = 3, signatures: bool = True,
        sig_check: SigCheck = check_signature, buffer_limit: int = 10_000,
    ) -> None:
        if signatures and keys is None:
            raise ValueError("signatures are on but no public keys were given")
        self.name, self.hubs, self.delegates = name, tuple(hubs), tuple(delegates)
        self.zones, self.rule, self.signer, self.keys = dict(zones), rule, signer, keys
        self.market, self.round_timeout, self.max_rounds = market, float(round_timeout), int(max_rounds)
        self.silent_rounds, self.signatures, self.sig_check = int(silent_rounds), signatures, sig_check
        self.buffer_limit = buffer_limit
        self.faults = (len(self.delegates) - 1) // 2   # the dishonest delegates forwarding must withstand
        self.phase_length = self.round_timeout / (self.faults + 2)
        self.round = 0
        self.prices: tuple[float, ...] = tuple(rule.initial)
        self.ended = False
        self.state = _Round()
        self.last: dict[NodeId, Triple] = {}
        self.silent: Counter[NodeId] = Counter()
        self.excluded: dict[NodeId, int] = {}
        self.proved: set[NodeId] = set()
        self.buffer: list[tuple[NodeId, Any]] = []
        self.path: list[tuple[float, ...]] = [self.prices]

    # ---- the machine
    def handle(self, event: Any) -> list[Any]:
        out: list[Any] = []
        if isinstance(event, Start):
            if self.round == 0:
                self._open(1, out)
        elif isinstance(event, MessageReceived):
            self._on_message(event.src, event.msg, out)
        elif isinstance(event, TimerExpired):
            tid = event.timer_id
            if tid == market_timer(self.round) and not self.ended:
                self._close(self.round, out)
            elif isinstance(tid, tuple) and len(tid) == 3 and tid[:2] == ("phase", self.round):
                self.state.phase = max(self.state.phase, int(tid[2]))
        else:
            out.append(Dropped(UNEXPECTED, event=type(event).__name__))
        return out

    def _open(self, k: int, out: list[Any]) -> None:
        self.round, self.state = k, _Round()
        out.extend(StartTimer(phase_timer(k, p), p * self.phase_length) for p in range(1, self.faults + 2))
        out.append(StartTimer(market_timer(k), self.round_timeout))
        waiting, self.buffer = self.buffer, []
        for src, msg in waiting:
            self._on_message(src, msg, out)

    def _key(self, node: NodeId) -> bytes | None:
        return None if self.keys is None else self.keys.get(node)

    def _signed_by_hub(self, d: Demand) -> bool:
        return not self.signatures or self.sig_check(self._key(d.hub), d.signature, d.signing_bytes())

    def _on_message(self, src: NodeId, msg: Any, out: list[Any]) -> None:
        problem = market_message_problem(msg)
        if problem is not None:
            out.append(Dropped(MALFORMED, src, detail=problem))
            return
        if isinstance(msg, Demand):
            self._on_demand(src, msg, None, out)
        elif isinstance(msg, ForwardedDemand):
            if src != msg.forwarder or any(f not in self.delegates for f in msg.path) or self.name in msg.path:
                out.append(Dropped(SENDER_MISMATCH, src, message=msg.kind, delegate=msg.forwarder))
                return
            self._on_demand(src, msg.demand, msg, out)
        elif isinstance(msg, EquivocationProof):
            self._on_proof(src, msg, out)
        else:
            out.append(Dropped(UNEXPECTED, src, message=msg.kind))

    def _check_demand(self, src: NodeId, d: Demand, fwd: ForwardedDemand | None, out: list[Any]) -> bool:
        kind = "demand" if fwd is None else "forward"
        reason = None
        if d.market != self.market:
            reason = "wrong market"
        elif d.hub not in self.zones:
            reason = "not a hub"
        elif fwd is None and src != d.hub:
            reason = SENDER_MISMATCH
        elif not self._signed_by_hub(d) or (fwd is not None and not self._chain_ok(fwd)):
            reason = BAD_SIGNATURE
        elif d.hub in self.excluded:
            reason = "excluded hub"
        elif self.ended or (self.round and d.round < self.round):
            reason = STALE
        if reason is not None:
            out.append(Dropped(reason, src, message=kind, round=d.round, signer=d.hub))
            return False
        if self.round == 0 or d.round > self.round:
            if d.round > self.round + 2 or len(self.buffer) >= self.buffer_limit:
                out.append(Dropped("too far ahead", src, message=kind, round=d.round, signer=d.hub))
            else:
                self.buffer.append((src, d if fwd is None else fwd))
            return False
        return True

    def _chain_ok(self, fwd: ForwardedDemand) -> bool:
        if not self.signatures:
            return True
        return all(self.sig_check(self._key(f), sig, fwd.link_bytes(fwd.demand, fwd.path[:i + 1]))
                   for i, (f, sig) in enumerate(zip(fwd.path, fwd.signatures)))

    def _on_demand(self, src: NodeId, d: Demand, fwd: ForwardedDemand | None, out: list[Any]) -> None:
        """Take a copy with a chain of L forwarders while the phase is <= L; a value taken for the first time
        goes on, signed, to the delegates not on its path while L <= faults (Dolev-Strong's rule: then every
        honest delegate holds the same values of every hub when the round closes)."""
        if not self._check_demand(src, d, fwd, out):
            return
        st, hub = self.state, d.hub
        path = () if fwd is None else fwd.path
        kind = "demand" if fwd is None else "forward"
        if st.phase > len(path):
            out.append(Dropped("late", src, message=kind, round=d.round, signer=hub, detail=f"phase {st.phase}"))
            return
        if (hub, path) in st.seen:
            out.append(Dropped(DUPLICATE, src, message=kind, round=d.round, signer=hub))
            return
        st.seen.add((hub, path))
        out.append(DemandReceived(d.round, hub, src, f"R{len(path) + 1}", d.values, path))
        values = st.values.setdefault(hub, {})
        if d.values in values:
            return
        values[d.values] = d
        if len(path) <= self.faults:
            relay = ForwardedDemand.first(self.signer, d, self.name) if fwd is None else fwd.extend(self.signer, self.name)
            out.extend(Send(o, relay) for o in self.delegates if o != self.name and o not in path)
        if fwd is None:
            st.direct.add(hub)
        if len(values) == 1:
            st.copies[hub] = d
        elif self.signatures:
            first, second = list(values.values())[:2]
            self._exclude(hub, d.round, EquivocationProof(first, second, self.name), None, out)
        elif fwd is None:  # signatures off: only the transport vouches for the hub's own copy
            st.copies[hub] = d
            out.append(Dropped("conflicting copy", src, message=kind, round=d.round, signer=hub,
                               detail="copies differ; the hub's own is kept"))
        else:
            out.append(Dropped("conflicting copy", src, message=kind, round=d.round, signer=hub))

    def _exclude(self, hub: NodeId, round: int, proof: EquivocationProof, sender: NodeId | None,
                 out: list[Any]) -> None:
        if hub not in self.excluded:
            self.excluded[hub] = round
            self.state.copies.pop(hub, None)
            out.append(HubExcluded(hub, round, "equivocation", True, proof.first.values, proof.second.values))
        if hub not in self.proved:
            self.proved.add(hub)
            mine = EquivocationProof(proof.first, proof.second, self.name)
            out.extend(Send(o, mine) for o in self.delegates if o not in (self.name, sender))

    def _on_proof(self, src: NodeId, p: EquivocationProof, out: list[Any]) -> None:
        d = p.first
        reason = None
        if src != p.reporter or src not in self.delegates:
            reason = SENDER_MISMATCH
        elif not self.signatures:
            reason = UNSIGNED_PROOF
        elif d.market != self.market or d.hub not in self.zones:
            reason = "not a hub of this market"
        elif not (self._signed_by_hub(p.first) and self._signed_by_hub(p.second)):
            reason = BAD_SIGNATURE
        if reason is not None:
            out.append(Dropped(reason, src, message=p.kind, signer=d.hub))
            return
        out.append(ProofChecked(src, d.hub, d.round))
        self._exclude(d.hub, max(d.round, self.round), p, src, out)

    # ---- the end of a round: the price update
    def _agreed(self, k: int, out: list[Any]) -> tuple[dict[NodeId, Triple], list[NodeId]]:
        demands: dict[NodeId, Triple] = {}
        kept: list[NodeId] = []
        for hub in self.hubs:
            if hub in self.excluded:
                continue
            d = self.state.copies.get(hub)
            if d is not None:
                demands[hub] = self.last[hub] = d.values
                self.silent[hub] = 0
                continue
            self.silent[hub] += 1
            if self.silent[hub] >= self.silent_rounds:
                self.excluded[hub] = k
                out.append(HubExcluded(hub, k, "silent", False))
            elif hub in self.last:
                demands[hub] = self.last[hub]
                kept.append(hub)
        return demands, kept

    def _close(self, k: int, out: list[Any]) -> None:
        demands, kept = self._agreed(k, out)
        new, change, sg = self.rule.update(self.prices, demands, self.zones, k, self.hubs)
        end = change < self.rule.tolerance
        reason = "converged" if end else "round limit" if k >= self.max_rounds else ""
        end = end or bool(reason)
        out.append(PricesComputed(k, k, new, change, end, len(demands), tuple(kept), sg))
        msg = Prices.make(self.signer, market=self.market, round=k, delegate=self.name, vector=new, end=end)
        out.extend(Send(hub, msg) for hub in self.hubs if hub not in self.excluded)
        self.prices = new
        self.path.append(new)
        if end:
            self.ended = True
            self.buffer = []
            out.append(MarketEnded(k, reason, new))
        else:
            self._open(k + 1, out)


class MarketHub:
    """A hub: asks the host for its best response at the prices a majority of delegates sent, signs the
    demand and sends it to every delegate. `initial`: its round-1 prices (gas, electricity, its zone's heat)."""

    def __init__(
        self, name: NodeId, *, delegates: Sequence[NodeId], zone: int, initial: Triple, signer: Signer,
        keys: Mapping[NodeId, bytes] | None, market: str = "trading", price_timeout: float = 1.0,
        signatures: bool = True, sig_check: SigCheck = check_signature,
    ) -> None:
        if signatures and keys is None:
            raise ValueError("signatures are on but no public keys were given")
        self.name, self.delegates, self.zone = name, tuple(delegates), int(zone)
        self.majority = len(self.delegates) // 2 + 1
        self.initial = tuple(float(x) for x in initial)
        self.signer, self.keys, self.market = signer, keys, market
        self.price_timeout, self.signatures, self.sig_check = float(price_timeout), signatures, sig_check
        self.round = 0
        self.prices: Triple = self.initial  # type: ignore[assignment]
        self.demand: Triple | None = None
        self.sent_round = 0
        self.done = False
        self.votes: dict[int, dict[NodeId, tuple[Triple, bool]]] = {}

    def handle(self, event: Any) -> list[Any]:
        out: list[Any] = []
        if isinstance(event, Start):
            if self.round == 0:
                self.round = 1
                out.append(Respond(self.name, 1, self.prices))
        elif isinstance(event, ResponseReady):
            self._on_response(event, out)
        elif isinstance(event, MessageReceived):
            self._on_message(event.src, event.msg, out)
        elif isinstance(event, TimerExpired):
            tid = event.timer_id
            if isinstance(tid, tuple) and tid[:1] == ("prices",) and tid[1] == self.round and not self.done:
                best = max((Counter(v.values()).most_common(1)[0][1] for r, v in self.votes.items()
                            if r >= self.round and v), default=0)
                out.append(NoPriceMajority(self.round, best))
        else:
            out.append(Dropped(UNEXPECTED, event=type(event).__name__))
        return out

    def _on_response(self, ev: ResponseReady, out: list[Any]) -> None:
        if ev.round != self.round or self.done or self.sent_round == ev.round:
            out.append(Dropped("stale response", event="ResponseReady", round=ev.round))
            return
        demand = tuple(float(x) for x in ev.demand)
        if len(demand) != 3 or not all(math.isfinite(x) for x in demand):
            out.append(Dropped("bad response", event="ResponseReady", round=ev.round, detail=repr(ev.demand)))
            return
        self.demand = demand  # type: ignore[assignment]
        self.sent_round = ev.round
        out.append(DemandMade(ev.round, self.prices, self.demand))  # type: ignore[arg-type]
        msg = Demand.make(self.signer, market=self.market, round=ev.round, hub=self.name, values=self.demand)  # type: ignore[arg-type]
        out.extend(Send(d, msg) for d in self.delegates)
        out.append(StartTimer(prices_timer(ev.round), self.price_timeout))

    def _on_message(self, src: NodeId, msg: Any, out: list[Any]) -> None:
        problem = market_message_problem(msg)
        reason = problem and MALFORMED
        if reason is None and not isinstance(msg, Prices):
            reason = UNEXPECTED
        elif reason is None:
            if msg.delegate not in self.delegates:
                reason = "not a delegate"
            elif src != msg.delegate:
                reason = SENDER_MISMATCH
            elif msg.market != self.market:
                reason = "wrong market"
            elif len(msg.heat) < self.zone:
                reason = "no price for this hub's zone"
            elif self.signatures and not self.sig_check(
                    None if self.keys is None else self.keys.get(msg.delegate), msg.signature, msg.signing_bytes()):
                reason = BAD_SIGNATURE
            elif self.done or msg.round < self.round:
                reason = STALE
        if reason is not None:
            out.append(Dropped(reason, src, message=getattr(msg, "kind", None), detail=problem,
                               round=getattr(msg, "round", None)))
            return
        triple = msg.triple(self.zone)
        out.append(PricesReceived(msg.round, msg.delegate, triple, msg.end))
        votes = self.votes.setdefault(msg.round, {})
        if msg.delegate in votes:
            out.append(Dropped(DUPLICATE if votes[msg.delegate] == (triple, msg.end) else "conflicting prices",
                               src, message=msg.kind, round=msg.round))
            return
        votes[msg.delegate] = (triple, msg.end)
        count = sum(1 for v in votes.values() if v == (triple, msg.end))
        if count >= self.majority:
            self._adopt(msg.round, triple, msg.end, count, out)

    def _adopt(self, k: int, triple: Triple, end: bool, count: int, out: list[Any]) -> None:
        out.append(CancelTimer(prices_timer(self.round)))
        out.append(PricesAdopted(k, triple, count, end))
        self.votes = {r: v for r, v in self.votes.items() if r > k}
        self.prices = triple
        if end:
            self.done = True
            out.append(Settled(k, triple, self.demand or (0.0, 0.0, 0.0)))
            return
        self.round = k + 1
        out.append(Respond(self.name, k + 1, triple))
