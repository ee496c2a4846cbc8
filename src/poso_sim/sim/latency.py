"""Latency models: a model is bound to one channel (src, dst) and then draws a delay in seconds from that
channel's latency stream. Draws happen only when the model needs randomness (`Constant` draws nothing)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Union

from poso_sim.errors import ConfigError
from poso_sim.sim.rng import _TWO_POW_M53, Stream, output_at

__all__ = ["Constant", "LatencyModel", "LogNormal", "RegionTable", "Uniform", "as_latency"]

Sampler = Callable[[Stream], float]


def _finite_nonneg(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{field}: must be a finite number of seconds, got {value!r}")
    if value < 0:
        raise ConfigError(f"{field}: latency must be >= 0 seconds, got {value!r}")
    return float(value)


class LatencyModel:
    """Base class. Subclasses implement `bind`, returning a sampler ``f(stream) -> seconds``."""

    def bind(self, src: str, dst: str) -> Sampler:
        raise NotImplementedError

    def mean(self, src: str, dst: str) -> float:
        raise NotImplementedError


class Constant(LatencyModel):
    """Every message takes exactly ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = _finite_nonneg("Constant.seconds", seconds)

    def bind(self, src: str, dst: str) -> Sampler:
        sampler = self.__dict__.get("_cached")
        if sampler is None:
            s = self.seconds
            sampler = self.__dict__["_cached"] = lambda _rng: s
        return sampler

    def mean(self, src: str, dst: str) -> float:
        return self.seconds

    def __repr__(self) -> str:
        return f"Constant({self.seconds!r})"


class Uniform(LatencyModel):
    """Delay uniform in [lo, hi)."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo = _finite_nonneg("Uniform.lo", lo)
        self.hi = _finite_nonneg("Uniform.hi", hi)
        if self.hi < self.lo:
            raise ConfigError(f"Uniform.hi: must be >= lo ({self.lo!r}), got {self.hi!r}")

    def bind(self, src: str, dst: str) -> Sampler:
        sampler = self.__dict__.get("_cached")
        if sampler is None:
            lo, width = self.lo, self.hi - self.lo
            sampler = self.__dict__["_cached"] = lambda rng: lo + width * rng.random()
        return sampler

    def mean(self, src: str, dst: str) -> float:
        return 0.5 * (self.lo + self.hi)

    def __repr__(self) -> str:
        return f"Uniform({self.lo!r}, {self.hi!r})"


class LogNormal(LatencyModel):
    """Delay ``median * exp(sigma * Z)`` with Z standard normal (heavy right tail, always positive)."""

    def __init__(self, median: float, sigma: float) -> None:
        self.median = _finite_nonneg("LogNormal.median", median)
        self.sigma = _finite_nonneg("LogNormal.sigma", sigma)

    @classmethod
    def from_mean_sd(cls, mean: float, sd: float, field: str = "LogNormal") -> "LogNormal":
        """The log-normal with the given mean and standard deviation (seconds)."""
        mean = _finite_nonneg(f"{field}.mean", mean)
        sd = _finite_nonneg(f"{field}.sd", sd)
        if mean == 0:
            if sd:
                raise ConfigError(f"{field}.sd: must be 0 when the mean is 0, got {sd!r}")
            return cls(0.0, 0.0)
        s2 = math.log1p((sd / mean) ** 2)
        return cls(mean * math.exp(-0.5 * s2), math.sqrt(s2))

    def bind(self, src: str, dst: str) -> Sampler:
        sampler = self.__dict__.get("_cached")
        if sampler is None:
            median, sigma = self.median, self.sigma
            if sigma == 0:
                sampler = lambda _rng: median  # noqa: E731
            else:
                sampler = lambda rng: median * math.exp(sigma * rng.normal())  # noqa: E731
            self.__dict__["_cached"] = sampler
        return sampler

    def mean(self, src: str, dst: str) -> float:
        return self.median * math.exp(0.5 * self.sigma**2)

    def draw(self, ahead: Iterator[int], st: list[int], j: int) -> float:
        """The bound sampler's draw from a stream kept as an integer: its next two 64-bit outputs are taken from
        ``ahead`` (outputs drawn in advance) while it yields, then from the state ``st[j]`` (`output_at`);
        `Stream.normal`'s two uniforms and the sampler's formula written out, the same number."""
        if self.sigma == 0:
            return self.median
        x = next(ahead, None)
        if x is None:
            x = output_at(st, j)
        y = next(ahead, None)
        if y is None:
            y = output_at(st, j)
        u1 = 1.0 - (x >> 11) * _TWO_POW_M53
        u2 = (y >> 11) * _TWO_POW_M53
        return self.median * math.exp(self.sigma * (math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)))

    def __repr__(self) -> str:
        return f"LogNormal({self.median!r}, {self.sigma!r})"


TableEntry = Union[LatencyModel, float, int, tuple]


def as_latency(value: object, field: str = "latency") -> LatencyModel:
    """Coerce a number (constant seconds), a ``(mean, sd)`` pair (log-normal) or a model."""
    if isinstance(value, LatencyModel):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Constant(_finite_nonneg(field, value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return LogNormal.from_mean_sd(value[0], value[1], field)
    raise ConfigError(f"{field}: expected seconds, (mean, sd) or a LatencyModel, got {value!r}")


class RegionTable(LatencyModel):
    """Region-to-region latency (as in SimBlock): each node belongs to a region; each ordered region pair has a
    model, a constant (seconds) or a ``(mean, sd)`` pair (log-normal with that mean and sd).

    With ``symmetric=True`` (default) a missing ``(r2, r1)`` entry falls back to ``(r1, r2)``; ``default`` covers
    pairs absent from the table.
    """

    def __init__(
        self,
        regions: Mapping[str, str],
        table: Mapping[tuple[str, str], TableEntry],
        *,
        symmetric: bool = True,
        default: TableEntry | None = None,
    ) -> None:
        self.regions = dict(regions)
        self.table = {}
        known = set(self.regions.values())
        for key, value in table.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ConfigError(f"RegionTable.table: keys must be (region, region) pairs, got {key!r}")
            for r in key:
                if r not in known:
                    raise ConfigError(f"RegionTable.table[{key!r}]: region {r!r} has no node")
            self.table[key] = as_latency(value, f"RegionTable.table[{key!r}]")
        self.symmetric = symmetric
        self.default = None if default is None else as_latency(default, "RegionTable.default")

    def model_for(self, src: str, dst: str) -> LatencyModel:
        try:
            r1, r2 = self.regions[src], self.regions[dst]
        except KeyError as exc:
            raise ConfigError(f"RegionTable.regions: node {exc.args[0]!r} has no region") from None
        model = self.table.get((r1, r2))
        if model is None and self.symmetric:
            model = self.table.get((r2, r1))
        if model is None:
            model = self.default
        if model is None:
            raise ConfigError(f"RegionTable.table: no latency for region pair ({r1!r}, {r2!r}) and no default")
        return model

    def bind(self, src: str, dst: str) -> Sampler:
        return self.model_for(src, dst).bind(src, dst)

    def mean(self, src: str, dst: str) -> float:
        return self.model_for(src, dst).mean(src, dst)
