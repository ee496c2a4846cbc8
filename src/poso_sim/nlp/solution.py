"""The :class:`Solution` type, its canonical digest and its versioned file format.

File layout (all integers little-endian)::

    offset  size  content
    0       16    magic  b"POSO-SIM-SOL\\x00\\r\\n\\x1a"   (binary-safe, like PNG's: detects text-mode mangling)
    16      4     uint32 format_version (currently 1)
    20      8     uint64 header_len (bytes of the JSON header)
    28      H     header: UTF-8 JSON object (see docs/nlp.md: magic, format_version, metadata, arrays, digest)
    28+H    P     payload: the float64 LE arrays x, y, z_L, z_U back to back (offsets/lengths in the header)
    end-32  32    SHA-256 of every preceding byte (magic .. payload)

Reading checks, in order: file readable, magic, version (newer -> refused), trailer hash (truncation and any
corruption), header JSON, array bounds, payload hash, and finally that the digest recomputed from the arrays equals
the one recorded. Every failure raises :class:`poso_sim.errors.SolutionFileError` with one line naming the file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from poso_sim import htmlkit as hk
from poso_sim.common import OK_STATUSES, atomic_write, canonical_json, jsonable
from poso_sim.errors import SolutionFileError

__all__ = [
    "Solution",
    "save_solution",
    "load_solution",
    "FORMAT_VERSION",
    "MAGIC",
    "DIGEST_HEADER",
    "solution_digest",
    "solution_html",
    "read_header",
    "size_limit",
    "check_integrity",
]

MAGIC = b"POSO-SIM-SOL\x00\r\n\x1a"
assert len(MAGIC) == 16
FORMAT_VERSION = 1
HEADER_MAGIC = "poso-sim/solution"
DIGEST_HEADER = b"poso-sim/solution-digest/v1\n"
_PREFIX = struct.Struct("<16sIQ")
_ARRAYS = ("x", "y", "z_L", "z_U")
_MAX_HEADER = 1 << 30
#: what :func:`read_header` reads of a header at most (the metadata; Manchester's whole header is 0.46 MB)
_PEEK = 1 << 20
#: room for a plan's metadata beyond its names in :func:`size_limit`
_META_ALLOWANCE = 1 << 20


def _f64(a: Any) -> np.ndarray:
    arr = np.array(a, dtype=np.float64, copy=True).reshape(-1)
    arr.setflags(write=False)
    return arr


def solution_digest(fingerprint: str, variant: str, x: Any, y: Any, z_L: Any, z_U: Any) -> str:
    """SHA-256 hex of the canonical encoding of a primal-dual point (see :attr:`Solution.digest`)."""
    h = hashlib.sha256(DIGEST_HEADER)
    for text in (fingerprint, variant):
        b = text.encode("utf-8")
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    for a in (x, y, z_L, z_U):
        arr = np.ascontiguousarray(a, dtype="<f8").reshape(-1)
        h.update(struct.pack("<Q", arr.size))
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Solution:
    """A primal-dual point of a compiled NLP with its provenance.

    Multipliers follow Ipopt's convention: ``grad f(x) + J(x)^T y - z_L + z_U = 0`` with ``z_L, z_U >= 0``, where
    ``f`` is the minimised objective of the :class:`~poso_sim.nlp.CompiledNLP`. Arrays are float64, read-only, in
    model order. ``x_names``/``row_names`` may be shared with the compiled NLP (not copied).
    """

    x: np.ndarray
    y: np.ndarray
    z_L: np.ndarray
    z_U: np.ndarray
    x_names: Sequence[str] = ()
    row_names: Sequence[str] = ()
    variant: str = ""
    case: str = ""
    cost: float = float("nan")
    objective: float = float("nan")
    status: str = "unknown"
    iterations: int = 0
    solve_seconds: float = 0.0
    stages: list[dict] = field(default_factory=list)
    fingerprint: str = ""
    constraint_violation: float = float("nan")
    solver: str = ""
    cost_breakdown: dict[str, float] = field(default_factory=dict)
    message: str = ""

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            object.__setattr__(self, name, _f64(getattr(self, name)))
        if self.z_L.size != self.x.size or self.z_U.size != self.x.size:
            raise ValueError(f"z_L/z_U have {self.z_L.size}/{self.z_U.size} entries, x has {self.x.size}")
        if self.x_names and len(self.x_names) != self.x.size:
            raise ValueError(f"{len(self.x_names)} x_names for {self.x.size} variables")
        if self.row_names and len(self.row_names) != self.y.size:
            raise ValueError(f"{len(self.row_names)} row_names for {self.y.size} rows")

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 hex over header, fingerprint, variant, x, y, z_L, z_U (float64 LE); metadata excluded."""
        return solution_digest(self.fingerprint, self.variant, self.x, self.y, self.z_L, self.z_U)

    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def m(self) -> int:
        return int(self.y.size)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def with_multipliers(self, y: Any = None, z_L: Any = None, z_U: Any = None) -> "Solution":
        """A copy with some multipliers replaced (the digest changes accordingly)."""
        return dataclasses.replace(
            self,
            y=self.y if y is None else y,
            z_L=self.z_L if z_L is None else z_L,
            z_U=self.z_U if z_U is None else z_U,
        )

    def replace(self, **changes: Any) -> "Solution":
        """``dataclasses.replace`` for convenience."""
        return dataclasses.replace(self, **changes)

    def value(self, name: str) -> float:
        """Value of variable ``name`` (linear search unless names are a CompiledNLP's list; use sparingly)."""
        return float(self.x[list(self.x_names).index(name)])

    def _repr_html_(self) -> str:
        return solution_html(self)

    def __repr__(self) -> str:
        return (
            f"Solution(case={self.case!r}, variant={self.variant!r}, status={self.status!r}, cost={self.cost:.6g}, "
            f"objective={self.objective:.6g}, n={self.n}, m={self.m}, iterations={self.iterations}, "
            f"digest={self.digest[:12]}...)"
        )


