"""The network view of a case (plain dicts keyed by element id) and its per-period data, without Pyomo.

:class:`NetworkData` is what the component builders read. The per-period data of an instance (loads, heat and gas
demands, prices) enters the model as mutable Pyomo ``Param`` s named as in :data:`PARAMETER_NAMES`;
:func:`instance_parameters` gives their values keyed by the Pyomo names of the parameter elements
(``"price[3]"``, ``"p_demand[4,3]"``), which is what :meth:`poso_sim.nlp.CompiledNLP.with_data` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import topology
from ..schema import Case, Hub, Scalars

#: The mutable Params of the model, in declaration order: name -> (index, unit, meaning).
PARAMETER_NAMES: dict[str, tuple[str, str, str]] = {
    "price": ("t", "$/kWh", "grid energy price"),
    "p_demand": ("(n, t), every electric bus", "kW", "active load p_load x load_factor[t]"),
    "q_demand": ("(n, t), every electric bus", "kVar", "reactive load q_load x load_factor[t]"),
    "heat_demand": ("(n, t), heat nodes with load_kw != 0", "kW", "heat load load_kw x heat_load_factor[t]"),
    "gas_demand": ("(n, t), every gas node", "m3/h", "gas load load_kw x load_factor[t] / gas_heating_value"),
}


def fold_sum(terms) -> object:
    """Plain left fold; Pyomo builds a flat sum expression from repeated ``+`` (0 for no terms)."""
    out = 0
    for term in terms:
        out = out + term
    return out


@dataclass
class NetworkData:
    """Everything the constraint rules need, as plain lists and dicts keyed by element id."""

    case: Case
    T: list[int]
    C: list[int]
    hubs: dict[int, Hub]
    s: Scalars
    price: dict[int, float]
    lf: dict[int, float]  # electric and gas load factor
    lf_heat: dict[int, float]
    # electric
    ebus: list[int] = field(default_factory=list)
    ebus_load: list[int] = field(default_factory=list)
    ebus_hub: list[int] = field(default_factory=list)
    eslack: int = 0
    ehub_of: dict[int, int] = field(default_factory=dict)
    pd: dict[int, float] = field(default_factory=dict)
    qd: dict[int, float] = field(default_factory=dict)
    ebr: list[int] = field(default_factory=list)
    efrom: dict[int, int] = field(default_factory=dict)
    eto: dict[int, int] = field(default_factory=dict)
    r: dict[int, float] = field(default_factory=dict)
    x: dict[int, float] = field(default_factory=dict)
    z2: dict[int, float] = field(default_factory=dict)
    ein: dict[int, list[int]] = field(default_factory=dict)
    eout: dict[int, list[int]] = field(default_factory=dict)
    # heat
    hnode: list[int] = field(default_factory=list)
    hnode_load: list[int] = field(default_factory=list)  # type <= 0
    hnode_hub: list[int] = field(default_factory=list)  # type >= 1
    hnode_nz: list[int] = field(default_factory=list)  # load != 0
    hnode_z: list[int] = field(default_factory=list)  # load == 0
    hhub_of: dict[int, int] = field(default_factory=dict)
    hd: dict[int, float] = field(default_factory=dict)
    hp: list[int] = field(default_factory=list)
    hfrom: dict[int, int] = field(default_factory=dict)
    hto: dict[int, int] = field(default_factory=dict)
    a: dict[int, float] = field(default_factory=dict)
    hin: dict[int, list[int]] = field(default_factory=dict)
    hout: dict[int, list[int]] = field(default_factory=dict)
    # gas
    gnode: list[int] = field(default_factory=list)
    gnode_load: list[int] = field(default_factory=list)
    gnode_hub: list[int] = field(default_factory=list)
    gsource: int = 0
    ghub_of: dict[int, int] = field(default_factory=dict)
    gd: dict[int, float] = field(default_factory=dict)
    gp: list[int] = field(default_factory=list)
    gfrom: dict[int, int] = field(default_factory=dict)
    gto: dict[int, int] = field(default_factory=dict)
    K: dict[int, float] = field(default_factory=dict)
    gin: dict[int, list[int]] = field(default_factory=dict)
    gout: dict[int, list[int]] = field(default_factory=dict)

    @property
    def battery(self):
        return {c: self.hubs[c].battery for c in self.C}

    @property
    def tank(self):
        return {c: self.hubs[c].tank for c in self.C}


def prepare(case: Case) -> NetworkData:
    """The network view of ``case``."""
    s = case.scalars
    T = case.periods
    prof = case.profiles
    heat_lf = prof.load_factor if prof.heat_load_factor is None else prof.heat_load_factor
    d = NetworkData(
        case=case,
        T=T,
        C=[h.id for h in case.hubs],
        hubs={h.id: h for h in case.hubs},
        s=s,
        price=dict(zip(T, prof.price)),
        lf=dict(zip(T, prof.load_factor)),
        lf_heat=dict(zip(T, heat_lf)),
    )
    for b in case.electric.buses:
        d.ebus.append(b.id)
        d.pd[b.id], d.qd[b.id] = b.p_load, b.q_load
        if b.type == 0:
            d.ebus_load.append(b.id)
        elif b.type >= 1:
            d.ebus_hub.append(b.id)
            d.ehub_of[b.id] = b.type
        elif b.type == -1:
            d.eslack = b.id
    for br in case.electric.branches:
        k = br.id
        d.ebr.append(k)
        d.efrom[k], d.eto[k], d.r[k], d.x[k], d.z2[k] = br.from_, br.to, br.r, br.x, br.z2
    d.ein, d.eout = topology.adjacency(d.ebus, [(k, d.efrom[k], d.eto[k]) for k in d.ebr])

    for n in case.heat.nodes:
        d.hnode.append(n.id)
        d.hd[n.id] = n.load_kw
        if n.type <= 0:
            d.hnode_load.append(n.id)
        else:
            d.hnode_hub.append(n.id)
            d.hhub_of[n.id] = n.type
        (d.hnode_nz if n.load_kw != 0 else d.hnode_z).append(n.id)
    for p in case.heat.pipes:
        k = p.id
        d.hp.append(k)
        d.hfrom[k], d.hto[k] = p.from_, p.to
        d.a[k] = p.loss_coeff * p.length_m / (s.cp * 1000.0)
    d.hin, d.hout = topology.adjacency(d.hnode, [(k, d.hfrom[k], d.hto[k]) for k in d.hp])

    for n in case.gas.nodes:
        d.gnode.append(n.id)
        d.gd[n.id] = n.load_kw
        if n.type == 0:
            d.gnode_load.append(n.id)
        elif n.type >= 1:
            d.gnode_hub.append(n.id)
            d.ghub_of[n.id] = n.type
        elif n.type == -1:
            d.gsource = n.id
    for p in case.gas.pipes:
        k = p.id
        d.gp.append(k)
        d.gfrom[k], d.gto[k], d.K[k] = p.from_, p.to, p.K
    d.gin, d.gout = topology.adjacency(d.gnode, [(k, d.gfrom[k], d.gto[k]) for k in d.gp])
    return d


def parameter_tables(d: NetworkData) -> dict[str, dict]:
    """The values of the model's mutable Params: name -> {index: value} (index ``t`` or ``(n, t)``).

    The products are formed exactly as the reference model writes them (``p_load * lf[t]``,
    ``load_kw * lf[t] / hv``), so the compiled problem evaluates to the same numbers.
    """
    T, lf, lfh, hv = d.T, d.lf, d.lf_heat, d.s.gas_heating_value
    return {
        "price": {t: d.price[t] for t in T},
        "p_demand": {(n, t): d.pd[n] * lf[t] for n in d.ebus for t in T},
        "q_demand": {(n, t): d.qd[n] * lf[t] for n in d.ebus for t in T},
        "heat_demand": {(n, t): d.hd[n] * lfh[t] for n in d.hnode_nz for t in T},
        "gas_demand": {(n, t): d.gd[n] * lf[t] / hv for n in d.gnode for t in T},
    }


def instance_parameters(case: Case) -> dict[str, float]:
    """Per-period data of ``case`` keyed by the Pyomo names of the Param elements (``"p_demand[4,3]"``).

    Pyomo-free: a compiled problem of the same structure takes this mapping in ``with_data`` to become the
    problem of ``case`` without building or compiling a model.
    """
    out: dict[str, float] = {}
    for name, table in parameter_tables(prepare(case)).items():
        for idx, val in table.items():
            key = ",".join(str(i) for i in idx) if isinstance(idx, tuple) else str(idx)
            out[f"{name}[{key}]"] = float(val)
    return out
