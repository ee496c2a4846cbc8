"""Electric network: DistFlow branch flow with the exact (non-convex) ``V I = P^2 + Q^2`` equality.

Variables: ``P_grid``, ``Q_grid`` (slack import) and ``P_line``, ``Q_line``, ``I_line``, ``V``.
Families: the active/reactive node balances (load, hub and slack buses), the voltage drop, the positivity of the
sending-end flows, ``SOCPeq`` and the slack voltage. Loads are the mutable Params ``p_demand``/``q_demand``.
"""

from __future__ import annotations

import pyomo.core as pyo  # the modelling components only: pyomo.environ adds 0.2-0.25 s of plugins a build never uses

from .data import NetworkData, fold_sum

NN = pyo.NonNegativeReals


def declare_grid_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    m.P_grid = pyo.Var(m.T, domain=NN)
    m.Q_grid = pyo.Var(m.T, domain=NN)


def declare_line_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    s = d.s
    m.P_line = pyo.Var(m.EBranch * m.T, domain=NN)
    m.Q_line = pyo.Var(m.EBranch * m.T, domain=NN)
    m.I_line = pyo.Var(m.EBranch * m.T, domain=NN, bounds=(0.0, s.i2_max))
    m.V = pyo.Var(m.EBus * m.T, domain=NN, bounds=(s.v2_min, s.v2_max))


def add_node_balances(m: pyo.ConcreteModel, d: NetworkData) -> None:
    """Active and reactive balances at load buses, hub buses (CHP and battery injection) and the slack bus."""
    P_line, Q_line, I_line = m.P_line, m.Q_line, m.I_line
    P_CHP, Q_CHP, P_ch, P_dis = m.P_CHP, m.Q_CHP, m.P_ch, m.P_dis
    pdem, qdem = m.p_demand, m.q_demand
    bat = d.battery

    def p_arrive(n, t):
        return fold_sum(P_line[k, t] - d.r[k] / 1000.0 * I_line[k, t] for k in d.ein[n])

    def q_arrive(n, t):
        return fold_sum(Q_line[k, t] - d.x[k] / 1000.0 * I_line[k, t] for k in d.ein[n])

    def p_leave(n, t):
        return fold_sum(P_line[k, t] for k in d.eout[n])

    def q_leave(n, t):
        return fold_sum(Q_line[k, t] for k in d.eout[n])

    m.ENodePLoadeq = pyo.Constraint(
        d.ebus_load, m.T, rule=lambda _m, n, t: p_arrive(n, t) - (p_leave(n, t) + pdem[n, t]) == 0
    )

    def _enodepchp(_m, n, t):
        c = d.ehub_of[n]
        eta = bat[c].efficiency
        inj = P_CHP[c, t] + eta * P_dis[c, t] - P_ch[c, t] / eta
        return p_arrive(n, t) + inj - (p_leave(n, t) + pdem[n, t]) == 0

    m.ENodePCHPeq = pyo.Constraint(d.ebus_hub, m.T, rule=_enodepchp)
    sl = d.eslack
    m.ENodePSlaeq = pyo.Constraint(
        m.T, rule=lambda _m, t: p_arrive(sl, t) + m.P_grid[t] - (p_leave(sl, t) + pdem[sl, t]) == 0
    )
    m.ENodeQLoadeq = pyo.Constraint(
        d.ebus_load, m.T, rule=lambda _m, n, t: q_arrive(n, t) - (q_leave(n, t) + qdem[n, t]) == 0
    )
    m.ENodeQCHPeq = pyo.Constraint(
        d.ebus_hub,
        m.T,
        rule=lambda _m, n, t: q_arrive(n, t) + Q_CHP[d.ehub_of[n], t] - (q_leave(n, t) + qdem[n, t]) == 0,
    )
    m.ENodeQSlaeq = pyo.Constraint(
        m.T, rule=lambda _m, t: q_arrive(sl, t) + m.Q_grid[t] - (q_leave(sl, t) + qdem[sl, t]) == 0
    )


def add_branch_flow(m: pyo.ConcreteModel, d: NetworkData) -> None:
    """Voltage drop, non-negative sending-end flows after losses, and the DistFlow equality ``SOCPeq``."""
    P_line, Q_line, I_line, V = m.P_line, m.Q_line, m.I_line, m.V
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


def add_slack_voltage(m: pyo.ConcreteModel, d: NetworkData) -> None:
    m.SlackBusVoltage = pyo.Constraint(m.T, rule=lambda _m, t: m.V[d.eslack, t] - d.s.v2_slack == 0)
