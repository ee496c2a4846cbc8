"""Pydantic models of the trading case: twelve multi-energy hubs, the grid, the zone heat sources, 24 hours.

A hub is a small directed graph: the external inputs (nodes 1-4: gas, electricity, heat, cooling bought), the
load buses (nodes 5-8) and the devices (converters, storage, PV, wind, the hub's own power plant), joined by
branches (the flows, the decision variables of the hub's problem). Cross-field checks raise a ``ValueError`` whose
text starts with the field path relative to the model, e.g. ``devices[3].out1: branch 40 is not a branch of the
hub``; the loader prefixes the file and the hub.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HOURS = 24
CARRIERS = ("gas", "elec", "heat", "cool")
#: node ids of the external inputs (what the hub buys) and of the load buses, by carrier
INPUT_NODE = {"gas": 1, "elec": 2, "heat": 3, "cool": 4}
BUS_NODE = {"gas": 5, "elec": 6, "heat": 7, "cool": 8}
#: the node id standing for a source outside the hub (the renewable resource, the plant's fuel)
OUTSIDE = 1000
#: device kinds by the workbook's node type
KIND_OF_TYPE = {1: "GT", 2: "converter2", 3: "converter2", 4: "converter1", 5: "CERG", 6: "WARG", 7: "GB",
                8: "GSHP", 10: "HS", 11: "CS", 12: "PV", 13: "WT", 14: "plant"}
TWO_OUTPUT = (1, 2, 3, 8)
ONE_OUTPUT = (4, 5, 6, 7)
STORAGE = (10, 11)
RENEWABLE = (12, 13)
PLANT = 14
#: the carriers of each device kind: (input, outputs); None: fed from outside the hub. The generic converters
#: (node types 2, 3, 4) are not checked.
KIND_CARRIERS: dict[str, tuple[str | None, set[str]]] = {
    "GT": ("gas", {"elec", "heat"}), "GSHP": ("elec", {"heat", "cool"}), "CERG": ("elec", {"cool"}),
    "WARG": ("heat", {"cool"}), "GB": ("gas", {"heat"}), "HS": ("heat", {"heat"}), "CS": ("cool", {"cool"}),
    "PV": (None, {"elec"}), "WT": (None, {"elec"}), "plant": (None, {"elec"}),
}

NonNeg = Annotated[float, Field(ge=0)]
Profile = Annotated[list[float], Field(min_length=HOURS, max_length=HOURS)]
NonNegProfile = Annotated[list[NonNeg], Field(min_length=HOURS, max_length=HOURS)]
Carrier = Literal["gas", "elec", "heat", "cool"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Branch(_Model):
    """One internal flow: ``carrier`` from node ``src`` (1000: outside the hub) to node ``dst``."""

    id: Annotated[int, Field(ge=1)]
    carrier: Carrier
    src: Annotated[int, Field(ge=1)]
    dst: Annotated[int, Field(ge=1)]


class Curve(_Model):
    """Output curves: out1 = a in^2 + c in + e, out2 = b in^2 + d in + f (two outputs); out = b in^2 + c in + d
    (one output); plant cost b P^2 + c P. The workbook's coefficients as they stand."""

    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    e: float = 0.0
    f: float = 0.0


