"""Pyomo model of the IES dispatch problem (IES_MODEL.md §2), with the reference's oddities kept.

Naming contract (see docs/model.md): variables indexed (element, t), constraint families named as
the reference's GAMS equations with ``body = lhs - rhs`` and the reference's sense.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyomo.environ as pyo

from . import topology
from .schema import Case

VARIANTS = ("true", "tampered", "feasible")

# Hub whose output the tampered objective rewards (IES_MODEL.md §3.1).
TAMPERED_UNIT = 3


@dataclass
class _Data:
    """Everything the constraint rules need, as plain dicts keyed by element id."""

    T: list[int]
    C: list[int]
    price: dict[int, float]
    lf: dict[int, float]
    # electric
    ebus: list[int]
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


def _prepare(case: Case) -> _Data:
    s = case.scalars
    T = case.periods
    d = _Data(
        T=T,
        C=[h.id for h in case.hubs],
        price=dict(zip(T, case.profiles.price)),
        lf=dict(zip(T, case.profiles.load_factor)),
        ebus=[b.id for b in case.electric.buses],
    )
    for b in case.electric.buses:
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


def _sum(terms) -> object:
    """Plain left fold; Pyomo builds a flat sum expression from repeated ``+``."""
    out = 0
    for term in terms:
        out = out + term
    return out


def build_model(
    case: Case,
    variant: str = "true",
    *,
    feasible_unit: int = 3,
    feasible_min_kw: float = 300.0,
) -> pyo.ConcreteModel:
    """Build the 24-period IES dispatch NLP of ``case``.

    ``variant``: ``"true"`` (true cost), ``"tampered"`` (the reference's doctored objective, §3.1),
    ``"feasible"`` (true cost, plus ``ForceCHPOn[t]: P_CHP[feasible_unit,t] - feasible_min_kw >= 0``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    d = _prepare(case)
    hubs = {h.id: h for h in case.hubs}
    if variant == "tampered" and TAMPERED_UNIT not in hubs:
        raise ValueError(f"the tampered objective needs hub {TAMPERED_UNIT}, which case {case.name!r} lacks")
    if variant == "feasible" and feasible_unit not in hubs:
        raise ValueError(f"feasible_unit {feasible_unit} is not a hub of case {case.name!r}; hubs: {sorted(hubs)}")
    s = case.scalars
    T = d.T
    t_first, t_last = T[0], T[-1]

    m = pyo.ConcreteModel(name=f"ies_{case.name}_{variant}")
    m.variant = variant
    m.case_name = case.name
    m._case = case

    # ---------------- sets ----------------
    m.T = pyo.Set(initialize=T, ordered=True)
    m.CHP = pyo.Set(initialize=d.C, ordered=True)
    m.EBus = pyo.Set(initialize=d.ebus, ordered=True)
    m.EBranch = pyo.Set(initialize=d.ebr, ordered=True)
    m.HBus = pyo.Set(initialize=d.hnode, ordered=True)
    m.HPipe = pyo.Set(initialize=d.hp, ordered=True)
    m.GBus = pyo.Set(initialize=d.gnode, ordered=True)
    m.GPipe = pyo.Set(initialize=d.gp, ordered=True)

    # ---------------- variables (declaration order = canonical vector order) ----------------
    NN = pyo.NonNegativeReals
    CT = m.CHP * m.T
    bat = {c: hubs[c].battery for c in d.C}
    tank = {c: hubs[c].tank for c in d.C}

    m.P_CHP = pyo.Var(CT, domain=NN)
    m.Q_CHP = pyo.Var(CT, domain=NN)
    m.H_CHP = pyo.Var(CT, domain=NN)
    m.P_grid = pyo.Var(m.T, domain=NN)
    m.Q_grid = pyo.Var(m.T, domain=NN)
    m.gas_source = pyo.Var(m.T, domain=NN)
    m.P_line = pyo.Var(m.EBranch * m.T, domain=NN)
    m.Q_line = pyo.Var(m.EBranch * m.T, domain=NN)
    m.I_line = pyo.Var(m.EBranch * m.T, domain=NN, bounds=(0.0, s.i2_max))
    m.V = pyo.Var(m.EBus * m.T, domain=NN, bounds=(s.v2_min, s.v2_max))
    m.E_bat = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (bat[c].min_energy_kwh, bat[c].capacity_kwh))
    m.P_ch = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, bat[c].power_max_kw))
    m.P_dis = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, bat[c].power_max_kw))
    m.H_boiler = pyo.Var(CT, domain=NN)
    m.G_boiler = pyo.Var(CT, domain=NN)
    m.E_tank = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (tank[c].min_energy_kwh, tank[c].capacity_kwh))
    m.H_ch = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, tank[c].power_max_kw))
    m.H_dis = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, tank[c].power_max_kw))
    m.m_load = pyo.Var(m.HBus * m.T, domain=NN)
    m.m_sup = pyo.Var(m.HPipe * m.T, domain=NN, bounds=(s.min_pipe_mass_flow, None))
    m.m_ret = pyo.Var(m.HPipe * m.T, domain=NN, bounds=(s.min_pipe_mass_flow, None))
    m.m_hub = pyo.Var(CT, domain=NN)
    m.T_sup = pyo.Var(m.HBus * m.T, domain=NN)
    m.T_ret = pyo.Var(m.HBus * m.T, domain=NN)
    m.T_load_out = pyo.Var(m.HBus * m.T, domain=NN)
    m.T_end_sup = pyo.Var(m.HPipe * m.T, domain=NN)
    m.T_end_ret = pyo.Var(m.HPipe * m.T, domain=NN)
    m.gas_flow = pyo.Var(m.GPipe * m.T, domain=NN)
    m.gas_p = pyo.Var(m.GBus * m.T, domain=NN)

    P_CHP, Q_CHP, H_CHP = m.P_CHP, m.Q_CHP, m.H_CHP
    P_line, Q_line, I_line, V = m.P_line, m.Q_line, m.I_line, m.V
    E_bat, P_ch, P_dis = m.E_bat, m.P_ch, m.P_dis
    E_tank, H_ch, H_dis = m.E_tank, m.H_ch, m.H_dis
    H_boiler, G_boiler = m.H_boiler, m.G_boiler
    m_load, m_sup, m_ret, m_hub = m.m_load, m.m_sup, m.m_ret, m.m_hub
    T_sup, T_ret, T_lo, T_es, T_er = m.T_sup, m.T_ret, m.T_load_out, m.T_end_sup, m.T_end_ret
    gas_flow, gas_p = m.gas_flow, m.gas_p
    lf = d.lf

    # ---------------- electric network ----------------
    def p_arrive(n, t):
        return _sum(P_line[k, t] - d.r[k] / 1000.0 * I_line[k, t] for k in d.ein[n])

    def q_arrive(n, t):
        return _sum(Q_line[k, t] - d.x[k] / 1000.0 * I_line[k, t] for k in d.ein[n])

    def p_leave(n, t):
        return _sum(P_line[k, t] for k in d.eout[n])

    def q_leave(n, t):
        return _sum(Q_line[k, t] for k in d.eout[n])

    m.ENodePLoadeq = pyo.Constraint(
        d.ebus_load, m.T, rule=lambda _m, n, t: p_arrive(n, t) - (p_leave(n, t) + d.pd[n] * lf[t]) == 0
    )

    def _enodepchp(_m, n, t):
        c = d.ehub_of[n]
        eta = bat[c].efficiency
        inj = P_CHP[c, t] + eta * P_dis[c, t] - P_ch[c, t] / eta
        return p_arrive(n, t) + inj - (p_leave(n, t) + d.pd[n] * lf[t]) == 0

    m.ENodePCHPeq = pyo.Constraint(d.ebus_hub, m.T, rule=_enodepchp)
    m.ENodePSlaeq = pyo.Constraint(
        m.T, rule=lambda _m, t: p_arrive(d.eslack, t) + m.P_grid[t] - (p_leave(d.eslack, t) + d.pd[d.eslack] * lf[t]) == 0
    )
    m.ENodeQLoadeq = pyo.Constraint(
        d.ebus_load, m.T, rule=lambda _m, n, t: q_arrive(n, t) - (q_leave(n, t) + d.qd[n] * lf[t]) == 0
    )
    m.ENodeQCHPeq = pyo.Constraint(
        d.ebus_hub,
        m.T,
        rule=lambda _m, n, t: q_arrive(n, t) + Q_CHP[d.ehub_of[n], t] - (q_leave(n, t) + d.qd[n] * lf[t]) == 0,
    )
    m.ENodeQSlaeq = pyo.Constraint(
        m.T, rule=lambda _m, t: q_arrive(d.eslack, t) + m.Q_grid[t] - (q_leave(d.eslack, t) + d.qd[d.eslack] * lf[t]) == 0
    )
    m.EBranchPeq = pyo.Constraint(
        m.EBranch,
        m.T,
        rule=lambda _m, k, t: V[d.efrom[k], t]
        - V[d.eto[k], t]
        - (2.0 / 1000.0 * (d.r[k] * P_line[k, t] + d.x[k] * Q_line[k, t]) - d.z2[k] / 1e6 * I_line[k, t])
        == 0,
    )
    m.EBranchPpositive = pyo.Constraint(
        m.EBranch, m.T, rule=lambda _m, k, t: P_line[k, t] - d.r[k] * I_line[k, t] / 1000.0 >= 0
    )
    m.EBranchQpositive = pyo.Constraint(
        m.EBranch, m.T, rule=lambda _m, k, t: Q_line[k, t] - d.x[k] * I_line[k, t] / 1000.0 >= 0
    )
    m.SOCPeq = pyo.Constraint(
        m.EBranch,
        m.T,
        rule=lambda _m, k, t: V[d.efrom[k], t] * I_line[k, t] - (P_line[k, t] ** 2 + Q_line[k, t] ** 2) == 0,
    )
    m.CHPOutputLimit = pyo.Constraint(
        CT, rule=lambda _m, c, t: P_CHP[c, t] ** 2 + Q_CHP[c, t] ** 2 - hubs[c].s_max_kva ** 2 <= 0
    )
    m.SlackBusVoltage = pyo.Constraint(m.T, rule=lambda _m, t: V[d.eslack, t] - s.v2_slack == 0)

    # battery: period t uses the flows of t-1; cyclic condition with period 24's flows
    m.EstoragePowereq = pyo.Constraint(
        m.CHP,
        T[1:],
        rule=lambda _m, c, t: E_bat[c, t] - (bat[c].retention * E_bat[c, t - 1] + P_ch[c, t - 1] - P_dis[c, t - 1]) == 0,
    )
    m.EstorageStarteqEnd = pyo.Constraint(
        m.CHP,
        rule=lambda _m, c: E_bat[c, t_first]
        - (bat[c].retention * E_bat[c, t_last] + P_ch[c, t_last] - P_dis[c, t_last])
        == 0,
    )
    m.EstorageInitial = pyo.Constraint(
        m.CHP, rule=lambda _m, c: E_bat[c, t_first] - bat[c].initial_energy_kwh == 0
    )

    # ---------------- heat network ----------------
    cp, t_sup0, t_amb = s.cp, s.t_supply, s.t_ambient
    m.HNodeLoadeq = pyo.Constraint(
        d.hnode_nz,
        m.T,
        rule=lambda _m, n, t: d.hd[n] * lf[t] - cp * m_load[n, t] * (T_sup[n, t] - T_lo[n, t]) == 0,
    )

    def _hnodechp(_m, n, t):
        c = d.hhub_of[n]
        eta = tank[c].efficiency
        lhs = H_CHP[c, t] + H_boiler[c, t] + eta * H_dis[c, t] - H_ch[c, t] / eta
        return lhs - cp * m_hub[c, t] * (t_sup0 - T_ret[n, t]) == 0

    m.HNodeCHPeq = pyo.Constraint(d.hnode_hub, m.T, rule=_hnodechp)

    def sup_in(n, t):
        return _sum(m_sup[k, t] for k in d.hin[n])

    def sup_out(n, t):
        return _sum(m_sup[k, t] for k in d.hout[n])

    def ret_in(n, t):  # return water of pipes ending at n leaves n
        return _sum(m_ret[k, t] for k in d.hin[n])

    def ret_out(n, t):  # return water of pipes starting at n arrives at n
        return _sum(m_ret[k, t] for k in d.hout[n])

    m.HKCLLoadS = pyo.Constraint(
        d.hnode_load, m.T, rule=lambda _m, n, t: sup_in(n, t) - (m_load[n, t] + sup_out(n, t)) == 0
    )
    m.HKCLLoadR = pyo.Constraint(
        d.hnode_load, m.T, rule=lambda _m, n, t: ret_out(n, t) + m_load[n, t] - ret_in(n, t) == 0
    )
    m.HKCLCHPS = pyo.Constraint(
        d.hnode_hub,
        m.T,
        rule=lambda _m, n, t: sup_in(n, t) + m_hub[d.hhub_of[n], t] - (m_load[n, t] + sup_out(n, t)) == 0,
    )
    m.HKCLCHPR = pyo.Constraint(
        d.hnode_hub,
        m.T,
        rule=lambda _m, n, t: ret_out(n, t) + m_load[n, t] - (ret_in(n, t) + m_hub[d.hhub_of[n], t]) == 0,
    )
    m.HBranchTempLossS = pyo.Constraint(
        m.HPipe,
        m.T,
        rule=lambda _m, k, t: T_es[k, t]
        - (t_amb + (T_sup[d.hfrom[k], t] - t_amb) * pyo.exp(-d.a[k] / m_sup[k, t]))
        == 0,
    )
    m.HBranchTempLossR = pyo.Constraint(
        m.HPipe,
        m.T,
        rule=lambda _m, k, t: T_er[k, t] - (t_amb + (T_ret[d.hto[k], t] - t_amb) * pyo.exp(-d.a[k] / m_ret[k, t])) == 0,
    )
    m.HNodeMixLoadS = pyo.Constraint(
        d.hnode_load,
        m.T,
        rule=lambda _m, n, t: _sum(m_sup[k, t] * T_es[k, t] for k in d.hin[n])
        - (m_load[n, t] + sup_out(n, t)) * T_sup[n, t]
        == 0,
    )
    m.HNodeMixLoadR = pyo.Constraint(
        d.hnode_load,
        m.T,
        rule=lambda _m, n, t: _sum(m_ret[k, t] * T_er[k, t] for k in d.hout[n])
        + m_load[n, t] * T_lo[n, t]
        - ret_in(n, t) * T_ret[n, t]
        == 0,
    )
    m.HNodeMixCHPS = pyo.Constraint(d.hnode_hub, m.T, rule=lambda _m, n, t: T_sup[n, t] - t_sup0 == 0)
    m.HNodeMixCHPR = pyo.Constraint(
        d.hnode_hub,
        m.T,
        rule=lambda _m, n, t: T_ret[n, t] * m_hub[d.hhub_of[n], t]
        - (_sum(m_ret[k, t] * T_er[k, t] for k in d.hout[n]) + m_load[n, t] * T_lo[n, t])
        == 0,
    )
    m.HLoadMassFlowFix = pyo.Constraint(
        d.hnode_nz, m.T, rule=lambda _m, n, t: m_load[n, t] - s.load_mass_flow == 0
    )
    m.HnLoadMassFlowFix = pyo.Constraint(d.hnode_z, m.T, rule=lambda _m, n, t: m_load[n, t] == 0)
    m.HnLoadTempLoadout = pyo.Constraint(d.hnode_z, m.T, rule=lambda _m, n, t: T_lo[n, t] == 0)

    # heat tank: period t uses the flows of the SAME period t (reference oddity, §2.4.1)
    m.HstoragePowereq = pyo.Constraint(
        m.CHP,
        T[1:],
        rule=lambda _m, c, t: E_tank[c, t] - (tank[c].retention * E_tank[c, t - 1] + H_ch[c, t] - H_dis[c, t]) == 0,
    )
    m.HstorageStarteqEnd = pyo.Constraint(
        m.CHP,
        rule=lambda _m, c: E_tank[c, t_first]
        - (tank[c].retention * E_tank[c, t_last] + H_ch[c, t_last] - H_dis[c, t_last])
        == 0,
    )
    m.HstorageInitial = pyo.Constraint(
        m.CHP, rule=lambda _m, c: E_tank[c, t_first] - tank[c].initial_energy_kwh == 0
    )

    # ---------------- hub conversion ----------------
    gamma, hv = s.chp_heat_to_power, s.gas_heating_value
    m.CHPEfficiencyeq2 = pyo.Constraint(CT, rule=lambda _m, c, t: gamma * P_CHP[c, t] - H_CHP[c, t] == 0)
    m.GasBoEfficiencyeq1 = pyo.Constraint(
        CT, rule=lambda _m, c, t: hv * s.boiler_eff * G_boiler[c, t] - H_boiler[c, t] == 0
    )
    m.GasBoEfficiencyeq2 = pyo.Constraint(
        CT, rule=lambda _m, c, t: H_boiler[c, t] - hubs[c].boiler_max_kw <= 0
    )

    # ---------------- gas network ----------------
    def g_in(n, t):
        return _sum(gas_flow[k, t] for k in d.gin[n])

    def g_out(n, t):
        return _sum(gas_flow[k, t] for k in d.gout[n])

    m.GNodeLoadeq = pyo.Constraint(
        d.gnode_load, m.T, rule=lambda _m, n, t: g_in(n, t) - (g_out(n, t) + d.gd[n] * lf[t] / hv) == 0
    )

    chp_gas = 1.0 / (s.chp_power_eff * hv)

    def _gnodechp(_m, n, t):
        c = d.ghub_of[n]
        return g_in(n, t) - (g_out(n, t) + chp_gas * P_CHP[c, t] + G_boiler[c, t]) == 0

    m.GNodeCHPeq = pyo.Constraint(d.gnode_hub, m.T, rule=_gnodechp)
    src = d.gsource
    m.GSlackBuseq = pyo.Constraint(
        m.T, rule=lambda _m, t: g_in(src, t) + m.gas_source[t] - (g_out(src, t) + d.gd[src] * lf[t] / hv) == 0
    )
    m.GWeymoutheq = pyo.Constraint(
        m.GPipe,
        m.T,
        rule=lambda _m, k, t: gas_p[d.gfrom[k], t] - gas_p[d.gto[k], t] - d.K[k] * gas_flow[k, t] ** 2 == 0,
    )
    m.GSlackBusPressure = pyo.Constraint(m.T, rule=lambda _m, t: gas_p[src, t] - s.gas_source_pressure == 0)

    # ---------------- objective ----------------
    m.cost_grid = pyo.Expression(expr=_sum(d.price[t] * m.P_grid[t] for t in T))

    def _chp_cost():
        terms = []
        for c in d.C:
            k = hubs[c].cost
            for t in T:
                p = P_CHP[c, t] / 1000.0
                h = H_CHP[c, t] / 1000.0
                terms.append(k.a * p**2 + k.b * p + k.c * h**2 + k.d * h + k.e * h * p)
        return _sum(terms)

    m.cost_chp = pyo.Expression(expr=_chp_cost())
    m.cost_boiler = pyo.Expression(expr=_sum(hubs[c].cost.f * H_boiler[c, t] for c in d.C for t in T))
    m.true_cost = pyo.Expression(expr=m.cost_grid + m.cost_chp + m.cost_boiler)

    if variant == "tampered":
        u = TAMPERED_UNIT
        bonus = _sum(-P_CHP[u, t] - P_dis[u, t] + P_ch[u, t] for t in T)
        m.obj = pyo.Objective(expr=bonus + 1.5 * m.cost_grid + m.cost_chp + m.cost_boiler, sense=pyo.minimize)
    else:
        m.obj = pyo.Objective(expr=m.true_cost, sense=pyo.minimize)
    if variant == "feasible":
        m.ForceCHPOn = pyo.Constraint(m.T, rule=lambda _m, t: P_CHP[feasible_unit, t] - feasible_min_kw >= 0)
        m.feasible_unit = feasible_unit
        m.feasible_min_kw = float(feasible_min_kw)
    return m


