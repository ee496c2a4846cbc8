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
import contextvars
import heapq
import os
import selectors
import signal
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

try:  # the C functions behind signal.getsignal and signal.signal, without their conversion of the handler
    # returned to an enum (a failed Enum lookup, an exception, for a function: 24 of the 25 us of a run's four calls)
    from _signal import getsignal as _getsignal, signal as _setsignal
except ImportError:  # pragma: no cover - not CPython
    _getsignal, _setsignal = signal.getsignal, signal.signal


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

# asyncio's own constants (the same in 3.10 to 3.13): its timer queue is purged of cancelled timers when it holds
# more than _PURGE_MIN of them and more than _PURGE_FRACTION are cancelled; it never waits longer than _MAX_WAIT
_PURGE_MIN = 100
_PURGE_FRACTION = 0.5
_MAX_WAIT = 24 * 3600.0


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
        # The loop's timers live in the loop's own heap, so asyncio's timer queue is empty and ``timeout`` is 0
        # (something is ready or a stop is pending) or None (nothing is ready).
        loop = self._loop
        assert loop is not None
        if timeout == 0:
            return loop._busy_iteration(self)
        return loop._idle_iterations(self)

    def _poll(self, timeout: float | None, only_self_pipe: bool) -> list[tuple[selectors.SelectorKey, int]]:
        """The real selector's part of one iteration (``timeout`` is what asyncio would pass): the self-pipe
        alone is polled one time in 256 (signals, thread wake-ups; threads append to the ready queue directly, so
        skipping the syscall loses nothing), real file descriptors every time; with no timer at all, worker
        threads or real I/O get a bounded wall-clock wait, then the run is declared deadlocked."""
        self._polls += 1
        if timeout and only_self_pipe and self._polls & 255:
            return []
        if not only_self_pipe or timeout is None or not (self._polls & 255):
            events = self._real.select(0)
            if events:
                return events
        if timeout is None:
            loop = self._loop
            assert loop is not None
            if loop.executor_used or not only_self_pipe:
                events = self._real.select(self._thread_grace)
                if events:
                    return events
            raise DeadlockError(loop._deadlock_message())
        return []


# ------------------------------------------------------------------------------------------------ the timers


class _Entry(float):
    """A timer, as an item of the loop's heap: its value is the timer's time, so two entries compare as their
    times do, ``e1 < e2`` exactly ``w1 < w2``: the comparison asyncio's own queue makes (``TimerHandle.__lt__``),
    so the heap takes the same shape and same-instant timers fire in the same order. Being a float, an entry is
    compared in C (a tuple ``(when, entry)`` would call a Python ``__eq__`` for every tie met while sifting, and
    a committee's round timers are ties). Returned as is by `VirtualTimeEventLoop.call_at_bare` (a handle with
    ``cancel()`` only). Attributes (a float subclass has no slots): ``callback``, ``args``, ``context``, ``loop``;
    ``heaped`` (in the loop's heap: what asyncio notes on its timer handles), ``dead`` (cancelled) and ``queued``
    (the handle it was handed to asyncio's ready queue as) have class defaults."""

    heaped = True
    dead = False
    queued: asyncio.Handle | None = None

    def cancel(self) -> None:
        if not self.dead:
            self.dead = True
            if self.heaped:  # asyncio counts the cancelled timers still in its queue
                self.loop._cancelled_timers += 1
            if self.queued is not None:  # already in the ready queue: it must not run
                self.queued.cancel()

    def cancelled(self) -> bool:
        return self.dead

    def __repr__(self) -> str:
        return f"<timer {_describe(self.callback, self.args)}{' cancelled' if self.dead else ''}>"

    def __bool__(self) -> bool:  # a handle, not a number (a timer at 0.0 is a timer all the same)
        return True

    __hash__ = object.__hash__  # as a dict key or in a set, a handle is itself (timers due together are equal)


_new_entry = float.__new__


class _Timer(asyncio.TimerHandle):
    """The handle `VirtualTimeEventLoop.call_at` returns: an ``asyncio.TimerHandle`` whose ``cancel`` also tells
    the loop's heap."""

    __slots__ = ("_entry",)

    def cancel(self) -> None:
        self._entry.cancel()
        super().cancel()


