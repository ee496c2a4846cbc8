"""solve_case on any registered problem: the generic route (Ipopt from the model's initial values), the same final
check, the plan expressed on the honest problem, cached by the compiled fingerprints."""

from __future__ import annotations

import pytest

from poso_sim.kkt import verify
from poso_sim.nlp.problems import get_compiled
from poso_sim.solvers.api import solve_case, solve_plans


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return cache, solve_plans("ieee33", ("true", "tampered", "feasible"), workers=1, cache_dir=str(cache))


def test_ieee33_plans_by_the_generic_route(plans):
    _, sols = plans
    assert sols["true"].cost == pytest.approx(4471.4111, abs=1e-3)  # the recorded optimum (docs/cases/ieee33.md)
    assert sols["tampered"].cost == pytest.approx(4670.5859, abs=1e-2)
    assert sols["feasible"].cost == pytest.approx(4547.9038, abs=1e-2)
    shared = get_compiled("ieee33")
    for v, sol in sols.items():
        assert sol.status == "optimal" and sol.constraint_violation <= 1e-8
        assert sol.fingerprint == shared.fingerprint and sol.m == shared.m
        assert set(sol.cost_breakdown) == {"grid", "dg", "battery"}
        assert sum(sol.cost_breakdown.values()) == pytest.approx(sol.cost, rel=1e-9)
        assert verify(shared, sol).accepted is (v == "true")


def test_generic_route_reads_its_cache(plans):
    cache, sols = plans
    again, cached = solve_case("ieee33", "true", cache_dir=str(cache), return_cached_flag=True)
    assert cached and again.digest == sols["true"].digest


def test_a_cached_plan_carries_the_name_it_was_asked_by(plans):
    """The cache is keyed by the compiled problem; the case name is the caller's. The same problem registered under
    another name (as a scenario's instance file is) finds ieee33's plan, under its own name, with the same digest."""
    import dataclasses

    from poso_sim.nlp.problems import problem_definition, register_problem

    cache, sols = plans
    ieee33 = problem_definition("ieee33")
    register_problem("ieee33-same-data", dataclasses.replace(ieee33, load=lambda _case: ieee33.load("ieee33")),
                     replace=True)
    again, cached = solve_case("ieee33-same-data", "true", cache_dir=str(cache), return_cached_flag=True)
    assert cached and again.digest == sols["true"].digest
    assert again.case == "ieee33-same-data" and sols["true"].case == "ieee33"
    assert solve_case("ieee33", "true", cache_dir=str(cache)).case == "ieee33"
