"""A small self-contained scenario exercising every part of the kernel (used by tests and as an example).

``python -m poso_sim.sim.demo --seed 3`` prints the trace digest and the statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from poso_sim.sim.clock import run
from poso_sim.sim.faults import Crash, DelaySpike, Duplicate, Filter, Loss, Partition, Reorder
from poso_sim.sim.latency import LogNormal, RegionTable, Uniform
from poso_sim.sim.network import Message, Network
from poso_sim.sim.rng import Stream
from poso_sim.sim.trace import Trace

__all__ = ["demo_network", "demo_scenario"]

NODES = [f"n{i:02d}" for i in range(12)]


def demo_network(seed: int, trace: Trace | None = None) -> Network:
    regions = {n: ("eu", "us", "asia")[i % 3] for i, n in enumerate(NODES)}
    latency = RegionTable(
        regions,
        {("eu", "eu"): Uniform(0.005, 0.02), ("us", "us"): (0.015, 0.005), ("asia", "asia"): 0.01,
         ("eu", "us"): LogNormal(0.08, 0.3), ("eu", "asia"): (0.15, 0.04), ("us", "asia"): (0.12, 0.03)},
    )
    faults = [
        Loss(0.05),
        Duplicate(0.02),
        Reorder(0.05, 0.2),
        DelaySpike(0.5, window=(20.0, 25.0), src={"n01", "n02"}),
        Partition([{"n00", "n01", "n02"}, {"n03", "n04"}], 30.0, 40.0),
        Crash("n05", 10.0, 18.0),
        Filter(lambda s, d, p: p.get("round") == 7, action="ignore", src="n06", name="drop7"),
        Filter(lambda s, d, p: p.get("round") == 9, action="error", replace=lambda s, d, p: {**p, "bad": True},
               dst="n07", name="corrupt9"),
    ]
    return Network(NODES, latency=latency, seed=seed, faults=faults, trace=trace)


async def _scenario(seed: int, rounds: int) -> Network:
    net = demo_network(seed)
    rng = Stream(seed, "demo", "traffic")
    done = asyncio.Event()
    counts = {n: 0 for n in NODES}

    def make_handler(name: str):
        def handler(msg: Message) -> None:
            counts[name] += 1
            if msg.kind == "ping" and rng.random() < 0.5:
                net.node(name).send(msg.src, {"round": msg.payload["round"]}, kind="pong", size=64)
        return handler

    for n in NODES[:8]:
        net.node(n).on_message(make_handler(n))

    async def listener(name: str) -> None:  # inbox-based nodes
        node = net.node(name)
        while not done.is_set():
            try:
                msg = await node.recv(timeout=5.0)
            except TimeoutError:
                continue
            node.record("got", {"from": msg.src, "kind": msg.kind})

    tasks = [asyncio.ensure_future(listener(n)) for n in NODES[8:]]
    for r in range(rounds):
        src = NODES[int(rng.random() * len(NODES))]
        net.node(src).broadcast({"round": r}, kind="ping", size=128, summary=f"round {r}")
        net.node(NODES[r % len(NODES)]).set_timer(1.0, lambda: None, name=f"tick{r}")
        await asyncio.sleep(1.0 + rng.random())
    await net.idle()
    done.set()
    await asyncio.gather(*tasks)
    net.record("end", {"counts": counts})
    return net


def demo_scenario(seed: int = 1, rounds: int = 40) -> Network:
    """Run the demo scenario in virtual time; returns the finished network (with its trace)."""
    return run(_scenario(seed, rounds))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args(argv)
    net = demo_scenario(args.seed, args.rounds)
    print(json.dumps({"digest": net.trace.digest(), "records": len(net.trace), **net.stats()}, sort_keys=True))


if __name__ == "__main__":
    main()
