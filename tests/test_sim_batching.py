"""The virtual loop's timer heap and its batches, against asyncio's own timer queue.

`VirtualTimeEventLoop` keeps its timers in a heap of its own and, when nothing else is ready, runs the due ones
inside its selector, instant after instant, without an asyncio iteration for each. That must not change what a
program sees: the same callbacks at the same virtual times in the same order, same-instant timers included
(asyncio breaks their ties by the shape of its heap, which every push, pop and purge before shapes). The reference
here is the kernel as it was before: asyncio's own timer queue, the selector only moving the clock onto the timer
asyncio waits for, one iteration per instant.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import selectors
import threading

import pytest

from poso_sim.sim import (
    Constant,
    DeadlockError,
    Duplicate,
    Loss,
    Network,
    Reorder,
    SimulationError,
    Trace,
    Uniform,
    VirtualTimeEventLoop,
    run,
)


# --- the reference: asyncio's own timer queue ------------------------------------------------------------------


class _ReferenceSelector(selectors.BaseSelector):
    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.loop: ReferenceLoop | None = None

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def get_key(self, fileobj):
        return self._real.get_key(fileobj)

    def get_map(self):
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout=None):
        if timeout is None:
            raise DeadlockError("reference loop: nothing ready and no timer")
        if timeout > 0:
            self.loop.advance(timeout)
        return []


class ReferenceLoop(asyncio.SelectorEventLoop):
    """Virtual time on asyncio's own timer queue: one loop iteration per instant (the kernel before batching)."""

    def __init__(self) -> None:
        sel = _ReferenceSelector()
        super().__init__(sel)
        sel.loop = self
        self.now = 0.0
        self.whens: list[float] = []
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback, *args, context=None):
        heapq.heappush(self.whens, when)
        return super().call_at(when, callback, *args, context=context)

    def advance(self, timeout: float) -> None:  # as VirtualTimeEventLoop._advance
        now = self.now
        target = now + timeout
        landed = None
        slack = 1e-9 * max(1.0, abs(target))
        while self.whens and self.whens[0] <= target + slack:
            landed = heapq.heappop(self.whens)
        if landed is not None and landed >= now:
            target = landed
        self.now = target


def _run_on(loop: asyncio.AbstractEventLoop, main):
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()


# --- random programs --------------------------------------------------------------------------------------------


def _program(seed: int):
    """A random mix of what simulations do: messages (constant latencies give same-instant deliveries), handlers
    and coroutine receivers, timers at shared instants, cancellations (enough for asyncio's purge of its queue),
    call_soon chains, futures, events, sleeps and tasks. Returns (log, trace digest): every observation with the
    virtual time it was made at."""
    rng = random.Random(seed)

    async def main():
        loop = asyncio.get_running_loop()
        n = rng.randint(2, 7)
        names = [f"n{i}" for i in range(n)]
        latency = rng.choice([Constant(0.25), Constant(0.0), Uniform(0.01, 0.05), 0.5])
        faults = rng.choice([[], [Loss(0.1)], [Duplicate(0.2), Reorder(0.3, 0.2)]])
        net = Network(names, latency=latency, seed=seed, faults=faults, trace=Trace())
        log: list = []
        timers: list = []
        event = asyncio.Event()
        budget = {"sends": rng.randint(20, 300)}

        def note(*what) -> None:
            log.append((loop.time(), *what))

        def act(node, tag) -> None:
            r = rng.random()
            if r < 0.45 and budget["sends"] > 0:
                budget["sends"] -= 1
                node.send(rng.choice(names), tag)
            if r < 0.2 and budget["sends"] > 0:
                budget["sends"] -= 1
                node.broadcast(tag)
            if 0.3 < r < 0.5:
                delay = rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()])
                timers.append(node.set_timer(delay, lambda d=delay: (note("timer", node.name, d), act(node, "t"))))
            if 0.45 < r < 0.6 and timers:
                timers.pop(rng.randrange(len(timers))).cancel()
            if 0.55 < r < 0.65:
                loop.call_soon(lambda: (note("soon", node.name), act(node, "s")))
            if 0.62 < r < 0.67:
                event.set()
            if 0.66 < r < 0.7:
                fut = loop.create_future()
                fut.add_done_callback(lambda f: note("future", f.result()))
                loop.call_at(loop.time() + rng.choice([0.0, 0.25]), fut.set_result, node.name)
            if 0.7 < r < 0.73:
                loop.create_task(sleeper(node, rng.choice([0.0, 0.25, 0.5])))

        async def sleeper(node, d) -> None:
            await asyncio.sleep(d)
            note("slept", node.name, d)
            act(node, "w")

        async def waiter() -> None:
            while True:
                await event.wait()
                event.clear()
                note("event")

        async def receiver(node) -> None:
            while True:
                msg = await node.recv()
                note("recv", node.name, msg.msg_id, msg.payload)
                act(node, "r")

        tasks = [loop.create_task(waiter())]
        for i, name in enumerate(names):
            node = net.node(name)
            if i % 2:
                tasks.append(loop.create_task(receiver(node)))
            else:
                node.on_message(lambda m, node=node: (note("deliver", node.name, m.msg_id, m.payload), act(node, "d")))
        for _ in range(rng.randint(1, 6)):  # shared-instant timers armed at the start (round timers)
            for name in names:
                timers.append(net.node(name).set_timer(rng.choice([0.5, 1.0, 2.0]),
                                                       lambda name=name: note("round", name)))
        for _ in range(rng.choice([0, 150])):  # many cancelled timers: asyncio purges its queue
            loop.call_later(rng.random() * 3, note, "never").cancel()
        for name in names:
            net.node(name).broadcast("start")
        await asyncio.sleep(rng.choice([0.7, 2.5, 4.0]))
        note("end", net.stats()["sent"])
        for t in tasks:
            t.cancel()
        return log, net.trace.digest()

    return main()


