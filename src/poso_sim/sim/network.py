"""Nodes, channels and the delivery engine.

A `Network` owns one channel per ordered pair of nodes (created lazily on first use; with no channel fault, no
partition and a latency model that samples every pair alike, a *lean* channel: only its latency stream's state,
in an array per source, so N nodes cost 9 bytes a pair instead of N^2 channel objects, with the same draws). ``send`` never blocks: it
applies the send-time faults, draws a latency, and puts the message in the network's own queue of pending
deliveries (a calendar of buckets taken in the order of time, then send order: `_Queue`). The queue is tied to
the event loop by a single timer for its earliest entry, through public loop API
only (``call_at``, ``time``): each firing delivers every message due at that time and arms the timer for the next
one. On a `~poso_sim.sim.clock.VirtualTimeEventLoop` the timer is armed with ``call_at_bare`` (the same timer
heap, no ``asyncio.TimerHandle``), and the loop runs it inside its selector when nothing else is ready, so a
chain of deliveries at distinct instants costs no asyncio loop iteration per instant.

Fault composition order (fixed). At send time ``t``:

1. sender crashed at ``t`` -> drop ``crash:<src>``;
2. filters, in the order given: ``ignore`` -> drop ``filter:<name>``; ``error`` -> payload replaced (the delivery
   record carries ``reason="filter:<name>"``), later filters see the replaced payload;
3. partitions cutting the link at ``t`` -> drop ``partition:<name>``;
4. losses, in order -> drop ``loss:<name>`` (one draw per active loss fault);
5. latency drawn from the model; then delay spikes, then reorder hold-backs are added;
6. duplicates: each active duplicate fault may add a copy with its own latency draw (``reason="duplicate"``).

At delivery time ``t'``: receiver crashed -> drop ``crash:<dst>``; a partition cutting the link at ``t'`` -> drop
``partition:<name>``; otherwise the message goes to the node's handler, or to its inbox if it has none.
"""

from __future__ import annotations

import asyncio
import math
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from bisect import bisect_right
from heapq import heappop, heappush
from typing import Any

import numpy as np

from poso_sim.errors import ConfigError
from poso_sim.sim.faults import Crash, DelaySpike, Duplicate, Fault, Filter, Loss, Partition, Reorder
from poso_sim.sim.latency import Constant, LatencyModel, LogNormal, RegionTable, Uniform, as_latency
from poso_sim.sim.rng import (
    _GOLDEN, _MASK, _TWO_POW_M53, Stream, derive_seed, derive_seeds, mix64, mix64_many, output_at, output_inplace,
    random_many,
)
from poso_sim.sim.trace import Trace

__all__ = ["Inbox", "Message", "Network", "Node"]

INF = math.inf


_NO_LOOP = "Network must be used inside a running event loop (see poso_sim.sim.run)"


def _unbound(*args: Any) -> Any:
    raise RuntimeError(_NO_LOOP)


def _never(when: float, callback: Any) -> bool:
    return False


def _threshold(p: float) -> int:
    """The 64-bit outputs z of SplitMix64 whose uniform ``(z >> 11) * 2**-53`` is below ``p`` are exactly those
    with ``z < _threshold(p)`` (``p * 2**53`` is exact; an integer m is below it when it is below its ceiling)."""
    return math.ceil(p * 2.0**53) << 11


#: the outputs of each fault stream of a small network's channels drawn in advance (`Network._stream_states`)
_AHEAD = 8  # the campaign's channels draw at most 7 times from a stream in 99.7 % of cases
_STEPS = np.arange(1, 2 * _AHEAD + 1, dtype=np.uint64) * np.uint64(_GOLDEN)  # d golden (wrapping), 0 < d <= 2 _AHEAD
_SPENT: Iterator[int] = iter(())  # an iterator with nothing left (no outputs drawn in advance)


_output = output_at


def _draw(its: list[Iterator[int]], st: list[int], j: int) -> float:
    """`Stream.random` on stream j of a channel: its next output drawn in advance, else one from ``st[j]``."""
    x = next(its[j], None)
    if x is None:
        x = _output(st, j)
    return (x >> 11) * _TWO_POW_M53


class Message:
    """A message in flight or delivered. ``payload`` is the object given to ``send`` (never copied)."""

    __slots__ = ("msg_id", "src", "channel", "dst_node", "payload", "kind", "size", "sent_at", "note", "summary",
                 "line")

    def __init__(
        self, msg_id: int, channel: _Channel, dst_node: Node, payload: Any, kind: str, size: int, sent_at: float,
        note: str | None, summary: str | None, line: str | None = None,
    ) -> None:
        self.msg_id = msg_id
        self.src = channel.src  # the sender's name (read by every handler: a slot, not a property)
        self.channel = channel  # a lean channel (see Network) is shared by every destination of its source
        self.dst_node = dst_node
        self.payload = payload
        self.kind = kind
        self.size = size
        self.sent_at = sent_at
        self.note = note
        self.summary = summary
        self.line = line  # its deliver record's line format (`Trace.line_writer`), given by send_many

    @property
    def dst(self) -> str:
        return self.dst_node.name

    @property
    def duplicate(self) -> bool:
        return self.note is not None and "duplicate" in self.note

    def __repr__(self) -> str:
        return f"Message(id={self.msg_id}, {self.src}->{self.dst}, kind={self.kind!r}, sent_at={self.sent_at!r})"


_new_message = object.__new__  # a Message without __init__: the hot loops set its slots themselves


class Inbox:
    """FIFO of delivered messages with an awaitable `get` (cheaper than `asyncio.Queue`)."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[Message] = deque()
        self._waiters: deque[asyncio.Future[Message]] = deque()

    def put(self, msg: Message) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(msg)
                return
        self._items.append(msg)

    def get_nowait(self) -> Message:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> Message:
        if self._items:
            return self._items.popleft()
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # delivered while being cancelled: keep the message
                self._items.appendleft(fut.result())
            raise

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


class _Channel:
    """One ordered pair's channel (made on first use). ``st`` holds the states of the channel's random streams as
    plain integers: ``st[0]`` its latency stream, ``st[j]`` the stream of the fault whose entries carry ``j`` (see
    `Network._fault_entries`); ``its[j]`` yields the stream's next outputs drawn in advance, if any, before
    ``st[j]`` is drawn from (`Network._stream_states`). The fault entries are the network's, shared by every
    channel they apply to.
    ``const`` is the latency when the pair's model is a `Constant` (nothing drawn), else None."""

    __slots__ = (
        "src", "dst", "dst_node", "latency", "const", "lognormal", "st", "its", "plain", "filters", "cuts", "losses",
        "spikes", "reorders", "dups",
    )