CONSTRAINT_FAMILIES = (
    "ENodePLoadeq", "ENodePCHPeq", "ENodePSlaeq", "ENodeQLoadeq", "ENodeQCHPeq", "ENodeQSlaeq",
    "EBranchPeq", "EBranchPpositive", "EBranchQpositive", "SOCPeq", "CHPOutputLimit", "SlackBusVoltage",
    "EstoragePowereq", "EstorageStarteqEnd", "EstorageInitial",
    "HNodeLoadeq", "HNodeCHPeq", "HKCLLoadS", "HKCLLoadR", "HKCLCHPS", "HKCLCHPR",
    "HBranchTempLossS", "HBranchTempLossR", "HNodeMixLoadS", "HNodeMixLoadR", "HNodeMixCHPS", "HNodeMixCHPR",
    "HLoadMassFlowFix", "HnLoadMassFlowFix", "HnLoadTempLoadout",
    "HstoragePowereq", "HstorageStarteqEnd", "HstorageInitial",
    "CHPEfficiencyeq2", "GasBoEfficiencyeq1", "GasBoEfficiencyeq2",
    "GNodeLoadeq", "GNodeCHPeq", "GSlackBuseq", "GWeymoutheq", "GSlackBusPressure",
)  # fmt: skip

VARIABLE_NAMES = (
    "P_CHP", "Q_CHP", "H_CHP", "P_grid", "Q_grid", "gas_source", "P_line", "Q_line", "I_line", "V",
    "E_bat", "P_ch", "P_dis", "H_boiler", "G_boiler", "E_tank", "H_ch", "H_dis",
    "m_load", "m_sup", "m_ret", "m_hub", "T_sup", "T_ret", "T_load_out", "T_end_sup", "T_end_ret",
    "gas_flow", "gas_p",
)  # fmt: skip
