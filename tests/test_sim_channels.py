"""Channels with faults against a reference written from the documented rules: every draw comes from the stream
mix64(mix64(source key, destination key), purpose key) of its channel and purpose, the faults act in the fixed
order, and the deliveries come in the order of (time, push). The network keeps its channels' stream states as
integers derived in bulk and draws inline; the reference uses one `Stream` object per channel and purpose, as
the kernel once did, over many seeds, fault sets, latency models and network sizes."""

import asyncio
import hashlib
import json
import random

import pytest

from poso_sim.sim import (
    Constant,
    Crash,
    DelaySpike,
    Duplicate,
    Filter,
    LogNormal,
    Loss,
    Network,
    Partition,
    RegionTable,
    Reorder,
    Trace,
    Uniform,
    run,
)
from poso_sim.sim.rng import Stream, derive_seed, derive_seeds, mix64


def _key(*labels):
    """The documented derivation: the first 8 bytes of SHA-256 over the compact, ASCII JSON array of the labels."""
    text = json.dumps(list(labels), separators=(",", ":"), ensure_ascii=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def test_derive_seed_is_the_hash_of_the_json_text():
    odd = ['a"b\\c', "\n\t\x00\x7f", "\u00e9\u4e2d\U0001f600", "", "channel-src"]
    for seed in (0, 1, 2**63 + 5, -3):
        for labels in [("channel-src", n) for n in odd] + [(7, -2**70, "x"), (True, None, 2.5, [1, "a"])]:
            assert derive_seed(seed, *labels) == _key(int(seed), *labels), labels
        assert derive_seeds(seed, "channel-dst", odd + [3, False]) == [
            _key(seed, "channel-dst", n) for n in odd + [3, False]]
        assert derive_seeds(seed, 4, odd) == [_key(seed, 4, n) for n in odd]


def _match(s, d, p):
    return p % 5 == 0


def _replace(s, d, p):
    return p + 100_000


def _faults(rnd, names):
    """A random fault list: channel faults (some restricted to sources or destinations, some windowed),
    partitions and crashes."""

    def window():
        if rnd.random() < 0.5:
            return None
        t0 = rnd.uniform(0, 3)
        return (t0, t0 + rnd.uniform(0.5, 3))

    def subset():
        return rnd.sample(names, rnd.randint(1, max(1, len(names) // 2)))

    def where():
        r = rnd.random()
        return {} if r < 0.6 else {"src": subset()} if r < 0.8 else {"dst": subset()}

    out = []
    for _ in range(rnd.randint(1, 6)):
        kind = rnd.choice(["loss", "dup", "reorder", "spike", "spike1", "filter", "error", "partition", "crash"])
        if kind == "loss":
            out.append(Loss(rnd.uniform(0.05, 0.5), window=window(), **where()))
        elif kind == "dup":
            out.append(Duplicate(rnd.uniform(0.05, 0.5), window=window(), **where()))
        elif kind == "reorder":
            out.append(Reorder(rnd.uniform(0.1, 0.6), rnd.uniform(0.01, 0.5), window=window(), **where()))
        elif kind == "spike":
            out.append(DelaySpike(rnd.uniform(0.01, 0.3), window=window(), p=rnd.uniform(0.1, 0.9), **where()))
        elif kind == "spike1":
            out.append(DelaySpike(rnd.uniform(0.01, 0.3), window=window(), **where()))
        elif kind == "filter":
            out.append(Filter(_match, window=window(), **where()))
        elif kind == "error":
            out.append(Filter(_match, action="error", replace=_replace, window=window(), **where()))
        elif kind == "partition" and not any(isinstance(f, Partition) for f in out):
            t0 = rnd.uniform(0, 3)
            out.append(Partition(isolate=subset(), t0=t0, t1=t0 + rnd.uniform(0.2, 2)))
        elif kind == "crash":
            node = rnd.choice(names)
            if not any(isinstance(f, Crash) and f.node == node for f in out):
                at = rnd.uniform(0, 4)
                out.append(Crash(node, at, at + rnd.uniform(0.2, 2) if rnd.random() < 0.7 else None))
    return out


def _latency(rnd, names):
    kind = rnd.choice(["constant", "uniform", "lognormal", "regions"])
    if kind == "constant":
        return Constant(rnd.uniform(0.01, 0.2))
    if kind == "uniform":
        return Uniform(0.01, rnd.uniform(0.02, 0.3))
    if kind == "lognormal":
        return LogNormal(rnd.uniform(0.02, 0.1), rnd.uniform(0.1, 0.8))
    regions = {n: "ab"[i % 2] for i, n in enumerate(names)}
    return RegionTable(regions, {("a", "a"): 0.02, ("a", "b"): (0.08, 0.03), ("b", "b"): Uniform(0.01, 0.05)})


def _schedule(rnd, names, sends):
    """(time, source, destinations, one call to send_many or not), at distinct times in [0, 5)."""
    times = sorted(rnd.sample(range(1, 50_000), sends))
    out = []
    for t in times:
        src = rnd.choice(names)
        dsts = [d for d in names if d != src and rnd.random() < 0.7] or [names[0] if src != names[0] else names[-1]]
        out.append((t / 10_000, src, dsts, rnd.random() < 0.6))
    return out


def _simulate(names, latency, seed, faults, schedule):
    """The kernel: (records of the trace, payloads delivered by message id and note)."""

    async def main():
        net = Network(names, latency=latency, seed=seed, faults=faults, trace=Trace())
        got = []
        for n in names:
            net.node(n).on_message(lambda m: got.append((m.msg_id, m.note, m.payload)))
        def go(src, dsts, many):
            node = net.node(src)
            if many:
                node.send_many(dsts, net._next_id)  # the payload: the first message id of the call
            else:
                for d in dsts:
                    node.send(d, net._next_id)

        loop = asyncio.get_running_loop()
        for t, src, dsts, many in schedule:  # at exactly t (the virtual loop lands on a timer's time)
            loop.call_at(t, go, src, dsts, many)
        await asyncio.sleep(5.0)
        await net.idle()
        return list(net.trace), got

    return run(main())


def _reference(names, latency, seed, faults, schedule):
    """The documented rules with one `Stream` per channel and purpose: (the send-time outcome of each message id,
    the arrivals in delivery order, each (time, message id, note, payload, drop reason or None))."""
    src_key = {n: _key(seed, "channel-src", n) for n in names}
    dst_key = {n: _key(seed, "channel-dst", n) for n in names}
    purpose = {"latency": _key(seed, "purpose", "latency")}
    for f in faults:
        purpose[f.name] = _key(seed, "purpose", "fault", f.name)
    streams = {}

    def stream(s, d, name):
        key = (s, d, name)
        if key not in streams:
            streams[key] = Stream.from_state(mix64(mix64(src_key[s], dst_key[d]), purpose[name]))
        return streams[key]

    def down(node, t):
        return any(isinstance(f, Crash) and f.node == node and f.window[0] <= t < f.window[1] for f in faults)

    def cut(s, d, t):
        for f in faults:
            if isinstance(f, Partition) and f.cuts(s, d) and f.t0 <= t < f.t1:
                return "partition:" + f.name
        return None

    def active(f, kind, s, d, t):
        return isinstance(f, kind) and f.applies(s, d) and f.window[0] <= t < f.window[1]

    outcome, pushes, msg_id = {}, [], 0
    for t, src, dsts, many in schedule:
        first = msg_id
        for d in dsts:
            mid, msg_id = msg_id, msg_id + 1
            payload = first if many else mid
            if down(src, t):
                outcome[mid] = "crash:" + src
                continue
            note, reason = None, None
            for f in faults:
                if active(f, Filter, src, d, t) and f.match(src, d, payload):
                    if f.action == "ignore":
                        reason = "filter:" + f.name
                        break
                    payload = f.replace(src, d, payload)
                    note = "filter:" + f.name if note is None else note + ",filter:" + f.name
            reason = reason or cut(src, d, t)
            for f in faults:
                if reason is None and active(f, Loss, src, d, t) and stream(src, d, f.name).random() < f.p:
                    reason = "loss:" + f.name
            if reason is not None:
                outcome[mid] = reason
                continue
            sample = latency.bind(src, d)
            delay = sample(stream(src, d, "latency"))
            for f in faults:
                if active(f, DelaySpike, src, d, t) and (f.p >= 1.0 or stream(src, d, f.name).random() < f.p):
                    delay += f.extra
            for f in faults:
                if active(f, Reorder, src, d, t) and stream(src, d, f.name).random() < f.p:
                    delay += f.extra_delay * stream(src, d, f.name).random()
            for f in faults:
                if active(f, Duplicate, src, d, t) and stream(src, d, f.name).random() < f.p:
                    copy = "duplicate" if note is None else note + ",duplicate"
                    pushes.append((t + sample(stream(src, d, "latency")), len(pushes), mid, src, d, copy, payload))
            pushes.append((t + delay, len(pushes), mid, src, d, note, payload))
            outcome[mid] = None
    arrivals = []
    for when, _, mid, src, d, note, payload in sorted(pushes, key=lambda p: (p[0], p[1])):
        why = ("crash:" + d) if down(d, when) else cut(src, d, when)
        arrivals.append((when, mid, note, payload, why))
    return outcome, arrivals


def _case(seed):
    """40 nodes (every tenth seed): stream states derived per source row, no outputs drawn in advance; 3 nodes
    and 150 sends (every tenth but one): channels that use up the outputs drawn in advance and go on drawing."""
    rnd = random.Random(seed)
    n = 40 if seed % 10 == 9 else 3 if seed % 10 == 8 else rnd.randint(3, 8)
    names = [f"n{i}" for i in range(n)]
    faults = _faults(rnd, names)
    sends = 6 if n > 8 else 150 if seed % 10 == 8 else 40
    return names, _latency(rnd, names), rnd.randrange(2**32), faults, _schedule(rnd, names, sends)


@pytest.mark.parametrize("seed", range(60))
def test_channels_match_the_reference(seed):
    names, latency, net_seed, faults, schedule = _case(seed)
    records, got = _simulate(names, latency, net_seed, faults, schedule)
    outcome, arrivals = _reference(names, latency, net_seed, faults, schedule)
    assert [r["msg_id"] for r in records if r["ev"] == "send"] == list(range(len(outcome)))
    # a drop at send time is the record right after its send (same id, same time); other drops are arrivals
    at_send = set()
    for before, r in zip(records, records[1:]):
        if r["ev"] == "drop" and before["ev"] == "send" and (before["msg_id"], before["t"]) == (r["msg_id"], r["t"]):
            at_send.add(r["seq"])
    assert {r["msg_id"]: r["reason"] for r in records if r["seq"] in at_send} == {
        m: why for m, why in outcome.items() if why is not None}
    # the arrivals, in the order the network took them from its queue: deliveries and drops at arrival
    taken = [r for r in records if r["ev"] == "deliver" or (r["ev"] == "drop" and r["seq"] not in at_send)]
    assert [(r["t"], r["msg_id"], r["reason"] if r["ev"] == "deliver" else None,
             r["reason"] if r["ev"] == "drop" else None) for r in taken] == [
        (when, mid, None if why else note, why) for when, mid, note, _, why in arrivals]
    assert got == [(mid, note, payload) for _, mid, note, payload, why in arrivals if why is None]
    assert len(arrivals) > 0


def test_threshold_decides_as_the_uniform_does():
    """A loss, reorder or duplicate compares the draw's 64-bit output with `_threshold(p)`: the same decision as
    comparing its uniform ``(z >> 11) * 2**-53`` with p, at the boundary of every p tried."""
    import math

    from poso_sim.sim.network import _threshold

    rnd = random.Random(1)
    ps = [0.0, 1.0, 0.5, 0.05, 1e-300, 5e-324, 1 - 2**-53, 2**-53, 3 * 2**-54] + [rnd.random() for _ in range(500)]
    for p in ps:
        cap, m0 = _threshold(p), math.floor(p * 2**53)
        for m in (m0 - 1, m0, m0 + 1):
            for low in (0, 1, 2**11 - 1):
                z = (m << 11) | low
                if 0 <= m < 2**53:
                    assert ((z >> 11) * 2.0**-53 < p) == (z < cap), (p, m, low)


def test_lognormal_draw_is_the_sampler_on_the_stream():
    """`LogNormal.draw` on an integer state, with none, one or several outputs drawn in advance, gives the bound
    sampler's numbers on a `Stream` and leaves the state where the stream is."""
    from poso_sim.sim.rng import output_at

    rnd = random.Random(3)
    for model in (LogNormal(0.05, 0.6), LogNormal(1.0, 0.0), LogNormal.from_mean_sd(0.1, 0.05)):
        sample = model.bind("a", "b")
        for _ in range(100):
            state, ahead = rnd.randrange(2**64), rnd.choice([0, 1, 2, 5])
            stream, st = Stream.from_state(state), [7, state]
            outputs = [output_at(st, 1) for _ in range(ahead)]  # st[1] is now past them
            it = iter(outputs)
            for _ in range(4):
                assert model.draw(it, st, 1) == sample(stream)
            assert st == [7, stream.state] or (model.sigma == 0 and st[1] == output_state(state, ahead))


def output_state(state, draws):
    return (state + draws * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF


def test_output_inplace_is_splitmix64s_output_function():
    """The in-place finaliser of the outputs drawn in advance gives `mix64`'s and `Stream.random`'s numbers."""
    import numpy as np

    from poso_sim.sim.rng import _GOLDEN, _MASK, Stream, mix64, output_inplace

    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**64, size=300, dtype=np.uint64)
    b = rng.integers(0, 2**64, size=300, dtype=np.uint64)
    a[:3] = [0, 2**64 - 1, 2**63]
    got = output_inplace((a ^ b) + np.uint64(_GOLDEN))
    assert [int(x) for x in got] == [mix64(int(x), int(y)) for x, y in zip(a, b)]
    states = a.copy()
    outputs = output_inplace(states + np.uint64(_GOLDEN))
    for s, z in zip(a[:50], outputs[:50]):
        st = Stream.from_state(int(s))
        assert st.random() == (int(z) >> 11) * 2.0**-53
        assert st.state == (int(s) + _GOLDEN) & _MASK
