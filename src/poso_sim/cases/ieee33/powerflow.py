"""The feeder's topology in per unit, and its exact DistFlow power flow at fixed injections (numpy).

Branch flow model of a radial feeder (Baran & Wu 1989), line ``i -> j`` with impedance ``r + jx`` (per unit),
sending-end flows ``P_j, Q_j``, squared current ``l_j = |I_j|^2`` and squared voltages ``v = |V|^2``::

    P_j = p_j + sum_{k child of j} P_k + r_j l_j          (and Q with x)
    v_j = v_i - 2 (r_j P_j + x_j Q_j) + (r_j^2 + x_j^2) l_j
    l_j v_i = P_j^2 + Q_j^2

:func:`power_flow` solves these equations exactly by backward/forward sweeps (no linearisation); the Pyomo model
of :mod:`poso_sim.cases.ieee33.model` writes the same equations as constraints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .schema import FeederCase


@dataclass(frozen=True)
class Topology:
    """Per-unit data of a radial feeder. Lines are indexed by the bus they feed (each non-root bus has one)."""

    root: int
    v0: float  # squared substation voltage (pu^2)
    buses: tuple[int, ...]  # every bus, in file order
    fed: tuple[int, ...]  # the non-root buses, in file order (= line index)
    parent: Mapping[int, int]
    children: Mapping[int, tuple[int, ...]]
    r: Mapping[int, float]  # pu, by fed bus
    x: Mapping[int, float]
    l_max: Mapping[int, float]  # squared current limit (pu^2), by fed bus
    p_load: Mapping[int, float]  # peak load (pu), by bus
    q_load: Mapping[int, float]
    order: tuple[int, ...] = field(default=())  # fed buses, parents before children

    @property
    def leaves_first(self) -> tuple[int, ...]:
        return tuple(reversed(self.order))


def topology(case: FeederCase) -> Topology:
    """The per-unit topology of ``case`` (validated radial, see :class:`~.schema.FeederCase`)."""
    zb = case.z_base_ohm
    ib = case.i_base_a
    root = case.substation.bus
    buses = tuple(b.id for b in case.buses)
    by_to = {ln.to: ln for ln in case.lines}
    fed = tuple(b for b in buses if b != root)
    parent = {j: by_to[j].from_ for j in fed}
    children: dict[int, list[int]] = {b: [] for b in buses}
    for j in fed:
        children[parent[j]].append(j)
    order: list[int] = []
    stack = list(reversed(children[root]))
    while stack:  # depth-first from the substation: parents before children
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(children[j]))
    rating = case.dispatch.line_rating_a
    return Topology(
        root=root,
        v0=case.substation.voltage_pu**2,
        buses=buses,
        fed=fed,
        parent=parent,
        children={b: tuple(c) for b, c in children.items()},
        r={j: by_to[j].r_ohm / zb for j in fed},
        x={j: by_to[j].x_ohm / zb for j in fed},
        l_max={j: ((by_to[j].rating_a or rating) / ib) ** 2 for j in fed},
        p_load={b.id: b.p_kw / 1e3 / case.base_mva for b in case.buses},
        q_load={b.id: b.q_kvar / 1e3 / case.base_mva for b in case.buses},
        order=tuple(order),
    )


@dataclass(frozen=True)
class PowerFlow:
    """A solved power flow: squared voltages ``v`` by bus, sending-end flows ``P``, ``Q`` and squared currents
    ``l`` by fed bus (per unit), the substation injection and the losses."""

    v: dict[int, float]
    P: dict[int, float]
    Q: dict[int, float]
    l: dict[int, float]
    p_grid: float
    q_grid: float
    loss_kw: float
    q_loss_kvar: float
    iterations: int

    def voltage_pu(self, bus: int) -> float:
        return self.v[bus] ** 0.5

    def min_voltage(self) -> tuple[int, float]:
        """``(bus, |V| in pu)`` of the lowest voltage."""
        bus = min(self.v, key=self.v.__getitem__)
        return bus, self.v[bus] ** 0.5


def power_flow(
    case: FeederCase,
    *,
    load_scale: float = 1.0,
    injections: Mapping[int, tuple[float, float]] | None = None,
    topo: Topology | None = None,
    tol: float = 1e-12,
    max_iter: int = 200,
) -> PowerFlow:
    """Exact DistFlow power flow of ``case`` with every load scaled by ``load_scale`` and net generation
    ``injections[bus] = (p, q)`` in per unit; raises ``ValueError`` if the sweeps do not converge."""
    t = topo or topology(case)
    inj = injections or {}
    pn = {b: t.p_load[b] * load_scale - inj.get(b, (0.0, 0.0))[0] for b in t.buses}
    qn = {b: t.q_load[b] * load_scale - inj.get(b, (0.0, 0.0))[1] for b in t.buses}
    v = {b: t.v0 for b in t.buses}
    l = {j: 0.0 for j in t.fed}
    P: dict[int, float] = {}
    Q: dict[int, float] = {}
    for it in range(1, max_iter + 1):
        for j in t.leaves_first:
            P[j] = pn[j] + sum(P[k] for k in t.children[j]) + t.r[j] * l[j]
            Q[j] = qn[j] + sum(Q[k] for k in t.children[j]) + t.x[j] * l[j]
        l = {j: (P[j] ** 2 + Q[j] ** 2) / v[t.parent[j]] for j in t.fed}
        change = 0.0
        for j in t.order:
            i = t.parent[j]
            new = v[i] - 2 * (t.r[j] * P[j] + t.x[j] * Q[j]) + (t.r[j] ** 2 + t.x[j] ** 2) * l[j]
            if new <= 0:
                raise ValueError(f"power flow collapses (voltage at bus {j} not positive): load too high")
            change = max(change, abs(new - v[j]))
            v[j] = new
        if change < tol:
            break
    else:
        raise ValueError(f"power flow did not converge in {max_iter} sweeps")
    # the last sweep's flows with the final currents
    for j in t.leaves_first:
        P[j] = pn[j] + sum(P[k] for k in t.children[j]) + t.r[j] * l[j]
        Q[j] = qn[j] + sum(Q[k] for k in t.children[j]) + t.x[j] * l[j]
    top = t.children[t.root]
    base_kw = case.base_mva * 1e3
    return PowerFlow(
        v=v,
        P=P,
        Q=Q,
        l=l,
        p_grid=pn[t.root] + sum(P[k] for k in top),
        q_grid=qn[t.root] + sum(Q[k] for k in top),
        loss_kw=sum(t.r[j] * l[j] for j in t.fed) * base_kw,
        q_loss_kvar=sum(t.x[j] * l[j] for j in t.fed) * base_kw,
        iterations=it,
    )
