"""Nodes, channels, latency models and configuration errors."""

import asyncio
import math

import pytest

from poso_sim.errors import ConfigError
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
    Stream,
    Trace,
    Uniform,
    derive_seed,
    run,
)
from poso_sim.sim.pytest_plugin import virtual_time


@virtual_time
async def test_send_recv_with_constant_latency():
    net = Network(["A", "B"], latency=Constant(0.25), seed=0)
    a, b = net.node("A"), net.node("B")
    await asyncio.sleep(1.0)
    mid = a.send("B", {"x": 1}, kind="hello", size=10, summary="hi")
    msg = await b.recv()
    assert (msg.msg_id, msg.src, msg.dst, msg.kind, msg.size, msg.payload) == (mid, "A", "B", "hello", 10, {"x": 1})
    assert msg.sent_at == 1.0 and net.now == 1.25
    with pytest.raises(TimeoutError):
        await b.recv(timeout=3.0)
    assert net.now == 4.25


@virtual_time
async def test_handlers_broadcast_and_idle():
    names = ["A", "B", "C", "D"]
    net = Network(names, latency=0.1, seed=0)
    got = {n: [] for n in names}
    for n in names:
        net.node(n).on_message(lambda m, n=n: got[n].append((m.src, m.payload, net.now)))
    ids = net.node("B").broadcast("hello")
    assert ids == [0, 1, 2]
    assert net.in_flight == 3
    await net.idle()
    assert got == {"A": [("B", "hello", 0.1)], "B": [], "C": [("B", "hello", 0.1)], "D": [("B", "hello", 0.1)]}
    net.broadcast("A", "all", include_self=True)
    await net.idle()
    assert [p for _, p, _ in got["A"]] == ["hello", "all"]
    assert net.stats()["delivered"] == 7


@virtual_time
async def test_constant_latency_channels_are_fifo_and_timers_are_traced():
    net = Network(["A", "B"], latency=0.5, seed=0)
    fired = []
    net.node("A").set_timer(0.75, fired.append, "x", name="t1")
    for i in range(50):
        net.node("A").send("B", i)
    out = [(await net.node("B").recv()).payload for _ in range(50)]
    assert out == list(range(50))
    await asyncio.sleep(1.0)
    assert fired == ["x"]
    timers = net.trace.records("timer")
    assert timers[0]["kind"] == "t1" and timers[0]["t"] == 0.75 and timers[0]["src"] == "A"


def _delays(latency, n=4000, src="A", dst="B"):
    async def main():
        net = Network(["A", "B", "C"], latency=latency, seed=11, trace=Trace(events=[]))
        out = []
        net.node(dst).on_message(lambda m: out.append(net.now - m.sent_at))
        for _ in range(n):
            net.node(src).send(dst, None)
        await net.idle()
        return out

    return run(main())


