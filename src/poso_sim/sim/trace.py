"""The simulation trace: one record per send, delivery, drop, timer, fault transition and user event.

Records are stored as tuples (cheap) and exported as dicts with the keys of `FIELDS`:

* ``seq``: 0, 1, 2, ... in recording order; ``t``: virtual time in seconds (float);
* ``ev``: ``"send" | "deliver" | "drop" | "timer" | "fault" | "user"``;
* ``src``, ``dst``: node names (``dst`` is ``None`` for timers and user events);
* ``kind``: message kind, timer name, fault kind (``"crash"``/``"recover"``) or user event name;
* ``msg_id``: message id (duplicates share the id of the original), ``size``: declared size in bytes;
* ``reason``: why a message was dropped or altered (``"loss:<fault>"``, ``"partition:<fault>"``, ``"crash:<node>"``,
  ``"filter:<fault>"``, ...), or ``"duplicate"`` on the delivery of a copy;
* ``data``: JSON-encodable user data (user events) or the user's ``summary`` string of a message.

Payloads are opaque and never recorded. The canonical encoding is one JSON object per line with sorted keys,
compact separators, ASCII only, floats as ``repr``; `Trace.digest` is the SHA-256 of those lines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring_ascii
from typing import Any

from poso_sim.common import CanonicalLines
from poso_sim.errors import ConfigError

__all__ = ["EVENTS", "FIELDS", "Trace"]

FIELDS = ("seq", "t", "ev", "src", "dst", "kind", "msg_id", "size", "reason", "data")
EVENTS = ("send", "deliver", "drop", "timer", "fault", "user")
_SORTED = sorted(range(len(FIELDS)), key=lambda i: FIELDS[i])
#: one canonical line of a record whose fields are all str/None, int or float (what the kernel records for
#: sends, deliveries, drops and timers): the keys of `FIELDS` in sorted order, compact, ASCII
_LINE = '{"data":%s,"dst":%s,"ev":%s,"kind":%s,"msg_id":%s,"reason":%s,"seq":%d,"size":%s,"src":%s,"t":%r}'


#: the same line for the records of messages (sends, deliveries, drops): msg_id and size are ints
_MSG_LINE = '{"data":%s,"dst":%s,"ev":%s,"kind":%s,"msg_id":%d,"reason":%s,"seq":%d,"size":%d,"src":%s,"t":%r}'


class _Texts(dict):
    """The JSON text of each str met (and of None), made on first use; anything else is a KeyError (or a
    TypeError when unhashable): the record then takes the general way."""

    __slots__ = ()

    def __missing__(self, v: Any) -> str:
        if v.__class__ is not str:
            raise KeyError(v)
        text = self[v] = encode_basestring_ascii(v)
        return text

    def text(self, v: Any) -> str | None:
        """The JSON text of a str or None, None for anything else (a TypeError if unhashable)."""
        try:
            return self[v]
        except KeyError:
            return None


def _fast_lines(rows: Iterable[tuple], dumps: Callable[[Any], str]) -> Iterator[str | tuple]:
    """The canonical line of each record, written directly when its fields are str/None/int and a finite float
    time (the same text as the encoder's); a record it cannot write is yielded as itself."""
    texts = _Texts()  # names, kinds and summaries repeat: each text is made once
    texts[None] = "null"
    text = texts.text
    msg_line = _MSG_LINE
    for row in rows:
        seq, t, ev, src, dst, kind, mid, size, reason, data = row
        # a message's record (the kernel's hot path): str/None fields, int id and size, a finite float time
        if t.__class__ is float and mid.__class__ is int and size.__class__ is int and seq.__class__ is int \
                and t - t == 0.0:
            try:
                yield msg_line % (texts[data], texts[dst], texts[ev], texts[kind], mid, texts[reason], seq, size,
                                  texts[src], t)
                continue
            except (KeyError, TypeError):
                pass
        if t.__class__ is not float or t - t != 0.0 or seq.__class__ is not int:
            yield row
            continue
        try:
            mid_t = "null" if mid is None else ("%d" % mid if mid.__class__ is int else None)
            size_t = "null" if size is None else ("%d" % size if size.__class__ is int else None)
            if data.__class__ is dict:
                data_t = dumps(data)  # a user event's data: the same text as inside the record's object
            else:
                data_t = text(data)
            parts = (data_t, text(dst), text(ev), text(kind), mid_t, text(reason), seq, size_t, text(src), t)
        except (TypeError, ValueError):  # unhashable or not encodable: the caller's encoder says why
            yield row
            continue
        if None in parts:
            yield row
        else:
            yield _LINE % parts


def _canonical_dumps() -> Callable[[Any], str]:
    return json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


def _lines(rows: Iterable[tuple]) -> Iterator[str]:
    """The canonical lines of `rows` (see `Trace.lines`)."""
    dumps = _canonical_dumps()
    for line in _fast_lines(rows, dumps):  # type: ignore[arg-type]
        if line.__class__ is str:
            yield line  # type: ignore[misc]
            continue
        row = line
        try:
            yield dumps(dict(zip(FIELDS, row)))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"trace record {row[0]}: data is not JSON-encodable ({exc})") from None