# ---------------------------------------------------------------------------------------------------------------
# file format

_META_FIELDS = (
    "variant",
    "case",
    "cost",
    "objective",
    "status",
    "iterations",
    "solve_seconds",
    "stages",
    "fingerprint",
    "constraint_violation",
    "solver",
    "cost_breakdown",
    "message",
)


def encode_solution(sol: Solution) -> bytes:
    """The bytes of the solution file for ``sol``."""
    arrays = []
    payload = bytearray()
    for name in _ARRAYS:
        a = np.ascontiguousarray(getattr(sol, name), dtype="<f8")
        arrays.append({"name": name, "dtype": "<f8", "length": int(a.size), "offset": len(payload)})
        payload += a.tobytes()
    header = {
        "magic": HEADER_MAGIC,
        "format_version": FORMAT_VERSION,
        "digest": sol.digest,
        "arrays": arrays,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "meta": {k: jsonable(getattr(sol, k)) for k in _META_FIELDS},
        "x_names": list(sol.x_names),
        "row_names": list(sol.row_names),
    }
    hb = canonical_json(header).encode("utf-8")
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(hb)) + hb + bytes(payload)
    return body + hashlib.sha256(body).digest()


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(w, str) for w in v)


#: The type each metadata field must have (a file with another type is malformed, named by its field).
_META_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    **{k: ("a string", lambda v: isinstance(v, str))
       for k in ("variant", "case", "status", "fingerprint", "solver", "message")},
    **{k: ("a number", _is_num) for k in ("cost", "objective", "solve_seconds", "constraint_violation")},
    "iterations": ("an integer", _is_int),
    "stages": ("a list of objects", lambda v: isinstance(v, list) and all(isinstance(w, dict) for w in v)),
    "cost_breakdown": ("an object of numbers",
                       lambda v: isinstance(v, dict) and all(_is_num(w) for w in v.values())),
}
_HEADER_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "format_version": ("an integer", _is_int),
    "digest": ("a string", lambda v: isinstance(v, str)),
    "payload_bytes": ("an integer", _is_int),
    "payload_sha256": ("a string", lambda v: isinstance(v, str)),
    "arrays": ("a list of objects", lambda v: isinstance(v, list) and all(isinstance(w, dict) for w in v)),
    "meta": ("an object", lambda v: isinstance(v, dict)),
}
_OPTIONAL_HEADER = {"x_names": ("a list of strings", _is_str_list), "row_names": ("a list of strings", _is_str_list)}
_ARRAY_TYPES = {"name": ("a string", lambda v: isinstance(v, str)), "dtype": ("a string", lambda v: isinstance(v, str)),
                "offset": ("an integer", _is_int), "length": ("an integer", _is_int)}