def test_latency_models_have_the_right_distribution():
    d = _delays(Uniform(0.1, 0.3))
    assert min(d) >= 0.1 and max(d) < 0.3 and abs(sum(d) / len(d) - 0.2) < 0.005
    d = sorted(_delays(LogNormal(0.2, 0.5)))
    assert abs(d[len(d) // 2] / 0.2 - 1) < 0.05
    ln = LogNormal.from_mean_sd(0.1, 0.03)
    d = _delays(ln)
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / len(d))
    assert abs(mean - 0.1) < 0.003 and abs(sd - 0.03) < 0.003


def test_region_table():
    regions = {"A": "eu", "B": "us", "C": "eu"}
    table = RegionTable(regions, {("eu", "eu"): 0.01, ("eu", "us"): (0.1, 0.0)})
    assert set(_delays(table, 5, "A", "C")) == {0.01}
    assert all(abs(x - 0.1) < 1e-12 for x in _delays(table, 5, "A", "B"))
    assert all(abs(x - 0.1) < 1e-12 for x in _delays(table, 5, "B", "A"))  # symmetric fallback
    with pytest.raises(ConfigError, match=r"no latency for region pair \('us', 'us'\)"):
        _delays(RegionTable({"A": "us", "B": "us", "C": "eu"}, {("eu", "eu"): 0.01}))
    with pytest.raises(ConfigError, match=r"latency.regions: node 'C' has no region"):
        Network(["A", "B", "C"], latency=RegionTable({"A": "eu", "B": "eu"}, {("eu", "eu"): 0.01}))


def test_streams_are_stable():
    assert derive_seed(1, "channel", "A", "B") == derive_seed(1, "channel", "A", "B")
    assert derive_seed(1, "channel", "A", "B") != derive_seed(1, "channel", "B", "A")
    s = Stream(42, "x")
    xs = [s.random() for _ in range(1000)]
    assert all(0.0 <= x < 1.0 for x in xs) and abs(sum(xs) / 1000 - 0.5) < 0.05
    # pinned values: the derivation must never change silently (it would change every trace digest)
    assert derive_seed(0, "a") == int.from_bytes(__import__("hashlib").sha256(b'[0,"a"]').digest()[:8], "big")
    assert Stream(0).random() == pytest.approx(0.8833108082136426, abs=0)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Network(["A", "A"]), r"nodes\[1\]: duplicate node name 'A'"),
        (lambda: Network([]), "nodes: a network needs at least one node"),
        (lambda: Network(["A"], latency=-0.1), "latency: latency must be >= 0"),
        (lambda: Constant(-1), "Constant.seconds"),
        (lambda: Uniform(0.2, 0.1), "Uniform.hi"),
        (lambda: LogNormal(0.1, float("nan")), "LogNormal.sigma"),
        (lambda: Loss(1.5), r"Loss.p: probability must be in \[0, 1\]"),
        (lambda: Reorder(-0.1, 0.1), "Reorder.p"),
        (lambda: DelaySpike(0.1, window=(5, 2)), "DelaySpike.window"),
        (lambda: Network(["A", "B"], faults=[Loss(0.1, src="Z")]), r"faults\[0\].src: unknown node 'Z'"),
        (lambda: Network(["A"], faults=[Crash("Q", 1.0)]), r"faults\[0\].node: unknown node 'Q'"),
        (lambda: Crash("A", 2.0, 1.0), "Crash.recover_at"),
        (lambda: Network(["A"], faults=[Crash("A", 1, 5), Crash("A", 4, 6)]), r"faults\[1\]: crash window"),
        (lambda: Partition([{"A", "B"}, {"B"}]), r"Partition.groups\[1\]: node 'B' is already in group 0"),
        (
            lambda: Network(["A", "B", "C"], faults=[Partition([{"A", "B"}, {"C"}], 0, 10),
                                                     Partition([{"A"}, {"B", "C"}], 5, 15)]),
            r"faults\[\d\].groups: contradicts overlapping",
        ),
        (lambda: Filter(lambda s, d, p: True, action="error"), "Filter.replace"),
        (lambda: Filter(lambda s, d, p: True, action="explode"), "Filter.action"),
        (lambda: Network(["A"], faults=[Loss(0.1), Loss(0.2, name="loss0")]), r"faults\[1\].name"),
        (lambda: Network(["A"], seed="x"), "seed: must be an integer"),
        (lambda: Network(["A"]).node("B"), "node: unknown node 'B'"),
        (lambda: Trace(events=["sned"]), "Trace.events: unknown event kind 'sned'"),
    ],
)
def test_bad_configuration_names_the_field(build, field):
    with pytest.raises(ConfigError, match=field):
        build()


def test_non_contradicting_partitions_compose():
    # isolating A then B in overlapping windows is a union of cuts, not a contradiction
    Network(["A", "B", "C"], faults=[Partition(isolate="A", t0=0, t1=10), Partition(isolate={"B"}, t0=5, t1=15)])
    Network(["A", "B", "C"], faults=[Partition([{"A", "B"}, {"C"}], 0, 10), Partition([{"A"}, {"B", "C"}], 10, 15)])


@virtual_time
async def test_send_to_unknown_node_is_a_config_error():
    net = Network(["A", "B"])
    with pytest.raises(ConfigError, match=r"send.dst: unknown node 'Z'"):
        net.node("A").send("Z", 1)


@pytest.mark.parametrize("latency", [Constant(0.02), Uniform(0.01, 0.05), LogNormal(0.03, 0.5)])
def test_lean_channels_draw_exactly_what_channel_objects_draw(latency):
    """Without channel faults a network keeps only each pair's stream state (no channel objects); every
    delivery time, and so the trace, is the one a channel object per pair gives, crashes included."""
    names = [f"N{i}" for i in range(7)]

    def trace(lean: bool) -> tuple[str, int]:
        net = Network(names, latency=latency, seed=3, faults=[Crash("N2", 0.01, 0.05)])
        net._lean = lean
        got = []
        for n in names:
            net.node(n).on_message(lambda m: got.append((m.src, m.dst, m.payload)))

        async def main():
            for k in range(3):
                for a in names:
                    for b in names:
                        if a != b and (k + len(a + b)) % 3:
                            net.node(a).send(b, k, kind="k")
                await asyncio.sleep(0.02)
            await net.idle()

        run(main())
        assert got and net.sent > net.delivered > 0  # the crash dropped some
        channels = sum(len(net.node(n)._out) for n in names)
        return net.trace.digest(), channels

    lean, objects = trace(True), trace(False)
    assert lean[0] == objects[0]
    assert lean[1] == 0 and objects[1] == len(names) * (len(names) - 1)


