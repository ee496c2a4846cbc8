"""Fault descriptions. They are plain, validated data; `poso_sim.sim.network.Network` applies them.

Every channel fault takes ``src`` / ``dst`` (node names; ``None`` = any node) restricting which ordered channels
it applies to, a ``window=(t0, t1)`` of virtual time (half-open ``[t0, t1)``, checked at send time; ``None`` =
always) and a ``name`` used in drop reasons and to derive its random stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from poso_sim.errors import ConfigError

__all__ = ["Crash", "DelaySpike", "Duplicate", "Fault", "Filter", "Loss", "Partition", "Reorder"]

INF = math.inf


def _prob(field: str, p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= p <= 1.0):
        raise ConfigError(f"{field}: probability must be in [0, 1], got {p!r}")
    return float(p)


def _seconds(field: str, x: object, *, allow_inf: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x or (math.isinf(x) and not allow_inf):
        raise ConfigError(f"{field}: must be a finite number of seconds, got {x!r}")
    if x < 0:
        raise ConfigError(f"{field}: must be >= 0, got {x!r}")
    return float(x)


def _window(field: str, window: object) -> tuple[float, float]:
    if window is None:
        return (0.0, INF)
    if not (isinstance(window, (tuple, list)) and len(window) == 2):
        raise ConfigError(f"{field}: expected (t0, t1), got {window!r}")
    t0 = _seconds(f"{field}[0]", window[0])
    t1 = _seconds(f"{field}[1]", window[1], allow_inf=True)
    if t1 < t0:
        raise ConfigError(f"{field}: t1 ({t1!r}) must be >= t0 ({t0!r})")
    return (t0, t1)


def _names(field: str, nodes: object) -> frozenset[str] | None:
    if nodes is None:
        return None
    if isinstance(nodes, str):
        return frozenset([nodes])
    try:
        out = frozenset(nodes)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{field}: expected a node name or a collection of names, got {nodes!r}") from None
    for n in out:
        if not isinstance(n, str):
            raise ConfigError(f"{field}: node names must be strings, got {n!r}")
    return out


class Fault:
    """Base of all faults."""

    kind = "fault"

    def __init__(self, *, src: Any = None, dst: Any = None, window: Any = None, name: str | None = None) -> None:
        self.src = _names(f"{type(self).__name__}.src", src)
        self.dst = _names(f"{type(self).__name__}.dst", dst)
        self.window = _window(f"{type(self).__name__}.window", window)
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{type(self).__name__}.name: must be a string, got {name!r}")
        self.name = name

    def applies(self, src: str, dst: str) -> bool:
        return (self.src is None or src in self.src) and (self.dst is None or dst in self.dst)

    def nodes(self) -> Iterable[tuple[str, str]]:
        """(field, node) pairs naming every node this fault mentions, for validation."""
        for field, group in (("src", self.src), ("dst", self.dst)):
            for n in sorted(group or ()):
                yield field, n

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Loss(Fault):
    """Drop each message with probability ``p``."""

    kind = "loss"

    def __init__(self, p: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.p = _prob("Loss.p", p)


class Duplicate(Fault):
    """With probability ``p`` deliver a second copy (its own latency draw; same ``msg_id``)."""

    kind = "duplicate"

    def __init__(self, p: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.p = _prob("Duplicate.p", p)


class Reorder(Fault):
    """With probability ``p`` hold a message back by an extra delay uniform in ``[0, extra_delay)`` so that later
    messages on the channel overtake it."""

    kind = "reorder"

    def __init__(self, p: float, extra_delay: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.p = _prob("Reorder.p", p)
        self.extra_delay = _seconds("Reorder.extra_delay", extra_delay)


class DelaySpike(Fault):
    """Add ``extra`` seconds to messages sent in ``window`` (with probability ``p``)."""

    kind = "spike"

    def __init__(self, extra: float, window: Any = None, p: float = 1.0, **kw: Any) -> None:
        super().__init__(window=window, **kw)
        self.extra = _seconds("DelaySpike.extra", extra)
        self.p = _prob("DelaySpike.p", p)


class Filter(Fault):
    """Messages for which ``match(src, dst, payload)`` is true are dropped (``action="ignore"``) or have their
    payload replaced by ``replace(src, dst, payload)`` (``action="error"``)."""

    kind = "filter"

    def __init__(
        self,
        match: Callable[[str, str, Any], bool],
        action: str = "ignore",
        replace: Callable[[str, str, Any], Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if not callable(match):
            raise ConfigError(f"Filter.match: must be callable, got {match!r}")
        if action not in ("ignore", "error"):
            raise ConfigError(f"Filter.action: must be 'ignore' or 'error', got {action!r}")
        if action == "error" and not callable(replace):
            raise ConfigError("Filter.replace: action 'error' needs a callable replace(src, dst, payload)")
        self.match = match
        self.action = action
        self.replace = replace


class Partition(Fault):
    """Between ``t0`` and ``t1`` (half-open), nodes in different groups cannot talk, in both directions.

    ``groups`` lists disjoint sets of nodes; nodes in no group form one implicit extra group. ``isolate=nodes`` is
    shorthand for ``groups=[nodes]``. A message is cut if the link is cut when it is sent or when it arrives.
    """

    kind = "partition"

    def __init__(
        self,
        groups: Iterable[Iterable[str]] | None = None,
        t0: float = 0.0,
        t1: float = INF,
        *,
        isolate: Iterable[str] | str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(window=(t0, t1), name=name)
        if (groups is None) == (isolate is None):
            raise ConfigError("Partition.groups: give exactly one of groups=[...] or isolate=...")
        raw = [isolate] if isolate is not None else list(groups)  # type: ignore[arg-type]
        self.groups: list[frozenset[str]] = []
        seen: dict[str, int] = {}
        for i, g in enumerate(raw):
            names = _names(f"Partition.groups[{i}]", g) or frozenset()
            if not names:
                raise ConfigError(f"Partition.groups[{i}]: a group must not be empty")
            for n in sorted(names):
                if n in seen:
                    raise ConfigError(f"Partition.groups[{i}]: node {n!r} is already in group {seen[n]}")
                seen[n] = i
            self.groups.append(names)
        self._group_of = seen
        self.t0, self.t1 = self.window

    def group_of(self, node: str) -> int:
        return self._group_of.get(node, -1)

    def cuts(self, a: str, b: str) -> bool:
        return self._group_of.get(a, -1) != self._group_of.get(b, -1)

    def nodes(self) -> Iterable[tuple[str, str]]:
        for i, g in enumerate(self.groups):
            for n in sorted(g):
                yield f"groups[{i}]", n


class Crash(Fault):
    """``node`` crashes at ``at`` and recovers at ``recover_at`` (``None`` = never). A crashed node neither sends nor
    receives: its sends, messages arriving for it and its timers are dropped (with reason ``crash``)."""

    kind = "crash"

    def __init__(self, node: str, at: float, recover_at: float | None = None, *, name: str | None = None) -> None:
        if not isinstance(node, str):
            raise ConfigError(f"Crash.node: must be a node name, got {node!r}")
        at = _seconds("Crash.at", at)
        if recover_at is not None and _seconds("Crash.recover_at", recover_at) <= at:
            raise ConfigError(f"Crash.recover_at: must be > at ({at!r}), got {recover_at!r}")
        t1 = INF if recover_at is None else recover_at
        super().__init__(window=(at, t1), name=name)
        self.node = node
        self.at, self.recover_at = self.window[0], recover_at

    def nodes(self) -> Iterable[tuple[str, str]]:
        yield "node", self.node