def _typed(obj: dict, types: Mapping[str, tuple[str, Callable[[Any], bool]]], where: str, required: bool) -> str | None:
    """The first field of ``obj`` that is missing (when ``required``) or of the wrong type, as a message."""
    for key, (what, ok) in types.items():
        if key not in obj:
            if required:
                return f"header field {where}{key} is missing"
            continue
        if not ok(obj[key]):
            return f"header field {where}{key} is {type(obj[key]).__name__}, expected {what}"
    return None


def _header_problem(header: Any, version: int) -> str | None:
    """What is wrong with a parsed header (first fault, one line), or ``None``: every field of the right type."""
    if not isinstance(header, dict) or header.get("magic") != HEADER_MAGIC:
        return "not a poso-sim solution file (bad header magic)"
    fault = _typed(header, _HEADER_TYPES, "", True) or _typed(header, _OPTIONAL_HEADER, "", False)
    if fault:
        return fault
    if header["format_version"] != version:
        return "inconsistent format version in header"
    for i, spec in enumerate(header["arrays"]):
        fault = _typed(spec, _ARRAY_TYPES, f"arrays[{i}].", True)
        if fault:
            return fault
    return _typed(header["meta"], _META_TYPES, "meta.", False)


def _parse_header(text: bytes) -> Any:
    """JSON of a header; any failure (bad UTF-8 or JSON, nesting too deep for the parser) -> ValueError."""
    try:
        return json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, MemoryError) as exc:
        raise ValueError(exc.__class__.__name__) from None


def _prefix(data: bytes, size: int, fail: Callable[[str], SolutionFileError]) -> tuple[int, int]:
    """``(version, header_len)`` of a file of ``size`` bytes whose first bytes are ``data``."""
    if len(data) < _PREFIX.size:
        if MAGIC.startswith(data[: len(MAGIC)]) and data:
            raise fail("truncated solution file")
        raise fail("not a poso-sim solution file (bad magic)")
    magic, version, hlen = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise fail("not a poso-sim solution file (bad magic)")
    if version > FORMAT_VERSION:
        raise fail(f"solution format version {version} is newer than supported ({FORMAT_VERSION}); upgrade poso-sim")
    if version < 1:
        raise fail(f"unknown solution format version {version}")
    if size < _PREFIX.size + 32 or hlen > _MAX_HEADER or _PREFIX.size + hlen + 32 > size:
        raise fail("truncated solution file")
    return version, hlen