_PAIR_FREE = (Constant, Uniform, LogNormal)  # models whose `bind` is the same for every pair (a cached sampler)


def _latency_fields(model: LatencyModel, src: str, dst: str) -> tuple[Any, Any, Any, Any]:
    """(model, a channel's ``latency``, ``const``, ``lognormal``) for the channel ``src -> dst``."""
    pair = model.model_for(src, dst) if type(model) is RegionTable else model
    const = pair.seconds if type(pair) is Constant else None  # what its sampler returns, drawing nothing
    return model, pair.bind(src, dst), const, pair if type(pair) is LogNormal else None


class _Lean:
    """The lean channels from one source node: one shared `_Channel` (no faults, the shared latency sampler) and,
    per destination (by node index), the state of the channel's latency stream - 9 bytes a channel instead of a
    channel object."""

    __slots__ = ("channel", "states", "made", "np_states", "np_made")

    def __init__(self, channel: _Channel, n: int) -> None:
        self.channel = channel
        self.states = array("Q", bytes(8 * n))
        self.made = bytearray(n)  # 1 once the destination's stream is derived
        self.np_states = np.frombuffer(self.states, dtype=np.uint64)  # the same memory, for draws in bulk
        self.np_made = np.frombuffer(self.made, dtype=np.uint8)


class _Queue:
    """The pending deliveries, taken in (time, push order): a calendar of buckets. A time's bucket is
    ``int(time / quantum)`` (monotone in the time, so a bucket's times all precede a later bucket's); a bucket is a
    pair of lists (times, messages) filled in push order; the earliest bucket, once needed, is sorted by time
    (stable: send order among equal times) into the loaded lists, read from a cursor. A message whose bucket is
    the loaded one or earlier goes into the loaded lists at its place (after the equal times). With a quantum no
    longer than the least latency that never happens in a run without zero latencies, so a message costs an
    append, a share of one sort and a list read, where a heap of its time costs a sift through every message in
    flight (a million at N = 1 000) and a dict entry."""

    __slots__ = ("inv", "buckets", "order", "whens", "msgs", "i", "cur")

    def __init__(self, quantum: float) -> None:
        self.inv = 1.0 / quantum
        self.buckets: dict[int, tuple[list[float], list[Message]]] = {}
        self.order: list[int] = []  # heap of the buckets' numbers
        self.whens: list[float] = []  # the loaded bucket, sorted; entries before the cursor are taken
        self.msgs: list[Message | None] = []
        self.i = 0
        self.cur = -1  # the loaded bucket's number (-1: none yet)

    def push(self, when: float, msg: Message) -> None:
        b = int(when * self.inv)
        if b <= self.cur:
            whens = self.whens
            at = bisect_right(whens, when, self.i)
            whens.insert(at, when)
            self.msgs.insert(at, msg)
            return
        got = self.buckets.get(b)
        if got is None:
            self.buckets[b] = ([when], [msg])
            heappush(self.order, b)
        else:
            got[0].append(when)
            got[1].append(msg)

    def head(self) -> float:
        """The earliest pending time (INF if none)."""
        i = self.i
        whens = self.whens
        if i < len(whens):
            return whens[i]
        return self.load()

    def load(self) -> float:
        """Load the earliest bucket (the loaded one is used up); its first time, or INF if none is left."""
        if not self.order:
            if self.whens:
                self.whens, self.msgs, self.i = [], [], 0
            return INF
        b = heappop(self.order)
        whens, msgs = self.buckets.pop(b)
        if len(whens) > 1:
            ordered = sorted(whens)
            if ordered != whens:  # (a bucket in time order, most of them, is loaded as it is)
                by_time = sorted(range(len(whens)), key=whens.__getitem__)  # stable: push order among equal times
                whens = ordered
                msgs = list(map(msgs.__getitem__, by_time))
        self.whens, self.msgs, self.i, self.cur = whens, msgs, 0, b
        return whens[0]

    def clear(self) -> None:
        self.buckets.clear()
        self.order.clear()
        self.whens, self.msgs, self.i = [], [], 0


