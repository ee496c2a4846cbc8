"""The run log: one typed sequence of what the protocol machines did in a run.

Each entry is `Entry(t, node, item)`: the virtual time, the node, and one of the protocol's own immutable values:
a note (`RoundStarted`, `Received`, `Verified`, `Rejected`, `Dropped`, `GaveUp`, `NoMajority`, `Crashed`, ...,
or a `Note` subclass of your own) or an outcome action (`Decide`, `Exclude`, `Execute`). Transport and timer plumbing (`Send`, `StartTimer`,
`CancelTimer`) and host requests (`Verify`, `Solve`) are not logged: the kernel trace (`poso_sim.sim.Trace`)
has the messages.

Table 3, the text account, the HTML outcome, `RunResult` and the sweep checker all read this log. Exports:

* `rows()`: one flat JSON-ready dict per entry, ``{"t", "node", "kind", <the item's fields>}`` (`kind` is the
  snake-case name in `KINDS`; a `Dropped` note keeps the dropped message's kind under ``message``);
* `to_jsonl()`: those rows as canonical JSON lines (sorted keys, compact, ASCII, floats as ``repr``);
* `digest()`: SHA-256 of the JSON lines: the same in any process for the same scenario and seed;
* `to_dataframe()`: a pandas DataFrame of the rows.

Observers (`RunLog(observers=[...])`, or `Runner(observers=...)`) are called with each entry as it is appended.

Two modes. A *full* log (the default for committees of up to `COMPACT_ABOVE` delegates) keeps every entry. A
*compact* log keeps the per-copy notes (`Received`, `DecisionSeen`, `Dropped`: about 2N^2 of them per height
with N delegates) only once per (kind, height, node) - and, for `Dropped`, per reason - the first one
(`RunLog.first_copy`), and counts the others in `omitted` (row kind -> entries left out; `counts` is the plain
dict behind it, which a host that tells later copies apart itself adds to); every other entry is kept. Observers still see every entry. A compact log's rows, exports and digest cover the entries it kept.
A compact run's kernel trace records `COMPACT_TRACE_EVENTS` (no sends) and no user event for a copy the log left
out (`poso_sim.scenarios.runner`), so a later copy costs the run only its count.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from poso_sim.common import CanonicalLines, canonical_json, jsonable, plain_json_encoder
from poso_sim.errors import ConfigError
from poso_sim.protocol import (
    Abandoned,
    AcceptedUnchecked,
    ConflictingDecisions,
    Crashed,
    Decide,
    DecisionSeen,
    Dropped,
    Exclude,
    Execute,
    GaveUp,
    NoMajority,
    OwnPlanRejected,
    ProofReceived,
    Received,
    Rejected,
    RoundStarted,
    Verified,
)
from poso_sim.sim import EVENTS

__all__ = ["Entry", "RunLog", "KINDS", "LOGGED", "LOG_MODES", "COMPACT_ABOVE", "COMPACTED", "COMPACT_TRACE_EVENTS",
           "kind_of", "item_fields", "plain"]


class Entry(NamedTuple):
    """One log entry: virtual time `t`, the `node` whose machine produced `item`, and the item."""

    t: float
    node: str
    item: Any

    @property
    def kind(self) -> str:
        return kind_of(type(self.item))

    def row(self) -> dict[str, Any]:
        """The flat JSON-ready dict of this entry (see the module docstring)."""
        item = self.item
        t = type(item)
        out = {"t": self.t, "node": self.node, "kind": KINDS.get(t) or kind_of(t)}
        for k, v in item_fields(item).items():  # `plain`, written into the row
            out[k] = v if type(v) in _SCALARS else plain_value(v)
        return out


#: the logged types and their row kinds
KINDS: dict[type, str] = {
    RoundStarted: "round_start",
    Abandoned: "abandoned",
    Received: "received",
    Verified: "verified",
    Rejected: "rejected",
    OwnPlanRejected: "own_plan_rejected",
    AcceptedUnchecked: "accepted_unchecked",
    ProofReceived: "proof_received",
    DecisionSeen: "decision_seen",
    Dropped: "dropped",
    GaveUp: "gave_up",
    ConflictingDecisions: "conflicting_decisions",
    NoMajority: "no_majority",
    Crashed: "crashed",
    Decide: "decided",
    Exclude: "excluded",
    Execute: "executed",
}
LOGGED = tuple(KINDS)


def kind_of(t: type) -> str:
    """The row kind of a logged type: `KINDS`, or for a note defined elsewhere (e.g. by a behaviour of your
    own) its class name in snake case (`MyNote` -> ``my_note``)."""
    k = KINDS.get(t) or _DERIVED.get(t)
    if k is None:
        k = _DERIVED[t] = re.sub(r"(?<!^)(?=[A-Z])", "_", t.__name__).lower()
    return k


_DERIVED: dict[type, str] = {}


def _verified(item: Verified) -> dict[str, Any]:
    v = item.verdict
    out = {"digest": item.digest, "accepted": v.accepted, "cost": v.cost, "reasons": v.reasons}
    if v.prices:  # a market's plan: the valid price intervals and the settlement prices
        out["prices"] = [list(p) for p in v.prices]
    return out


def _executed(item: Execute) -> dict[str, Any]:
    b = item.block
    return {"height": b.height, "digest": b.digest, "cost": b.cost, "leader": b.leader, "round": b.round,
            "votes": len(b.decisions), "hash": b.hash}


def _dropped(item: Dropped) -> dict[str, Any]:
    return {k: v for k, v in zip(item._fields, item) if v is not None}


def _no_majority(item: NoMajority) -> dict[str, Any]:
    return {"height": item.height, "votes": dict(item.votes), "conflicted": list(item.conflicted)}


_FIELDS: dict[type, Callable[[Any], dict[str, Any]]] = {
    Verified: _verified, Execute: _executed, Dropped: _dropped, NoMajority: _no_majority,
}


def item_fields(item: Any) -> dict[str, Any]:
    """The fields of a logged item as a flat dict (a verdict's and a block's fields spelled out; a `Dropped`
    note's unset fields left out)."""
    f = _FIELDS.get(type(item))
    if f is not None:
        return f(item)
    fields = getattr(item, "_fields", None)  # the protocol's notes are named tuples
    return dict(zip(fields, item)) if fields is not None else dict(item.__dict__)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def plain_value(v: Any) -> Any:
    """A non-scalar field value as plain JSON (what `plain` makes of it)."""
    if type(v) is tuple and all(type(w) is str for w in v):  # a path: what `jsonable` makes of it, faster
        return list(v)
    return jsonable(v)


def plain(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with JSON values (`poso_sim.common.jsonable` for anything but a plain scalar)."""
    return {k: v if type(v) in _SCALARS else plain_value(v) for k, v in fields.items()}


LOG_MODES = ("full", "compact")
#: a run of more delegates than this keeps a compact log unless told otherwise (`log_mode`)
COMPACT_ABOVE = 256
#: the per-copy notes a compact log keeps once per (kind, height, node)
COMPACTED = (Received, DecisionSeen, Dropped)
PER_COPY = frozenset(COMPACTED)
#: what the kernel trace of a compact run records (unless the run is given its own `trace_events`): every event
#: kind but ``send`` (a message's ``deliver`` or ``drop`` record carries its id, ends, kind, size and summary)
COMPACT_TRACE_EVENTS = tuple(ev for ev in EVENTS if ev != "send")


class RunLog(CanonicalLines):
    """The entries of one run, in the order the machines produced them (`mode`: "full" or "compact", see the
    module docstring)."""

    __slots__ = ("entries", "observers", "_digest", "mode", "counts", "_firsts")

    def __init__(self, observers: Iterable[Callable[[Entry], Any]] = (), mode: str = "full") -> None:
        if mode not in LOG_MODES:
            raise ConfigError(f"log mode: expected one of {', '.join(LOG_MODES)}, got {mode!r}")
        self.entries: list[Entry] = []
        self.observers = list(observers)
        self._digest: tuple[int, str] | None = None  # (entries covered, digest)
        self.mode = mode
        #: compact: row kind -> entries not kept, a plain dict (a host counting copies itself adds to it)
        self.counts: dict[str, int] = {}
        self._firsts: set[tuple[Any, ...]] = set()

    @property
    def omitted(self) -> Counter[str]:
        """Compact: row kind -> entries not kept (a new Counter each time)."""
        return Counter(self.counts)

    def keeps(self, node: str, item: Any) -> bool:
        """Whether this log keeps an entry of `node` (always, in full mode); counts what it leaves out."""
        if self.mode == "full" or type(item) not in PER_COPY:
            return True
        return self.first_copy(node, item)

    def first_copy(self, node: str, item: Any) -> bool:
        """For a per-copy note (`COMPACTED`) of `node`: whether it is the first of its (kind, height, node) - and
        reason, for `Dropped` - in this log; a later copy is counted in `omitted`. The compact mode's test."""
        t = type(item)
        key = (t, item.height, node, item.reason if t is Dropped else None)
        firsts = self._firsts
        if key in firsts:
            kind, counts = KINDS[t], self.counts
            counts[kind] = counts.get(kind, 0) + 1
            return False
        firsts.add(key)
        return True

    def append(self, t: float, node: str, item: Any) -> Entry:
        e = Entry(t, node, item)
        if self.keeps(node, item):
            self.entries.append(e)
        for obs in self.observers:
            obs(e)
        return e

    # ---- access
    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def of(self, *types: type) -> Iterator[Entry]:
        """The entries whose item is an instance of one of `types`."""
        return (e for e in self.entries if isinstance(e.item, types))

    # ---- exports
    def rows(self, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        if kinds is None:
            return [e.row() for e in self.entries]
        want = set(kinds)
        keep: dict[type, bool] = {}  # item type -> whether its kind is wanted (a log holds a dozen types)
        out = []
        for e in self.entries:
            t = type(e.item)
            k = keep.get(t)
            if k is None:
                k = keep[t] = kind_of(t) in want
            if k:
                out.append(e.row())
        return out

    def lines(self) -> Iterator[str]:
        _encode_plain = plain_json_encoder()  # a row is plain JSON already
        for i, e in enumerate(self.entries):
            try:
                row = e.row()
                # a row is plain JSON already (see `plain`) unless an entry was appended by hand with other types
                yield _encode_plain(row) if type(e.t) is float and type(e.node) is str else canonical_json(row)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"run log entry {i}: not JSON-encodable ({exc})") from None

    def digest(self) -> str:
        """SHA-256 (hex) over the canonical JSON lines (kept until an entry is appended)."""
        n = len(self.entries)
        got = self._digest
        if got is None or got[0] != n:
            got = self._digest = (n, super().digest())
        return got[1]


    def to_dataframe(self) -> Any:
        """A pandas DataFrame, one row per entry: columns t, node, kind, then every field seen (missing: NA)."""
        import pandas as pd  # heavy (about 0.4 s): only for this export

        rows = self.rows()
        cols: dict[str, None] = {"t": None, "node": None, "kind": None}
        for r in rows:
            cols.update(dict.fromkeys(r))
        return pd.DataFrame.from_records(rows, columns=list(cols))
