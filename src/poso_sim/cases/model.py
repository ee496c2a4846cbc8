"""Pyomo model of the IES dispatch problem (IES_MODEL.md §2), with the reference's oddities kept.

:func:`build_model` assembles the model from the component builders of :mod:`poso_sim.cases.ies` (electric
DistFlow, heat network, gas, storage, CHP/boilers, objective variants), each adding its own variables and
constraint families; the call order below is the canonical variable and row order (docs/model.md).

Naming contract (see docs/model.md): variables indexed (element, t), constraint families named as
the reference's GAMS equations with ``body = lhs - rhs`` and the reference's sense. The per-period data (loads,
heat and gas demands, prices) are mutable Params, so instances that differ only in them share one compiled
structure (:func:`update_parameters` changes them in place).
"""

from __future__ import annotations

import pyomo.core as pyo  # the modelling components only: pyomo.environ adds 0.2-0.25 s of plugins a build never uses

from .ies import electric, gas, heat, hubs, objective, storage
from .ies.data import PARAMETER_NAMES, NetworkData, parameter_tables, prepare
from .ies.objective import COST_EXPRESSIONS, TAMPERED_UNIT
from .schema import Case

VARIANTS = ("true", "tampered", "feasible")

__all__ = [
    "COST_EXPRESSIONS", "CONSTRAINT_FAMILIES", "PARAMETER_NAMES", "TAMPERED_UNIT",
    "VARIABLE_NAMES", "VARIANTS", "build_model", "update_parameters",
]  # fmt: skip


def _check_variant(case: Case, variant: str, feasible_unit: int) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    ids = sorted(h.id for h in case.hubs)
    if variant == "tampered" and TAMPERED_UNIT not in ids:
        raise ValueError(f"the tampered objective needs hub {TAMPERED_UNIT}, which case {case.name!r} lacks")
    if variant == "feasible" and feasible_unit not in ids:
        raise ValueError(f"feasible_unit {feasible_unit} is not a hub of case {case.name!r}; hubs: {ids}")


def _declare_sets(m: pyo.ConcreteModel, d: NetworkData) -> None:
    m.T = pyo.Set(initialize=d.T, ordered=True)
    m.CHP = pyo.Set(initialize=d.C, ordered=True)
    m.EBus = pyo.Set(initialize=d.ebus, ordered=True)
    m.EBranch = pyo.Set(initialize=d.ebr, ordered=True)
    m.HBus = pyo.Set(initialize=d.hnode, ordered=True)
    m.HPipe = pyo.Set(initialize=d.hp, ordered=True)
    m.GBus = pyo.Set(initialize=d.gnode, ordered=True)
    m.GPipe = pyo.Set(initialize=d.gp, ordered=True)


def _declare_parameters(m: pyo.ConcreteModel, d: NetworkData) -> None:
    """The per-period data as mutable Params (:data:`PARAMETER_NAMES`), in that order."""
    tables = parameter_tables(d)
    m.price = pyo.Param(m.T, mutable=True, initialize=tables["price"])
    m.p_demand = pyo.Param(m.EBus, m.T, mutable=True, initialize=tables["p_demand"])
    m.q_demand = pyo.Param(m.EBus, m.T, mutable=True, initialize=tables["q_demand"])
    m.heat_demand = pyo.Param(d.hnode_nz, m.T, mutable=True, initialize=tables["heat_demand"])
    m.gas_demand = pyo.Param(m.GBus, m.T, mutable=True, initialize=tables["gas_demand"])


def build_model(
    case: Case,
    variant: str = "true",
    *,
    feasible_unit: int = 3,
    feasible_min_kw: float = 300.0,
    days: int = 1,
) -> pyo.ConcreteModel:
    """Build the IES dispatch NLP of ``case`` over its horizon (24 periods for the packaged case).

    ``variant``: ``"true"`` (true cost), ``"tampered"`` (the reference's doctored objective, §3.1),
    ``"feasible"`` (true cost, plus ``ForceCHPOn[t]: P_CHP[feasible_unit,t] - feasible_min_kw >= 0``).
    ``days`` > 1 repeats the case's day ``days`` times (:func:`poso_sim.cases.generator.repeat_days`): one
    horizon of ``days x horizon`` periods whose storage is coupled across the days.
    """
    if days != 1:
        from .generator import repeat_days

        case = repeat_days(case, days)
    _check_variant(case, variant, feasible_unit)
    d = prepare(case)

    m = pyo.ConcreteModel(name=f"ies_{case.name}_{variant}")
    m.variant = variant
    m.case_name = case.name
    m._case = case
    #: named expressions a compiler should offer as extra functions (``compile_nlp(expressions=...)``)
    m.nlp_expressions = COST_EXPRESSIONS
    _declare_sets(m, d)
    _declare_parameters(m, d)

    # variables: declaration order = canonical vector order
    hubs.declare_chp_vars(m, d)  # P_CHP, Q_CHP, H_CHP
    electric.declare_grid_vars(m, d)  # P_grid, Q_grid
    gas.declare_source_var(m, d)  # gas_source
    electric.declare_line_vars(m, d)  # P_line, Q_line, I_line, V
    storage.declare_battery_vars(m, d)  # E_bat, P_ch, P_dis
    hubs.declare_boiler_vars(m, d)  # H_boiler, G_boiler
    storage.declare_tank_vars(m, d)  # E_tank, H_ch, H_dis
    heat.declare_heat_vars(m, d)  # m_load ... T_end_ret
    gas.declare_gas_vars(m, d)  # gas_flow, gas_p

    # constraint families: declaration order = canonical row order
    electric.add_node_balances(m, d)
    electric.add_branch_flow(m, d)
    hubs.add_chp_output_limit(m, d)
    electric.add_slack_voltage(m, d)
    storage.add_battery_dynamics(m, d)
    heat.add_heat_network(m, d)
    storage.add_tank_dynamics(m, d)
    hubs.add_conversion(m, d)
    gas.add_gas_network(m, d)

    objective.add_costs(m, d)
    if variant == "tampered":
        objective.add_tampered_objective(m, d)
    else:
        objective.add_true_objective(m, d)
    if variant == "feasible":
        objective.add_forced_unit(m, d, feasible_unit, feasible_min_kw)
    if variant != "true":
        #: the shared (true) problem sits in this model: its objective ``obj`` minimises ``true_cost`` over these
        #: variables and rows, without the variant's own rows (``nlp.compiler.compile_with_shared`` compiles both
        #: from one walk; tests/test_problems.py checks the result against the true model's own compile)
        m.nlp_shared = {"objective": "obj", "expression": "true_cost",
                        "extra_rows": ("ForceCHPOn",) if variant == "feasible" else ()}
    return m


def update_parameters(model: pyo.ConcreteModel, case: Case) -> pyo.ConcreteModel:
    """Set the mutable Params of a built ``model`` to the per-period data of ``case`` (same structure), in place.

    Raises ``ValueError`` naming the first element whose index ``case`` does not have (a different structure).
    """
    d = prepare(case)
    for name, table in parameter_tables(d).items():
        param = getattr(model, name)
        if len(table) != len(param):
            raise ValueError(f"case {case.name!r}: parameter {name} has {len(table)} elements, the model {len(param)}")
        for idx, val in table.items():
            if idx not in param:
                raise ValueError(f"case {case.name!r}: parameter {name}[{idx}] is not in the model")
            param[idx].set_value(val)
    model._case = case
    model.case_name = case.name
    return model


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
