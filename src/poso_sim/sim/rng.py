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
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["Stream", "derive_seed", "derive_seeds", "mix64", "mix64_many", "output_inplace", "random_many"]

_MASK = 0xFFFFFFFFFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15
_TWO_POW_M53 = 2.0**-53


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
_json_str = json.encoder.encode_basestring_ascii  # what that encoder writes for a str (C where available)
_sha256 = hashlib.sha256


def derive_seed(seed: int, *labels: Any) -> int:
    """A 64-bit integer derived from ``seed`` and ``labels`` (JSON-encodable) in a stable way: the first 8 bytes
    (big-endian) of SHA-256 over the compact JSON array ``[seed, *labels]``. Labels that are all ``str`` or
    ``int`` (a network's names) are written without the encoder object: the same text, a third of the cost."""
    parts = [int.__repr__(int(seed))]
    for x in labels:
        t = type(x)
        if t is str:
            parts.append(_json_str(x))
        elif t is int:
            parts.append(int.__repr__(x))
        else:
            return _digest64(_encode([int(seed), *labels]))
    return _digest64("[" + ",".join(parts) + "]")


def derive_seeds(seed: int, label: str, names: Iterable[Any]) -> list[int]:
    """``[derive_seed(seed, label, name) for name in names]``, the JSON text's common head written once."""
    if type(label) is not str:
        return [derive_seed(seed, label, n) for n in names]
    head = "[" + int.__repr__(int(seed)) + "," + _json_str(label) + ","
    return [_digest64(head + _json_str(n) + "]") if type(n) is str else derive_seed(seed, label, n) for n in names]


def _digest64(text: str) -> int:
    return int.from_bytes(_sha256(text.encode()).digest()[:8], "big")


def mix64(a: int, b: int) -> int:
    """Combine two 64-bit keys into a well-mixed 64-bit key (SplitMix64 finaliser of ``a ^ b``)."""
    z = ((a ^ b) + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


_U_GOLDEN = np.uint64(_GOLDEN)
_U_M1 = np.uint64(0xBF58476D1CE4E5B9)
_U_M2 = np.uint64(0x94D049BB133111EB)
_U_30, _U_27, _U_31, _U_11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def mix64_many(a: Any, b: Any) -> np.ndarray:
    """`mix64` of each pair (numpy uint64 arrays or scalars; 64-bit wrap-around arithmetic, the same numbers)."""
    z = (a ^ b) + _U_GOLDEN
    z = (z ^ (z >> _U_30)) * _U_M1
    z = (z ^ (z >> _U_27)) * _U_M2
    return z ^ (z >> _U_31)


def output_inplace(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (the finaliser `mix64` and `Stream.random` apply to a state) on every element
    of the uint64 array ``z``, in place, with one scratch array: the same numbers as `mix64_many`. Returns ``z``."""
    t = np.empty_like(z)
    np.right_shift(z, _U_30, out=t)
    z ^= t
    z *= _U_M1
    np.right_shift(z, _U_27, out=t)
    z ^= t
    z *= _U_M2
    np.right_shift(z, _U_31, out=t)
    z ^= t
    return z


def random_many(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One `Stream.random` draw from each of the streams whose states are given (uint64): (the uniforms, as
    float64, each the very number `Stream.random` returns, and the streams' new states)."""
    s = states + _U_GOLDEN
    z = (s ^ (s >> _U_30)) * _U_M1
    z = (z ^ (z >> _U_27)) * _U_M2
    return ((z ^ (z >> _U_31)) >> _U_11).astype(np.float64) * _TWO_POW_M53, s


def output_at(st: list[int], j: int) -> int:
    """The next 64-bit output of the SplitMix64 stream whose state is ``st[j]`` (updated): `Stream.random`'s
    number before its ``>> 11``. A simulation keeps many streams' states in lists of plain integers."""
    x = st[j] = (st[j] + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class Stream:
    """SplitMix64 pseudo-random stream (uniforms in [0, 1) with 53 bits)."""

    __slots__ = ("state",)

    def __init__(self, seed: int, *labels: Any) -> None:
        self.state = derive_seed(seed, *labels) if labels else int(seed) & _MASK

    @classmethod
    def from_state(cls, state: int) -> "Stream":
        s = cls.__new__(cls)
        s.state = state & _MASK
        return s

    def random(self) -> float:
        s = self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF  # _GOLDEN, _MASK
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return ((z ^ (z >> 31)) >> 11) * _TWO_POW_M53

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def normal(self) -> float:
        """Standard normal draw (Box-Muller, two uniforms, one output): ``u1 = 1 - random()`` in (0, 1], then
        ``u2 = random()`` (both written out here: the same numbers as two calls)."""
        s = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        u1 = 1.0 - ((z ^ (z >> 31)) >> 11) * _TWO_POW_M53
        s = self.state = (s + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        u2 = ((z ^ (z >> 31)) >> 11) * _TWO_POW_M53
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