@pytest.mark.parametrize("block", range(4))
def test_random_programs_run_as_on_asyncios_own_timer_queue(block):
    for seed in range(block * 40, block * 40 + 40):
        got = _run_on(VirtualTimeEventLoop(guard_wall_clock=False), _program(seed))
        want = _run_on(ReferenceLoop(), _program(seed))
        assert got == want, f"seed {seed}"


def test_same_instant_timers_fire_in_asyncios_heap_order():
    """Ties are broken by the heap's shape, which every earlier push and pop shapes (here: a message delivered at
    each of many instants between the arming of the round timers and their firing)."""

    async def main():
        loop = asyncio.get_running_loop()
        net = Network(["a", "b"], latency=Uniform(0.001, 0.002), seed=3)
        fired = []
        for i in range(40):
            loop.call_at(1.0, fired.append, i)
        count = {"n": 0}

        def bounce(m):
            count["n"] += 1
            if count["n"] < 300:
                net.node(m.dst).send(m.src)

        net.node("a").on_message(bounce)
        net.node("b").on_message(bounce)
        net.node("a").send("b")
        await asyncio.sleep(2.0)
        return fired, count["n"]

    got = _run_on(VirtualTimeEventLoop(), main())
    want = _run_on(ReferenceLoop(), main())
    assert got == want
    assert got[0] != list(range(40))  # the order really is the heap's, not the arming order
    assert got[1] == 300


# --- what ends a batch ------------------------------------------------------------------------------------------


def _ping_pong(net: Network, log: list | None = None, limit: int = 1_000_000) -> None:
    """Two nodes bouncing one message (``limit`` times: a broken kernel fails the test instead of hanging it)."""
    count = [0]

    def bounce(m):
        if log is not None:
            log.append(net.now)
        count[0] += 1
        if count[0] < limit:
            net.node(m.dst).send(m.src)

    for node in net.nodes:
        node.on_message(bounce)
    net.node(net.names[0]).send(net.names[1])


def test_a_woken_task_runs_at_the_instant_it_was_woken():
    """A handler that sets an event (a future's call_soon, from C) ends the batch: the task runs before the
    clock moves on to the next delivery."""

    async def main():
        net = Network(["a", "b"], latency=Uniform(0.01, 0.02), seed=1)
        event = asyncio.Event()
        seen: list[float] = []

        def bounce(m):
            seen.append(net.now)
            if len(seen) == 50:
                event.set()
            if len(seen) < 10_000:
                net.node(m.dst).send(m.src)

        net.node("a").on_message(bounce)
        net.node("b").on_message(bounce)
        net.node("a").send("b")
        await event.wait()
        return net.now, seen[-1], len(seen)

    woken_at, set_at, count = run(main())
    assert (woken_at, count) == (set_at, 50)


