"""District heating network: mass flows, supply/return temperatures, pipe losses and node mixing.

Variables: ``m_load`` (node, t), ``m_sup``, ``m_ret`` (pipe, t), ``m_hub`` (hub, t), ``T_sup``, ``T_ret``,
``T_load_out`` (node, t), ``T_end_sup``, ``T_end_ret`` (pipe, t). Families ``HNodeLoadeq`` ... ``HnLoadTempLoadout``.
Heat demand is the mutable Param ``heat_demand`` over the nodes with a non-zero base load.
"""

from __future__ import annotations

import pyomo.core as pyo  # the modelling components only: pyomo.environ adds 0.2-0.25 s of plugins a build never uses

from .data import NetworkData, fold_sum

NN = pyo.NonNegativeReals


def declare_heat_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    s = d.s
    m.m_load = pyo.Var(m.HBus * m.T, domain=NN)
    m.m_sup = pyo.Var(m.HPipe * m.T, domain=NN, bounds=(s.min_pipe_mass_flow, None))
    m.m_ret = pyo.Var(m.HPipe * m.T, domain=NN, bounds=(s.min_pipe_mass_flow, None))
    m.m_hub = pyo.Var(m.CHP * m.T, domain=NN)
    m.T_sup = pyo.Var(m.HBus * m.T, domain=NN)
    m.T_ret = pyo.Var(m.HBus * m.T, domain=NN)
    m.T_load_out = pyo.Var(m.HBus * m.T, domain=NN)
    m.T_end_sup = pyo.Var(m.HPipe * m.T, domain=NN)
    m.T_end_ret = pyo.Var(m.HPipe * m.T, domain=NN)


def add_heat_network(m: pyo.ConcreteModel, d: NetworkData) -> None:
    """Node heat balances, mass conservation (supply and return), pipe temperature loss and mixing."""
    s, tank = d.s, d.tank
    H_CHP, H_boiler, H_ch, H_dis = m.H_CHP, m.H_boiler, m.H_ch, m.H_dis
    m_load, m_sup, m_ret, m_hub = m.m_load, m.m_sup, m.m_ret, m.m_hub
    T_sup, T_ret, T_lo, T_es, T_er = m.T_sup, m.T_ret, m.T_load_out, m.T_end_sup, m.T_end_ret
    hdem = m.heat_demand
    cp, t_sup0, t_amb = s.cp, s.t_supply, s.t_ambient

    m.HNodeLoadeq = pyo.Constraint(
        d.hnode_nz,
        m.T,
        rule=lambda _m, n, t: hdem[n, t] - cp * m_load[n, t] * (T_sup[n, t] - T_lo[n, t]) == 0,
    )

    def _hnodechp(_m, n, t):
        c = d.hhub_of[n]
        eta = tank[c].efficiency
        lhs = H_CHP[c, t] + H_boiler[c, t] + eta * H_dis[c, t] - H_ch[c, t] / eta
        return lhs - cp * m_hub[c, t] * (t_sup0 - T_ret[n, t]) == 0

    m.HNodeCHPeq = pyo.Constraint(d.hnode_hub, m.T, rule=_hnodechp)

    def sup_in(n, t):
        return fold_sum(m_sup[k, t] for k in d.hin[n])

    def sup_out(n, t):
        return fold_sum(m_sup[k, t] for k in d.hout[n])

    def ret_in(n, t):  # return water of pipes ending at n leaves n
        return fold_sum(m_ret[k, t] for k in d.hin[n])

    def ret_out(n, t):  # return water of pipes starting at n arrives at n
        return fold_sum(m_ret[k, t] for k in d.hout[n])

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
        rule=lambda _m, n, t: fold_sum(m_sup[k, t] * T_es[k, t] for k in d.hin[n])
        - (m_load[n, t] + sup_out(n, t)) * T_sup[n, t]
        == 0,
    )
    m.HNodeMixLoadR = pyo.Constraint(
        d.hnode_load,
        m.T,
        rule=lambda _m, n, t: fold_sum(m_ret[k, t] * T_er[k, t] for k in d.hout[n])
        + m_load[n, t] * T_lo[n, t]
        - ret_in(n, t) * T_ret[n, t]
        == 0,
    )
    m.HNodeMixCHPS = pyo.Constraint(d.hnode_hub, m.T, rule=lambda _m, n, t: T_sup[n, t] - t_sup0 == 0)
    m.HNodeMixCHPR = pyo.Constraint(
        d.hnode_hub,
        m.T,
        rule=lambda _m, n, t: T_ret[n, t] * m_hub[d.hhub_of[n], t]
        - (fold_sum(m_ret[k, t] * T_er[k, t] for k in d.hout[n]) + m_load[n, t] * T_lo[n, t])
        == 0,
    )
    m.HLoadMassFlowFix = pyo.Constraint(d.hnode_nz, m.T, rule=lambda _m, n, t: m_load[n, t] - s.load_mass_flow == 0)
    m.HnLoadMassFlowFix = pyo.Constraint(d.hnode_z, m.T, rule=lambda _m, n, t: m_load[n, t] == 0)
    m.HnLoadTempLoadout = pyo.Constraint(d.hnode_z, m.T, rule=lambda _m, n, t: T_lo[n, t] == 0)