class Device(_Model):
    """A device node: its kind, the workbook's node type, input and output branches (0: none), curve and limits."""

    node: Annotated[int, Field(ge=9)]
    kind: str
    type: int
    input: Annotated[int, Field(ge=0)] = Field(alias="in")
    out1: Annotated[int, Field(ge=0)]
    out2: Annotated[int, Field(ge=0)] = 0
    curve: Curve = Curve()
    in_max: NonNeg = 0.0
    out1_max: NonNeg = 0.0
    out2_max: NonNeg = 0.0
    soc_max: NonNeg | None = None
    soc_min: NonNeg | None = None

    @model_validator(mode="after")
    def _shape(self) -> Device:
        if self.type not in KIND_OF_TYPE:
            raise ValueError(f"type: unknown node type {self.type} (known: {sorted(KIND_OF_TYPE)})")
        if self.kind != KIND_OF_TYPE[self.type]:
            raise ValueError(f"kind: {self.kind!r} does not match node type {self.type} ({KIND_OF_TYPE[self.type]})")
        if self.out1 == 0:
            raise ValueError("out1: a device needs an output branch")
        if (self.type in TWO_OUTPUT) != (self.out2 != 0):
            raise ValueError(f"out2: {'missing' if self.type in TWO_OUTPUT else 'not allowed'} for a {self.kind}")
        if self.type in STORAGE and (self.soc_max is None or self.soc_min is None):
            raise ValueError("soc_max: storage needs its SOC limits (sheet S)")
        if self.type in STORAGE and self.soc_min > self.soc_max:
            raise ValueError(f"soc_min: {self.soc_min} exceeds soc_max {self.soc_max}")
        if self.type == PLANT and self.out1_max > self.in_max:
            raise ValueError(f"out1_max: the plant's minimum {self.out1_max} exceeds its maximum in_max {self.in_max}")
        return self


class PurchaseBounds(_Model):
    """Bounds on what a hub buys (negative: sells), declared because the reference leaves them unbounded; derived
    from the device limits and the largest load (the bus balances never let a purchase reach them)."""

    gas: tuple[float, float]
    elec: tuple[float, float]
    heat: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> PurchaseBounds:
        for name in ("gas", "elec", "heat"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name}: lower bound {lo} exceeds upper bound {hi}")
        return self


class Loads(_Model):
    gas: NonNegProfile
    elec: NonNegProfile
    heat: NonNegProfile
    cool: NonNegProfile


class Renewable(_Model):
    pv: NonNegProfile
    wt: NonNegProfile


class TradingHub(_Model):
    """One hub: zone, branches, devices, hourly loads and renewable limits, declared purchase bounds, start point."""

    id: Annotated[int, Field(ge=1)]
    zone: Annotated[int, Field(ge=1, le=3)]
    branches: list[Branch]
    devices: list[Device]
    loads: Loads
    renewable_max: Renewable
    purchase_bounds: PurchaseBounds
    start: list[float] | None = None

    @model_validator(mode="after")
    def _topology(self) -> TradingHub:
        ids = [b.id for b in self.branches]
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError("branches: ids must be 1, 2, ... in order")
        by_id = {b.id: b for b in self.branches}
        nodes = {d.node for d in self.devices}
        if len(nodes) != len(self.devices):
            raise ValueError("devices: a node appears twice")
        known = set(INPUT_NODE.values()) | set(BUS_NODE.values()) | nodes
        for i, b in enumerate(self.branches):
            for end, node in (("src", b.src), ("dst", b.dst)):
                if node not in known and not (end == "src" and node == OUTSIDE):
                    raise ValueError(f"branches[{i}].{end}: unknown node {node}")
        _check_bus_carriers(self.branches)
        for carrier, node in INPUT_NODE.items():
            found = [b for b in self.branches if b.src == node]
            if len(found) != 1 or found[0].dst != BUS_NODE[carrier] or found[0].carrier != carrier:
                raise ValueError(f"branches: node {node} must feed bus {BUS_NODE[carrier]} by one {carrier} branch")
        for i, d in enumerate(self.devices):
            for end in ("input", "out1", "out2"):
                bid = getattr(d, end)
                if bid == 0:
                    continue
                b = by_id.get(bid)
                if b is None:
                    raise ValueError(f"devices[{i}].{end}: branch {bid} is not a branch of the hub")
                if (end == "input" and b.dst != d.node) or (end != "input" and b.src != d.node):
                    raise ValueError(f"devices[{i}].{end}: branch {bid} runs {b.src}->{b.dst}, not through node {d.node}")
            if d.type in RENEWABLE + (PLANT,) and d.input and by_id[d.input].src != OUTSIDE:
                raise ValueError(f"devices[{i}].input: a {d.kind} is fed from outside the hub (node {OUTSIDE})")
            _check_carriers(i, d, by_id)
        _check_roles(self.branches, self.devices)
        if sum(d.type in RENEWABLE for d in self.devices) != 2 or len({d.kind for d in self.devices if d.type in RENEWABLE}) != 2:
            raise ValueError("devices: a hub has one PV and one WT")
        if sum(d.type == PLANT for d in self.devices) > 1:
            raise ValueError("devices: more than one plant")
        if self.start is not None and len(self.start) != len(self.branches):
            raise ValueError(f"start: {len(self.start)} values for {len(self.branches)} branches")
        return self

    def branch(self, bid: int) -> Branch:
        return self.branches[bid - 1]

    def purchase_branch(self, carrier: str) -> int:
        """The branch from the external input of ``carrier`` to its bus (what the hub buys)."""
        return next(b.id for b in self.branches if b.src == INPUT_NODE[carrier])

    def devices_of(self, *types: int) -> list[Device]:
        return [d for d in self.devices if d.type in types]

    def cooling_capacity(self) -> float:
        """The most cooling the hub's chillers and heat pumps give (storage idle): each device's cooling limit."""
        by_id = {b.id: b for b in self.branches}
        total = 0.0
        for d in self.devices:
            if d.type in STORAGE:
                continue
            for end, cap in (("out1", d.out1_max), ("out2", d.out2_max)):
                bid = getattr(d, end)
                if bid and by_id[bid].carrier == "cool":
                    total += cap
        return total

    @property
    def plant(self) -> Device | None:
        found = self.devices_of(PLANT)
        return found[0] if found else None


