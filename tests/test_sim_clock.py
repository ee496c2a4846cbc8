"""Virtual-time event loop: ordering, timeouts, speed, deadlock detection, wall-clock guard, pytest plugin."""

import asyncio
import time

import pytest

from poso_sim.errors import ConfigError
from poso_sim.sim import (
    Constant,
    DeadlockError,
    Network,
    SimulationError,
    VirtualTimeEventLoop,
    WallClockError,
    forbid_wall_clock,
    run,
)
from poso_sim.sim.pytest_plugin import virtual_time


def test_timers_fire_in_order_at_exact_virtual_times():
    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        for delay in (3.0, 0.5, 2.25, 0.5, 1e-3, 7.0):
            loop.call_later(delay, lambda d=delay: fired.append((d, loop.time())))
        loop.call_at(4.0, lambda: fired.append(("at", loop.time())))

        async def sleeper(d):
            await asyncio.sleep(d)
            fired.append((f"sleep{d}", loop.time()))

        await asyncio.gather(sleeper(2.0), sleeper(6.5))
        await asyncio.sleep(1.0)
        return fired

    fired = run(main())
    assert fired == [
        (1e-3, 1e-3), (0.5, 0.5), (0.5, 0.5), ("sleep2.0", 2.0), (2.25, 2.25), (3.0, 3.0), ("at", 4.0),
        ("sleep6.5", 6.5), (7.0, 7.0),
    ]


def test_start_time_and_timeouts():
    async def main():
        loop = asyncio.get_running_loop()
        assert loop.time() == 100.0
        with pytest.raises(asyncio.TimeoutError):  # the builtin TimeoutError from Python 3.11 on
            await asyncio.wait_for(asyncio.sleep(10), timeout=2.5)
        assert loop.time() == 102.5
        if not hasattr(asyncio, "timeout"):  # Python 3.10: no asyncio.timeout
            await asyncio.sleep(1.0)
            return loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.Event().wait()
        return loop.time()

    assert run(main(), start=100.0) == 103.5
    with pytest.raises(ConfigError, match="start"):
        VirtualTimeEventLoop(start=-1.0)


def test_one_hour_protocol_costs_milliseconds():
    """A leader broadcasts every 5.3 s for an hour; every node answers; the whole hour runs in well under 1 s."""

    async def main():
        names = [f"d{i}" for i in range(10)]
        net = Network(names, latency=Constant(0.05), seed=1)
        acks = []
        for n in names[1:]:
            node = net.node(n)
            node.on_message(lambda m, node=node: node.send(m.src, "ack", kind="ack"))
        net.node("d0").on_message(lambda m: acks.append(m.msg_id))
        rounds = 0
        loop = asyncio.get_running_loop()
        while loop.time() < 3600.0:
            net.node("d0").broadcast("propose", kind="propose")
            await asyncio.sleep(5.3)
            rounds += 1
        return loop.time(), rounds, len(acks)

    t0 = time.perf_counter()
    end, rounds, acks = run(main())
    wall = time.perf_counter() - t0
    assert end >= 3600.0 and rounds == 680 and acks == 680 * 9
    assert wall < 1.0, wall


def test_deadlock_is_reported_with_waiting_tasks():
    async def stuck():
        await asyncio.Event().wait()

    async def main():
        await asyncio.gather(asyncio.ensure_future(stuck()), asyncio.sleep(2.0))

    with pytest.raises(DeadlockError, match=r"deadlocked at t=2\.0.*stuck"):
        run(main())


def test_wall_clock_calls_are_rejected_inside_and_allowed_outside():
    async def reads_time():
        return time.time()

    async def sleeps():
        time.sleep(0.01)

    async def reads_monotonic():
        return time.monotonic()

    for coro in (reads_time, sleeps, reads_monotonic):
        with pytest.raises(WallClockError, match=r"time\.(time|sleep|monotonic)"):
            run(coro())
    assert time.time() > 0 and time.monotonic() > 0  # restored
    assert run(reads_time(), guard_wall_clock=False) > 0
    with forbid_wall_clock():
        with pytest.raises(WallClockError):
            time.time_ns()
    time.time_ns()


def test_unretrieved_callback_failure_becomes_simulation_error():
    async def main():
        asyncio.get_running_loop().call_later(1.0, lambda: 1 / 0)
        await asyncio.sleep(2.0)

    with pytest.raises(SimulationError, match="ZeroDivisionError"):
        run(main())


# --- pytest-asyncio integration --------------------------------------------------------------------------------