class Node:
    """A named endpoint. Create through `Network.node`."""

    __slots__ = ("name", "network", "_out", "_handler", "inbox", "_down", "_on_crash", "_on_recover", "_lean")

    def __init__(self, name: str, network: Network) -> None:
        self.name = name
        self.network = network
        self._out: dict[str, _Channel] = {}
        self._lean: _Lean | None = None  # lean channels from this node (see Network)
        self._handler: Callable[[Message], Any] | None = None
        self.inbox = Inbox()
        self._down: tuple[tuple[float, float, str], ...] = ()
        self._on_crash: list[Callable[[], Any]] = []
        self._on_recover: list[Callable[[], Any]] = []

    # messaging ----------------------------------------------------------------------------------------------
    def send(
        self, dst: str, payload: Any = None, *, kind: str = "msg", size: int = 0, summary: str | None = None
    ) -> int:
        """Send ``payload`` to ``dst`` (never blocks). Returns the message id."""
        return self.network._send(self, dst, payload, kind, size, summary)

    def send_many(
        self, dsts: Sequence[str], payload: Any = None, *, kind: str = "msg", size: int = 0,
        summary: str | None = None,
    ) -> range:
        """Send ``payload`` to each of ``dsts`` in order: exactly what ``send`` to each would do (the same message
        ids, latency draws, trace records and delivery order), at less cost per message. Returns the ids."""
        return self.network._send_many(self, dsts, payload, kind, size, summary)

    def broadcast(
        self, payload: Any = None, *, kind: str = "msg", size: int = 0, summary: str | None = None,
        include_self: bool = False,
    ) -> list[int]:
        """Send to every node (in the network's node order)."""
        return self.network.broadcast(
            self.name, payload, kind=kind, size=size, summary=summary, include_self=include_self
        )

    def on_message(self, handler: Callable[[Message], Any] | None) -> Callable[[Message], Any] | None:
        """Deliver messages to ``handler(msg)`` (synchronously, in virtual time) instead of the inbox.
        Usable as a decorator; ``None`` restores inbox delivery."""
        self._handler = handler
        return handler

    async def recv(self, timeout: float | None = None) -> Message:
        """Next message of the inbox; with ``timeout`` raises `TimeoutError` after that many virtual seconds."""
        if timeout is None:
            return await self.inbox.get()
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except asyncio.TimeoutError:  # the builtin one on every version (Python 3.10's asyncio has its own class)
            raise TimeoutError(f"{self.name}: no message within {timeout} s") from None

    # timers and events --------------------------------------------------------------------------------------
    def set_timer(self, delay: float, callback: Callable[..., Any], *args: Any, name: str = "timer") -> asyncio.TimerHandle:
        """Call ``callback(*args)`` after ``delay`` virtual seconds, recorded as a ``timer`` event. The call is
        skipped (recorded with ``reason="crash:<node>"``) if the node is crashed by then."""
        if not (isinstance(delay, (int, float)) and delay >= 0):
            raise ConfigError(f"set_timer.delay: must be a number >= 0, got {delay!r}")
        loop = self.network._loop or self.network._bind()
        return loop.call_at(loop.time() + delay, self.network._fire_timer, self, name, callback, args)

    def arm_timer(self, delay: float, callback: Callable[..., Any], *args: Any, name: str = "timer") -> Any:
        """`set_timer` for callers that only ever cancel the timer: the handle returned has ``cancel()`` and
        ``cancelled()`` only (on a `~poso_sim.sim.clock.VirtualTimeEventLoop` the loop's bare timer, about 1 µs
        cheaper than an ``asyncio.TimerHandle``; on another loop the ``asyncio.TimerHandle``). The timer is the
        same as `set_timer`'s: same heap entry, same tie order with the timers around it, same trace event."""
        if not (isinstance(delay, (int, float)) and delay >= 0):
            raise ConfigError(f"arm_timer.delay: must be a number >= 0, got {delay!r}")
        net = self.network
        if net._loop is None:
            net._bind()
        return net._arm(net._clock() + delay, net._fire_timer, self, name, callback, args)

    async def sleep(self, delay: float, name: str = "sleep") -> None:
        """``asyncio.sleep`` recorded as a ``timer`` event when it ends."""
        await asyncio.sleep(delay)
        net = self.network
        if net._tr_timer:
            net.trace.record(net.now, "timer", self.name, None, name)

    def record(self, name: str, data: Any = None) -> None:
        """Record a user event attributed to this node."""
        self.network.record(name, data, node=self.name)

    # crash state --------------------------------------------------------------------------------------------
    @property
    def crashed(self) -> bool:
        """Whether the node is crashed now."""
        return bool(self._down) and self.network._is_down(self, self.network.now)

    def on_crash(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        self._on_crash.append(fn)
        return fn

    def on_recover(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        self._on_recover.append(fn)
        return fn

    def __repr__(self) -> str:
        return f"Node({self.name!r})"


def _quantum(model: LatencyModel) -> float:
    """The bucket width of the queue of pending deliveries for a latency model: no longer than its least latency
    when it has one (a message then never lands in the bucket being delivered), short enough that a bucket holds
    a small part of what is in flight."""
    if isinstance(model, Constant) and model.seconds > 0:
        return model.seconds
    if isinstance(model, Uniform) and model.hi > 0:
        width = (model.hi - model.lo) / 32
        return min(model.lo, width) if model.lo > 0 and width > 0 else (model.lo or width)
    if isinstance(model, LogNormal) and model.median > 0:
        return model.median / 8
    return 1e-3


class Network:
    """Named nodes, one lazily created channel per ordered pair, latency, faults and a trace.

    The network binds to the running event loop on first use; it is meant for a
    `~poso_sim.sim.clock.VirtualTimeEventLoop` (any asyncio loop works, in real time).
    """

    def __init__(
        self,
        nodes: Sequence[str],
        latency: LatencyModel | float | tuple[float, float] = 0.0,
        seed: int = 0,
        faults: Iterable[Fault] = (),
        trace: Trace | None = None,
    ) -> None:
        if isinstance(nodes, str) or not isinstance(nodes, Iterable):
            raise ConfigError(f"nodes: expected a list of node names, got {nodes!r}")
        names = list(nodes)
        if not names:
            raise ConfigError("nodes: a network needs at least one node")
        self._nodes: dict[str, Node] = {}
        for i, n in enumerate(names):
            if not isinstance(n, str) or not n:
                raise ConfigError(f"nodes[{i}]: node names must be non-empty strings, got {n!r}")
            if n in self._nodes:
                raise ConfigError(f"nodes[{i}]: duplicate node name {n!r}")
            self._nodes[n] = Node(n, self)
        self.names: tuple[str, ...] = tuple(names)
        self.latency = as_latency(latency, "latency")
        self._latency_fields: tuple[Any, Any, Any, Any] | None = None  # `_latency_fields` of a single model
        if isinstance(self.latency, RegionTable):
            for n in names:
                if n not in self.latency.regions:
                    raise ConfigError(f"latency.regions: node {n!r} has no region")
            for n in self.latency.regions:
                if n not in self._nodes:
                    raise ConfigError(f"latency.regions: unknown node {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed: must be an integer, got {seed!r}")
        self.seed = seed
        self.trace = trace if trace is not None else Trace()
        if not isinstance(self.trace, Trace):
            raise ConfigError(f"trace: expected a Trace, got {trace!r}")
        self.faults: list[Fault] = self._check_faults(faults)
        self._partitions = [f for f in self.faults if isinstance(f, Partition)]
        self._src_keys = dict(zip(names, derive_seeds(seed, "channel-src", names)))
        self._dst_keys = dict(zip(names, derive_seeds(seed, "channel-dst", names)))
        self._channel_faults = [f for f in self.faults if not isinstance(f, (Partition, Crash))]
        self._purpose_keys = {"latency": derive_seed(seed, "purpose", "latency")}
        for f in self._channel_faults:
            if isinstance(f, (Loss, DelaySpike, Reorder, Duplicate)):  # the faults that draw
                self._purpose_keys[f.name] = derive_seed(seed, "purpose", "fault", f.name)  # type: ignore[index]
        self._entries, self._shared = self._fault_entries()
        self._cut_entries = [(p, (p.t0, p.t1, "partition:" + p.name)) for p in self._partitions]
        self._chan_states: list[Any] | None = None  # the channels' stream states by source and destination index
        self._ahead: memoryview | None = None  # a small network's fault streams' first outputs (`_stream_states`)
        self._small = False  # whether the stream states were derived for the whole network at once
        self._ahead_lat = 0  # outputs of each latency stream drawn in advance
        self._ahead_slices: list[slice] = []  # where each stream's outputs are among a channel's
        # Lean channels: with no channel faults, no partitions and a latency model whose sampler is the same for
        # every pair, a channel differs from another only by its latency stream, so a channel object per ordered
        # pair (N^2 of them) is replaced by the stream's state in an array per source; the stream is derived
        # exactly as for a channel object (mix(mix(src key, dst key), latency key)), so every draw is the same.
        self._index = {n: i for i, n in enumerate(names)}
        self._dst_key_array: np.ndarray | None = None  # the destination keys by node index (`_lean_whens`)
        self._lean = (not self._channel_faults and not self._partitions
                      and type(self.latency) in (Constant, Uniform, LogNormal))
        self._scratch = Stream.from_state(0)
        downs: dict[str, list[tuple[float, float, str]]] = {}
        for f in self.faults:
            if isinstance(f, Crash):
                downs.setdefault(f.node, []).append((f.window[0], f.window[1], f.name))  # type: ignore[arg-type]
        for name, windows in downs.items():
            self._nodes[name]._down = tuple(sorted(windows))
        tr = self.trace.events
        self._tr_send = "send" in tr
        self._tr_deliver = "deliver" in tr
        self._tr_drop = "drop" in tr
        self._tr_timer = "timer" in tr
        self._tr_fault = "fault" in tr
        self._row = self.trace.appender()  # the hot path's writer: no event filter (the _tr_* flags decide)
        # a digest-only trace's deliver records of a send_many: their shared fields formatted once per batch
        self._lines = self.trace.line_writer() if self._tr_deliver else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Callable[[], float] | None = None  # the bound loop's time()
        # pending deliveries, in the order of (time, send order): see _Queue
        self._queue = _Queue(_quantum(self.latency))
        self._in_flight = 0
        self._timer: Any = None  # the loop's timer for the heap's head (anything with cancel())
        self._arm: Callable[..., Any] = _unbound
        self._go_on: Callable[[float, Any], bool] = _never  # the virtual loop's `go_on_at`
        self._drain_cb = self._drain  # one bound method: the loop knows its timer by it (`go_on_at`)
        self._timer_when = INF
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._next_id = 0
        self.sent = 0
        self.delivered = 0
        self.dropped = 0
        self.duplicated = 0
        self.drops: dict[str, int] = {}

    # configuration checks -----------------------------------------------------------------------------------
    def _check_faults(self, faults: Iterable[Fault]) -> list[Fault]:
        if isinstance(faults, Fault):
            faults = [faults]
        out = list(faults)
        seen: dict[str, int] = {}
        for i, f in enumerate(out):
            if not isinstance(f, Fault):
                raise ConfigError(f"faults[{i}]: expected a Fault (Loss, Partition, ...), got {f!r}")
            if f.name is None:
                f.name = f"{f.kind}{i}"
            if f.name in seen:
                raise ConfigError(f"faults[{i}].name: {f.name!r} is already used by faults[{seen[f.name]}]")
            seen[f.name] = i
            for field, n in f.nodes():
                if n not in self._nodes:
                    raise ConfigError(f"faults[{i}].{field}: unknown node {n!r}")
        index = {id(f): i for i, f in enumerate(out)}
        crashes = [f for f in out if isinstance(f, Crash)]
        for a in range(len(crashes)):
            for b in range(a + 1, len(crashes)):
                fa, fb = crashes[a], crashes[b]
                if fa.node == fb.node and fa.window[0] < fb.window[1] and fb.window[0] < fa.window[1]:
                    raise ConfigError(
                        f"faults[{index[id(fb)]}]: crash window of node {fa.node!r} overlaps faults[{index[id(fa)]}]"
                    )
        parts = [f for f in out if isinstance(f, Partition)]
        for a in range(len(parts)):
            for b in range(len(parts)):
                pa, pb = parts[a], parts[b]
                if a == b or not (pa.t0 < pb.t1 and pb.t0 < pa.t1):
                    continue
                for g in pa.groups:
                    sides = sorted({pb.group_of(n) for n in g} - {-1})
                    if len(sides) > 1:
                        together = sorted(n for n in g if pb.group_of(n) != -1)
                        raise ConfigError(
                            f"faults[{index[id(pb)]}].groups: contradicts overlapping faults[{index[id(pa)]}], which "
                            f"keeps {together} together while this one separates them"
                        )
        return out

    # nodes --------------------------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        """The node called ``name``."""
        try:
            return self._nodes[name]
        except (KeyError, TypeError):
            raise ConfigError(f"node: unknown node {name!r}") from None

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    @property
    def now(self) -> float:
        """Current (virtual) time of the bound loop."""
        clock = self._clock
        if clock is None:
            clock = self._bind().time
        return clock()

    # binding to the loop ------------------------------------------------------------------------------------
    def _bind(self) -> asyncio.AbstractEventLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(_NO_LOOP) from None
        self._loop = loop
        self._clock = loop.time
        # the delivery timer: a VirtualTimeEventLoop arms it without an asyncio.TimerHandle (same timer heap)
        self._arm = getattr(loop, "call_at_bare", None) or loop.call_at
        self._go_on = getattr(loop, "go_on_at", None) or _never
        now = loop.time()
        for node in self._nodes.values():
            for t0, t1, name in node._down:
                loop.call_at(max(t0, now), self._transition, node, "crash", name)
                if t1 < INF:
                    loop.call_at(max(t1, now), self._transition, node, "recover", name)
        for p in self._partitions:
            loop.call_at(max(p.t0, now), self._partition_event, p, "partition")
            if p.t1 < INF:
                loop.call_at(max(p.t1, now), self._partition_event, p, "heal")
        return loop

    def _transition(self, node: Node, what: str, name: str) -> None:
        if self._tr_fault:
            self.trace.record(self._loop.time(), "fault", node.name, None, what, None, None, name)  # type: ignore[union-attr]
        if what == "crash":
            node.inbox.clear()
            for fn in node._on_crash:
                fn()
        else:
            for fn in node._on_recover:
                fn()

    def _partition_event(self, p: Partition, what: str) -> None:
        if self._tr_fault:
            groups = [sorted(g) for g in p.groups]
            self.trace.record(self._loop.time(), "fault", None, None, what, None, None, p.name, groups)  # type: ignore[union-attr]

    @staticmethod
    def _is_down(node: Node, t: float) -> bool:
        for t0, t1, _ in node._down:
            if t0 <= t < t1:
                return True
        return False

    # channels -----------------------------------------------------------------------------------------------
    def _fault_entries(self) -> tuple[list[tuple[Fault, int, tuple]], tuple[tuple, ...] | None]:
        """The channel faults as the channels use them, worked out once per network: per fault, in list order,
        (the fault, the slot of its kind among (filters, losses, spikes, reorders, dups), its entry); an entry
        names the fault's stream by its index in a channel's ``st`` and, for a loss, reorder or duplicate, holds
        its probability as the `_threshold` of the draws' 64-bit outputs. Also the five tuples every channel shares
        when every channel fault applies to every pair (else None: `_channel` picks a channel's own)."""
        keys = [self._purpose_keys["latency"]]  # the purposes of a channel's streams, in the order of ``st``
        entries: list[tuple[Fault, int, tuple]] = []
        for f in self._channel_faults:
            w0, w1 = f.window
            if isinstance(f, Filter):
                entries.append((f, 0, (w0, w1, f.match, f.action == "error", f.replace, "filter:" + f.name)))
                continue
            if not isinstance(f, (Loss, DelaySpike, Reorder, Duplicate)):
                continue
            j = len(keys)
            keys.append(self._purpose_keys[f.name])  # type: ignore[index]
            if isinstance(f, Loss):
                entries.append((f, 1, (w0, w1, _threshold(f.p), j, "loss:" + f.name)))
            elif isinstance(f, DelaySpike):
                entries.append((f, 2, (w0, w1, f.p, j, f.extra)))
            elif isinstance(f, Reorder):
                entries.append((f, 3, (w0, w1, _threshold(f.p), j, f.extra_delay)))
            else:
                entries.append((f, 4, (w0, w1, _threshold(f.p), j)))
        self._stream_keys = keys
        if any(f.src is not None or f.dst is not None for f, _, _ in entries):
            return entries, None
        return entries, self._pick(entries)

    @staticmethod
    def _pick(entries: Iterable[tuple[Fault, int, tuple]]) -> tuple[tuple, ...]:
        lists: tuple[list, ...] = ([], [], [], [], [])
        for _, slot, entry in entries:
            lists[slot].append(entry)
        return tuple(map(tuple, lists))  # empty tuples are shared singletons

    def _stream_states(self, i: int, k: int) -> tuple[list[int], list[Iterator[int]]]:
        """The streams of the channel from node ``i`` to node ``k`` (indices), in the order of `_stream_keys`:
        stream j is mix64(mix64(source key, destination key), purpose key j) (the module's determinism rules).
        Returns (their states, per stream an iterator over outputs drawn in advance). Derived in bulk with
        numpy's wrap-around uint64 arithmetic (`mix64_many`: the same numbers): for the whole network at once
        when it is small, else one source's row at its first send. In a small network the first `_AHEAD` outputs
        of every fault stream (and 2 `_AHEAD` of the latency stream when it is log-normal) are drawn in bulk too
        (`_draw_ahead`: an array, read through the iterators) and the states given are those after them;
        otherwise every iterator is spent and the states are the streams' first."""
        rows = self._chan_states
        if rows is None:
            names = self.names
            dst = self._dst_key_array
            if dst is None:
                dst = self._dst_key_array = np.array([self._dst_keys[d] for d in names], dtype=np.uint64)
            keys = np.array(self._stream_keys, dtype=np.uint64)
            n, faults = len(names), len(keys) - 1
            if n * n * len(keys) <= 4096:
                src = np.array([self._src_keys[name] for name in names], dtype=np.uint64)
                states = mix64_many(mix64_many(src[:, None], dst[None, :])[:, :, None], keys)
                self._ahead_lat = lat = 2 * _AHEAD if self._lat_draws_two() else 0
                if faults or lat:
                    self._ahead = self._draw_ahead(states, lat)
                    self._ahead_slices = ([slice(0, lat)] if lat else []) + [
                        slice(lat + f * _AHEAD, lat + (f + 1) * _AHEAD) for f in range(faults)]
                self._chan_states = states.tolist()
                self._small = True
            else:
                self._chan_states = [None] * n
            rows = self._chan_states
        if self._small:
            return rows[i][k], self._ahead_of(i * len(rows) + k)
        row = rows[i]
        if row is None:
            keys = np.array(self._stream_keys, dtype=np.uint64)
            base = mix64_many(np.uint64(self._src_keys[self.names[i]]), self._dst_key_array)
            row = rows[i] = mix64_many(base[:, None], keys).tolist()
        return row[k], [_SPENT] * len(self._stream_keys)

    def _lat_draws_two(self) -> bool:
        """Whether every channel's latency is a log-normal draw (two outputs of the latency stream each)."""
        model = self.latency
        return type(model) is LogNormal and model.sigma != 0

    @staticmethod
    def _draw_ahead(states: np.ndarray, lat: int) -> memoryview:
        """The outputs of a small network's streams drawn in advance, per channel (source, destination) the
        latency stream's first ``lat`` then every fault stream's first `_AHEAD` (output d of a stream whose
        state is s is SplitMix64's finaliser of s + d golden: `Stream.random`), computed in place on one
        array; ``states`` (n, n, streams) is moved on past them."""
        n, streams = states.shape[0], states.shape[2]
        z = np.empty((n, n, lat + (streams - 1) * _AHEAD), dtype=np.uint64)
        if lat:
            np.add(states[:, :, :1], _STEPS[:lat], out=z[:, :, :lat])
        if streams > 1:
            z[:, :, lat:] = (states[:, :, 1:, None] + _STEPS[:_AHEAD]).reshape(n, n, -1)
        output_inplace(z)
        table = array("Q")
        table.frombytes(z.tobytes())
        if lat:
            states[:, :, 0] += np.uint64((lat * _GOLDEN) & _MASK)
        states[:, :, 1:] += np.uint64((_AHEAD * _GOLDEN) & _MASK)
        return memoryview(table)

    def _ahead_of(self, pair: int) -> list[Iterator[int]]:
        """Per stream of the channel with index ``pair`` (source * N + destination) in a small network, an
        iterator over its outputs drawn in advance (`_ahead_slices`: where each stream's are in a channel's)."""
        ahead = self._ahead
        if ahead is None:
            return [_SPENT] * len(self._stream_keys)
        lat, slices = self._ahead_lat, self._ahead_slices
        width = slices[-1].stop
        mine = ahead[pair * width:(pair + 1) * width]
        if lat:
            return [iter(mine[sl]) for sl in slices]
        return [_SPENT] + [iter(mine[sl]) for sl in slices]

    def _channel(self, node: Node, dst: str) -> _Channel:
        dst_node = self._nodes.get(dst) if isinstance(dst, str) else None
        if dst_node is None:
            raise ConfigError(f"send.dst: unknown node {dst!r} (from {node.name!r})")
        src = node.name
        ch = _Channel()
        ch.src, ch.dst, ch.dst_node = src, dst, dst_node
        model = self.latency
        fields = self._latency_fields
        if fields is None or fields[0] is not model:
            fields = _latency_fields(model, src, dst)
            if type(model) in _PAIR_FREE:  # the same sampler for every pair: worked out once
                self._latency_fields = fields
        ch.latency, ch.const, ch.lognormal = fields[1:]
        i, k = self._index[src], self._index[dst]
        if self._small:  # `_stream_states`, inline
            ch.st, ch.its = self._chan_states[i][k], self._ahead_of(i * len(self.names) + k)  # type: ignore[index]
        else:
            ch.st, ch.its = self._stream_states(i, k)
        cuts = ch.cuts = tuple(e for p, e in self._cut_entries if p.cuts(src, dst)) if self._cut_entries else ()
        shared = self._shared
        if shared is None:
            shared = self._pick(e for e in self._entries if e[0].applies(src, dst))
        ch.filters, ch.losses, ch.spikes, ch.reorders, ch.dups = shared
        ch.plain = not cuts and not any(shared)
        node._out[dst] = ch
        return ch

    def _lean_of(self, node: Node) -> _Lean:
        ch = _Channel()
        ch.src, ch.dst, ch.dst_node = node.name, None, None
        ch.latency = self.latency.bind(node.name, node.name)  # the same sampler for every pair (see __init__)
        ch.const = ch.lognormal = ch.st = ch.its = None
        ch.filters = ch.cuts = ch.losses = ch.spikes = ch.reorders = ch.dups = ()
        ch.plain = True
        lean = node._lean = _Lean(ch, len(self.names))
        return lean

    def _lean_dst(self, node: Node, dst: str) -> int:
        i = self._index.get(dst) if isinstance(dst, str) else None
        if i is None:
            raise ConfigError(f"send.dst: unknown node {dst!r} (from {node.name!r})")
        return i

    def _lean_delay(self, lean: _Lean, src: str, dst: str, i: int) -> float:
        """A latency draw from the stream of the lean channel src -> dst (destination index `i`)."""
        rng = self._scratch
        if lean.made[i]:
            rng.state = lean.states[i]
        else:
            lean.made[i] = 1
            rng.state = mix64(mix64(self._src_keys[src], self._dst_keys[dst]), self._purpose_keys["latency"]) & _MASK
        delay = lean.channel.latency(rng)
        lean.states[i] = rng.state
        return delay

    # the hot path -------------------------------------------------------------------------------------------
    def _send(self, node: Node, dst: str, payload: Any, kind: str, size: int, summary: str | None) -> int:
        if not self._lean:
            self._send_out(node, (dst,), payload, kind, size, summary)
            return self._next_id - 1
        loop = self._loop or self._bind()
        now = loop.time()
        # lean channels: the steps of `_send_out` for a channel without faults
        i = self._lean_dst(node, dst)
        lean = node._lean or self._lean_of(node)
        msg_id = self._next_id
        self._next_id = msg_id + 1
        self.sent += 1
        if self._tr_send:
            self._row(now, "send", node.name, dst, kind, msg_id, size, None, summary)
        if node._down and self._is_down(node, now):
            self._drop(now, node.name, dst, kind, msg_id, size, "crash:" + node.name)
            return msg_id
        when = now + self._lean_delay(lean, node.name, dst, i)
        self._push(when, Message(msg_id, lean.channel, self._nodes[dst], payload, kind, size, now, None, summary))
        return msg_id

    def _send_out(
        self, node: Node, dsts: Iterable[str], payload: Any, kind: str, size: int, summary: str | None
    ) -> None:
        """`_send` to each of ``dsts`` in order on channel objects (not lean): the fault steps in the fixed order
        of the module's docstring. A draw from a stream j of a channel is SplitMix64 written out on ``st[j]``
        (`Stream.random`: the same numbers); the latency's sampler draws from a scratch `Stream` holding
        ``st[0]``. The pushes are `_push`'s, with the bucket of the last one at hand."""
        loop = self._loop or self._bind()
        now = loop.time()
        src = node.name
        out = node._out
        down = bool(node._down) and self._is_down(node, now)
        row = self._row if self._tr_send else None
        queue = self._queue
        inv, buckets = queue.inv, queue.buckets
        last, lw, lm = -1, None, None  # the last bucket appended to
        for dst in dsts:
            ch = out.get(dst)
            if ch is None:
                ch = self._channel(node, dst)
            msg_id = self._next_id
            self._next_id = msg_id + 1
            self.sent += 1
            if row is not None:
                row(now, "send", src, dst, kind, msg_id, size, None, summary)
            if down:
                self._drop(now, src, dst, kind, msg_id, size, "crash:" + src)
                continue
            note = None
            body = payload
            if ch.plain:
                delay = ch.const
                if delay is None:
                    delay = self._draw_latency(ch)
            else:
                reason = None
                if ch.filters:
                    body, note, reason = self._filter(ch, src, dst, body, now)
                if reason is None:
                    for t0, t1, why in ch.cuts:
                        if t0 <= now < t1:
                            reason = why
                            break
                st, its = ch.st, ch.its
                if reason is None:
                    for w0, w1, cap, j, why in ch.losses:
                        if w0 <= now < w1:
                            x = next(its[j], None)
                            if x is None:
                                x = _output(st, j)
                            if x < cap:  # the draw's uniform below the fault's p (`_threshold`)
                                reason = why
                                break
                if reason is not None:
                    self._drop(now, src, dst, kind, msg_id, size, reason)
                    continue
                delay = ch.const
                if delay is None:
                    delay = self._draw_latency(ch)
                for w0, w1, p, j, extra in ch.spikes:
                    if w0 <= now < w1 and (p >= 1.0 or _draw(its, st, j) < p):
                        delay += extra
                for w0, w1, cap, j, extra in ch.reorders:
                    if w0 <= now < w1:
                        x = next(its[j], None)
                        if x is None:
                            x = _output(st, j)
                        if x < cap:
                            delay += extra * _draw(its, st, j)
                for w0, w1, cap, j in ch.dups:
                    if w0 <= now < w1:
                        x = next(its[j], None)
                        if x is None:
                            x = _output(st, j)
                        if x < cap:
                            self._duplicate(ch, msg_id, body, kind, size, now, note, summary)
            when = now + delay
            msg = _new_message(Message)  # `Message(...)`, its __init__ inline (half the cost)
            msg.msg_id = msg_id
            msg.src = src
            msg.channel = ch
            msg.dst_node = ch.dst_node
            msg.payload = body
            msg.kind = kind
            msg.size = size
            msg.sent_at = now
            msg.note = note
            msg.summary = summary
            msg.line = None
            b = int(when * inv)  # `_Queue.push` and `_push`, inline
            if b == last:
                lw.append(when)  # type: ignore[union-attr]
                lm.append(msg)  # type: ignore[union-attr]
            elif b <= queue.cur:
                queue.push(when, msg)
            else:
                got = buckets.get(b)
                if got is None:
                    got = buckets[b] = ([when], [msg])
                    heappush(queue.order, b)
                else:
                    got[0].append(when)
                    got[1].append(msg)
                last, lw, lm = b, got[0], got[1]
            self._in_flight += 1
            if when < self._timer_when:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._arm(when, self._drain_cb)
                self._timer_when = when

    @staticmethod
    def _filter(ch: _Channel, src: str, dst: str, payload: Any, now: float) -> tuple[Any, str | None, str | None]:
        """The channel's filters in order: (the payload, the note of the ``error`` filters that replaced it, the
        drop reason of an ``ignore`` filter that matched, or None)."""
        note = None
        for w0, w1, match, is_error, replace, why in ch.filters:
            if w0 <= now < w1 and match(src, dst, payload):
                if not is_error:
                    return payload, note, why
                payload = replace(src, dst, payload)
                note = why if note is None else note + "," + why
        return payload, note, None

    def _draw_latency(self, ch: _Channel) -> float:
        """A draw of the channel's latency sampler from its latency stream (``st[0]``, through a scratch `Stream`;
        a log-normal's written out, on the outputs drawn in advance first: `LogNormal.draw`)."""
        if ch.lognormal is not None:
            return ch.lognormal.draw(ch.its[0], ch.st, 0)
        st, scratch = ch.st, self._scratch
        scratch.state = st[0]
        delay = ch.latency(scratch)
        st[0] = scratch.state
        return delay

    def _duplicate(
        self, ch: _Channel, msg_id: int, payload: Any, kind: str, size: int, now: float, note: str | None,
        summary: str | None,
    ) -> None:
        """Push a duplicate's copy of a message sent now: its own latency draw, ``duplicate`` in its note."""
        self.duplicated += 1
        copy_note = "duplicate" if note is None else note + ",duplicate"
        copy = Message(msg_id, ch, ch.dst_node, payload, kind, size, now, copy_note, summary)
        lag = ch.const
        self._push(now + (lag if lag is not None else self._draw_latency(ch)), copy)

    def _send_many(
        self, node: Node, dsts: Sequence[str], payload: Any, kind: str, size: int, summary: str | None
    ) -> range:
        """`_send` to each of ``dsts`` in order. On lean channels (and a sender not crashed) the steps of `_send`
        and `_push` run in one loop with locals: the same ids, draws, records, pushes and timer arming."""
        loop = self._loop or self._bind()
        now = loop.time()
        first = self._next_id
        index = self._index
        try:
            idx = [index[d] for d in dsts] if self._lean and not (node._down and self._is_down(node, now)) else None
        except (KeyError, TypeError):  # an unknown destination: the sends before it go out, its own raises
            idx = None
        if idx is None:
            if self._lean:  # a crashed sender or an unknown destination
                for dst in dsts:
                    self._send(node, dst, payload, kind, size, summary)
            else:
                self._send_out(node, dsts, payload, kind, size, summary)
            return range(first, self._next_id)
        n = len(idx)
        self._next_id = first + n
        self.sent += n
        src = node.name
        if self._tr_send:
            row = self._row
            for k, dst in enumerate(dsts):
                row(now, "send", src, dst, kind, first + k, size, None, summary)
        lean = node._lean or self._lean_of(node)
        ch = lean.channel
        whens = self._lean_whens(lean, src, idx, dsts, now)
        nodes = self._nodes
        queue = self._queue
        inv, buckets, get = queue.inv, queue.buckets, queue.buckets.get
        line = None if self._lines is None else self._lines[0]("deliver", src, kind, size, None, summary)
        msg_id = first
        last, lw, lm = -1, None, None  # the last bucket appended to (a batch's times are close)
        for k in range(n):
            when = whens[k]
            msg = _new_message(Message)  # `Message(...)`, its __init__ inline (half the cost)
            msg.msg_id = msg_id
            msg.src = src
            msg.channel = ch
            msg.dst_node = nodes[dsts[k]]
            msg.payload = payload
            msg.kind = kind
            msg.size = size
            msg.sent_at = now
            msg.note = None
            msg.summary = summary
            msg.line = line
            msg_id += 1
            b = int(when * inv)  # `_Queue.push`, inline
            if b == last:
                lw.append(when)  # type: ignore[union-attr]
                lm.append(msg)  # type: ignore[union-attr]
            elif b <= queue.cur:
                queue.push(when, msg)
            else:
                got = get(b)
                if got is None:
                    got = buckets[b] = ([when], [msg])
                    heappush(queue.order, b)
                else:
                    got[0].append(when)
                    got[1].append(msg)
                last, lw, lm = b, got[0], got[1]
            if when < self._timer_when:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._arm(when, self._drain_cb)
                self._timer_when = when
        self._in_flight += n
        return range(first, msg_id)

    def _lean_whens(self, lean: _Lean, src: str, idx: list[int], dsts: Sequence[str], now: float) -> list[float]:
        """The delivery times of messages sent now from ``src`` to ``dsts`` (node indices ``idx``) on lean
        channels, each ``now`` plus one draw from its channel's latency stream (derived on first use), as
        `_lean_delay` would give them one by one. Uniform latencies to distinct destinations are drawn in bulk
        (numpy's 64-bit integer arithmetic and float64 operations: the same numbers)."""
        model = self.latency
        n = len(idx)
        if type(model) is Uniform and n > 8 and len(set(idx)) == n:
            at = np.array(idx, dtype=np.intp)
            states, made = lean.np_states, lean.np_made
            new = at[made[at] == 0]
            if new.size:
                keys = self._dst_key_array
                if keys is None:
                    keys = self._dst_key_array = np.array([self._dst_keys[d] for d in self.names], dtype=np.uint64)
                states[new] = mix64_many(mix64_many(np.uint64(self._src_keys[src]), keys[new]),
                                         np.uint64(self._purpose_keys["latency"]))
                made[new] = 1
            u, states[at] = random_many(states[at])
            return (now + (model.lo + (model.hi - model.lo) * u)).tolist()
        if type(model) is Constant:  # draws nothing (the streams' states are never read)
            return [now + model.seconds] * n
        delay = self._lean_delay
        return [now + delay(lean, src, dsts[k], idx[k]) for k in range(n)]

    def _push(self, when: float, msg: Message) -> None:
        self._queue.push(when, msg)
        self._in_flight += 1
        if when < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._arm(when, self._drain_cb)
            self._timer_when = when

    def _drop(self, t: float, src: str, dst: str, kind: str, msg_id: int, size: int, reason: str) -> None:
        self.dropped += 1
        drops = self.drops
        drops[reason] = drops.get(reason, 0) + 1
        if self._tr_drop:
            self._row(t, "drop", src, dst, kind, msg_id, size, reason, None)

    def _drain(self) -> None:
        """Deliver every message due now, then arm one timer for the next one.

        Only public loop API: the virtual loop's clock reaches the next message's time through its selector (when
        nothing is ready and no earlier timer is due), exactly as it reaches any other timer. If a handler
        raises, the messages after its own stay pending (before any sent for that time meanwhile) and the next
        firing delivers them."""
        self._timer = None
        self._timer_when = -INF  # while draining, _push must not arm timers: the finally clause does
        queue = self._queue
        try:
            now = self._loop.time()  # type: ignore[union-attr]
            deliver = self._deliver
            go_on, me = self._go_on, self._drain_cb
            row = self._row if self._tr_deliver else None
            row_line = None if self._lines is None else self._lines[1]
            lean = self._lean
            plain_now = now.__class__ is float and now - now == 0.0  # a finite float: `row_line` can write it
            while True:
                i = queue.i
                whens = queue.whens
                if i < len(whens):
                    nxt = whens[i]
                else:
                    nxt = queue.load()
                    i = 0
                    whens = queue.whens
                if nxt > now:
                    # the next instant: at once if the loop would run this timer next anyway (`go_on_at`)
                    if nxt == INF or not go_on(nxt, me):
                        break
                    now = nxt
                    plain_now = now.__class__ is float and now - now == 0.0
                msgs = queue.msgs
                item = msgs[i]
                msgs[i] = None
                queue.i = i + 1
                self._in_flight -= 1
                node = item.dst_node
                if node._down or (not lean and item.channel.cuts):
                    deliver(item, now)
                    continue
                # `_deliver` for a message no fault can drop here (the common case), inline
                self.delivered += 1
                if row is not None:
                    line = item.line
                    if line is not None and plain_now:
                        row_line(line, now, node.name, item.msg_id)
                    else:
                        row(now, "deliver", item.src, node.name, item.kind, item.msg_id, item.size, item.note,
                            item.summary)
                handler = node._handler
                if handler is not None:
                    handler(item)
                else:
                    node.inbox.put(item)
        finally:
            self._timer_when = INF
            when = queue.head()
            if when != INF:
                self._timer = self._arm(when, self._drain_cb)
                self._timer_when = when
            elif self._idle_waiters:
                waiters, self._idle_waiters = self._idle_waiters, []
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)

    def _deliver(self, msg: Message, now: float) -> None:
        ch = msg.channel
        node = msg.dst_node
        if node._down and self._is_down(node, now):
            self._drop(now, ch.src, node.name, msg.kind, msg.msg_id, msg.size, "crash:" + node.name)
            return
        for t0, t1, reason in ch.cuts:
            if t0 <= now < t1:
                self._drop(now, ch.src, node.name, msg.kind, msg.msg_id, msg.size, reason)
                return
        self.delivered += 1
        if self._tr_deliver:
            self._row(now, "deliver", ch.src, node.name, msg.kind, msg.msg_id, msg.size, msg.note, msg.summary)
        handler = node._handler
        if handler is not None:
            handler(msg)
        else:
            node.inbox.put(msg)

    def _fire_timer(self, node: Node, name: str, callback: Callable[..., Any], args: tuple) -> None:
        now = self._loop.time()  # type: ignore[union-attr]
        down = bool(node._down) and self._is_down(node, now)
        if self._tr_timer:
            self.trace.record(now, "timer", node.name, None, name, None, None, ("crash:" + node.name) if down else None)
        if not down:
            callback(*args)

    # public helpers -----------------------------------------------------------------------------------------
    def send(self, src: str, dst: str, payload: Any = None, *, kind: str = "msg", size: int = 0,
             summary: str | None = None) -> int:
        return self._send(self.node(src), dst, payload, kind, size, summary)

    def broadcast(
        self, src: str, payload: Any = None, *, kind: str = "msg", size: int = 0, summary: str | None = None,
        include_self: bool = False,
    ) -> list[int]:
        """Send ``payload`` from ``src`` to every node in node order (one message id per destination)."""
        node = self.node(src)
        return list(self._send_many(node, [d for d in self.names if include_self or d != src], payload, kind, size,
                                    summary))

    def record(self, name: str, data: Any = None, node: str | None = None) -> None:
        """Record a user event (``data`` must be JSON-encodable for export)."""
        self.trace.record(self.now, "user", node, None, name, None, None, None, data)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any, node: str,
                   name: str = "timer") -> asyncio.TimerHandle:
        """`Node.set_timer` on node ``node``."""
        return self.node(node).set_timer(delay, callback, *args, name=name)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def idle(self) -> None:
        """Wait until no message is in flight."""
        if not self._in_flight:
            return
        fut = (self._loop or self._bind()).create_future()
        self._idle_waiters.append(fut)
        await fut

    def release(self) -> None:
        """Break the reference cycles between the network, its nodes and their channels once a run is over and
        read: a sweep makes thousands of networks in one process, and each is then freed by reference counting
        instead of being left to the cycle collector. The counters (`sent`, `delivered`, `dropped`, `drops`,
        `stats`) and the trace stay readable; the network is not meant to carry messages again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._arm = _unbound
        self._go_on = _never
        self._drain_cb = None  # a bound method of the network: a cycle
        self._loop = None
        self._clock = None
        self._idle_waiters = []
        for node in self._nodes.values():
            node._out = {}
            node._lean = None
            node._handler = None
            node._on_crash = []
            node._on_recover = []
            node.inbox.clear()
            node.network = None  # type: ignore[assignment]

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "duplicated": self.duplicated,
            "in_flight": self._in_flight,
            "drops": dict(sorted(self.drops.items())),
        }
