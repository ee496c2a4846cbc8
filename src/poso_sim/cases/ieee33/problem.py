"""The packaged problem ``ieee33``: the IEEE 33-bus feeder as a problem definition of the registry
(:mod:`poso_sim.nlp.problems`), which names it by ``"poso_sim.cases.ieee33.problem:ieee33_problem"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poso_sim.cases.ieee33.loader import load_case
from poso_sim.nlp.problems import ProblemDefinition

__all__ = ["ieee33_problem"]


def _load(case: str) -> Any:
    return load_case(None if case == "ieee33" else case)


def _build(data: Any, variant: str) -> Any:
    from poso_sim.cases.ieee33.model import build_model  # the builder imports Pyomo (0.7 s beside scipy)

    return build_model(data, variant)


def ieee33_problem() -> ProblemDefinition:
    """The IEEE 33-bus radial feeder (Baran & Wu 1989): DistFlow, dispatchable DGs, a battery, 24 h (see
    docs/cases/ieee33.md)."""
    root = Path(__file__).resolve().parent
    return ProblemDefinition(
        build=_build,
        variants=("true", "tampered", "feasible"),
        cost_expression="true_cost",
        expressions=("cost_grid", "cost_dg", "cost_battery"),
        load=_load,
        source_files=tuple(str(p) for p in sorted(root.rglob("*.py"))),
        description="IEEE 33-bus radial feeder (Baran & Wu 1989), DistFlow, DGs and a battery, 24 h",
    )
