"""poso_sim.cases: case data (pydantic models, packaged JSON), the Pyomo model builders and the packaged problem
definitions (layer 2: it may import poso_sim.nlp, which imports no case).

Public API::

    load_case("manchester" | path) -> Case
    save_case(case, path)                  # a case file load_case reads back
    list_cases() -> list[str]
    build_model(case, variant="true" | "tampered" | "feasible", *, feasible_unit=3, feasible_min_kw=300.0, days=1)
    update_parameters(model, case)         # same structure, new per-period data, in place
    instance_parameters(case) -> dict      # the per-period data by Param element name, without Pyomo
    generate_instances(base, n, seed, ranges=None) -> list[Case]   (seeded day-ahead instances)
    join_days(cases) / repeat_days(case, k) -> Case                (multi-day horizons)
    case_digest(case), structure_digest(case) -> str               (instance / compiled-structure keys)
    model_sizes(model) -> dict
"""

from poso_sim.common import lazy_exports

from .generator import case_digest, generate_instances, join_days, repeat_days, structure_digest
from .ies.data import instance_parameters
from .loader import case_from_dict, list_cases, load_case, save_case
from .schema import (
    Branch,
    Case,
    CostCoefficients,
    ElectricBus,
    ElectricNetwork,
    GasNetwork,
    GasNode,
    GasPipe,
    HeatNetwork,
    HeatNode,
    HeatPipe,
    Hub,
    Profiles,
    Scalars,
    Storage,
)

# The model builder needs Pyomo, a heavy import: loaded on first use (a cached solve only reads the case).
_LAZY = {
    "CONSTRAINT_FAMILIES": "model",
    "TAMPERED_UNIT": "model",
    "VARIABLE_NAMES": "model",
    "VARIANTS": "model",
    "build_model": "model",
    "update_parameters": "model",
    "COST_EXPRESSIONS": "model",
    "PARAMETER_NAMES": "model",
    "model_sizes": "sizes",
}

__getattr__ = lazy_exports(__name__, _LAZY, globals())

__all__ = [
    "Branch",
    "CONSTRAINT_FAMILIES",
    "Case",
    "CostCoefficients",
    "ElectricBus",
    "ElectricNetwork",
    "GasNetwork",
    "GasNode",
    "GasPipe",
    "HeatNetwork",
    "HeatNode",
    "HeatPipe",
    "Hub",
    "Profiles",
    "Scalars",
    "Storage",
    "TAMPERED_UNIT",
    "VARIABLE_NAMES",
    "VARIANTS",
    "build_model",
    "update_parameters",
    "instance_parameters",
    "generate_instances",
    "join_days",
    "repeat_days",
    "case_digest",
    "structure_digest",
    "COST_EXPRESSIONS",
    "PARAMETER_NAMES",
    "case_from_dict",
    "list_cases",
    "load_case",
    "save_case",
    "model_sizes",
]