class _DigestOnly:
    """Stands in for a trace's list of records when only its digest is kept: records are written as their
    canonical lines and hashed in batches, then dropped (the memory of a trace no longer grows with the run).
    A message's record (what the kernel writes through `row`) becomes its line at once (one %-format with the
    JSON texts of its names, kind and summary remembered); any other record waits as its tuple and is written
    with the batch (where a record that cannot be encoded raises `ConfigError`, as a kept trace's export does)."""

    __slots__ = ("_batch", "_count", "_hash", "_texts", "_mixed")
    BATCH = 8192

    def __init__(self) -> None:
        self._batch: list[str | tuple] = []
        self._count = 0
        self._hash = hashlib.sha256()
        self._texts = _Texts()
        self._texts[None] = "null"
        self._mixed = False  # the batch holds record tuples still to be written

    def append(self, row: tuple) -> None:
        batch = self._batch
        batch.append(row)
        self._mixed = True
        if len(batch) >= self.BATCH:
            self.flush()

    def row(
        self, t: float, ev: str, src: str | None, dst: str | None, kind: str | None, msg_id: int | None,
        size: int | None, reason: str | None, data: Any,
    ) -> None:
        """`Trace.append` in one call (the kernel's hot path; see `Trace.appender`)."""
        batch = self._batch
        if t.__class__ is float and msg_id.__class__ is int and size.__class__ is int and t - t == 0.0:
            texts = self._texts
            try:
                batch.append(_MSG_LINE % (texts[data], texts[dst], texts[ev], texts[kind], msg_id, texts[reason],
                                          self._count + len(batch), size, texts[src], t))
            except (KeyError, TypeError):  # not a str/None field: written with the batch
                batch.append((self._count + len(batch), t, ev, src, dst, kind, msg_id, size, reason, data))
                self._mixed = True
        else:
            batch.append((self._count + len(batch), t, ev, src, dst, kind, msg_id, size, reason, data))
            self._mixed = True
        if len(batch) >= self.BATCH:
            self.flush()

    def line_format(self, ev: str, src: Any, kind: Any, size: Any, reason: Any, data: Any) -> str | None:
        """The canonical line of a message record with these fields, as a %-format of (the destination's JSON
        text, msg_id, seq, t); None if a field is not a str/None (or the size not an int)."""
        if size.__class__ is not int:
            return None
        texts = self._texts
        try:
            parts = [texts[data], texts[ev], texts[kind], texts[reason], texts[src]]
        except (KeyError, TypeError):
            return None
        d, e, k, r, s = (p.replace("%", "%%") for p in parts)
        return ('{"data":' + d + ',"dst":%s,"ev":' + e + ',"kind":' + k + ',"msg_id":%d,"reason":' + r
                + ',"seq":%d,"size":' + "%d" % size + ',"src":' + s + ',"t":%r}')

    def row_line(self, fmt: str, t: float, dst: str, msg_id: int) -> None:
        """`row` of a message record whose other fields `line_format` made into ``fmt`` (``t`` a finite float,
        ``dst`` a str, ``msg_id`` an int: the caller's to ensure)."""
        batch = self._batch
        batch.append(fmt % (self._texts[dst], msg_id, self._count + len(batch), t))
        if len(batch) >= self.BATCH:
            self.flush()

    def reset(self) -> None:
        self._batch.clear()
        self._count = 0
        self._hash = hashlib.sha256()
        self._mixed = False

    def flush(self) -> None:
        batch = self._batch
        if batch:
            lines = batch
            if self._mixed:
                written = _lines([x for x in batch if x.__class__ is not str])  # type: ignore[misc]
                lines = [x if x.__class__ is str else next(written) for x in batch]
            self._hash.update(("\n".join(lines) + "\n").encode("ascii"))  # type: ignore[arg-type]
            self._count += len(batch)
            batch.clear()
            self._mixed = False

    def __len__(self) -> int:
        return self._count + len(self._batch)

    def hexdigest(self) -> str:
        self.flush()
        return self._hash.copy().hexdigest()