def decode_solution(data: bytes, where: str = "<bytes>") -> Solution:
    """Parse solution-file bytes; ``where`` names the source in error messages."""

    def fail(reason: str) -> SolutionFileError:
        return SolutionFileError(f"{where}: {reason}")

    version, hlen = _prefix(data, len(data), fail)
    body, trailer = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != trailer:
        raise fail("corrupt or truncated solution file (checksum mismatch)")
    try:
        header = _parse_header(data[_PREFIX.size : _PREFIX.size + hlen])
    except ValueError as exc:
        raise fail(f"corrupt header ({exc})") from None
    fault = _header_problem(header, version)
    if fault:
        raise fail(fault)
    payload = body[_PREFIX.size + hlen :]
    if header["payload_bytes"] != len(payload):
        raise fail(f"payload is {len(payload)} bytes, header says {header['payload_bytes']}")
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise fail("payload checksum mismatch")
    arrays: dict[str, np.ndarray] = {}
    for spec in header["arrays"]:
        if spec["dtype"] != "<f8":
            raise fail(f"unsupported dtype {spec['dtype'][:40]!r} for array {spec['name'][:40]!r}")
        off, length = spec["offset"], spec["length"]
        if off < 0 or length < 0 or off + 8 * length > len(payload):
            raise fail(f"array {spec['name'][:40]!r} lies outside the payload")
        arrays[spec["name"]] = np.frombuffer(payload, dtype="<f8", count=length, offset=off).astype(np.float64)
    missing = [a for a in _ARRAYS if a not in arrays]
    if missing:
        raise fail(f"missing arrays {missing}")
    meta = header["meta"]
    try:
        sol = Solution(
            x=arrays["x"],
            y=arrays["y"],
            z_L=arrays["z_L"],
            z_U=arrays["z_U"],
            x_names=list(header.get("x_names", [])),
            row_names=list(header.get("row_names", [])),
            **{k: meta[k] for k in _META_FIELDS if k in meta},
        )
        digest = sol.digest
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise fail(f"malformed header ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if digest != header["digest"]:
        raise fail("digest mismatch: the arrays do not match the recorded digest")
    return sol


def save_solution(sol: Solution, path: str | os.PathLike) -> Path:
    """Write ``sol`` to ``path`` atomically (temp file in the same directory + ``os.replace``)."""
    p = Path(path)
    try:
        return atomic_write(p, encode_solution(sol), fsync=True)
    except OSError as exc:
        raise SolutionFileError(f"{p}: cannot write solution file ({exc.strerror or exc})") from None


def load_solution(path: str | os.PathLike, *, max_bytes: int | None = None) -> Solution:
    """Read a solution file; any problem -> :class:`SolutionFileError` naming the file and the reason.

    ``max_bytes`` (e.g. :func:`size_limit` of the problem the plan is for): a larger file is refused before any of
    it is read, so a huge file costs neither the time to hash it nor the memory to hold it.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise SolutionFileError(
                    f"{p}: {size} bytes, more than a plan of this problem can take ({max_bytes}); refused unread")
            # read at most one byte past the limit: a pipe or device reports no size
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError as exc:
        raise SolutionFileError(f"{p}: cannot read solution file ({exc.strerror or exc})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise SolutionFileError(f"{p}: more than {max_bytes} bytes, more than a plan of this problem can take")
    return decode_solution(data, str(p))


#: the header's fields up to the metadata, in the canonical (sorted) order the writer uses; the names come later
_LEADING = ("arrays", "digest", "format_version", "magic", "meta", "payload_bytes")


def _leading_fields(text: str) -> dict:
    """The first top-level fields of a JSON object, up to those of :data:`_LEADING`, parsed one value at a time:
    the rest of the text (the variable and row names) is neither parsed nor needed. ValueError if malformed or
    cut before them."""
    dec = json.JSONDecoder()
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    out: dict = {}
    i += 1
    while not all(k in out for k in _LEADING):
        i = skip(i)
        if text[i : i + 1] == "}":
            break
        key, i = dec.raw_decode(text, i)
        i = skip(i)
        if not isinstance(key, str) or text[i : i + 1] != ":":
            raise ValueError("malformed object")
        out[key], i = dec.raw_decode(text, skip(i + 1))
        i = skip(i)
        if text[i : i + 1] == ",":
            i += 1
        elif text[i : i + 1] != "}":
            raise ValueError("malformed object")
    return out


def read_header(path: str | os.PathLike, *, window: int = _PEEK) -> dict:
    """The leading fields of a solution file's header (``arrays``, ``digest``, ``format_version``, ``magic``,
    ``meta``, ``payload_bytes``: the metadata names the case, the variant and the problem's fingerprint), reading
    the prefix and at most ``window`` bytes of the header, so memory stays bounded whatever the file claims.
    ``header_bytes`` and ``intact_bytes`` (the size of the file if intact) are added.

    Only these fields are checked (magic, version, sizes, types): the names and the checksums need the whole file
    (:func:`load_solution`). Any problem -> :class:`SolutionFileError` naming the file.
    """
    p = Path(path)

    def fail(reason: str) -> SolutionFileError:
        return SolutionFileError(f"{p}: {reason}")

    try:
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            start = fh.read(_PREFIX.size)
            version, hlen = _prefix(start, size or 1 << 62, fail)  # a pipe or device reports no size
            raw = fh.read(min(hlen, window))
    except OSError as exc:
        raise SolutionFileError(f"{p}: cannot read solution file ({exc.strerror or exc})") from None
    if len(raw) < min(hlen, window):
        raise fail("truncated solution file")
    try:
        head = _leading_fields(raw.decode("utf-8", errors="strict" if hlen <= window else "ignore"))
    except (ValueError, RecursionError, MemoryError) as exc:
        more = f" (the metadata must lie within the first {window} bytes)" if hlen > window else ""
        raise fail(f"corrupt header ({exc.__class__.__name__}){more}") from None
    if head.get("magic") != HEADER_MAGIC:
        raise fail("not a poso-sim solution file (bad header magic)")
    leading = {k: v for k, v in _HEADER_TYPES.items() if k in _LEADING}
    fault = _typed(head, leading, "", True) or _typed(head["meta"], _META_TYPES, "meta.", False)
    for i, spec in enumerate(head["arrays"] if not fault else ()):
        fault = fault or _typed(spec, _ARRAY_TYPES, f"arrays[{i}].", True)
    if not fault and head["format_version"] != version:
        fault = "inconsistent format version in header"
    if fault:
        raise fail(fault)
    return {**head, "header_bytes": hlen, "intact_bytes": _PREFIX.size + hlen + max(0, head["payload_bytes"]) + 32}


def check_integrity(path: str | os.PathLike, *, expected_bytes: int | None = None) -> None:
    """Raise :class:`SolutionFileError` unless the file's trailer checksum covers its bytes (read in chunks: memory
    stays bounded whatever the size); a file whose size is not ``expected_bytes`` (:func:`read_header`'s
    ``intact_bytes``) is refused unread. Tells a corrupt file from an intact one of which only the header has been
    read."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if expected_bytes is not None and size != expected_bytes:
                raise SolutionFileError(f"{p}: {size} bytes where its header makes {expected_bytes}: corrupt or "
                                        "truncated; refused unread")
            if size < _PREFIX.size + 32:
                raise SolutionFileError(f"{p}: truncated solution file")
            h = hashlib.sha256()
            left = size - 32
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
            trailer = fh.read(32)
    except OSError as exc:
        raise SolutionFileError(f"{p}: cannot read solution file ({exc.strerror or exc})") from None
    if left or h.digest() != trailer:
        raise SolutionFileError(f"{p}: corrupt or truncated solution file (checksum mismatch)")


