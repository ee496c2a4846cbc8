"""The trading runner: binds the market machines (`poso_sim.protocol.market`) to simulated nodes of the
virtual-time kernel and carries out their actions, like the dispatch's `Runner`.

One simulated node per hub (``H1`` ... ``H12``); a hub that is also a delegate runs both machines on its node
(delivered `Prices` go to its hub machine, demands, forwarded demands and proofs to its delegate machine). The
actions: `Send` -> the network; `StartTimer`/`CancelTimer` -> node timers; `Respond` -> the hub's best response
from the responder (`poso_sim.solvers.trading.HubResponder`, memoised by hub and prices), answered with
`ResponseReady` after `respond_time` virtual seconds; notes -> the run log (`poso_sim.scenarios.log.RunLog`).
The run ends when every live delegate has ended the market (end flag or round limit) and the messages in flight
have landed.

Deterministic: the same scenario and seed give the same run-log digest in any process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from poso_sim.errors import ScenarioError
from poso_sim.protocol import CancelTimer, Dropped, MessageReceived, Note, Send, SignatureCache, Start, StartTimer
from poso_sim.protocol import Signer, TimerExpired, make_keys, check_signature
from poso_sim.protocol.market import MarketDelegate, MarketHub, MarketRule
from poso_sim.protocol.market_behaviours import (
    BehavingMarketNode,
    BroadcastCollusion,
    BroadcastIgnore,
    DemandIgnore,
    DemandScale,
    MarketBehaviour,
    PriceIgnore,
    PriceScale,
)
from poso_sim.protocol.market_messages import (
    Demand,
    DemandMade,
    EquivocationProof,
    ForwardedDemand,
    HubExcluded,
    MarketEnded,
    Prices,
    PricesAdopted,
    PricesComputed,
    Respond,
    ResponseReady,
    Settled,
)
from poso_sim.sim import Network, Trace, run

from .log import RunLog
from .trading_schema import TradingScenario, hub_name

__all__ = ["TradingRunner", "TradingResult", "run_trading", "market_rule", "CachedResponder", "Responder",
           "StubResponder", "resolve_trading", "default_responder"]

log = logging.getLogger(__name__)

#: what the runner needs of a responder: `respond(hub_id, (gas, elec, heat)) -> (gas, elec, heat)`
Responder = Any
_TO_DELEGATE = (Demand, ForwardedDemand, EquivocationProof)


def _heat_sources(case: Any) -> tuple[float, tuple[float, ...]]:
    """(price, capacities per zone) of the case's zone heat sources."""
    hs = case.heat_sources
    if isinstance(hs, Mapping):
        return float(hs["price"]), tuple(float(c) for c in hs["capacities"])
    if hasattr(hs, "price"):
        caps = getattr(hs, "capacities", None) or getattr(hs, "capacity")
        return float(hs.price), tuple(float(c) for c in caps)
    price, caps = hs
    return float(price), tuple(float(c) for c in caps)


def market_rule(case: Any, hour: int, tolerance: float = 1e-3) -> MarketRule:
    """The price rule of `hour` from a trading case (tariff, grid cap, heat sources, initial prices)."""
    gas, elec = case.tariff(hour)
    price, caps = _heat_sources(case)
    g0, e0, h0 = case.initial_prices(hour)
    return MarketRule(gas_price=float(gas), elec_tariff=float(elec), grid_cap=float(case.grid_cap(hour)),
                      heat_price=price, heat_caps=caps, initial=(float(g0), float(e0)) + (float(h0),) * len(caps),
                      tolerance=tolerance)


