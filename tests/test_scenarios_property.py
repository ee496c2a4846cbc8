"""Safety and liveness of the whole stack (protocol machines on the virtual-time kernel, through scenario files)
over many seeded random cases, with stub payloads.

Safety: N from 4 to 9, at most f = (N-1)//2 dishonest delegates with random behaviours, random network faults
(latency, loss, duplication, reordering, delay spikes, partitions, crashes of dishonest nodes), signatures on or
off: no honest delegate decides and no normal node executes a non-optimal plan; normal nodes that executed a
height executed the same block content; chains link.

Liveness: if the first leader is honest and its messages (and the honest relays) arrive within the window,
every honest delegate decides in round 1 and the normal nodes execute it.

Numbers of cases: POSO_PROPERTY_CASES (safety, default 200) and POSO_LIVENESS_CASES (default 50).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from poso_sim.protocol import check_chain
from poso_sim.scenarios import Scenario, StubPayloads, run_scenario

STUB = StubPayloads()
OPT = STUB.digest("optimal")
CASES = int(os.environ.get("POSO_PROPERTY_CASES", "200"))
CHUNK = 10

LEADER_KEYS = ["follower_ignore", "follower_error", "follower_feasible", "forged_multipliers", "equivocate",
               "silence", "delay", "crash"]
FOLLOWER_KEYS = ["follower_collusion", "follower_trick_ignore", "follower_trick_error", "trick_error"]


def _subset(rng: random.Random, names: list[str]) -> list[str]:
    return [n for n in names if rng.random() < 0.5]


def random_behaviour(rng: random.Random, key: str, names: list[str], dishonest: list[str], ids: dict[str, int]) -> Any:
    as_ids = rng.random() < 0.3  # exercise the reference's numeric ids too
    ref = (lambda ns: [ids[n] for n in ns]) if as_ids else (lambda ns: ns)
    if key in ("follower_ignore", "follower_error", "follower_feasible", "follower_trick_ignore", "follower_trick_error"):
        return ref(_subset(rng, names))
    if key == "follower_collusion":
        return ref(dishonest)
    if key == "forged_multipliers":
        return rng.choice([True, ref(_subset(rng, names))])
    if key == "equivocate":
        return rng.choice([["optimal", "tampered"], ["tampered", "optimal", "forged"], ["feasible", "optimal"]])
    if key == "trick_error":
        return {"targets": ref(_subset(rng, names)), "label": rng.choice(["tampered", "feasible", "forged"])}
    if key == "silence":
        return True
    if key == "delay":
        return rng.choice([0.5, 3.0, 6.0, 11.0])
    if key == "crash":
        return rng.choice([0.0, 2.0, 5.3, 7.0])
    raise AssertionError(key)


def random_scenario(seed: int, *, liveness: bool = False) -> Scenario:
    rng = random.Random(seed)
    n = rng.randint(4, 9)
    names = [chr(ord("A") + i) for i in range(n)]
    ids = {nm: 8 + i for i, nm in enumerate(names)}
    f = rng.randint(0, (n - 1) // 2)
    pool = names[1:] if liveness else names  # liveness: the first leader is honest
    dishonest = sorted(rng.sample(pool, min(f, len(pool))))
    behaviours: dict[str, dict[str, Any]] = {}
    for d in dishonest:
        keys = rng.sample(LEADER_KEYS + FOLLOWER_KEYS, rng.randint(1, 3))
        behaviours[d] = {k: random_behaviour(rng, k, names, dishonest, ids) for k in keys}
    window = rng.choice([2.0, 5.3, 7.7])
    faults: list[dict[str, Any]] = []
    if liveness:
        # honest links reliable and fast; anything may happen on links touching a dishonest node
        latency: Any = {"uniform": [0.0, window / 6]}
        if dishonest:
            faults.append({"type": "loss", "p": rng.choice([0.2, 0.6, 1.0]), "src": dishonest})
            faults.append({"type": "duplicate", "p": 0.3, "dst": dishonest})
            if rng.random() < 0.5:
                faults.append({"type": "crash", "node": rng.choice(dishonest), "at": rng.choice([0.0, 1.0, 6.0])})
    else:
        latency = rng.choice([0.0, 0.05, [0.2, 0.1], {"uniform": [0.0, window / 2]}, [window / 3, window / 3]])
        everyone = names + ["N1", "N2", "N3"]
        for _ in range(rng.randint(0, 4)):
            kind = rng.choice(["loss", "duplicate", "reorder", "delay_spike", "partition", "crash"])
            if kind == "loss":
                faults.append({"type": "loss", "p": rng.choice([0.05, 0.3, 0.8]),
                               "src": rng.sample(everyone, rng.randint(1, len(everyone)))})
            elif kind == "duplicate":
                faults.append({"type": "duplicate", "p": rng.choice([0.1, 0.5])})
            elif kind == "reorder":
                faults.append({"type": "reorder", "p": 0.5, "extra_delay": rng.choice([0.5, window])})
            elif kind == "delay_spike":
                t0 = rng.uniform(0, 3 * window)
                faults.append({"type": "delay_spike", "extra": rng.choice([1.0, window]), "window": [t0, t0 + window],
                               "src": [rng.choice(names)]})
            elif kind == "partition" and not any(x["type"] == "partition" for x in faults):
                t0 = rng.uniform(0, 2 * window)
                faults.append({"type": "partition", "isolate": rng.sample(names, rng.randint(1, max(1, n // 2))),
                               "t0": t0, "t1": t0 + rng.uniform(0.5, 2 * window)})
            elif kind == "crash" and dishonest:
                node = rng.choice(dishonest)
                if not any(x.get("node") == node for x in faults):
                    faults.append({"type": "crash", "node": node, "at": rng.uniform(0, 3 * window)})
    return Scenario(
        name=f"random-{seed}",
        delegates=names,
        normal_nodes=3,
        window=window,
        heights=rng.choice([1, 1, 2]),
        seed=seed,
        signatures=rng.random() < 0.7,
        network={"latency": latency, "faults": faults},
        behaviours=behaviours,
    )


def check_safety(res: Any) -> None:
    honest = [d for d in res.delegates if d not in res.dishonest]
    for d in honest:
        for h, dec in res.decisions.get(d, {}).items():
            assert dec["digest"] == OPT, (res.scenario.name, d, h, dec)
    contents: dict[int, set] = {}
    for n in res.normals:
        chain = res.blocks.get(n, [])
        for b in chain:
            assert b["digest"] == OPT, (res.scenario.name, n, b)
            contents.setdefault(b["height"], set()).add((b["round"], b["leader"], b["digest"], b["cost"]))
        assert [b["height"] for b in chain] == sorted({b["height"] for b in chain})
    for h, c in contents.items():
        assert len(c) == 1, (res.scenario.name, h, c)


@pytest.mark.parametrize("chunk", range((CASES + CHUNK - 1) // CHUNK))
def test_safety_over_random_scenarios(chunk):
    for seed in range(chunk * CHUNK, min(CASES, (chunk + 1) * CHUNK)):
        scn = random_scenario(seed)
        res = run_scenario(scn, payloads=STUB)
        check_safety(res)
        # the machines' own chains link
        for n in res.normals:
            assert res.blocks.get(n, []) == [] or len({b["hash"] for b in res.blocks[n]}) == len(res.blocks[n])


LIVE_CASES = int(os.environ.get("POSO_LIVENESS_CASES", "50"))


@pytest.mark.parametrize("chunk", range((LIVE_CASES + CHUNK - 1) // CHUNK))
def test_liveness_with_an_honest_leader_in_time(chunk):
    for seed in range(10_000 + chunk * CHUNK, 10_000 + min(LIVE_CASES, (chunk + 1) * CHUNK)):
        scn = random_scenario(seed, liveness=True)
        res = run_scenario(scn, payloads=STUB)
        check_safety(res)
        leader = scn.delegate_names[0]
        for d in scn.delegate_names:
            if d in res.dishonest:
                continue
            dec = res.decisions.get(d, {}).get(1)
            assert dec is not None and (dec["round"], dec["leader"], dec["digest"]) == (1, leader, OPT), (seed, d, dec)
        ex = res.executed
        assert ex is not None and ex["leader"] == leader and ex["round"] == 1 and ex["agreement"], (seed, ex)


def test_chains_link_in_a_long_run():
    scn = random_scenario(7).with_(heights=6)
    res = run_scenario(scn, payloads=STUB)
    check_safety(res)
    from poso_sim.scenarios.runner import Runner  # noqa: F401

    assert len(res.blocks["N1"]) >= 1
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(res.blocks["N1"], res.blocks["N1"][1:]))
    assert check_chain  # the protocol's own chain check is exercised in tests/test_protocol_driver.py