def test_a_trace_can_keep_only_its_digest():
    full, lean = Trace(), Trace(keep=False)
    for tr in (full, lean):
        for i in range(20_000):  # more than one batch
            tr.record(i * 1e-3, "send", "A", "B", "k", i, 0, None, f"s{i % 7}")
        tr.record(21.0, "user", "A", None, "x", None, None, None, {"n": [1, 2]})
    assert len(lean) == len(full) and lean.digest() == full.digest() and not lean.kept
    lean.record(22.0, "timer", "A", None, "t")
    full.record(22.0, "timer", "A", None, "t")
    assert lean.digest() == full.digest()
    for export in (lean.lines, lean.to_jsonl, lambda: list(lean), lean.records):
        with pytest.raises(ConfigError, match="kept only its digest"):
            list(export())


def _multicast_program(latency, faults, many: bool, seed: int, keep: bool = True):
    """Relays in a random committee: each delivery is forwarded to a random subset of nodes (in a random order,
    repeats and the sender included), by one `send_many` or by one `send` per destination. Round timers at a
    shared instant see the loop's heap shape, which the arming and cancelling of the delivery timer shapes."""
    import random

    rng = random.Random(seed)
    names = [f"N{i}" for i in range(12)]
    net = Network(names, latency=latency, seed=seed, faults=faults, trace=Trace(keep=keep))
    log: list = []

    def relay(node, m):
        log.append((net.now, m.msg_id, m.src, m.dst, m.payload, m.duplicate))
        if m.payload < 4 and rng.random() < 0.4:
            if rng.random() < 0.5:  # distinct destinations (many of them: their latencies are drawn in bulk)
                dsts = rng.sample(names, rng.randint(0, len(names)))
            else:
                dsts = [rng.choice(names) for _ in range(rng.randint(0, 12))]
            if rng.random() < 0.5:  # from the delivery, or later from a timer (then the sends arm the network's)
                forward(node, dsts, m.payload)
            else:
                node.set_timer(rng.choice([0.0, 0.003]), forward, node, dsts, m.payload)

    def forward(node, dsts, p):
        if many:
            ids = list(node.send_many(dsts, p + 1, kind="r", size=3, summary=f"r{p} 100%s\u00e9"))
        else:
            ids = [node.send(d, p + 1, kind="r", size=3, summary=f"r{p} 100%s\u00e9") for d in dsts]
        log.append(("ids", ids))

    async def main():
        loop = asyncio.get_running_loop()
        for n in names:
            node = net.node(n)
            node.on_message(lambda m, node=node: relay(node, m))
            for k in range(6):
                loop.call_at(0.04, log.append, ("round", n, k))
        # the loop's timer heap itself, mid-run: the same pushes, pops and cancellations give the same shape
        def heap() -> None:
            log.append([(w, e.dead, e.args if e.callback == log.append else e.callback.__qualname__)
                        for w, e in ((float(e), e) for e in loop._heap)])

        loop.call_at(0.015, heap)
        forward(net.node("N0"), names[1:], -1)
        heap()
        await net.idle()
        await asyncio.sleep(0.1)

    run(main())
    return log, net.trace.digest(), net.stats()


@pytest.mark.parametrize("latency", [Constant(0.02), Uniform(0.001, 0.03), LogNormal(0.01, 0.5)])
@pytest.mark.parametrize("faults", [
    [], [Crash("N3", 0.01, 0.04)], [Loss(0.2), Duplicate(0.2)], [Partition(isolate=["N1"], t0=0.0, t1=0.03)],
    [Reorder(0.3, 0.01), Filter(lambda s, d, p: p == 2, action="ignore")],
], ids=["none", "crash", "loss-dup", "partition", "reorder-filter"])
def test_send_many_is_one_send_per_destination(latency, faults):
    """`send_many` gives the ids, deliveries, trace, counters and timer order of one `send` per destination (lean
    channels, crashed senders and channel faults alike)."""
    seen = 0
    for seed in range(4):
        many = _multicast_program(latency, faults, True, seed)
        one = _multicast_program(latency, faults, False, seed)
        assert many == one
        # a digest-only trace (its deliver records of a send_many formatted from one line format) digests alike
        assert _multicast_program(latency, faults, True, seed, keep=False)[1] == many[1]
        seen += len(many[0])
    assert seen > 100