def test_stop_from_a_timer_ends_run_forever():
    loop = VirtualTimeEventLoop()

    async def setup():
        _ping_pong(Network(["a", "b"], latency=Constant(0.1), seed=1))
        loop.call_at(5.05, loop.stop)

    loop.run_until_complete(setup())
    loop.run_forever()  # deliveries every 0.1 s, forever, until the timer stops the loop
    assert loop.time() == 5.05
    loop.close()


def test_handler_exception_reaches_the_exception_handler():
    async def main():
        net = Network(["a", "b"], latency=0.1, seed=1)

        def fail(m):
            raise ValueError(f"bad message {m.msg_id}")

        net.node("b").on_message(fail)
        net.node("a").send("b")
        await asyncio.sleep(1.0)

    with pytest.raises(SimulationError, match=r"_drain.*bad message 0"):
        run(main())
    contexts = []
    loop = VirtualTimeEventLoop()
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.run_until_complete(main())
    loop.close()
    assert [type(c["exception"]) for c in contexts] == [ValueError]
    assert contexts[0]["message"].startswith("Exception in callback Network._drain")
    assert repr(contexts[0]["handle"]) == "<timer Network._drain()>"


def test_cancel_from_another_thread_stops_a_run_of_handlers_only():
    """Deliveries that never make anything ready run inside the selector; a cancel from another thread
    (call_soon_threadsafe) still ends the run."""
    loop = VirtualTimeEventLoop()
    started = threading.Event()
    outcome: list = []

    async def main():
        net = Network(["a", "b"], latency=Uniform(0.01, 0.02), seed=1)
        _ping_pong(net)
        loop.call_soon(started.set)
        await loop.create_future()  # never resolved: only the cancel ends the run

    def body():
        task = loop.create_task(main())
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            outcome.append(("cancelled", loop.time()))
        finally:
            loop.close()

    thread = threading.Thread(target=body)
    thread.start()
    assert started.wait(30)
    loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
    thread.join(30)
    assert not thread.is_alive()
    assert outcome and outcome[0][0] == "cancelled" and outcome[0][1] > 0


@pytest.mark.filterwarnings("error::RuntimeWarning")  # 3.12+: the executor's threads are joined, not abandoned
def test_worker_threads_wake_the_loop_while_timers_run():
    """A worker thread's result reaches the loop whether timers are pending (deliveries go on meanwhile) or not
    (the deadlock check waits for the thread)."""
    release = threading.Event()

    def work():
        assert release.wait(30)
        return 42

    async def main():
        net = Network(["a", "b"], latency=Constant(0.1), seed=1)
        count: list = []
        _ping_pong(net, count, limit=1000)  # over at 100 s: no timer left when the runner shuts its executor down
        loop = asyncio.get_running_loop()
        loop.call_later(10.0, release.set)  # the worker waits until virtual time 10
        value = await asyncio.to_thread(work)
        return value, loop.time() >= 10.0, len(count) >= 99

    assert run(main(), guard_wall_clock=False) == (42, True, True)

    def slow():
        threading.Event().wait(0.05)  # wall time, in the worker
        return "done"

    async def alone():
        return await asyncio.to_thread(slow), asyncio.get_running_loop().time()

    assert run(alone()) == ("done", 0.0)


# --- the network's queue of pending deliveries ------------------------------------------------------------------


@pytest.mark.parametrize("latency", [Constant(0.25), Constant(0.0), Uniform(0.01, 0.05), Uniform(0.0, 0.001)])
def test_deliveries_follow_time_then_send_order(latency):
    """Messages are delivered in the order of (delivery time, send order), each at its send time plus its
    latency, whether times are shared (constant latencies) or not."""

    async def main():
        rng = random.Random(5)
        names = [f"n{i}" for i in range(6)]
        net = Network(names, latency=latency, seed=2)
        seen: list = []
        budget = [3000]

        def handler(m):
            seen.append((net.now, m.msg_id, m.sent_at))
            for _ in range(rng.choice([0, 1, 1, 2])):
                if budget[0] > 0:
                    budget[0] -= 1
                    net.node(m.dst).send(rng.choice(names))

        for name in names:
            net.node(name).on_message(handler)
        for name in names:
            net.node(name).broadcast()
        await net.idle()
        return seen, net.in_flight

    seen, left = run(main())
    assert left == 0 and len(seen) > 500
    keys = [(t, msg_id) for t, msg_id, _ in seen]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    if isinstance(latency, Constant):
        assert all(t == sent + latency.seconds for t, _, sent in seen)


