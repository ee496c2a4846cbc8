"""Pydantic models of a dispatch case, with structural and topological validation.

Field-level checks (types, signs, ranges) are pydantic constraints; cross-field checks (indices,
hub/bus consistency, radial networks) run in :meth:`Case._check_consistency` and raise a
``ValueError`` whose text starts with the dotted field path, e.g.
``heat.pipes[3].to: unknown heat node 99``.  List positions in paths are 0-based (JSON order).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import topology

NonNeg = Annotated[float, Field(ge=0)]
Pos = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CostCoefficients(_Model):
    """CHP cost a P^2 + b P + c H^2 + d H + e P H ($/h, P and H in MW); boiler cost f * H_boiler ($/h, kW)."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float


class Storage(_Model):
    """Battery or heat tank: power limit (kW), capacity / min / initial energy (kWh), efficiency, retention per hour."""

    power_max_kw: NonNeg
    capacity_kwh: NonNeg
    min_energy_kwh: NonNeg
    initial_energy_kwh: NonNeg
    efficiency: Fraction
    retention: Fraction

    @model_validator(mode="after")
    def _levels(self) -> Storage:
        if self.min_energy_kwh > self.capacity_kwh:
            raise ValueError(f"min_energy_kwh: {self.min_energy_kwh} exceeds capacity_kwh {self.capacity_kwh}")
        if not self.min_energy_kwh <= self.initial_energy_kwh <= self.capacity_kwh:
            raise ValueError(
                f"initial_energy_kwh: {self.initial_energy_kwh} outside [{self.min_energy_kwh}, {self.capacity_kwh}]"
            )
        return self


class Hub(_Model):
    """Energy hub c: CHP c, gas boiler c, battery c and heat tank c, attached to one bus of each network."""

    id: Annotated[int, Field(ge=1)]
    e_bus: int
    h_node: int
    g_node: int
    s_max_kva: NonNeg
    boiler_max_kw: NonNeg
    cost: CostCoefficients
    battery: Storage
    tank: Storage


class ElectricBus(_Model):
    """type: -1 slack (bulk grid), 0 load bus, c >= 1 bus of hub c."""

    id: int
    type: Annotated[int, Field(ge=-1)]
    p_load: NonNeg
    q_load: NonNeg


class Branch(_Model):
    """Electric line, sending end ``from``; r, x in ohm, z2 = |z|^2 in ohm^2 (the reference's rounded value)."""

    id: int
    from_: int = Field(alias="from")
    to: int
    r: NonNeg
    x: NonNeg
    z2: NonNeg


class HeatNode(_Model):
    """type: -1 junction, 0 load node, c >= 1 node of hub c; load_kw is the base heat demand."""

    id: int
    type: Annotated[int, Field(ge=-1)]
    load_kw: NonNeg


class HeatPipe(_Model):
    """Supply water flows from -> to, return water to -> from."""

    id: int
    from_: int = Field(alias="from")
    to: int
    length_m: Pos
    loss_coeff: NonNeg


class GasNode(_Model):
    """type: -1 source, 0 load/junction, c >= 1 node of hub c; load_kw converted to m3/h by the heating value."""

    id: int
    type: Annotated[int, Field(ge=-1)]
    load_kw: NonNeg


class GasPipe(_Model):
    """Gas flows from -> to; Weymouth-type law p_from - p_to = K f^2 (bar, m3/h)."""

    id: int
    from_: int = Field(alias="from")
    to: int
    length_m: Pos
    diameter_mm: Pos
    K: NonNeg


class Profiles(_Model):
    """Per-period data: grid price ($/kWh); load factor of the electric and gas loads; optional heat load factor
    (default: ``load_factor``, one factor for all three networks as in the reference)."""

    price: list[NonNeg]
    load_factor: list[NonNeg]
    heat_load_factor: list[NonNeg] | None = None


class Scalars(_Model):
    cp: Pos
    t_supply: float
    t_ambient: float
    load_mass_flow: NonNeg
    gas_heating_value: Pos
    chp_power_eff: Pos
    chp_heat_to_power: NonNeg
    boiler_eff: Pos
    v_nominal_kv: Pos
    v2_min: NonNeg
    v2_max: Pos
    v2_slack: Pos
    i2_max: Pos
    gas_source_pressure: NonNeg
    min_pipe_mass_flow: NonNeg

    @model_validator(mode="after")
    def _voltage(self) -> Scalars:
        if not self.v2_min <= self.v2_slack <= self.v2_max:
            raise ValueError(f"v2_slack: {self.v2_slack} outside [v2_min, v2_max] = [{self.v2_min}, {self.v2_max}]")
        return self


class ElectricNetwork(_Model):
    buses: list[ElectricBus]
    branches: list[Branch]


class HeatNetwork(_Model):
    nodes: list[HeatNode]
    pipes: list[HeatPipe]


class GasNetwork(_Model):
    nodes: list[GasNode]
    pipes: list[GasPipe]


