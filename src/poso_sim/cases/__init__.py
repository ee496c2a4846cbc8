"""poso_sim.cases: case data (pydantic models, packaged JSON) and the Pyomo model builder (layer 1).

Public API::

    load_case("manchester" | path) -> Case
    list_cases() -> list[str]
    build_model(case, variant="true" | "tampered" | "feasible", *, feasible_unit=3, feasible_min_kw=300.0)
    model_sizes(model) -> dict
"""

from .loader import case_from_dict, list_cases, load_case
from .model import CONSTRAINT_FAMILIES, TAMPERED_UNIT, VARIABLE_NAMES, VARIANTS, build_model
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
from .sizes import model_sizes

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
    "case_from_dict",
    "list_cases",
    "load_case",
    "model_sizes",
]