class CachedResponder:
    """A responder with a memo of best responses by (hub, prices) for one run. `start()` (at every run's start)
    empties the memo and resets the responder's warm starts (`HubResponder.reset`): with the ``"previous"`` warm
    start the real best responses depend on the hub's previous answer, so a run is deterministic only if it starts
    from the same state. One run at a time uses a CachedResponder (`run_trading` makes one per run); the responder
    inside may serve several (the default `HubResponder`, warm-started from its anchors, answers as a function of
    hub and prices whoever else is asking)."""

    def __init__(self, responder: Responder, limit: int = 500_000) -> None:
        self.responder = responder
        self.memo: dict[tuple[int, tuple[float, float, float]], tuple[float, float, float]] = {}
        self.limit = limit
        self.calls = self.solved = 0

    def start(self) -> None:
        self.memo.clear()
        reset = getattr(self.responder, "reset", None)
        if reset is not None:
            reset()

    def respond(self, hub: int, prices: tuple[float, float, float]) -> tuple[float, float, float]:
        self.calls += 1
        key = (hub, tuple(float(p) for p in prices))
        hit = self.memo.get(key)
        if hit is None:
            self.solved += 1
            g, e, h = self.responder.respond(hub, key[1])
            hit = (float(g), float(e), float(h))
            if len(self.memo) >= self.limit:
                self.memo.clear()
            self.memo[key] = hit
        return hit


class StubResponder:
    """Best responses without the solver, for testing the protocol under faults (`poso-sim run --stub`, the
    safety sweep): each hub's round-1 demand (the case's `first_demand`) at the initial prices, its electricity
    and heat purchases falling by `slope` MW per unit of their price above the initial price, gas fixed. A pure
    function of the prices. The market's rules, messages and outcomes are those of real runs; the numbers are not
    the hubs' (docs/trading.md)."""

    def __init__(self, case: Any, hour: int = 12, slope: float = 2.0) -> None:
        _, self.e0, self.h0 = (float(x) for x in case.initial_prices(hour))
        self.slope = float(slope)
        self.first = {int(h): tuple(float(x) for x in v) for h, v in dict(case.first_demand).items()}

    def respond(self, hub: int, prices: tuple[float, float, float]) -> tuple[float, float, float]:
        g, e, q = self.first[hub]
        k = self.slope
        return (g, e - k * (prices[1] - self.e0), q - k * (prices[2] - self.h0))


