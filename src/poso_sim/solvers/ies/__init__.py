"""The solver wing of the integrated-energy model (Manchester and every case file of its format).

The problem registry names its recipe, :func:`solve` (``"poso_sim.solvers.ies:solve"``); the route of
:func:`poso_sim.solvers.api.solve_case` reaches it only that way, as any other problem's recipe.

* :mod:`.recipe`: :func:`solve`, the start points (:func:`canonical_start`, ...);
* :mod:`.staged`: :func:`solve_reduced`, the stages, the per-variant :data:`RECIPES`, :data:`PIPELINE_VERSION`;
* :mod:`.reduce`: the reduced formulation and its exact maps back; :mod:`.start`: the data-only start point;
  :mod:`.hub_capacity`: the hub water by each hub's heat (the feasible start); :mod:`.network_start`: the
  whole-network surrogate and the per-hour MILP flow pattern (the tampered start).
"""

from poso_sim.solvers.ies.recipe import (
    canonical_start, capacity_start, network_start, objective_aware_start, perturbed_start, solve,
)  # fmt: skip
from poso_sim.solvers.ies.staged import PIPELINE_VERSION, RECIPES, Recipe, solve_reduced

__all__ = [
    "solve", "canonical_start", "capacity_start", "objective_aware_start", "network_start", "perturbed_start",
    "solve_reduced", "Recipe", "RECIPES", "PIPELINE_VERSION",
]  # fmt: skip
