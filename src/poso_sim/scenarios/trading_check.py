"""The market's safety checker and random dishonest assignments (the trading sweep; docs/trading.md).

Safety claim: while dishonest delegates are a minority, no honest hub acts on prices off the honest path by more
than the end tolerance. The *honest path* of a run is what its honest delegates computed round by round (they
must agree with each other); when no hub lies or colludes it is also the honest run's path, round by round.
An *honest hub* carries no hub key (`demand_*`) and colludes with no delegate (`broadcast_collusion`).
"""

from __future__ import annotations

import math
import random
from typing import Any

from poso_sim.protocol.market_messages import PricesAdopted

from .trading_runner import TradingResult
from .trading_schema import TradingScenario

__all__ = ["honest_hubs", "check_market", "random_assignment", "CHECK_FIELDS"]

CHECK_FIELDS = ("safe", "agreement", "on_reference", "violations", "max_deviation", "adoptions", "rounds",
                "converged", "excluded", "dishonest_delegates", "dishonest_hubs")


def honest_hubs(scn: TradingScenario) -> list[str]:
    bad: set[str] = set()
    for key, opts in scn.behaviours.items():
        node = scn.node_ref(key)
        if any(k.startswith("demand_") for k in opts):
            bad.add(node)
        if "broadcast_collusion" in opts:
            bad.update(scn.targets(node, "broadcast_collusion", opts["broadcast_collusion"]))
    return [h for h in scn.hub_names if h not in bad]


def _dishonest_delegates(scn: TradingScenario) -> list[str]:
    out = set()
    for key, opts in scn.behaviours.items():
        if any(not k.startswith("demand_") for k in opts):
            out.add(scn.node_ref(key))
    return [d for d in scn.delegate_names if d in out]


def _gap(a: Any, b: Any) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)))


def check_market(res: TradingResult, reference: TradingResult | None = None) -> dict[str, Any]:
    """The checker's verdict on one run (`reference`: the honest run of the same market, compared with when no
    hub lies). `safe`: honest delegates agree every round and every honest hub took, every round, prices within
    the tolerance of the honest path (and of the reference's, when it applies)."""
    scn = res.scenario
    tol = scn.tolerance
    bad_dlg = _dishonest_delegates(scn)
    honest_d = [d for d in res.delegates if d not in bad_dlg]
    paths = [res.price_path[d] for d in honest_d]
    agreement = all(p == paths[0] for p in paths[1:]) if paths else True
    path = paths[0] if paths else []
    hubs = honest_hubs(scn)
    ref_path = reference.path if reference is not None and len(hubs) == len(scn.hub_names) else None
    violations, worst, adoptions, on_ref = 0, 0.0, 0, ref_path is not None
    for e in res.log.of(PricesAdopted):
        if e.node not in hubs:
            continue
        a: PricesAdopted = e.item
        adoptions += 1
        z = res.zones[e.node]
        want = path[a.round] if a.round < len(path) else None
        dev = math.inf if want is None else _gap(a.prices, (want[0], want[1], want[1 + z]))
        if ref_path is not None:
            r = ref_path[a.round] if a.round < len(ref_path) else None
            rdev = math.inf if r is None else _gap(a.prices, (r[0], r[1], r[1 + z]))
            on_ref = on_ref and rdev <= tol
            dev = max(dev, rdev)
        worst = max(worst, dev)
        violations += dev > tol
    return {
        "safe": agreement and violations == 0,
        "agreement": agreement,
        "on_reference": on_ref if ref_path is not None else None,
        "violations": violations,
        "max_deviation": worst,
        "adoptions": adoptions,
        "rounds": res.rounds,
        "converged": res.converged,
        "excluded": res.excluded_by_honest(),
        "dishonest_delegates": bad_dlg,
        "dishonest_hubs": [h for h in scn.hub_names if h not in hubs],
    }


def _subset(rng: random.Random, pool: list[str], owner: str) -> Any:
    r = rng.random()
    if r < 0.2:
        return "all"
    if r < 0.4:
        return "others"
    k = rng.randint(1, len(pool))
    return [int(x[1:]) for x in sorted(rng.sample(pool, k), key=pool.index)]


def random_assignment(scn: TradingScenario, seed: int, *, hub_liars: bool = True) -> TradingScenario:
    """A random dishonest assignment on `scn`'s market: a minority of its delegates (0 .. (D-1)//2) with one to
    three delegate keys each, and (if `hub_liars`) up to two hubs with hub keys or colluding with a liar; at least
    one node is dishonest."""
    rng = random.Random(seed)
    dlg, hubs = scn.delegate_names, scn.hub_names
    f = rng.randint(0, (len(dlg) - 1) // 2)
    beh: dict[str, dict[str, Any]] = {}
    for d in rng.sample(dlg, f):
        opts: dict[str, Any] = {}
        for key in rng.sample(["price_ignore", "price_target", "broadcast_ignore", "broadcast_collusion"],
                              rng.randint(1, 3)):
            if key == "price_ignore":
                opts[key] = _subset(rng, hubs, d)
            elif key == "price_target":
                opts[key], opts["price_rate"] = _subset(rng, hubs, d), round(rng.uniform(0.5, 2.0), 3)
            elif key == "broadcast_ignore":
                opts[key] = _subset(rng, dlg, d)
            elif hub_liars:
                opts[key] = [int(rng.choice(hubs)[1:])]
                opts["broadcast_target"] = _subset(rng, dlg, d)
                opts["broadcast_rate"] = round(rng.uniform(0.5, 2.0), 3)
        beh[d[1:]] = opts
    if hub_liars:
        for h in rng.sample(hubs, rng.randint(0, min(2, len(hubs)))):
            opts = beh.setdefault(h[1:], {})
            if rng.random() < 0.5:
                opts["demand_ignore"] = _subset(rng, dlg, h)
            else:
                opts["demand_target"], opts["demand_rate"] = _subset(rng, dlg, h), round(rng.uniform(0.5, 2.0), 3)
    beh = {k: v for k, v in beh.items() if v}
    if not beh:  # an assignment with nobody dishonest is not one: draw again (deterministically)
        return random_assignment(scn, seed + 1_000_003, hub_liars=hub_liars).with_(name=f"{scn.name}-random-{seed}")
    return scn.with_(behaviours=beh, name=f"{scn.name}-random-{seed}", variants={}, variant=None)
