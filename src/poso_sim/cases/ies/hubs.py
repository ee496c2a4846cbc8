"""Energy hubs: CHP units (apparent-power limit, fixed heat-to-power ratio) and gas boilers.

Variables: ``P_CHP``, ``Q_CHP``, ``H_CHP`` and ``H_boiler``, ``G_boiler``, all indexed (hub, t).
Families: ``CHPOutputLimit``, ``CHPEfficiencyeq2``, ``GasBoEfficiencyeq1``, ``GasBoEfficiencyeq2``.
"""

from __future__ import annotations

import pyomo.core as pyo  # the modelling components only: pyomo.environ adds 0.2-0.25 s of plugins a build never uses

from .data import NetworkData

NN = pyo.NonNegativeReals


def declare_chp_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    CT = m.CHP * m.T
    m.P_CHP = pyo.Var(CT, domain=NN)
    m.Q_CHP = pyo.Var(CT, domain=NN)
    m.H_CHP = pyo.Var(CT, domain=NN)


def declare_boiler_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    CT = m.CHP * m.T
    m.H_boiler = pyo.Var(CT, domain=NN)
    m.G_boiler = pyo.Var(CT, domain=NN)


def add_chp_output_limit(m: pyo.ConcreteModel, d: NetworkData) -> None:
    P_CHP, Q_CHP, hubs = m.P_CHP, m.Q_CHP, d.hubs
    m.CHPOutputLimit = pyo.Constraint(
        m.CHP * m.T, rule=lambda _m, c, t: P_CHP[c, t] ** 2 + Q_CHP[c, t] ** 2 - hubs[c].s_max_kva ** 2 <= 0
    )


def add_conversion(m: pyo.ConcreteModel, d: NetworkData) -> None:
    """CHP heat = gamma x power; boiler heat = HV x efficiency x gas, up to the boiler's limit."""
    s, hubs = d.s, d.hubs
    P_CHP, H_CHP, H_boiler, G_boiler = m.P_CHP, m.H_CHP, m.H_boiler, m.G_boiler
    CT = m.CHP * m.T
    gamma, hv = s.chp_heat_to_power, s.gas_heating_value
    m.CHPEfficiencyeq2 = pyo.Constraint(CT, rule=lambda _m, c, t: gamma * P_CHP[c, t] - H_CHP[c, t] == 0)
    m.GasBoEfficiencyeq1 = pyo.Constraint(
        CT, rule=lambda _m, c, t: hv * s.boiler_eff * G_boiler[c, t] - H_boiler[c, t] == 0
    )
    m.GasBoEfficiencyeq2 = pyo.Constraint(CT, rule=lambda _m, c, t: H_boiler[c, t] - hubs[c].boiler_max_kw <= 0)