def test_a_failing_handler_leaves_the_messages_after_it_pending():
    """Three messages due at one instant; the handler fails on the first: the other two still arrive, at that
    instant and in send order, after the failure is reported."""
    got: list = []

    async def main():
        net = Network(["a", "b"], latency=Constant(0.1), seed=1)

        def handler(m):
            if m.payload == 0:
                raise ValueError("first")
            got.append((net.now, m.payload, net.in_flight))

        net.node("b").on_message(handler)
        for i in range(3):
            net.node("a").send("b", i)
        await net.idle()

    with pytest.raises(SimulationError, match="first"):
        run(main())
    assert got == [(0.1, 1, 1), (0.1, 2, 0)]


# --- going on at the next delivery instant without a timer (VirtualTimeEventLoop.go_on_at) ---------------------


def _chain_with_edges(case: str):
    """A message bounced between two nodes (an instant every 10 ms, the network going on from one to the next
    without a timer) meeting what must stop that: a timer or a cancelled timer's note half a clock resolution
    after the next delivery, or a purge of the heap due (more than half of 150 timers cancelled) while 30 round
    timers share an instant. Returns what was observed, with virtual times."""

    async def main():
        loop = asyncio.get_running_loop()
        net = Network(["a", "b"], latency=Constant(0.01), seed=1)
        log: list = []
        spare = [loop.call_at(5.0 + i / 7, log.append, "never") for i in range(150)]
        for i in range(30):
            loop.call_at(0.5, lambda i=i: log.append(("round", i, loop.time())))
        count = [0]

        def bounce(m):
            count[0] += 1
            now = loop.time()
            log.append(("deliver", m.dst, now))
            if case == "timer" and count[0] % 7 == 3:
                loop.call_at(now + 0.01 + 5e-10, lambda: log.append(("timer", loop.time())))
            if case == "cancelled" and count[0] % 7 == 3:
                loop.call_at(now + 0.01 + 5e-10, log.append, "never").cancel()
            if case == "purge" and count[0] == 20:
                for h in spare[:120]:
                    h.cancel()
            if count[0] < 80:
                net.node(m.dst).send(m.src)

        for node in net.nodes:
            node.on_message(bounce)
        net.node("a").send("b")
        await asyncio.sleep(1.0)
        return log

    return main()


@pytest.mark.parametrize("case", ["timer", "cancelled", "purge"])
def test_going_on_to_the_next_instant_changes_nothing(case):
    got = _run_on(VirtualTimeEventLoop(), _chain_with_edges(case))
    want = _run_on(ReferenceLoop(), _chain_with_edges(case))
    assert got == want
    assert sum(1 for x in got if x[0] == "deliver") == 80


@pytest.mark.parametrize("quantum", [1e-3, 0.02, 0.3])
def test_the_queue_of_pending_deliveries_is_time_then_push_order(quantum):
    """The network's calendar queue against a heap of (time, push number): pushes between takes, at times in the
    bucket being taken, before it, equal to others and to the current time (zero latency)."""
    from poso_sim.sim.network import INF, _Queue

    rng = random.Random(7)
    q = _Queue(quantum)
    ref: list = []
    now, seq = 0.0, 0
    taken, want = [], []
    for step in range(4000):
        if rng.random() < 0.55:
            when = now + rng.choice([0.0, 0.01, 0.02, rng.random() * 0.05, rng.random() * 1e-3, 0.25])
            q.push(when, seq)
            heapq.heappush(ref, (when, seq))
            seq += 1
        else:
            head = q.head()
            assert head == (ref[0][0] if ref else INF)
            if head == INF:
                continue
            now = max(now, head)
            while q.head() <= now:  # take what is due, as the drain does
                i = q.i
                taken.append((q.whens[i], q.msgs[i]))
                q.i = i + 1
                want.append(heapq.heappop(ref))
    assert taken == want and len(taken) > 1000