class Trace(CanonicalLines):
    """Collects records. ``events`` selects which kinds are kept (default: all); the others cost nothing.

    With ``keep=False`` the records are not kept: each is hashed as it comes (in batches), so `digest()` is the
    digest the kept records would have, in memory that does not grow with the run; the exports (`lines`,
    `to_jsonl`, iteration, `records`, `to_dataframe`) are then refused."""

    __slots__ = ("_rows", "events")

    def __init__(self, events: Iterable[str] | None = None, *, keep: bool = True) -> None:
        chosen = EVENTS if events is None else tuple(events)
        for ev in chosen:
            if ev not in EVENTS:
                raise ConfigError(f"Trace.events: unknown event kind {ev!r} (known: {', '.join(EVENTS)})")
        self.events = frozenset(chosen)
        self._rows: list[tuple] | _DigestOnly = [] if keep else _DigestOnly()

    @property
    def kept(self) -> bool:
        """Whether the records are kept (else only their digest)."""
        return not isinstance(self._rows, _DigestOnly)

    def _kept_rows(self) -> list[tuple]:
        rows = self._rows
        if isinstance(rows, _DigestOnly):
            raise ConfigError("this trace kept only its digest (Trace(keep=False), e.g. a run with a compact log): "
                              "its records are not available")
        return rows

    def wants(self, ev: str) -> bool:
        return ev in self.events

    def record(
        self,
        t: float,
        ev: str,
        src: str | None = None,
        dst: str | None = None,
        kind: str | None = None,
        msg_id: int | None = None,
        size: int | None = None,
        reason: str | None = None,
        data: Any = None,
    ) -> None:
        """Append a record (ignored if ``ev`` is not selected)."""
        if ev not in self.events:
            if ev not in EVENTS:
                raise ConfigError(f"Trace.record: unknown event kind {ev!r}")
            return
        rows = self._rows
        rows.append((len(rows), float(t), ev, src, dst, kind, msg_id, size, reason, data))

    def append(
        self, t: float, ev: str, src: str | None, dst: str | None, kind: str | None, msg_id: int | None,
        size: int | None, reason: str | None, data: Any,
    ) -> None:
        """Append a record of a kind the caller has already checked is selected (the kernel's hot path)."""
        rows = self._rows
        rows.append((len(rows), t, ev, src, dst, kind, msg_id, size, reason, data))

    def appender(self) -> Callable[..., None]:
        """`append` itself, or for a trace that keeps only its digest a writer with the same arguments that costs
        one call instead of two (the network's hot path takes it once; it stays valid across `clear`)."""
        rows = self._rows
        return rows.row if isinstance(rows, _DigestOnly) else self.append

    def line_writer(self) -> tuple[Callable[..., str | None], Callable[..., None]] | None:
        """For a trace that keeps only its digest: ``(line_format, row_line)`` (see `_DigestOnly`), with which a
        sender of many messages sharing their fields formats those fields once; None for a kept trace."""
        rows = self._rows
        return (rows.line_format, rows.row_line) if isinstance(rows, _DigestOnly) else None

    def user(self, t: float, name: str, data: Any = None, node: str | None = None) -> None:
        """Record a user event."""
        self.record(t, "user", node, None, name, None, None, None, data)

    # ------------------------------------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._kept_rows():
            yield dict(zip(FIELDS, row))

    def records(self, ev: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self if ev is None or r["ev"] == ev]

    def clear(self) -> None:
        rows = self._rows
        if isinstance(rows, _DigestOnly):
            rows.reset()  # in place: a writer from `appender` stays this trace's
        else:
            self._rows = []

    # ------------------------------------------------------------------------------------------------ export
    def lines(self) -> Iterator[str]:
        """Canonical JSON lines (without newline): `json` with sorted keys, compact separators, ASCII only and
        no NaN (records of strings, numbers and None are written directly: the same text, faster)."""
        return _lines(self._kept_rows())

    def digest(self) -> str:
        """SHA-256 (hex) over the canonical JSON lines (also when only the digest is kept)."""
        rows = self._rows
        if isinstance(rows, _DigestOnly):
            return rows.hexdigest()
        return super().digest()

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with one row per record and the columns of `FIELDS`."""
        import pandas as pd

        df = pd.DataFrame.from_records(self._kept_rows(), columns=list(FIELDS))
        for col in ("msg_id", "size"):
            df[col] = df[col].astype("Int64")
        return df
