"""Pydantic schema of a radial distribution feeder case with a day-ahead dispatch (the IEEE 33-bus file's format).

Field checks (types, signs, ranges) are pydantic constraints; cross-field checks (bus references, a radial tree
rooted at the substation, profile lengths, the variants' units) raise a ``ValueError`` whose text starts with the
dotted field path, e.g. ``lines[4].to: unknown bus 99``. List positions are 0-based (JSON order).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NonNeg = Annotated[float, Field(ge=0)]
Pos = Annotated[float, Field(gt=0)]
Efficiency = Annotated[float, Field(gt=0, le=1)]
Share = Annotated[float, Field(ge=0, le=1)]

#: Periods of one day in the profiles (hourly).
HOURS = 24


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Bus(_Model):
    """A bus and its (peak) load: ``p_kw`` active, ``q_kvar`` reactive, constant power."""

    id: Annotated[int, Field(ge=1)]
    p_kw: NonNeg
    q_kvar: float


class Line(_Model):
    """A line ``from`` -> ``to`` (series impedance in ohm); ``rating_a`` overrides the dispatch's default rating."""

    from_: Annotated[int, Field(alias="from", ge=1)]
    to: Annotated[int, Field(ge=1)]
    r_ohm: Pos
    x_ohm: Pos
    rating_a: Pos | None = None


class Substation(_Model):
    """The slack bus (grid connection) and its fixed voltage magnitude."""

    bus: Annotated[int, Field(ge=1)]
    voltage_pu: Annotated[float, Field(gt=0.5, lt=1.5)]


class Published(_Model):
    """Published base-case power-flow results of the feeder (peak load, no generation), for tests."""

    loss_kw: Pos
    v_min_pu: Pos
    v_min_bus: Annotated[int, Field(ge=1)]
    p_load_kw: Pos
    q_load_kvar: float


class Cost(_Model):
    """Generation cost ``c2 P^2 + c1 P + c0`` in $/h with P in MW."""

    c2_per_mw2h: NonNeg
    c1_per_mwh: NonNeg
    c0_per_h: NonNeg = 0.0


class Generator(_Model):
    """A dispatchable DG: active power range (kW), reactive range (kVAr), quadratic cost."""

    name: Annotated[str, Field(min_length=1)]
    bus: Annotated[int, Field(ge=1)]
    p_min_kw: NonNeg
    p_max_kw: Pos
    q_min_kvar: float
    q_max_kvar: float
    cost: Cost

    @model_validator(mode="after")
    def _ranges(self) -> Generator:
        if self.p_min_kw > self.p_max_kw:
            raise ValueError(f"p_min_kw: {self.p_min_kw} exceeds p_max_kw {self.p_max_kw}")
        if self.q_min_kvar > self.q_max_kvar:
            raise ValueError(f"q_min_kvar: {self.q_min_kvar} exceeds q_max_kvar {self.q_max_kvar}")
        return self


class Battery(_Model):
    """A battery: power (kW), energy (kWh), state-of-charge window and start (shares of the energy), efficiencies,
    and a throughput cost ($/MWh charged plus discharged). The horizon ends at the initial state of charge."""

    name: Annotated[str, Field(min_length=1)]
    bus: Annotated[int, Field(ge=1)]
    power_kw: Pos
    energy_kwh: Pos
    soc_min: Share
    soc_max: Share
    soc_initial: Share
    eta_charge: Efficiency
    eta_discharge: Efficiency
    throughput_cost_per_mwh: NonNeg = 0.0

    @model_validator(mode="after")
    def _window(self) -> Battery:
        if self.soc_min > self.soc_max:
            raise ValueError(f"soc_min: {self.soc_min} exceeds soc_max {self.soc_max}")
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            raise ValueError(f"soc_initial: {self.soc_initial} outside [{self.soc_min}, {self.soc_max}]")
        return self


class Grid(_Model):
    """Import limits at the substation (kW, kVAr); a negative ``p_min_kw`` allows export (paid at the price)."""

    p_min_kw: float
    p_max_kw: float
    q_min_kvar: float
    q_max_kvar: float

    @model_validator(mode="after")
    def _ranges(self) -> Grid:
        if self.p_min_kw > self.p_max_kw:
            raise ValueError(f"p_min_kw: {self.p_min_kw} exceeds p_max_kw {self.p_max_kw}")
        if self.q_min_kvar > self.q_max_kvar:
            raise ValueError(f"q_min_kvar: {self.q_min_kvar} exceeds q_max_kvar {self.q_max_kvar}")
        return self


class Profiles(_Model):
    """Hourly profiles of one day: load as a share of each bus's peak load, grid energy price in $/MWh."""

    load: Annotated[list[Annotated[float, Field(ge=0, le=2)]], Field(min_length=HOURS, max_length=HOURS)]
    price_per_mwh: Annotated[list[NonNeg], Field(min_length=HOURS, max_length=HOURS)]


class Tampered(_Model):
    """The dishonest leader's objective: ``reward_per_mwh`` subtracted for every MWh of generator ``unit``."""

    unit: Annotated[str, Field(min_length=1)]
    reward_per_mwh: Pos