@dataclass
class TradingResult:
    """What a market run produced; `log` is the run log every view is read from."""

    scenario: TradingScenario
    seed: int
    hubs: list[str]
    delegates: list[str]
    dishonest: list[str]
    zones: dict[str, int]
    log: RunLog
    messages: int
    messages_by_kind: dict[str, int]
    network: dict[str, Any]
    virtual_seconds: float
    wall_seconds: float
    trace_digest: str
    responses: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def honest_delegates(self) -> list[str]:
        return [d for d in self.delegates if d not in self.dishonest]

    @functools.cached_property
    def price_path(self) -> dict[str, list[tuple[float, ...]]]:
        """delegate -> [initial prices, prices after round 1, 2, ...] (gas, electricity, heat per zone)."""
        init = tuple(self.extra.get("initial", ()))
        out: dict[str, list[tuple[float, ...]]] = {d: [init] for d in self.delegates}
        for e in self.log.of(PricesComputed):
            out[e.node].append(tuple(e.item.prices))
        return out

    @property
    def path(self) -> list[tuple[float, ...]]:
        """The price path of the first honest delegate (the one the report shows)."""
        ds = self.honest_delegates or self.delegates
        return self.price_path[ds[0]]

    @functools.cached_property
    def adopted(self) -> dict[str, dict[int, tuple[float, float, float]]]:
        """hub -> round -> the prices it took (the majority triple after that round)."""
        out: dict[str, dict[int, tuple[float, float, float]]] = {h: {} for h in self.hubs}
        for e in self.log.of(PricesAdopted):
            out[e.node][e.item.round] = tuple(e.item.prices)  # type: ignore[assignment]
        return out

    @functools.cached_property
    def demands(self) -> dict[str, dict[int, tuple[float, float, float]]]:
        """hub -> round -> the demand it made (its best response)."""
        out: dict[str, dict[int, tuple[float, float, float]]] = {h: {} for h in self.hubs}
        for e in self.log.of(DemandMade):
            out[e.node][e.item.round] = tuple(e.item.demand)  # type: ignore[assignment]
        return out

    @functools.cached_property
    def exclusions(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for e in self.log.of(HubExcluded):
            a = e.item
            out.setdefault(e.node, []).append({"hub": a.hub, "round": a.round, "reason": a.reason,
                                               "evidence": a.evidence, "t": e.t})
        return out

    def excluded_by_honest(self) -> list[str]:
        """Hubs every honest delegate excluded."""
        sets = [{x["hub"] for x in self.exclusions.get(d, [])} for d in self.honest_delegates]
        common = set.intersection(*sets) if sets else set()
        return [h for h in self.hubs if h in common]

    @functools.cached_property
    def ended(self) -> dict[str, MarketEnded]:
        return {e.node: e.item for e in self.log.of(MarketEnded)}

    @functools.cached_property
    def settled(self) -> dict[str, Settled]:
        return {e.node: e.item for e in self.log.of(Settled)}

    @property
    def rounds(self) -> int:
        """Rounds the honest delegates ran (the largest round closed)."""
        ds = self.honest_delegates or self.delegates
        return max((len(self.price_path[d]) - 1 for d in ds), default=0)

    @property
    def converged(self) -> bool:
        ds = self.honest_delegates or self.delegates
        return bool(ds) and all(d in self.ended and self.ended[d].reason == "converged" for d in ds)

    def final_prices(self) -> dict[str, Any]:
        p = self.path[-1]
        return {"gas": p[0], "elec": p[1], "heat": list(p[2:])}

    def settlement(self) -> dict[str, dict[str, Any]]:
        """hub -> its last demand, the prices it settles at and its payment (gas, electricity and heat bought at
        those prices; negative = it is paid). A hub that did not settle is priced at the honest final prices."""
        final = self.path[-1]
        out: dict[str, dict[str, Any]] = {}
        for h in self.hubs:
            s = self.settled.get(h)
            if s is not None:
                prices, demand = tuple(s.prices), tuple(s.demand)
            else:
                made = self.demands.get(h) or {}
                demand = made[max(made)] if made else (0.0, 0.0, 0.0)
                prices = (final[0], final[1], final[1 + self.zones[h]])
            pay = sum(p * d for p, d in zip(prices, demand))
            out[h] = {"demand": list(demand), "prices": list(prices), "payment": pay, "settled": s is not None,
                      "round": None if s is None else s.round}
        return out

    def to_json(self) -> dict[str, Any]:
        ds = self.honest_delegates or self.delegates
        end = self.ended.get(ds[0]) if ds else None
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "case": self.scenario.case,
            "hour": self.scenario.hour,
            "signatures": self.scenario.signatures,
            "hubs": self.hubs,
            "delegates": self.delegates,
            "dishonest": self.dishonest,
            "rounds": self.rounds,
            "converged": self.converged,
            "end": None if end is None else end.reason,
            "final_prices": self.final_prices(),
            "settlement": self.settlement(),
            "excluded": self.excluded_by_honest(),
            "exclusions": {d: self.exclusions.get(d, []) for d in self.delegates},
            "messages": self.messages,
            "messages_by_kind": self.messages_by_kind,
            "network": self.network,
            "responses": self.responses,
            "virtual_seconds": self.virtual_seconds,
            "wall_seconds": self.wall_seconds,
            "trace_digest": self.trace_digest,
            "log_digest": self.log.digest(),
            **{k: v for k, v in self.extra.items() if k not in ("initial", "references")},
        }