# ------------------------------------------------------------------------------------------------ the loop


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop running in virtual time (seconds, float, starting at ``start``)."""

    def __init__(self, start: float = 0.0, *, guard_wall_clock: bool = True, thread_grace: float = 30.0) -> None:
        selector = _VirtualSelector(thread_grace)
        super().__init__(selector)
        selector._loop = self
        self._vsel = selector
        self._heap: list[_Entry] = []  # the timers, each compared as its time (asyncio's own queue stays empty)
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not (0 <= start < float("inf")):
            self.close()
            raise ConfigError(f"start: virtual start time must be a finite number >= 0, got {start!r}")
        self._vnow = float(start)
        self._whens: list[float] = []  # times of the timers asked for through call_at, popped as the clock passes
        self._cancelled_timers = 0  # asyncio's count of cancelled timers in its queue, kept the same way
        self._soon = 0  # call_soon calls so far: a timer run inside the selector that made one ends the batch
        self._stop_asked = False
        self._woken = False  # call_soon_threadsafe was called (another thread, a signal): end the batch
        self.executor_used = False  # whether worker threads may wake the loop (run_in_executor, to_thread)
        self._inline: Any = None  # the callback of the timer `_idle_iterations` is running alone right now
        self._inline_soon = 0  # the call_soon count when it started
        self._guard_wall_clock = guard_wall_clock
        self._clock_resolution = 1e-9

    # the clock ----------------------------------------------------------------------------------------------
    def time(self) -> float:
        return self._vnow

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        if context is None:
            context = contextvars.copy_context()
        timer = _Timer(when, callback, args, self, context)
        timer._entry = self.call_at_bare(when, callback, *args, context=context)
        return timer

    def call_at_bare(self, when: float, callback: Any, *args: Any, context: Any = None) -> _Entry:
        """`call_at` without the ``asyncio.TimerHandle``: the handle returned has ``cancel()`` and ``cancelled()``
        only (the network's delivery timer, armed once per delivery instant)."""
        # every timer (call_later, sleep, wait_for, timeouts) comes through here: its time is noted so that the
        # clock lands on it exactly when the selector advances (no rounding from now + (when - now))
        if when is None:
            raise TypeError("when cannot be None")
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        e = _new_entry(_Entry, when)
        e.callback = callback
        e.args = args
        e.context = context if context is not None else contextvars.copy_context()
        e.loop = self
        heapq.heappush(self._heap, e)
        heapq.heappush(self._whens, when)
        return e

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        self._soon += 1
        return super().call_soon(callback, *args, context=context)

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        self._woken = True
        return super().call_soon_threadsafe(callback, *args, context=context)

    def stop(self) -> None:
        self._stop_asked = True
        super().stop()

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        self.executor_used = True
        return super().run_in_executor(executor, func, *args)

    def set_default_executor(self, executor: Any) -> None:
        self.executor_used = True
        super().set_default_executor(executor)

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        # asyncio.Runner (3.12+) gives the worker threads 300 s to finish: in virtual time that expires at once
        # and leaves them unjoined (a RuntimeWarning); wait for them instead (the deadlock check bounds the wait)
        await super().shutdown_default_executor()

    def close(self) -> None:
        super().close()
        self._heap.clear()

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

    # the iterations -----------------------------------------------------------------------------------------
    # One iteration of asyncio's loop purges cancelled timers from its queue, waits in the selector (here: moves
    # the clock), moves the timers due by then to the ready queue and runs what is ready. The loop does the
    # timer steps on its own heap, the same way, inside the selector; when nothing else was ready, it runs the
    # due timers right there and goes on with the next iteration, until one of them made something ready
    # (call_soon), asked for a stop, or another thread woke the loop. So a run of callbacks driven by timers
    # alone (a network delivering messages, each at its own instant) costs no asyncio iteration per instant.

    def _purge(self) -> None:
        heap = self._heap
        n = len(heap)
        if n > _PURGE_MIN and self._cancelled_timers / n > _PURGE_FRACTION:
            kept = []
            for e in heap:
                if e.dead:
                    e.heaped = False
                else:
                    kept.append(e)
            heapq.heapify(kept)
            heap[:] = kept
            self._cancelled_timers = 0
        else:
            while heap and heap[0].dead:
                self._cancelled_timers -= 1
                heapq.heappop(heap).heaped = False

    def _due(self) -> list[_Entry]:
        heap = self._heap
        end = self._vnow + 1e-9  # the clock resolution
        due = []
        while heap:
            if heap[0] >= end:
                break
            e = heapq.heappop(heap)
            e.heaped = False
            due.append(e)
        return due

    def _hand_out(self, due: list[_Entry]) -> None:
        """Append due timers to asyncio's ready queue, in order (asyncio appends its timer handles there)."""
        call_soon = super().call_soon
        for e in due:
            if not e.dead:
                e.queued = call_soon(e.callback, *e.args, context=e.context)

    def _busy_iteration(self, sel: _VirtualSelector) -> list[tuple[selectors.SelectorKey, int]]:
        """An iteration with something ready: no waiting, the timers due now join the ready queue (the steps of
        `_purge`, `_VirtualSelector._poll` and `_due`, each skipped without a call when it has nothing to do)."""
        heap = self._heap
        if heap and (heap[0].dead or (len(heap) > _PURGE_MIN and 2 * self._cancelled_timers > len(heap))):
            self._purge()
        sel._polls += 1
        events = sel._real.select(0) if sel._registered > 1 or not (sel._polls & 255) else []
        if heap and heap[0] < self._vnow + 1e-9:
            self._hand_out(self._due())
        return events

    def _idle_iteration(self, sel: _VirtualSelector) -> list[tuple[selectors.SelectorKey, int]]:
        """An iteration with nothing ready, done as asyncio does it: move the clock to the earliest timer and hand
        the timers due then to the ready queue."""
        heap = self._heap
        self._purge()
        timeout = None
        if heap:
            timeout = min(max(0.0, heap[0] - self._vnow), _MAX_WAIT)
        events = sel._poll(timeout, sel._registered <= 1)
        if not events and timeout:
            self._advance(timeout)
        self._hand_out(self._due())
        return events

    def _idle_iterations(self, sel: _VirtualSelector) -> list[tuple[selectors.SelectorKey, int]]:
        """Iterations with nothing ready, each the same steps as `_idle_iteration`, but the due timers run right
        here, until one of them made something ready (call_soon), asked for a stop or another thread woke the
        loop; the iteration after that one is a busy one."""
        if sel._registered > 1 or self.get_debug():  # real I/O to poll each time; debug mode times each callback
            return self._idle_iteration(sel)
        heap = self._heap
        whens = self._whens
        heappop = heapq.heappop
        while True:
            n = len(heap)
            if n and not heap[0].dead and (n <= _PURGE_MIN or 2 * self._cancelled_timers <= n):
                pass  # nothing to purge (see _purge): the common case, decided without a call
            else:
                self._purge()
                if not heap:
                    return self._idle_iteration(sel)  # no timer: threads may wake the loop, or a deadlock
            now = self._vnow
            timeout = heap[0] - now
            sel._polls += 1
            if not (sel._polls & 255):  # the self-pipe, now and then (see _VirtualSelector._poll)
                events = sel._real.select(0)
                if events:
                    self._hand_out(self._due())
                    return events
            if timeout > 0:  # move the clock onto the timer (the steps of _advance)
                if timeout > _MAX_WAIT:
                    timeout = _MAX_WAIT
                target = now + timeout  # >= 0
                slack = 1e-9 * target if target > 1.0 else 1e-9
                landed = None
                while whens and whens[0] <= target + slack:
                    landed = heappop(whens)
                if landed is not None and landed >= now:
                    target = landed
                self._vnow = now = target
            end = now + 1e-9  # the clock resolution: timers before it are due
            if heap[0] >= end:
                continue  # nothing due yet (a wait is capped at one day)
            soon = self._soon
            e = heappop(heap)
            e.heaped = False
            if heap and heap[0] < end:
                due = [e]
                while heap and not heap[0] >= end:
                    e = heappop(heap)
                    e.heaped = False
                    due.append(e)
                self._run_inline(due)
            elif not e.dead:
                self._inline, self._inline_soon = e.callback, soon
                try:
                    e.context.run(e.callback, *e.args)
                except (SystemExit, KeyboardInterrupt):
                    self._inline = None
                    raise
                except BaseException as exc:
                    self._inline = None
                    self._report(e, exc)
                self._inline = None
            if self._soon != soon or self._stop_asked or self._woken:
                self._woken = False
                return self._busy_iteration(sel)

    def go_on_at(self, when: float, callback: Any) -> bool:
        """For a timer callback running alone inside the selector (`_idle_iterations`), without arguments: if the
        timer ``call_at_bare(when, callback)`` it would arm now to go on would be the next thing the loop runs,
        alone at its instant, move the clock there as that next iteration would, do its steps on the heap and
        return True; the caller then goes on at once, in its own context, as that timer's run would have.
        Otherwise change nothing and return False (the caller arms the timer).

        Every observable step stays: the heap gets the same push and pop (its shape decides the order of later
        same-instant timers), the self-pipe the same poll count; what is saved is the timer object, its context
        copy and the iteration's own bookkeeping. Not when a stop is pending, another thread woke the loop, the
        callback made something ready (call_soon), an earlier or simultaneous timer (within the clock
        resolution) is in the heap, a purge or a self-pipe poll is due, or a cancelled timer's or another timer's
        time lies at or before the target (the next iteration pops its note)."""
        if self._inline is not callback or self._soon != self._inline_soon or self._stop_asked or self._woken:
            return False
        heap = self._heap
        n = len(heap) + 1  # with the timer it would arm
        if heap and not heap[0] >= when + 1e-9:
            return False  # another timer would run first or with it
        if n > _PURGE_MIN and 2 * self._cancelled_timers > n:
            return False  # the next iteration purges the heap
        sel = self._vsel
        polls = sel._polls + 1
        if not polls & 255:
            return False  # the next iteration polls the self-pipe
        now = self._vnow
        timeout = when - now
        if not 0 < timeout <= _MAX_WAIT:
            return False
        target = now + timeout
        whens = self._whens
        if whens and whens[0] <= target + (1e-9 * target if target > 1.0 else 1e-9):
            return False  # notes the next iteration would pop besides this timer's own
        sel._polls = polls
        heapq.heappush(heap, when)  # what arming the timer and popping it as due do to the heap (its shape)
        heapq.heappop(heap)
        self._vnow = when
        return True

    def _run_inline(self, due: list[_Entry]) -> None:
        """Run due timers as asyncio's ready queue would: in order, skipping cancelled ones, an exception going
        to the loop's exception handler."""
        for i, e in enumerate(due):
            if e.dead:
                continue
            try:
                e.context.run(e.callback, *e.args)
            except (SystemExit, KeyboardInterrupt):
                self._hand_out(due[i + 1:])
                raise
            except BaseException as exc:
                self._report(e, exc)

    def _report(self, e: _Entry, exc: BaseException) -> None:
        self.call_exception_handler({
            "message": f"Exception in callback {_describe(e.callback, e.args)}",
            "exception": exc,
            "handle": e,
        })

    def _deadlock_message(self) -> str:
        tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
        names = ", ".join(sorted(f"{t.get_name()}({getattr(t.get_coro(), '__qualname__', '?')})" for t in tasks))
        return (
            f"simulation deadlocked at t={self._vnow!r}: no callback is ready and no timer is scheduled; "
            f"waiting tasks: {names or 'none'}"
        )

    def run_forever(self) -> None:
        try:
            if self._guard_wall_clock:
                with forbid_wall_clock():
                    super().run_forever()
            else:
                super().run_forever()
        finally:
            self._stop_asked = False


def _describe(callback: Any, args: tuple) -> str:
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return f"{name}({', '.join(map(repr, args))})"


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
    """``asyncio.run`` on a loop of ours, with the steps of `asyncio.Runner` (3.11+) written out: the main task in
    a copy of the caller's context, Ctrl-C in the main thread cancelling it, the tasks left cancelled and the
    async generators closed at the end, then the loop closed. The default executor is shut down only when one
    was used (with none, that step of the Runner does nothing but run the loop once more). On 3.10 (no
    `asyncio.Runner`) the loop is also the thread's current event loop while it runs, as `asyncio.run` does."""
    if not asyncio.iscoroutine(coro):
        raise ValueError(f"a coroutine was expected, got {coro!r}")
    if debug is not None:
        loop.set_debug(debug)
    old = not hasattr(asyncio, "Runner")
    try:
        if old:
            asyncio.set_event_loop(loop)
        return _run_main(loop, loop.create_task(coro))  # in a copy of the caller's context, as the Runner's
    finally:
        try:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            if loop.executor_used:
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            if old:
                asyncio.set_event_loop(None)
            loop.close()


def _run_main(loop: VirtualTimeEventLoop, task: asyncio.Task[T]) -> T:
    """Run the main task to its end; a first Ctrl-C (main thread, default handler) cancels it and ends the run
    with `KeyboardInterrupt`, a second one raises at once (`asyncio.Runner.run`)."""
    interrupts = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and not task.done():
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)
            return
        raise KeyboardInterrupt()

    handler: Any = None
    if threading.current_thread() is threading.main_thread() and \
            _getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            _setsignal(signal.SIGINT, on_sigint)
            handler = on_sigint
        except ValueError:  # a main thread without signals (an embedded interpreter)
            pass
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if interrupts:
            uncancel = getattr(task, "uncancel", None)  # 3.11+: unless the task was also cancelled otherwise
            if uncancel is None or uncancel() == 0:
                raise KeyboardInterrupt() from None
        raise
    finally:
        if handler is not None and _getsignal(signal.SIGINT) is handler:
            _setsignal(signal.SIGINT, signal.default_int_handler)


def _cancel_remaining(loop: VirtualTimeEventLoop) -> None:
    """Cancel the loop's unfinished tasks, let them end, and report an exception one of them ended with."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler({
                "message": "unhandled exception during asyncio.run() shutdown",
                "exception": task.exception(),
                "task": task,
            })
