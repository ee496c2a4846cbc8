"""Storage: each hub's battery and heat tank, coupled across every period of the horizon.

Variables: ``E_bat``, ``P_ch``, ``P_dis`` and ``E_tank``, ``H_ch``, ``H_dis`` (hub, t), bounded by the hub data.
Families: ``EstoragePowereq``/``EstorageStarteqEnd``/``EstorageInitial`` and the ``Hstorage*`` analogues. The
battery's period t uses the flows of t-1, the tank's those of t (reference oddity, docs/model.md); the cyclic
condition links the last period of the horizon to the first, so a k-day horizon couples the days.
"""

from __future__ import annotations

import pyomo.core as pyo  # the modelling components only: pyomo.environ adds 0.2-0.25 s of plugins a build never uses

from .data import NetworkData

NN = pyo.NonNegativeReals


def declare_battery_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    CT, bat = m.CHP * m.T, d.battery
    m.E_bat = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (bat[c].min_energy_kwh, bat[c].capacity_kwh))
    m.P_ch = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, bat[c].power_max_kw))
    m.P_dis = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, bat[c].power_max_kw))


def declare_tank_vars(m: pyo.ConcreteModel, d: NetworkData) -> None:
    CT, tank = m.CHP * m.T, d.tank
    m.E_tank = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (tank[c].min_energy_kwh, tank[c].capacity_kwh))
    m.H_ch = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, tank[c].power_max_kw))
    m.H_dis = pyo.Var(CT, domain=NN, bounds=lambda _m, c, t: (0.0, tank[c].power_max_kw))


def add_battery_dynamics(m: pyo.ConcreteModel, d: NetworkData) -> None:
    E, P_ch, P_dis, bat = m.E_bat, m.P_ch, m.P_dis, d.battery
    t0, tn = d.T[0], d.T[-1]
    m.EstoragePowereq = pyo.Constraint(
        m.CHP,
        d.T[1:],
        rule=lambda _m, c, t: E[c, t] - (bat[c].retention * E[c, t - 1] + P_ch[c, t - 1] - P_dis[c, t - 1]) == 0,
    )
    m.EstorageStarteqEnd = pyo.Constraint(
        m.CHP, rule=lambda _m, c: E[c, t0] - (bat[c].retention * E[c, tn] + P_ch[c, tn] - P_dis[c, tn]) == 0
    )
    m.EstorageInitial = pyo.Constraint(m.CHP, rule=lambda _m, c: E[c, t0] - bat[c].initial_energy_kwh == 0)


def add_tank_dynamics(m: pyo.ConcreteModel, d: NetworkData) -> None:
    S, H_ch, H_dis, tank = m.E_tank, m.H_ch, m.H_dis, d.tank
    t0, tn = d.T[0], d.T[-1]
    m.HstoragePowereq = pyo.Constraint(
        m.CHP,
        d.T[1:],
        rule=lambda _m, c, t: S[c, t] - (tank[c].retention * S[c, t - 1] + H_ch[c, t] - H_dis[c, t]) == 0,
    )
    m.HstorageStarteqEnd = pyo.Constraint(
        m.CHP, rule=lambda _m, c: S[c, t0] - (tank[c].retention * S[c, tn] + H_ch[c, tn] - H_dis[c, tn]) == 0
    )
    m.HstorageInitial = pyo.Constraint(m.CHP, rule=lambda _m, c: S[c, t0] - tank[c].initial_energy_kwh == 0)