def _behaviours(scn: TradingScenario, node: str, opts: Mapping[str, Any],
                signers: Mapping[str, Signer]) -> tuple[list[MarketBehaviour], list[MarketBehaviour]]:
    """(hub behaviours, delegate behaviours) of one node."""
    hub: list[MarketBehaviour] = []
    dlg: list[MarketBehaviour] = []

    def tg(key: str) -> list[str]:
        return scn.targets(node, key, opts[key])

    if "demand_ignore" in opts:
        hub.append(DemandIgnore(tg("demand_ignore")))
    if "demand_target" in opts:
        hub.append(DemandScale(tg("demand_target"), opts["demand_rate"]))
    if "price_ignore" in opts:
        dlg.append(PriceIgnore(tg("price_ignore")))
    if "price_target" in opts:
        dlg.append(PriceScale(tg("price_target"), opts["price_rate"]))
    if "broadcast_ignore" in opts:
        dlg.append(BroadcastIgnore(tg("broadcast_ignore")))
    if "broadcast_collusion" in opts:
        colluders = tg("broadcast_collusion")
        dlg.append(BroadcastCollusion(colluders, tg("broadcast_target"), opts["broadcast_rate"],
                                      {h: signers[h] for h in colluders}))
    return hub, dlg


class TradingRunner:
    """One market run (use `run_trading`)."""

    def __init__(self, scenario: TradingScenario, case: Any, responder: Responder, *, seed: int | None = None,
                 trace_events: Any = ("drop", "fault"), observers: Iterable[Callable[[Any], Any]] = (),
                 signature_cache: SignatureCache | None = None) -> None:
        self.scn, self.case = scenario, case
        self.responder = responder if isinstance(responder, CachedResponder) else CachedResponder(responder)
        self.seed = scenario.seed if seed is None else int(seed)
        self.trace = Trace(events=trace_events)
        self.log = RunLog(observers)
        self.sig_check = signature_cache.check if signature_cache is not None else check_signature
        self.hubs, self.delegates = scenario.hub_names, scenario.delegate_names
        self.rule = market_rule(case, scenario.hour, scenario.tolerance)
        self.zones = {hub_name(i): int(case.zone_of(i)) for i in scenario.hub_ids}
        self.by_kind: Counter[str] = Counter()
        self.timers: dict[tuple[str, Any], Any] = {}
        self.ended: set[str] = set()
        self.responses = 0
        self._done: asyncio.Future[None] | None = None
        self.end_time = 0.0
        honest = [d for d in self.delegates if d not in scenario.dishonest]
        self._watch = (honest or self.delegates)[0]   # whose rounds the progress records follow
        self._last_progress = -1.0

    def _build(self) -> None:
        scn = self.scn
        pairs = make_keys(self.hubs, b"poso-sim/trading/%d" % self.seed)
        keys = {n: kp.public for n, kp in pairs.items()} if scn.signatures else None
        signers = {n: Signer(pairs[n], enabled=scn.signatures) for n in self.hubs}
        common = dict(keys=keys, market=scn.case, signatures=scn.signatures, sig_check=self.sig_check)
        self.hub_m: dict[str, Any] = {}
        self.dlg_m: dict[str, Any] = {}
        opts_of = {scn.node_ref(k): v for k, v in scn.behaviours.items()}
        for h in self.hubs:
            hb, db = _behaviours(scn, h, opts_of.get(h, {}), signers)
            m: Any = MarketHub(h, delegates=self.delegates, zone=self.zones[h], initial=self.rule.hub_triple(self.rule.initial,
                               self.zones[h]), signer=signers[h], price_timeout=scn.round_timeout, **common)
            self.hub_m[h] = BehavingMarketNode(m, hb, signers[h]) if hb else m
            if h in self.delegates:
                d: Any = MarketDelegate(h, hubs=self.hubs, delegates=self.delegates, zones=self.zones,
                                        rule=self.rule, signer=signers[h], round_timeout=scn.round_timeout,
                                        max_rounds=scn.max_rounds, silent_rounds=scn.silent_rounds, **common)
                self.dlg_m[h] = BehavingMarketNode(d, db, signers[h]) if db else d
        self.net = Network(self.hubs, latency=scn.network.build_latency(), seed=self.seed,
                           faults=[f.build() for f in scn.network.faults], trace=self.trace)
        for h in self.hubs:
            node = self.net.node(h)
            node.on_message(functools.partial(self._deliver, h))
            node.on_crash(self._check_end)

    # ---- the host loop
    def _deliver(self, name: str, msg: Any) -> None:
        payload = msg.payload
        if isinstance(payload, _TO_DELEGATE):
            m = self.dlg_m.get(name)
            if m is None:
                self._log(name, Dropped("not a delegate", msg.src, message=payload.kind))
                return
            self._feed(name, m, MessageReceived(msg.src, payload))
        else:
            self._feed(name, self.hub_m[name], MessageReceived(msg.src, payload))

    def _feed(self, name: str, machine: Any, event: Any) -> None:
        for a in machine.handle(event):
            self._do(name, machine, a)

    def _do(self, name: str, machine: Any, a: Any) -> None:
        if isinstance(a, Send):
            msg = a.msg
            self.by_kind[msg.kind] += 1
            self.net.node(name).send(a.dst, msg, kind=msg.kind)
        elif isinstance(a, Note):
            self._log(name, a)
        elif isinstance(a, StartTimer):
            key = (name, a.timer_id)
            old = self.timers.pop(key, None)
            if old is not None:
                old.cancel()
            self.timers[key] = self.net.node(name).set_timer(a.delay_seconds, self._fire, name, machine, a.timer_id,
                                                            name=f"{a.timer_id[0]}:{a.timer_id[1]}")
        elif isinstance(a, CancelTimer):
            old = self.timers.pop((name, a.timer_id), None)
            if old is not None:
                old.cancel()
        elif isinstance(a, Respond):
            hub_id = self.scn.hub_ids[self.hubs.index(a.hub)]
            demand = self.responder.respond(hub_id, a.prices)
            self.responses += 1
            self.net.node(name).set_timer(self.scn.respond_time, self._feed, name, machine,
                                          ResponseReady(a.round, demand), name="respond")
        else:
            raise TypeError(f"{name}: the machine returned an unknown action {a!r}")

    def _fire(self, name: str, machine: Any, timer_id: Any) -> None:
        self.timers.pop((name, timer_id), None)
        self._feed(name, machine, TimerExpired(timer_id))

    def _log(self, name: str, item: Any) -> None:
        self.log.append(self.net.now, name, item)
        if name == self._watch and isinstance(item, (PricesComputed, MarketEnded)):
            self._progress(item)
        if isinstance(item, MarketEnded):
            self.ended.add(name)
            self._check_end()

    def _progress(self, item: Any) -> None:
        """A progress record per round (DEBUG, at most 5 a second) and one when the market ends (INFO): the
        round, the electricity price as the `objective`, the norm of the price change as the `violation`."""
        now = time.perf_counter()
        end = isinstance(item, MarketEnded)
        if not end and now - self._last_progress < 0.2:
            return
        self._last_progress = now
        prices = item.prices
        info = {"task": "market", "case": self.scn.name, "stage": "rounds", "iteration": item.round,
                "objective": prices[1], "final": end}
        if not end:
            info["violation"] = item.change
        log.log(logging.INFO if end else logging.DEBUG,
                "round %d: %s" % (item.round, item.reason if end else "gas %.2f, electricity %.3f, heat %s" % (
                    prices[0], prices[1], ", ".join(f"{h:.3f}" for h in prices[2:]))),
                extra={"poso_progress": info})

    def _check_end(self) -> None:
        fut = self._done
        if fut is None or fut.done():
            return
        if all(d in self.ended or self.net.node(d).crashed for d in self.delegates):
            fut.set_result(None)

    async def main(self) -> None:
        self.responder.start()
        self._build()
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        for h in self.hubs:
            if h in self.dlg_m:
                self._feed(h, self.dlg_m[h], Start(1))
        for h in self.hubs:
            self._feed(h, self.hub_m[h], Start(1))
        deadline = (self.scn.max_rounds + 2) * self.scn.round_timeout + 10.0
        try:
            await asyncio.wait_for(asyncio.shield(self._done), deadline)
        except TimeoutError:
            self.net.record("market_timeout", {"deadline": deadline})
        try:
            await asyncio.wait_for(self.net.idle(), max(self.scn.round_timeout, 1.0))
        except TimeoutError:
            pass
        for t in self.timers.values():
            t.cancel()
        self.end_time = loop.time()

    def result(self, wall: float) -> TradingResult:
        return TradingResult(
            scenario=self.scn, seed=self.seed, hubs=self.hubs, delegates=self.delegates,
            dishonest=self.scn.dishonest, zones=self.zones, log=self.log, messages=self.net.sent,
            messages_by_kind=dict(sorted(self.by_kind.items())), network=self.net.stats(),
            virtual_seconds=self.end_time, wall_seconds=wall, trace_digest=self.trace.digest(),
            responses=self.responses, extra={"initial": list(self.rule.initial), "references": {
                1: self.rule.elec_tariff, **{2 + z: self.rule.heat_price for z in range(self.rule.zones)}}},
        )