class CaseConsistencyError(ValueError):
    """A cross-field inconsistency; ``path`` is the dotted field, ``reason`` the explanation."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Case(_Model):
    name: str
    description: str = ""
    units: dict[str, str] = Field(default_factory=dict)
    horizon: Annotated[int, Field(ge=1)]
    profiles: Profiles
    scalars: Scalars
    hubs: list[Hub]
    electric: ElectricNetwork
    heat: HeatNetwork
    gas: GasNetwork

    # ---- convenience views -------------------------------------------------------------
    @property
    def periods(self) -> list[int]:
        return list(range(1, self.horizon + 1))

    def hub(self, c: int) -> Hub:
        for h in self.hubs:
            if h.id == c:
                return h
        raise KeyError(c)

    # ---- cross-field validation ---------------------------------------------------------
    @model_validator(mode="after")
    def _check_consistency(self) -> Case:
        def fail(path: str, reason: str) -> None:
            raise CaseConsistencyError(path, reason)

        for fld in ("price", "load_factor", "heat_load_factor"):
            if getattr(self.profiles, fld) is None:
                continue
            n = len(getattr(self.profiles, fld))
            if n != self.horizon:
                fail(f"profiles.{fld}", f"has {n} values, horizon is {self.horizon}")

        def unique(items, path: str) -> None:
            seen: set[int] = set()
            for i, it in enumerate(items):
                if it.id in seen:
                    fail(f"{path}[{i}].id", f"duplicate id {it.id}")
                seen.add(it.id)

        unique(self.hubs, "hubs")
        nets = (
            ("electric", "buses", "branches", "bus", self.electric.buses, self.electric.branches),
            ("heat", "nodes", "pipes", "node", self.heat.nodes, self.heat.pipes),
            ("gas", "nodes", "pipes", "node", self.gas.nodes, self.gas.pipes),
        )
        hub_ids = {h.id for h in self.hubs}
        for net, nname, ename, what, nodes, edges in nets:
            unique(nodes, f"{net}.{nname}")
            unique(edges, f"{net}.{ename}")
            ids = {n.id for n in nodes}
            for i, e in enumerate(edges):
                for end, v in (("from", e.from_), ("to", e.to)):
                    if v not in ids:
                        fail(f"{net}.{ename}[{i}].{end}", f"unknown {net} {what} {v}")
            for i, n in enumerate(nodes):
                if n.type >= 1 and n.type not in hub_ids:
                    fail(f"{net}.{nname}[{i}].type", f"{what} {n.id} is of type {n.type}, but there is no hub {n.type}")

        # hubs <-> bus types
        ebus = {b.id: b for b in self.electric.buses}
        hnode = {b.id: b for b in self.heat.nodes}
        gnode = {b.id: b for b in self.gas.nodes}
        for i, h in enumerate(self.hubs):
            for fld, table, net in (("e_bus", ebus, "electric bus"), ("h_node", hnode, "heat node"), ("g_node", gnode, "gas node")):
                nid = getattr(h, fld)
                if nid not in table:
                    fail(f"hubs[{i}].{fld}", f"unknown {net} {nid}")
                if table[nid].type != h.id:
                    fail(f"hubs[{i}].{fld}", f"{net} {nid} is of type {table[nid].type}, not of hub type {h.id}")
        for net, nname, table, hubfld in (
            ("electric", "buses", self.electric.buses, "e_bus"),
            ("heat", "nodes", self.heat.nodes, "h_node"),
            ("gas", "nodes", self.gas.nodes, "g_node"),
        ):
            for i, n in enumerate(table):
                if n.type >= 1 and getattr(self.hub(n.type), hubfld) != n.id:
                    fail(f"{net}.{nname}[{i}].type", f"hub {n.type} is attached to {getattr(self.hub(n.type), hubfld)}, not {n.id}")

        # special nodes
        slacks = [b.id for b in self.electric.buses if b.type == -1]
        if len(slacks) != 1:
            fail("electric.buses", f"exactly one slack bus (type -1) is required, found {len(slacks)}")
        sources = [n.id for n in self.gas.nodes if n.type == -1]
        if len(sources) != 1:
            fail("gas.nodes", f"exactly one gas source (type -1) is required, found {len(sources)}")

        # topology: three trees; gas rooted at the source; heat hub nodes are sending leaves
        for net, nname, ename, what, nodes, edges in nets:
            el = [(e.id, e.from_, e.to) for e in edges]
            why = topology.tree_problem([n.id for n in nodes], el, what)
            if why:
                fail(f"{net}.{ename}", why)
        gel = [(e.id, e.from_, e.to) for e in self.gas.pipes]
        why = topology.arborescence_problem([n.id for n in self.gas.nodes], gel, sources[0], "node")
        if why:
            fail("gas.pipes", why)
        hel = [(e.id, e.from_, e.to) for e in self.heat.pipes]
        for i, h in enumerate(self.hubs):
            why = topology.sending_leaf_problem(h.h_node, hel)
            if why:
                fail(f"hubs[{i}].h_node", f"heat node {h.h_node} {why}")
        return self