def size_limit(n: int, m: int, names: Sequence[str] = ()) -> int:
    """The largest solution file a plan of a problem with ``n`` variables, ``m`` rows and these variable and row
    names can justify: its arrays, its names as escaped JSON (six bytes a character at worst, plus quotes and
    commas), and a generous allowance for the metadata (stages, cost parts, messages)."""
    chars = sum(len(s) for s in names)
    header = 6 * chars + 8 * (n + m) + _META_ALLOWANCE
    return _PREFIX.size + header + 8 * (3 * n + m) + 32


# ---------------------------------------------------------------------------------------------------------------
# notebook display (built on the stdlib blocks of poso_sim.htmlkit; poso_sim.report.html re-exports it)


def solution_html(sol: Any) -> str:
    """A :class:`Solution` as HTML: status, true cost and its parts, objective, violation, sizes, iterations,
    stages, digest."""
    esc, fmt = hk.escape, hk.fmt
    status = str(getattr(sol, "status", "unknown"))
    cb: Mapping[str, float] = getattr(sol, "cost_breakdown", None) or {}
    cost = getattr(sol, "cost", float("nan"))
    rows: list[tuple[str, Any]] = [
        ("case / objective", esc(f"{getattr(sol, 'case', '') or '?'} / {getattr(sol, 'variant', '') or '?'}")),
        ("status", hk.verdict(status in OK_STATUSES, status, status)),
        ("true cost", esc(f"{fmt(cost, 3)} $")),
    ]
    rows += [(f"  {part}", esc(f"{fmt(float(v), 3)} $")) for part, v in cb.items()]
    variant = getattr(sol, "variant", "")
    if variant and variant != "true":
        rows.append(("objective value", esc(fmt(getattr(sol, "objective", float("nan")), 3))))
    rows += [
        ("constraint violation", esc(fmt(getattr(sol, "constraint_violation", float("nan"))))),
        ("variables / rows", esc(f"{getattr(sol, 'n', '?')} / {getattr(sol, 'm', '?')}")),
        ("iterations", esc(fmt(getattr(sol, "iterations", None)))),
        ("solve time", esc(f"{fmt(getattr(sol, 'solve_seconds', float('nan')), 2)} s")),
        ("solver", esc(str(getattr(sol, "solver", "") or "–"))),
        ("digest", f"<code>{esc(str(getattr(sol, 'digest', ''))[:16])}…</code>"),
    ]
    parts = [hk.kv_table(rows)]
    stages = getattr(sol, "stages", None) or []
    if stages:
        parts.append(
            hk.grid(
                ["stage", "iterations", "seconds", "objective", "status"],
                [[esc(str(s.get("name", ""))), esc(fmt(s.get("iterations"))), esc(fmt(s.get("seconds"), 2)),
                  esc(fmt(s.get("objective"), 4)), esc(str(s.get("status", "")))] for s in stages],
            )
        )
    return hk.div("Solution", *parts)