_RESPONDERS: dict[tuple[str, int], Any] = {}
_RESPONDERS_LOCK = threading.Lock()


def default_responder(case: Any, case_name: str, hour: int) -> CachedResponder:
    """A run's memo of best responses of `case` at `hour`, around the process's `HubResponder` of that case and
    hour (built once, by the first caller, while any other waits: its compiled hub problems and anchors are shared
    by every run; the responder lets one solve of a hub run at a time). Each call gives a memo of its own."""
    key = (case_name, hour)
    with _RESPONDERS_LOCK:
        r = _RESPONDERS.get(key)
        if r is None:
            # the hub models (Pyomo, CasADi) are loaded only when a market runs
            from poso_sim.solvers.trading import HubResponder

            r = _RESPONDERS[key] = HubResponder(case, hour=hour)
    return CachedResponder(r)


def load_case(name: str) -> Any:
    # the trading case module is needed only when a market runs
    from poso_sim.cases.trading import load_trading_case

    return load_trading_case(name)


def run_trading(scenario: TradingScenario | str, *, case: Any = None, responder: Responder | str | None = None,
                seed: int | None = None, trace_events: Any = ("drop", "fault"),
                observers: Iterable[Callable[[Any], Any]] = (),
                signature_cache: SignatureCache | None = None, trace_path: str | None = None) -> TradingResult:
    """Run a trading scenario (a TradingScenario, a packaged name such as ``trading-12`` or
    ``trading-12:<variant>``, or a file) in virtual time. `case`/`responder` default to the scenario's case and
    the process's memoised `HubResponder`."""
    scn = resolve_trading(scenario)
    if case is None:
        case = load_case(scn.case)
    if responder is None or responder == "real":
        responder = default_responder(case, scn.case, scn.hour)
    elif responder == "stub":
        responder = CachedResponder(StubResponder(case, scn.hour))
    if signature_cache is None:  # one check per distinct signature: each demand reaches every delegate 1 + D - 1 times
        signature_cache = SignatureCache()
    runner = TradingRunner(scn, case, responder, seed=seed, trace_events=trace_events, observers=observers,
                           signature_cache=signature_cache)
    t0 = time.perf_counter()
    run(runner.main())
    wall = time.perf_counter() - t0
    if trace_path:
        runner.trace.to_jsonl(trace_path)
    return runner.result(wall)


def resolve_trading(spec: TradingScenario | str) -> TradingScenario:
    if isinstance(spec, TradingScenario):
        return spec
    from .model import resolve_scenario

    scn = resolve_scenario(spec)
    if not isinstance(scn, TradingScenario):
        raise ScenarioError(f"{spec}: not a trading scenario (it has no `hubs:`)")
    return scn
