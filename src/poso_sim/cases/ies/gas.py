"""Gas network: node balances and the Weymouth-type pressure drop ``p_from - p_to = K f^2``.

Variables: ``gas_source`` (t) and ``gas_flow`` (pipe, t), ``gas_p`` (node, t).
Families: ``GNodeLoadeq``, ``GNodeCHPeq``, ``GSlackBuseq``, ``GWeymoutheq``, ``GSlackBusPressure``.
Gas loads are the mutable Param ``gas_demand`` (m3/h).
"""

from __future__ import annotations

import pyomo.core as pyo  # the modelling components only: pyomo.environ adds 0.2-0.25 s of plugins a build never uses

from .data import NetworkData, fold_sum

NN = pyo.NonNegativeReals


def declare_source_var(m: pyo.ConcreteModel, d: NetworkData) -> None:
    m.gas_source = pyo.Var(m.T, domain=NN)


def declare_gas_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    m.gas_flow = pyo.Var(m.GPipe * m.T, domain=NN)
    m.gas_p = pyo.Var(m.GBus * m.T, domain=NN)


def add_gas_network(m: pyo.ConcreteModel, d: NetworkData) -> None:
    s = d.s
    gas_flow, gas_p, P_CHP, G_boiler, gdem = m.gas_flow, m.gas_p, m.P_CHP, m.G_boiler, m.gas_demand

    def g_in(n, t):
        return fold_sum(gas_flow[k, t] for k in d.gin[n])

    def g_out(n, t):
        return fold_sum(gas_flow[k, t] for k in d.gout[n])

    m.GNodeLoadeq = pyo.Constraint(
        d.gnode_load, m.T, rule=lambda _m, n, t: g_in(n, t) - (g_out(n, t) + gdem[n, t]) == 0
    )
    chp_gas = 1.0 / (s.chp_power_eff * s.gas_heating_value)

    def _gnodechp(_m, n, t):
        c = d.ghub_of[n]
        return g_in(n, t) - (g_out(n, t) + chp_gas * P_CHP[c, t] + G_boiler[c, t]) == 0

    m.GNodeCHPeq = pyo.Constraint(d.gnode_hub, m.T, rule=_gnodechp)
    src = d.gsource
    m.GSlackBuseq = pyo.Constraint(
        m.T, rule=lambda _m, t: g_in(src, t) + m.gas_source[t] - (g_out(src, t) + gdem[src, t]) == 0
    )
    m.GWeymoutheq = pyo.Constraint(
        m.GPipe,
        m.T,
        rule=lambda _m, k, t: gas_p[d.gfrom[k], t] - gas_p[d.gto[k], t] - d.K[k] * gas_flow[k, t] ** 2 == 0,
    )
    m.GSlackBusPressure = pyo.Constraint(m.T, rule=lambda _m, t: gas_p[src, t] - s.gas_source_pressure == 0)
