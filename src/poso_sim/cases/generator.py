"""Seeded day-ahead instances of a base case, and multi-day horizons (one structure, many data).

An instance keeps everything of the base case but its per-period profiles, which the generator varies as
documented in docs/model.md ("Day-ahead instances")::

    profile_i[t] = base[t] x level_i x (1 + e_i[t])

* ``level_i`` is drawn uniformly from the range's ``level`` interval, once per instance and profile;
* ``e_i`` is hourly noise with standard deviation ``noise``, correlated from hour to hour (AR(1), coefficient
  ``correlation``) and truncated at three standard deviations, so the base case's daily shape is kept.

The electric (and gas) load follows ``load``, the heat load ``heat`` and the grid price ``price``. Values are
rounded to :data:`DECIMALS` decimals. Instance ``i`` of a seed is drawn from its own generator
(``numpy.random.default_rng([seed, i])``), so it does not depend on how many instances are asked for, and the same
seed gives the same instances byte for byte (:func:`case_digest`).

Every instance is validated by the case schema; a range that makes an invalid instance, or one that certainly
cannot be served (heat demand beyond the hubs' heat capacity, or beyond what a load node's fixed mass flow can
carry), raises :class:`poso_sim.errors.CaseError` naming the instance and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import CaseError
from .loader import case_from_dict
from .schema import Case

__all__ = [
    "DECIMALS", "ProfileRange", "InstanceRanges", "generate_instances", "repeat_days", "join_days", "case_digest",
    "case_document", "structure_digest",
]  # fmt: skip

#: Decimals kept in generated profile values.
DECIMALS = 6


@dataclass(frozen=True)
class ProfileRange:
    """Variation of one profile: per-instance level in ``[level[0], level[1]]`` times hourly noise."""

    level: tuple[float, float] = (0.9, 1.1)
    noise: float = 0.03
    correlation: float = 0.6

    def check(self, name: str) -> None:
        lo, hi = self.level
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise CaseError(f"ranges.{name}.level: ({lo}, {hi}) is not an interval lower <= upper")
        if not 0.0 <= self.noise < 1.0 / 3.0:
            raise CaseError(f"ranges.{name}.noise: {self.noise} outside [0, 1/3) (the factor 1 + 3 noise must stay > 0)")
        if not 0.0 <= self.correlation < 1.0:
            raise CaseError(f"ranges.{name}.correlation: {self.correlation} outside [0, 1)")


@dataclass(frozen=True)
class InstanceRanges:
    """The documented default ranges: loads +-10 % with 3 % hourly noise, heat +-15 % / 5 %, price -20..+25 % / 10 %."""

    load: ProfileRange = field(default_factory=lambda: ProfileRange((0.9, 1.1), 0.03))
    heat: ProfileRange = field(default_factory=lambda: ProfileRange((0.85, 1.15), 0.05))
    price: ProfileRange = field(default_factory=lambda: ProfileRange((0.8, 1.25), 0.10))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InstanceRanges":
        """From ``{"load": {"level": [lo, hi], "noise": s, "correlation": r}, "heat": ..., "price": ...}``."""
        if not isinstance(data, dict):
            raise CaseError("ranges: expected a mapping with keys load, heat, price")
        out = {}
        for key, val in data.items():
            if key not in ("load", "heat", "price"):
                raise CaseError(f"ranges.{key}: unknown profile (known: load, heat, price)")
            if not isinstance(val, dict) or set(val) - {"level", "noise", "correlation"}:
                raise CaseError(f"ranges.{key}: expected a mapping with keys level, noise, correlation")
            default = getattr(cls(), key)  # a field left out keeps its documented default
            try:
                lv = tuple(float(v) for v in val.get("level", default.level))
                if len(lv) != 2:
                    raise ValueError
                out[key] = ProfileRange(lv, float(val.get("noise", default.noise)),
                                        float(val.get("correlation", default.correlation)))
            except (TypeError, ValueError):
                raise CaseError(f"ranges.{key}: level must be [lower, upper], noise and correlation numbers") from None
        return cls(**out)

    def check(self) -> None:
        for name in ("load", "heat", "price"):
            getattr(self, name).check(name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _factors(rng: np.random.Generator, r: ProfileRange, n: int) -> np.ndarray:
    """``level x (1 + e[t])`` for ``n`` periods (see the module text)."""
    level = rng.uniform(r.level[0], r.level[1])
    z = np.clip(rng.standard_normal(n), -3.0, 3.0)
    e = np.empty(n)
    acc = 0.0
    w = np.sqrt(1.0 - r.correlation**2)
    for t in range(n):  # AR(1) with unit stationary variance, started in its stationary law
        acc = z[t] if t == 0 else r.correlation * acc + w * z[t]
        e[t] = acc
    e = np.clip(e, -3.0, 3.0) * r.noise
    return level * (1.0 + e)


def case_document(case: Case) -> dict[str, Any]:
    """The JSON document of ``case`` (aliases, no empty optional fields), as written to case files."""
    return case.model_dump(mode="json", by_alias=True, exclude_none=True)


def case_digest(case: Case) -> str:
    """SHA-256 of the canonical JSON of ``case``: equal for equal instances, byte for byte."""
    text = json.dumps(case_document(case), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def structure_digest(case: Case) -> str:
    """SHA-256 of what decides the compiled structure of ``case``'s model: everything but the per-period data.

    The profile values, the electric loads and the gas loads enter the model as Params, so they are left out; of the
    heat loads only which nodes have one (the index set of ``HNodeLoadeq``) is kept. Instances made by
    :func:`generate_instances` share the digest of their base case: a cache of compiled problems keyed by it
    compiles once per structure.
    """
    doc = case_document(case)
    for k in ("name", "description", "units"):
        doc.pop(k, None)
    doc.pop("profiles")  # values only (the horizon stays)
    for b in doc["electric"]["buses"]:
        b.pop("p_load"), b.pop("q_load")
    for nd in doc["gas"]["nodes"]:
        nd.pop("load_kw")
    for nd in doc["heat"]["nodes"]:
        nd["load_kw"] = nd["load_kw"] != 0
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(b"poso-sim/case-structure/v1\n" + text.encode()).hexdigest()


def _check_servable(case: Case, source: str) -> None:
    """Necessary conditions for a feasible dispatch that the data alone decide (a clear error, not a failed solve)."""
    s, prof = case.scalars, case.profiles
    heat_lf = prof.heat_load_factor if prof.heat_load_factor is not None else prof.load_factor
    fld = "heat_load_factor" if prof.heat_load_factor is not None else "load_factor"
    capacity = sum(s.chp_heat_to_power * h.s_max_kva + h.boiler_max_kw + h.tank.power_max_kw * h.tank.efficiency
                   for h in case.hubs)
    base = sum(n.load_kw for n in case.heat.nodes)
    node_max = s.cp * s.load_mass_flow * (s.t_supply - 0.0)
    peak = max((n.load_kw for n in case.heat.nodes), default=0.0)
    for t, f in enumerate(heat_lf):
        if base * f > capacity:
            raise CaseError(
                f"{source}: profiles.{fld}[{t}]: heat demand {base * f:.1f} kW exceeds the hubs' heat capacity "
                f"{capacity:.1f} kW (CHP + boilers + tanks)"
            )
        if peak * f > node_max:
            raise CaseError(
                f"{source}: profiles.{fld}[{t}]: a heat load of {peak * f:.1f} kW exceeds what the fixed load mass "
                f"flow can carry ({node_max:.1f} kW = cp x load_mass_flow x t_supply)"
            )


def generate_instances(
    base: Case, n: int, seed: int, ranges: InstanceRanges | dict | None = None
) -> list[Case]:
    """``n`` day-ahead instances of ``base`` (see the module text), named ``<base>-s<seed>-d<i>`` (i from 1).

    Each is a validated :class:`~poso_sim.cases.Case` with the structure of ``base``; only ``profiles`` differ.
    """
    if not isinstance(n, int) or n < 1:
        raise CaseError(f"n: the number of instances must be a positive integer, got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise CaseError(f"seed: must be a non-negative integer, got {seed!r}")
    if ranges is None:
        ranges = InstanceRanges()
    elif isinstance(ranges, dict):
        ranges = InstanceRanges.from_dict(ranges)
    ranges.check()
    doc = case_document(base)
    prof = base.profiles
    load = np.asarray(prof.load_factor, dtype=np.float64)
    heat = np.asarray(prof.heat_load_factor if prof.heat_load_factor is not None else prof.load_factor)
    price = np.asarray(prof.price, dtype=np.float64)
    out = []
    for i in range(n):
        name = f"{base.name}-s{seed}-d{i + 1}"
        rng = np.random.default_rng([seed, i])
        new = {
            "price": np.round(price * _factors(rng, ranges.price, price.size), DECIMALS).tolist(),
            "load_factor": np.round(load * _factors(rng, ranges.load, load.size), DECIMALS).tolist(),
            "heat_load_factor": np.round(heat * _factors(rng, ranges.heat, heat.size), DECIMALS).tolist(),
        }
        inst = dict(doc, name=name, profiles=new)
        inst["description"] = (f"day-ahead instance {i + 1} of {base.name} (seed {seed}); "
                               f"profiles varied by poso_sim.cases.generator")
        case = case_from_dict(inst, name)
        _check_servable(case, name)
        out.append(case)
    return out


def repeat_days(case: Case, days: int) -> Case:
    """``case`` over ``days`` x its horizon: the per-period profiles repeated, everything else unchanged."""
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise CaseError(f"days: must be a positive integer, got {days!r}")
    if days == 1:
        return case
    return join_days([case] * days, name=f"{case.name}-x{days}d")


def join_days(cases: Sequence[Case], name: str | None = None) -> Case:
    """One case whose horizon is the days of ``cases`` in order (same structure): storage couples the days.

    Profiles are concatenated (a missing heat load factor is the day's load factor); everything else must be
    equal, else the error names the first day and field that differ.
    """
    if not cases:
        raise CaseError("join_days: no days given")
    first = case_document(cases[0])
    keep = {k: v for k, v in first.items() if k not in ("name", "description", "profiles", "horizon")}
    prof: dict[str, list] = {"price": [], "load_factor": [], "heat_load_factor": []}
    for d, c in enumerate(cases):
        doc = case_document(c)
        for k, v in keep.items():
            if doc.get(k) != v:
                raise CaseError(f"{c.name}: {k}: day {d + 1} differs from day 1 ({cases[0].name}); only profiles may differ")
        p = c.profiles
        prof["price"] += list(p.price)
        prof["load_factor"] += list(p.load_factor)
        prof["heat_load_factor"] += list(p.heat_load_factor if p.heat_load_factor is not None else p.load_factor)
    if all(c.profiles.heat_load_factor is None for c in cases):
        del prof["heat_load_factor"]
    title = name or f"{cases[0].name}-{len(cases)}d"
    doc = dict(keep, name=title, horizon=sum(c.horizon for c in cases), profiles=prof,
               description=f"{len(cases)} days: " + ", ".join(c.name for c in cases))
    return case_from_dict(doc, title)