class HeatSources(_Model):
    """The external heat source of each zone: price and capacity (constants of the reference's code)."""

    price: NonNeg
    capacity: Annotated[list[NonNeg], Field(min_length=3, max_length=3)]
    note: str = ""


class Grid(_Model):
    """The grid: supplies electricity at the hour's tariff, up to Emax = the hubs' electricity load + margin."""

    margin: NonNeg
    note: str = ""


class InitialPrices(_Model):
    """Round-1 prices: gas = gas_factor x gas tariff, electricity = elec_factor x tariff, heat in every zone."""

    gas_factor: NonNeg
    elec_factor: NonNeg
    heat: NonNeg


class FirstDemand(_Model):
    hub: Annotated[int, Field(ge=1)]
    gas: float
    elec: float
    heat: float


class TradingCase(_Model):
    """The whole case (see docs/cases/trading.md)."""

    name: str
    description: str = ""
    units: dict[str, str] = {}
    notes: list[str] = []
    tariff_gas: NonNegProfile
    tariff_elec: NonNegProfile
    grid: Grid
    heat_sources: HeatSources
    initial: InitialPrices
    first_demand_round1: list[FirstDemand]
    hubs: list[TradingHub]

    @model_validator(mode="after")
    def _consistent(self) -> TradingCase:
        ids = [h.id for h in self.hubs]
        if ids != list(range(1, len(ids) + 1)) or not ids:
            raise ValueError("hubs: ids must be 1, 2, ... in order")
        for i, h in enumerate(self.hubs):
            if h.zone != zone_rule(h.id, len(ids)):
                raise ValueError(f"hubs[{i}].zone: hub {h.id} is in zone {zone_rule(h.id, len(ids))}, not {h.zone}")
        if sorted(d.hub for d in self.first_demand_round1) != ids:
            raise ValueError("first_demand_round1: one entry per hub expected")
        return self

    # ---------------------------------------------------------------- the API the market and the hubs use
    def hub(self, hub: int) -> TradingHub:
        if not 1 <= hub <= len(self.hubs):
            raise KeyError(f"no hub {hub} (hubs 1..{len(self.hubs)})")
        return self.hubs[hub - 1]

    def zone_of(self, hub: int) -> int:
        return self.hub(hub).zone

    @property
    def hub_ids(self) -> list[int]:
        return [h.id for h in self.hubs]

    def tariff(self, hour: int) -> tuple[float, float]:
        """(gas price, grid electricity price) of ``hour`` (1..24), RMB/MWh."""
        i = _hour_index(hour)
        return self.tariff_gas[i], self.tariff_elec[i]

    def elec_load(self, hour: int) -> float:
        """The hubs' total electricity load in ``hour`` (demand.xlsx's SUM row)."""
        i = _hour_index(hour)
        return sum(h.loads.elec[i] for h in self.hubs)

    def grid_cap(self, hour: int) -> float:
        """Emax: the grid's largest supply in ``hour`` (the hubs' electricity load + the margin)."""
        return self.elec_load(hour) + self.grid.margin

    @property
    def first_demand(self) -> dict[int, tuple[float, float, float]]:
        """The reference's round-1 demands (first_demand.xlsx): {hub: (gas, elec, heat)}."""
        return {d.hub: (d.gas, d.elec, d.heat) for d in sorted(self.first_demand_round1, key=lambda d: d.hub)}

    def initial_prices(self, hour: int = 12) -> tuple[float, float, float]:
        """Round-1 prices (gas, elec, heat): 0.9 x gas tariff, 0.5 x grid tariff, 200 (TRADING.md)."""
        gas, elec = self.tariff(hour)
        return gas * self.initial.gas_factor, elec * self.initial.elec_factor, self.initial.heat

    def check_hour(self, hour: int) -> None:
        """Raise a ``ValueError`` naming the hub if ``hour`` cannot be served with storage idle: cooling is not
        traded, so each hub's cooling load must be within what its own devices give (hour 16: hub 1 cannot)."""
        i = _hour_index(hour)
        for h in self.hubs:
            cap = h.cooling_capacity()
            if h.loads.cool[i] > cap:
                raise ValueError(
                    f"hour {hour}: hub {h.id}'s cooling load {h.loads.cool[i]:.3f} MW exceeds what its devices give "
                    f"({cap:.3f} MW); cooling is not traded and storage is idle for a single hour"
                )

    @property
    def zones(self) -> list[int]:
        return sorted({h.zone for h in self.hubs})

    def hubs_in_zone(self, zone: int) -> list[int]:
        return [h.id for h in self.hubs if h.zone == zone]


