"""On-disk solution cache keyed by model fingerprint, variant, solver, options and pipeline version.

Location: ``$POSO_SIM_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("poso-sim")``. Entries are files
``<key>.sol`` in the solution format (see :mod:`poso_sim.nlp.solution`), written atomically.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from poso_sim.common import canonical_json, default_cache_dir
from poso_sim.errors import SolutionFileError
from poso_sim.nlp.solution import Solution, load_solution, save_solution

__all__ = ["SolutionCache", "cache_key", "default_cache_dir", "key_json", "CACHE_KEY_VERSION", "CacheWarning"]

CACHE_KEY_VERSION = "poso-sim/cache-key/v1"


class CacheWarning(UserWarning):
    """A cache entry was unusable (moved aside) or could not be written."""


def _canon(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _canon(w) for k, w in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(w) for w in v]
    if isinstance(v, np.ndarray):
        return {"__ndarray__": hashlib.sha256(np.ascontiguousarray(v, dtype="<f8").tobytes()).hexdigest(),
                "shape": list(v.shape)}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            return {"__float__": repr(f)}
        return f
    if v is None or isinstance(v, str):
        return v
    return {"__repr__": repr(v)}


def key_json(obj: Any) -> str:
    """The text a solution-cache key hashes: :func:`poso_sim.common.canonical_json` of ``obj`` with arrays replaced
    by their SHA-256 and non-finite floats and other objects by tagged values (so any option value has a key)."""
    return canonical_json(_canon(obj))


def cache_key(
    fingerprint: str,
    variant: str,
    solver: str,
    options: Mapping[str, Any] | None = None,
    pipeline_version: str = "",
) -> str:
    """SHA-256 hex of (key version, model fingerprint, variant, solver name, canonical options, pipeline version)."""
    payload = key_json(
        {
            "v": CACHE_KEY_VERSION,
            "fingerprint": fingerprint,
            "variant": variant,
            "solver": solver,
            "options": dict(options or {}),
            "pipeline": pipeline_version,
        }
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


class SolutionCache:
    """A directory of ``<key>.sol`` files. ``get`` never raises for bad entries: they are moved aside."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_cache_dir()

    def file_for(self, key: str) -> Path:
        if not key or any(ch not in "0123456789abcdef" for ch in key.lower()):
            raise ValueError(f"cache key must be a hex digest, got {key!r}")
        return self.path / f"{key}.sol"

    def __contains__(self, key: str) -> bool:
        return self.file_for(key).is_file()

    def get(self, key: str) -> Solution | None:
        """The cached solution, or None on a miss (corrupt entries are renamed ``*.corrupt-<time>`` + warning)."""
        p = self.file_for(key)
        if not p.is_file():
            return None
        try:
            return load_solution(p)
        except SolutionFileError as exc:
            aside = p.with_name(f"{p.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
            try:
                os.replace(p, aside)
                where = f"moved to {aside}"
            except OSError:
                where = "could not move it aside"
            warnings.warn(f"ignoring corrupt cache entry: {exc} ({where})", CacheWarning, stacklevel=2)
            return None

    def put(self, key: str, sol: Solution) -> Path:
        """Store ``sol`` under ``key`` atomically; raises SolutionFileError if the directory is unwritable."""
        p = self.file_for(key)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SolutionFileError(f"{self.path}: cannot create cache directory ({exc.strerror or exc})") from None
        return save_solution(sol, p)

    def delete(self, key: str) -> bool:
        try:
            self.file_for(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def clear(self) -> int:
        """Remove every ``*.sol`` entry; returns how many."""
        count = 0
        if self.path.is_dir():
            for p in self.path.glob("*.sol"):
                p.unlink(missing_ok=True)
                count += 1
        return count

    def __repr__(self) -> str:
        return f"SolutionCache({str(self.path)!r})"
