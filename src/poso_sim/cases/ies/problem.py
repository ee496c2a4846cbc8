"""The packaged problem ``manchester``: the paper's integrated electricity-heat-gas system as a problem definition
of the registry (:mod:`poso_sim.nlp.problems`), which names it by ``"poso_sim.cases.ies.problem:manchester_problem"``
and never imports this package. Every case file of the integrated-energy format is data of this definition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poso_sim.cases.generator import structure_digest
from poso_sim.cases.ies.data import instance_parameters
from poso_sim.cases.loader import list_cases, load_case
from poso_sim.nlp.problems import ProblemDefinition

__all__ = ["manchester_problem", "VARIANTS", "SOLVE_RECIPE"]

#: The variants a leader may solve (the first is the honest one): the builder's ``cases.model.VARIANTS``, repeated
#: here because that module imports Pyomo (a test checks the two agree)
VARIANTS = ("true", "tampered", "feasible")
#: The staged solve that Manchester needs (resolved by the solvers layer)
SOLVE_RECIPE = "poso_sim.solvers.ies:solve"


def _sources() -> tuple[str, ...]:
    """What shapes the compiled problem: the modules at the top of poso_sim.cases and those of the IES model."""
    root = Path(__file__).resolve().parents[1]
    return tuple(str(p) for p in sorted(root.glob("*.py")) + sorted((root / "ies").rglob("*.py")))


def _build(data: Any, variant: str) -> Any:
    from poso_sim.cases.model import build_model  # the builder imports Pyomo (0.7 s beside scipy)

    return build_model(data, variant)


def _structure(data: Any) -> bytes:
    return structure_digest(data).encode()


def manchester_problem() -> ProblemDefinition:
    """The paper's integrated electricity-heat-gas system (docs/model.md); also every case file of its format."""
    return ProblemDefinition(
        build=_build,
        variants=VARIANTS,
        cost_expression="true_cost",
        expressions=("cost_grid", "cost_chp", "cost_boiler"),
        load=load_case,
        named_cases=list_cases,
        solve_recipe=SOLVE_RECIPE,
        source_files=_sources(),
        description="Manchester integrated electricity, heat and gas system, 24 h (the paper's case)",
        structure_key=_structure,
        parameters=instance_parameters,
    )