class Forced(_Model):
    """The ``feasible`` variant: generator ``unit`` forced to at least ``min_kw`` in every hour."""

    unit: Annotated[str, Field(min_length=1)]
    min_kw: NonNeg


class Dispatch(_Model):
    """The day-ahead dispatch problem on the feeder (not part of the published case: modelling assumptions)."""

    voltage_min_pu: Pos
    voltage_max_pu: Pos
    line_rating_a: Pos
    generators: Annotated[list[Generator], Field(min_length=1)]
    battery: Battery | None = None
    grid: Grid
    profiles: Profiles
    tampered: Tampered
    feasible: Forced

    @model_validator(mode="after")
    def _check(self) -> Dispatch:
        if self.voltage_min_pu >= self.voltage_max_pu:
            raise ValueError(f"voltage_min_pu: {self.voltage_min_pu} not below voltage_max_pu {self.voltage_max_pu}")
        names = [g.name for g in self.generators]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"generators[{i}].name: duplicate generator {n!r}")
        for field, unit in (("tampered", self.tampered.unit), ("feasible", self.feasible.unit)):
            if unit not in names:
                raise ValueError(f"{field}.unit: unknown generator {unit!r} (generators: {', '.join(names)})")
        forced = next(g for g in self.generators if g.name == self.feasible.unit)
        if self.feasible.min_kw > forced.p_max_kw:
            raise ValueError(
                f"feasible.min_kw: {self.feasible.min_kw} exceeds {forced.name}'s p_max_kw {forced.p_max_kw}"
            )
        return self


class FeederCase(_Model):
    """A radial feeder: buses with loads, lines forming a tree rooted at the substation, the published base-case
    results and the dispatch problem."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    source: dict[str, str] = Field(default_factory=dict)
    base_kv: Pos
    base_mva: Pos
    substation: Substation
    buses: Annotated[list[Bus], Field(min_length=2)]
    lines: Annotated[list[Line], Field(min_length=1)]
    tie_lines: list[Line] = Field(default_factory=list)
    published: Published | None = None
    dispatch: Dispatch

    @model_validator(mode="after")
    def _consistency(self) -> FeederCase:
        ids = [b.id for b in self.buses]
        known = set()
        for i, b in enumerate(ids):
            if b in known:
                raise ValueError(f"buses[{i}].id: duplicate bus {b}")
            known.add(b)
        root = self.substation.bus
        if root not in known:
            raise ValueError(f"substation.bus: unknown bus {root}")
        for group, lines in (("lines", self.lines), ("tie_lines", self.tie_lines)):
            for i, ln in enumerate(lines):
                for end, b in (("from", ln.from_), ("to", ln.to)):
                    if b not in known:
                        raise ValueError(f"{group}[{i}].{end}: unknown bus {b}")
                if ln.from_ == ln.to:
                    raise ValueError(f"{group}[{i}]: a line from bus {ln.to} to itself")
        # radial: every bus but the substation has exactly one line arriving at it, and all reach the substation
        parent: dict[int, int] = {}
        for i, ln in enumerate(self.lines):
            if ln.to == root:
                raise ValueError(f"lines[{i}].to: a line into the substation bus {root} (lines point away from it)")
            if ln.to in parent:
                raise ValueError(f"lines[{i}].to: bus {ln.to} is fed by two lines (the feeder must be radial)")
            parent[ln.to] = ln.from_
        for i, b in enumerate(ids):
            if b == root:
                continue
            if b not in parent:
                raise ValueError(f"buses[{i}]: bus {b} is not fed by any line")
            seen = {b}
            k = b
            while k != root:
                k = parent[k]
                if k in seen:
                    raise ValueError(f"lines: bus {b} lies on a loop, not on a path from the substation")
                seen.add(k)
        d = self.dispatch
        for i, g in enumerate(d.generators):
            if g.bus not in known:
                raise ValueError(f"dispatch.generators[{i}].bus: unknown bus {g.bus}")
        if d.battery is not None and d.battery.bus not in known:
            raise ValueError(f"dispatch.battery.bus: unknown bus {d.battery.bus}")
        if self.published is not None and self.published.v_min_bus not in known:
            raise ValueError(f"published.v_min_bus: unknown bus {self.published.v_min_bus}")
        return self

    # -- derived quantities --------------------------------------------------------------------------------------------
    @property
    def z_base_ohm(self) -> float:
        """Impedance base (ohm) of the per-unit system."""
        return self.base_kv**2 / self.base_mva

    @property
    def i_base_a(self) -> float:
        """Current base (A, line current of a three-phase system) of the per-unit system."""
        return self.base_mva * 1e3 / (3**0.5 * self.base_kv)

    def total_load(self) -> tuple[float, float]:
        """Sum of the bus loads (kW, kVAr)."""
        return sum(b.p_kw for b in self.buses), sum(b.q_kvar for b in self.buses)

    def summary(self) -> dict[str, Any]:
        p, q = self.total_load()
        return {
            "name": self.name,
            "buses": len(self.buses),
            "lines": len(self.lines),
            "generators": len(self.dispatch.generators),
            "battery": self.dispatch.battery is not None,
            "p_load_kw": p,
            "q_load_kvar": q,
        }