@virtual_time
async def test_plugin_marker_gives_virtual_time():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeEventLoop)
    t0 = time.perf_counter()  # perf_counter is allowed (profiling)
    await asyncio.sleep(3600)
    assert loop.time() == 3600.0
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.asyncio
@pytest.mark.virtual_time
async def test_plugin_virtual_loop_fixture(virtual_loop):
    assert asyncio.get_running_loop() is virtual_loop
    await asyncio.wait_for(asyncio.sleep(1.0), timeout=5.0)
    assert virtual_loop.time() == 1.0


@pytest.mark.asyncio
async def test_unmarked_asyncio_tests_keep_a_real_loop():
    assert not isinstance(asyncio.get_running_loop(), VirtualTimeEventLoop)


def test_sim_run_fixture(sim_run):
    async def main():
        await asyncio.sleep(42.0)
        return asyncio.get_running_loop().time()

    assert sim_run(main()) == 42.0


def test_run_from_inside_a_running_loop() -> None:
    """As in a notebook kernel: ``run`` called while another event loop runs in this thread."""
    import asyncio as _asyncio

    from poso_sim.sim import run as sim_run

    async def simulated() -> float:
        loop = _asyncio.get_running_loop()
        await _asyncio.sleep(3600.0)
        return loop.time()

    async def host() -> float:
        return sim_run(simulated())

    assert abs(_asyncio.run(host()) - 3600.0) < 1e-6


def test_kernel_uses_public_asyncio_api_only():
    """The kernel reaches the event loop through public API: no asyncio internals (they change between Python
    versions), and the network writes the trace through the trace's own methods."""
    import re
    from pathlib import Path

    import poso_sim.sim as sim

    private = re.compile(r"\.(_ready|_scheduled|_stopping|_default_executor|_run_once|_timer_handle_cancelled)\b")
    for path in Path(sim.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not private.search(text), f"{path.name} uses asyncio internals: {private.search(text).group(0)}"
        if path.name != "trace.py":
            assert "._rows" not in text, f"{path.name} writes a trace's rows directly"


def test_clock_lands_exactly_on_timers_far_from_zero():
    """The selector advances the clock onto the timer itself, not onto now + (when - now) with its rounding."""
    whens = [1e6 + 0.1, 1e6 + 0.3, 1e6 + 0.7000000001, 4e6 + 1 / 3]
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        for w in whens:
            loop.call_at(w, lambda: seen.append(loop.time()))
        await asyncio.sleep(whens[-1] - loop.time() + 1.0)

    run(main(), start=12.345)
    assert seen == whens


# --- the end of a run: what asyncio.run does after the main coroutine --------------------------------------------


def test_run_ends_like_asyncio_run():
    """Tasks left over are cancelled (their cleanup runs at the virtual time of the end), suspended async
    generators are closed, worker threads are joined (the default executor is shut down when one was used),
    and the loop is closed; a failure while a left-over task is cancelled is a SimulationError."""
    import threading

    seen, kept = [], []

    async def gen():
        try:
            yield 1
            yield 2
        finally:
            seen.append("generator closed")

    async def worker():
        try:
            await asyncio.sleep(100)
        finally:
            seen.append(("worker cancelled", asyncio.get_running_loop().time()))

    async def main():
        loop = asyncio.get_running_loop()
        loop.create_task(worker())
        agen = gen()
        kept.append(agen)  # suspended until the end: closed by the run's shutdown, not by the collector
        await agen.__anext__()
        assert await asyncio.to_thread(threading.current_thread) is not threading.current_thread()
        await asyncio.sleep(3.0)
        seen.append(loop)
        return "done"

    before = {t for t in threading.enumerate()}
    assert run(main()) == "done"
    loop = seen.pop(0)
    assert seen == [("worker cancelled", 3.0), "generator closed"]
    assert loop.is_closed()
    assert {t for t in threading.enumerate()} == before  # the executor's thread was joined

    async def failing():
        try:
            await asyncio.sleep(100)
        finally:
            raise RuntimeError("cleanup failed")

    async def main2():
        asyncio.get_running_loop().create_task(failing())
        await asyncio.sleep(1.0)

    with pytest.raises(SimulationError, match="cleanup failed"):
        run(main2())


def test_ctrl_c_cancels_the_main_task_and_raises_keyboard_interrupt():
    """As asyncio.run: the first SIGINT cancels the main coroutine (which sees CancelledError) and the run ends
    with KeyboardInterrupt; the default handler is restored afterwards."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    saw = []

    async def main():
        try:
            asyncio.get_running_loop().call_later(1.0, os.kill, os.getpid(), signal.SIGINT)
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            saw.append(asyncio.get_running_loop().time())
            raise

    with pytest.raises(KeyboardInterrupt):
        run(main())
    assert saw == [1.0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
