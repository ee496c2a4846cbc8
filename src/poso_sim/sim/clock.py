"""Virtual time for asyncio.

`VirtualTimeEventLoop` is a selector event loop whose ``time()`` is a virtual clock. Its selector never sleeps:
when asyncio would block for ``timeout`` seconds waiting for I/O, the clock jumps forward to the earliest
scheduled timer instead. ``asyncio.sleep``, ``wait_for``, ``asyncio.timeout``, ``call_later`` and ``call_at``
therefore work unchanged and cost no wall time.

While the loop runs, a wall-clock guard is installed (see `forbid_wall_clock`): calling ``time.time``,
``time.time_ns``, ``time.monotonic``, ``time.monotonic_ns`` or ``time.sleep`` from non-standard-library code on the
loop's thread raises `WallClockError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import selectors
import sys
import sysconfig
import threading
import time as _time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from poso_sim.errors import ConfigError, PosoError

__all__ = [
    "DeadlockError",
    "SimulationError",
    "VirtualTimeEventLoop",
    "WallClockError",
    "forbid_wall_clock",
    "new_virtual_loop",
    "run",
]

T = TypeVar("T")


class WallClockError(PosoError, RuntimeError):
    """Simulation code read the wall clock or slept for real time."""


class DeadlockError(PosoError, RuntimeError):
    """Nothing is ready and no timer is scheduled: every task waits for something that cannot happen."""


class SimulationError(PosoError, RuntimeError):
    """A callback or task failed inside the simulation without anyone retrieving the exception."""


# --------------------------------------------------------------------------------------------- wall-clock guard

_STDLIB_DIRS = tuple(
    os.path.normcase(os.path.realpath(p)) + os.sep
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
_SITE_DIRS = tuple(
    os.path.normcase(os.path.realpath(p)) + os.sep
    for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
)
_GUARDED = ("time", "time_ns", "monotonic", "monotonic_ns", "sleep")
_ORIGINALS = {name: getattr(_time, name) for name in _GUARDED}
_guard_lock = threading.Lock()
_guard_threads: dict[int, int] = {}  # thread id -> nesting depth
_filename_verdict: dict[str, bool] = {}


def _is_stdlib_file(filename: str) -> bool:
    verdict = _filename_verdict.get(filename)
    if verdict is None:
        if filename.startswith("<"):  # frozen modules (importlib bootstrap) and such
            verdict = filename.startswith("<frozen")
        else:
            path = os.path.normcase(os.path.realpath(filename))
            verdict = path.startswith(_STDLIB_DIRS) and not path.startswith(_SITE_DIRS)
        _filename_verdict[filename] = verdict
    return verdict


def _make_guard(name: str) -> Any:
    original = _ORIGINALS[name]

    def guarded(*args: Any) -> Any:
        if _guard_threads and threading.get_ident() in _guard_threads:
            caller = sys._getframe(1)
            if name == "sleep" or not _is_stdlib_file(caller.f_code.co_filename):
                raise WallClockError(
                    f"time.{name}() called inside a virtual-time simulation "
                    f"({caller.f_code.co_filename}:{caller.f_lineno}); use loop.time() / asyncio.sleep() instead"
                )
        return original(*args)

    guarded.__name__ = name
    guarded.__qualname__ = name
    guarded.__doc__ = original.__doc__
    return guarded


_GUARDS = {name: _make_guard(name) for name in _GUARDED}


@contextlib.contextmanager
def forbid_wall_clock() -> Iterator[None]:
    """Make wall-clock reads and real sleeps on the current thread raise `WallClockError`.

    Caught: ``time.time``, ``time.time_ns``, ``time.monotonic``, ``time.monotonic_ns`` looked up through the ``time``
    module at call time, from code outside the standard library, and ``time.sleep`` from anywhere. Not caught:
    ``time.perf_counter`` (kept for profiling), ``datetime.now()`` and names bound before the guard was installed
    (``from time import time``). Nesting and concurrent use from several threads are supported.
    """
    tid = threading.get_ident()
    with _guard_lock:
        if not _guard_threads:
            for name, fn in _GUARDS.items():
                setattr(_time, name, fn)
        _guard_threads[tid] = _guard_threads.get(tid, 0) + 1
    try:
        yield
    finally:
        with _guard_lock:
            depth = _guard_threads[tid] - 1
            if depth:
                _guard_threads[tid] = depth
            else:
                del _guard_threads[tid]
            if not _guard_threads:
                for name, fn in _ORIGINALS.items():
                    if getattr(_time, name) is _GUARDS[name]:
                        setattr(_time, name, fn)


# ----------------------------------------------------------------------------------------------- the selector


class _VirtualSelector(selectors.BaseSelector):
    """Delegates registration to a real selector but never sleeps: waiting means advancing the virtual clock."""

    def __init__(self, thread_grace: float) -> None:
        self._real = selectors.DefaultSelector()
        self._loop: VirtualTimeEventLoop | None = None
        self._thread_grace = thread_grace
        self._polls = 0
        self._registered = 0

    # registration is delegated unchanged (and counted: the hot path asks whether only the self-pipe is there)
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        self._registered += 1
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self._registered -= 1
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Only the loop's self-pipe registered: poll it now and then (signals, thread wake-ups); threads append to
        # the ready queue directly, so skipping the syscall loses nothing.
        only_self_pipe = self._registered <= 1
        self._polls += 1
        if timeout and only_self_pipe and self._polls & 255:
            self._loop._advance(timeout)  # type: ignore[union-attr]
            return []
        loop = self._loop
        assert loop is not None
        if not only_self_pipe or timeout is None or not (self._polls & 255):
            events = self._real.select(0)
            if events:
                return events
        if timeout is None:
            if loop.executor_used or not only_self_pipe:
                # Worker threads or real I/O may still wake us up: wait for them in wall time, bounded.
                events = self._real.select(self._thread_grace)
                if events:
                    return events
            raise DeadlockError(loop._deadlock_message())
        if timeout > 0:
            loop._advance(timeout)
        return []


# ------------------------------------------------------------------------------------------------ the loop


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop running in virtual time (seconds, float, starting at ``start``)."""

    def __init__(self, start: float = 0.0, *, guard_wall_clock: bool = True, thread_grace: float = 30.0) -> None:
        selector = _VirtualSelector(thread_grace)
        super().__init__(selector)
        selector._loop = self
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not (0 <= start < float("inf")):
            self.close()
            raise ConfigError(f"start: virtual start time must be a finite number >= 0, got {start!r}")
        self._vnow = float(start)
        self._whens: list[float] = []  # times of the timers asked for through call_at, popped as the clock passes
        self.executor_used = False  # whether worker threads may wake the loop (run_in_executor, to_thread)
        self._guard_wall_clock = guard_wall_clock
        self._clock_resolution = 1e-9

    # the clock ----------------------------------------------------------------------------------------------
    def time(self) -> float:
        return self._vnow

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        # every timer (call_later, sleep, wait_for, timeouts) comes through here: its time is noted so that the
        # clock lands on it exactly when the selector advances (no rounding from now + (when - now))
        heapq.heappush(self._whens, when)
        return super().call_at(when, callback, *args, context=context)

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        self.executor_used = True
        return super().run_in_executor(executor, func, *args)

    def set_default_executor(self, executor: Any) -> None:
        self.executor_used = True
        super().set_default_executor(executor)

    def _advance(self, timeout: float) -> None:
        """The selector would wait ``timeout`` seconds for the earliest timer: move the clock onto that timer."""
        now = self._vnow
        target = now + timeout
        whens = self._whens
        landed = None
        slack = 1e-9 * max(1.0, abs(target))
        while whens and whens[0] <= target + slack:
            landed = heapq.heappop(whens)  # timers already passed (fired or cancelled) leave the note too
        if landed is not None and landed >= now:
            target = landed
        self._vnow = target

    def _deadlock_message(self) -> str:
        tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
        names = ", ".join(sorted(f"{t.get_name()}({getattr(t.get_coro(), '__qualname__', '?')})" for t in tasks))
        return (
            f"simulation deadlocked at t={self._vnow!r}: no callback is ready and no timer is scheduled; "
            f"waiting tasks: {names or 'none'}"
        )

    def run_forever(self) -> None:
        if self._guard_wall_clock:
            with forbid_wall_clock():
                super().run_forever()
        else:
            super().run_forever()