def _check_bus_carriers(branches: list[Branch]) -> None:
    """A branch at a load bus carries the bus's carrier."""
    carrier_of_bus = {n: c for c, n in BUS_NODE.items()}
    for i, b in enumerate(branches):
        for node in (b.src, b.dst):
            if node in carrier_of_bus and b.carrier != carrier_of_bus[node]:
                raise ValueError(f"branches[{i}].carrier: {b.carrier} at the {carrier_of_bus[node]} bus (node {node})")


def _check_roles(branches: list[Branch], devices: list[Device]) -> None:
    """Every branch is a purchase, a device's input or a device's output (nothing else bounds a flow)."""
    used = {b.id for b in branches if b.src in INPUT_NODE.values()}
    for d in devices:
        used |= {d.input, d.out1, d.out2} - {0}
    for i, b in enumerate(branches):
        if b.id not in used:
            raise ValueError(f"branches[{i}]: branch {b.id} ({b.src}->{b.dst}) is no purchase and no device's branch")


def _check_carriers(i: int, d: Device, by_id: dict[int, Branch]) -> None:
    """A device's branches carry what its kind converts (a GT takes gas and gives electricity and heat, ...)."""
    if d.kind not in KIND_CARRIERS:
        return
    source, outputs = KIND_CARRIERS[d.kind]
    if source is not None and d.input and by_id[d.input].carrier != source:
        raise ValueError(f"devices[{i}].input: a {d.kind} takes {source}, branch {d.input} carries "
                         f"{by_id[d.input].carrier}")
    for end in ("out1", "out2"):
        bid = getattr(d, end)
        if bid and by_id[bid].carrier not in outputs:
            raise ValueError(f"devices[{i}].{end}: a {d.kind} gives {' and '.join(sorted(outputs))}, branch {bid} "
                             f"carries {by_id[bid].carrier}")


def zone_rule(hub: int, n_hubs: int = 12) -> int:
    """The heat zone of ``hub``: hubs 1-4 zone 1, 5-8 zone 2, 9-12 zone 3."""
    return (hub - 1) * 3 // n_hubs + 1


def _hour_index(hour: int) -> int:
    if isinstance(hour, bool) or not isinstance(hour, int) or not 1 <= hour <= HOURS:
        raise ValueError(f"hour must be an integer 1..{HOURS}, got {hour!r}")
    return hour - 1
