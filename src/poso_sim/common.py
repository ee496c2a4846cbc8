"""Small helpers every layer may use (stdlib and numpy only; imports nothing else of poso_sim).

* :func:`jsonable` - a value made of numpy scalars/arrays, tuples and non-string keys as plain JSON values;
* :func:`canonical_json` - the one canonical JSON text (sorted keys, no whitespace, ASCII) used for digests,
  cache keys and file headers;
* :func:`atomic_write` - write a file so that readers see the old or the new content, never a torn one;
* :func:`default_cache_dir` - ``$POSO_SIM_CACHE_DIR`` or the user cache directory;
* :func:`lazy_exports` - the module ``__getattr__`` of a package that loads heavy submodules on first use.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import platformdirs

__all__ = ["CanonicalLines", "OK_STATUSES", "jsonable", "canonical_json", "plain_json_encoder", "atomic_write",
           "default_cache_dir", "CACHE_ENV_VAR", "lazy_exports"]

#: Solver statuses of a usable optimum (a :class:`~poso_sim.nlp.Solution` with one of them is ``ok``).
OK_STATUSES: frozenset[str] = frozenset({"optimal", "acceptable"})

#: Environment variable naming the cache directory.
CACHE_ENV_VAR = "POSO_SIM_CACHE_DIR"


def jsonable(v: Any) -> Any:
    """``v`` with numpy scalars as Python numbers, arrays and tuples as lists, mapping keys as strings and bytes
    as hex text; other values unchanged (``json.dumps`` decides about them)."""
    if isinstance(v, dict):
        return {str(k): jsonable(w) for k, w in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(w) for w in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return v


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of ``jsonable(obj)``: sorted keys, ``,``/``:`` separators, ASCII only.

    Non-finite floats are written as ``NaN``/``Infinity`` (Python's JSON dialect), so the text is stable for
    every float a digest may cover.
    """
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def plain_json_encoder() -> Callable[[Any], str]:
    """`canonical_json` of a value that is plain JSON already (dicts with str keys, lists, str, int, float, bool,
    None): the same text without `jsonable`'s pass and the encoder's per-call set-up (the C encoder, made once by
    the caller; the encoder's own method where Python has no C accelerator)."""
    enc = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return enc.encode
    c = make({}, enc.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
    return lambda obj: "".join(c(obj, 0))


def atomic_write(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    Concurrent readers see either the previous file or the complete new one. Raises ``OSError`` (the temporary
    file is removed); with ``fsync=True`` the bytes reach the disk before the rename.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def default_cache_dir() -> Path:
    """``$POSO_SIM_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("poso-sim")``."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("poso-sim"))


class CanonicalLines:
    """JSON-lines export and digest of anything that yields its records as canonical JSON lines (``lines()``,
    ASCII): the kernel's trace and the run log share them, so both digests are computed the same way."""

    def lines(self) -> Iterator[str]:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def to_jsonl(self, path: str | os.PathLike[str] | None = None) -> str:
        """The canonical JSON-lines text; also written to ``path`` if given."""
        text = "".join(line + "\n" for line in self.lines())
        if path is not None:
            with open(path, "w", encoding="ascii", newline="\n") as fh:
                fh.write(text)
        return text

    def digest(self) -> str:
        """SHA-256 (hex) over the canonical JSON lines."""
        h = hashlib.sha256()
        for line in self.lines():
            h.update(line.encode("ascii"))
            h.update(b"\n")
        return h.hexdigest()


def lazy_exports(package: str, table: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The module ``__getattr__`` (PEP 562) of ``package`` that imports ``package.<table[name]>`` when ``name`` is
    first asked for, keeps the value in ``namespace`` (the package's ``globals()``, so the next access is plain) and
    returns it; any other name is an ``AttributeError``. Used where a submodule is heavy (Pyomo, CasADi)::

        __getattr__ = lazy_exports(__name__, {"build_model": "model"}, globals())
    """

    def __getattr__(name: str) -> Any:
        submodule = table.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{submodule}"), name)
        namespace[name] = value
        return value

    return __getattr__