@virtual_time
async def test_send_many_to_an_unknown_node_sends_the_ones_before_it():
    net = Network(["A", "B", "C"], latency=0.01)
    with pytest.raises(ConfigError, match=r"send.dst: unknown node 'Z'"):
        net.node("A").send_many(["B", "C", "Z", "B"], 1)
    assert net.sent == 2 and net.in_flight == 2
    assert list(net.node("A").send_many(["C", "B"], 2)) == [2, 3]
    assert list(net.node("A").send_many([], 2)) == []


def test_a_digest_only_trace_written_through_its_appender_is_the_kept_trace():
    """The hot path's writer (`Trace.appender`) of a digest-only trace formats message records at once and keeps
    the others for the batch: the digest is the kept trace's, whatever the mix of records and batch boundaries."""
    full, lean = Trace(), Trace(keep=False)
    write_full, write_lean = full.appender(), lean.appender()
    assert write_full == full.append and write_lean != lean.append
    for i in range(9_000):
        for write, tr in ((write_full, full), (write_lean, lean)):
            write(i * 1e-3 + 1 / 3, "deliver", f"n{i % 5}", "B\u00e9", "k", i, 7, None if i % 3 else "dup", f"s{i % 7}")
            if i % 997 == 0:
                tr.append(i * 1e-3, "user", "A", None, "x", None, None, None, {"n": [1, i], "s": "\u00e9"})
                write(float(i), "drop", "A", "B", "k", i, True, "loss:l", 5)  # a bool size, an int summary
                write(float(i), "timer", "A", None, "t", None, None, None, None)
    assert len(lean) == len(full) and lean.digest() == full.digest()
    lean.clear()
    assert lean.digest() == Trace().digest() and lean.appender() == write_lean  # the writer survives clear()
    write_lean(float("inf"), "deliver", "A", "B", "k", 1, 0, None, None)
    with pytest.raises(ConfigError, match="trace record 0"):
        lean.digest()


def _timer_run(seed, bare):
    """Timers on three nodes (ties, cancels, a crash), armed through `set_timer` or, where ``bare`` picks, through
    `arm_timer`: what fired in which order, and the trace's timer events."""
    import random

    async def main():
        net = Network(["A", "B", "C"], latency=0.01, seed=0, faults=[Crash("C", 0.3, 0.6)])
        rng = random.Random(seed)
        fired, handles = [], []

        def fire(tag):
            fired.append((net.now, tag))
            if rng.random() < 0.4:  # timers armed from inside a timer, on the same instants
                arm(rng.choice("ABC"), rng.choice([0.0, 0.25, 0.5]), f"{tag}+")

        def arm(node, delay, tag):
            how = bare(rng) and net.node(node).arm_timer or net.node(node).set_timer
            handles.append(how(delay, fire, tag, name=f"t{tag}"))

        for i in range(60):
            arm(rng.choice("ABC"), rng.choice([0.0, 0.25, 0.5, 1.0]), str(i))
            if handles and rng.random() < 0.2:
                rng.choice(handles).cancel()
        await asyncio.sleep(5.0)
        return fired, net.trace.records("timer"), [h.cancelled() for h in handles]

    return run(main())


@pytest.mark.parametrize("seed", range(6))
def test_arm_timer_fires_and_traces_as_set_timer_does(seed):
    ref = _timer_run(seed, lambda rng: rng.random() < 0.0)
    assert len(ref[0]) > 40 and any(r.get("reason") for r in ref[1])  # ties, cancels and crash skips all met
    assert _timer_run(seed, lambda rng: rng.random() < 0.5) == ref
    assert _timer_run(seed, lambda rng: rng.random() < 1.1) == ref


def test_arm_timer_rejects_a_bad_delay():
    async def main():
        with pytest.raises(ConfigError, match="arm_timer.delay"):
            Network(["A"], seed=0).node("A").arm_timer(-1.0, print)
    run(main())
