"""Stable, splittable randomness.

Every random stream of a simulation is derived from the scenario seed and a tuple of labels (e.g.
``("channel", "A", "B", "latency")``) through SHA-256 of a JSON encoding, so the derivation never depends on
``hash()``, ``PYTHONHASHSEED``, set/dict iteration order or the wall clock. A `Stream` is a SplitMix64 generator:
a single 64-bit integer of state, so a simulation can hold millions of them, and pure integer arithmetic, so the
numbers are identical on every platform and Python version.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

__all__ = ["Stream", "derive_seed"]

_MASK = 0xFFFFFFFFFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15
_TWO_POW_M53 = 2.0**-53


def derive_seed(seed: int, *labels: Any) -> int:
    """A 64-bit integer derived from ``seed`` and ``labels`` (JSON-encodable) in a stable way."""
    blob = json.dumps([int(seed), *labels], separators=(",", ":"), ensure_ascii=True).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


class Stream:
    """SplitMix64 pseudo-random stream (uniforms in [0, 1) with 53 bits)."""

    __slots__ = ("state",)

    def __init__(self, seed: int, *labels: Any) -> None:
        self.state = derive_seed(seed, *labels) if labels else int(seed) & _MASK

    def random(self) -> float:
        s = (self.state + _GOLDEN) & _MASK
        self.state = s
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return ((z ^ (z >> 31)) >> 11) * _TWO_POW_M53

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def normal(self) -> float:
        """Standard normal draw (Box-Muller, two uniforms, one output)."""
        u1 = 1.0 - self.random()  # (0, 1]
        u2 = self.random()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