def new_virtual_loop(start: float = 0.0, **kwargs: Any) -> VirtualTimeEventLoop:
    """Loop factory (for ``asyncio.Runner(loop_factory=...)`` and the pytest plugin)."""
    return VirtualTimeEventLoop(start, **kwargs)


def run(
    coro: Coroutine[Any, Any, T],
    *,
    start: float = 0.0,
    debug: bool | None = None,
    guard_wall_clock: bool = True,
    strict: bool = True,
) -> T:
    """Run ``coro`` to completion in virtual time, like `asyncio.run`.

    With ``strict`` (default), an exception raised in a callback or a task that nobody awaited is re-raised as
    `SimulationError` when the run ends, instead of only being logged.

    Called from a thread whose event loop is already running (a Jupyter kernel, for instance), the simulation
    runs on a worker thread of its own and this call waits for it: the virtual loop never shares a thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="poso-sim-run") as pool:
            return pool.submit(
                run, coro, start=start, debug=debug, guard_wall_clock=guard_wall_clock, strict=strict
            ).result()
    failures: list[dict[str, Any]] = []

    def factory() -> VirtualTimeEventLoop:
        loop = VirtualTimeEventLoop(start, guard_wall_clock=guard_wall_clock)
        if strict:

            def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
                failures.append(context)
                lp.default_exception_handler(context)

            loop.set_exception_handler(handler)
        return loop

    result = _run_on(factory(), coro, debug)
    if failures:
        ctx = failures[0]
        exc = ctx.get("exception")
        raise SimulationError(f"unhandled failure inside the simulation: {ctx.get('message')}: {exc!r}") from exc
    return result


def _run_on(loop: VirtualTimeEventLoop, coro: Coroutine[Any, Any, T], debug: bool | None) -> T:
    """``asyncio.run`` on a loop of ours: `asyncio.Runner` where it exists (3.11+), the same steps by hand on 3.10."""
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(debug=debug, loop_factory=lambda: loop) as runner:
            return runner.run(coro)
    if debug is not None:
        loop.set_debug(debug)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
