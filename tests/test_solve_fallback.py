"""A failed start or stage of the integrated-energy recipe: the data-only start takes over, or one named SolveError.

No Ipopt solve runs here: the staged solve (or one Ipopt call) is replaced by a stand-in, so each test costs the
model build only.
"""

from __future__ import annotations

import numpy as np
import pytest

from poso_sim.solvers import RawResult
from poso_sim.solvers.api import get_problem
from poso_sim.solvers.ies import canonical_start, recipe, staged
from poso_sim.solvers.ies.staged import StartError
from poso_sim.solvers.pipeline import SolveError

pytestmark = pytest.mark.solver


@pytest.fixture(scope="module")
def tampered():
    return get_problem("manchester", "tampered")


def _staged_stub(statuses: list[str], seen: list[np.ndarray]):
    """A stand-in for ``solve_reduced``: records its start, returns it with the next status of ``statuses``."""

    def fake(model, nlp, x_start, **kw):
        seen.append(np.array(x_start, dtype=float))
        st = statuses[len(seen) - 1]
        return RawResult(x=np.asarray(x_start, dtype=float), y=np.zeros(nlp.m), z_L=np.zeros(nlp.n),
                         z_U=np.zeros(nlp.n), status=st, iterations=7, seconds=0.0, objective=0.0, message="stub")

    return fake


def _surrogate_fails(*a, **kw):
    raise StartError("network surrogate", "Maximum_Iterations_Exceeded")


def test_failed_surrogate_start_falls_back_to_the_data_only_start(monkeypatch, tampered) -> None:
    model, nlp = tampered
    seen: list[np.ndarray] = []
    monkeypatch.setattr(recipe, "network_start", _surrogate_fails)
    monkeypatch.setattr(recipe, "solve_reduced", _staged_stub(["optimal"], seen))
    res = recipe.solve(model, nlp, variant="tampered")
    assert res.status == "optimal" and len(seen) == 1
    np.testing.assert_array_equal(seen[0], canonical_start(nlp, model._case))


def test_failed_stage_from_the_objective_start_retries_from_the_data_only_start(monkeypatch, tampered) -> None:
    model, nlp = tampered
    seen: list[np.ndarray] = []
    monkeypatch.setattr(recipe, "solve_reduced", _staged_stub(["final:max_iter", "optimal"], seen))
    res = recipe.solve(model, nlp, variant="tampered")
    assert res.status == "optimal" and len(seen) == 2
    assert not np.array_equal(seen[0], seen[1])  # the first start was the objective-aware one
    np.testing.assert_array_equal(seen[1], canonical_start(nlp, model._case))


def test_both_starts_failing_is_one_solve_error_naming_the_stage(monkeypatch, tampered) -> None:
    model, nlp = tampered
    monkeypatch.setattr(recipe, "solve_reduced", _staged_stub(["final:max_iter", "polish:max_iter"], []))
    with pytest.raises(SolveError) as err:
        recipe.solve(model, nlp, variant="tampered")
    assert (err.value.stage, err.value.status) == ("polish", "max_iter")
    assert "manchester tampered" in str(err.value) and "\n" not in str(err.value)


def test_an_exception_inside_a_stage_is_a_solve_error_naming_it(monkeypatch, tampered) -> None:
    model, nlp = tampered

    def broken(view, x0, options, **kw):
        raise ValueError("matrix is singular\nsecond line")

    monkeypatch.setattr(staged, "solve_view", broken)
    monkeypatch.setattr(recipe, "network_start", _surrogate_fails)  # one staged solve, not two
    with pytest.raises(SolveError) as err:
        recipe.solve(model, nlp, variant="tampered")
    assert (err.value.stage, err.value.status) == ("fixed-flows", "ValueError")
    assert "matrix is singular" in str(err.value) and "second line" not in str(err.value)


def test_cli_reports_a_start_that_cannot_be_built_in_one_line_exit_2(monkeypatch, capsys) -> None:
    from poso_sim import cli

    monkeypatch.setattr(recipe, "network_start", _surrogate_fails)
    monkeypatch.setattr(recipe, "canonical_start", _surrogate_fails)
    rc = cli.main(["solve", "--case", "manchester", "--objective", "tampered", "--no-cache"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("poso-sim: error: solve failed at stage 'start': status Maximum_Iterations_Exceeded")
    assert "Traceback" not in "\n".join(err)


@pytest.fixture(scope="module")
def feasible():
    return get_problem("manchester", "feasible")


def _recipe_stub(statuses: list[str], seen: list[tuple]):
    """Like :func:`_staged_stub`, recording the start and the stage settings of each staged solve."""

    def fake(model, nlp, x_start, **kw):
        seen.append((np.array(x_start, dtype=float), kw["recipe"]))
        st = statuses[len(seen) - 1]
        return RawResult(x=np.asarray(x_start, dtype=float), y=np.zeros(nlp.m), z_L=np.zeros(nlp.n),
                         z_U=np.zeros(nlp.n), status=st, iterations=7, seconds=0.0, objective=0.0, message="stub")

    return fake


def test_infeasible_fixed_flows_stage_gives_way_to_a_cold_proximal_stage(monkeypatch, feasible) -> None:
    """Day 1 of a generated seed: the feasible variant's CHP 3 minimum cannot be met with the flows of the data-only
    start (Ipopt: Infeasible_Problem_Detected in the fixed-flows stage), while the problem itself is feasible."""
    model, nlp = feasible
    seen: list[tuple] = []
    monkeypatch.setattr(recipe, "solve_reduced", _recipe_stub(["fixed-flows:infeasible", "optimal"], seen))
    res = recipe.solve(model, nlp, variant="feasible")
    assert res.status == "optimal" and len(seen) == 2
    np.testing.assert_array_equal(seen[0][0], seen[1][0])  # the same start
    assert seen[0][1].fix_flows_first and not seen[1][1].fix_flows_first
    assert seen[1][1].rho_schedule == staged.RECIPES["feasible"].rho_schedule  # the recipe's own weight, cold


@pytest.mark.parametrize("statuses, stage, status, calls", [
    (["fixed-flows:infeasible", "proximal-cold rho=0.01:infeasible"], "proximal-cold rho=0.01", "infeasible", 2),
    (["fixed-flows:max_iter"], "fixed-flows", "max_iter", 1),  # only an infeasible fixed-flows stage gives way
])
def test_failed_cold_stage_after_infeasible_fixed_flows_is_one_named_error(monkeypatch, feasible, statuses, stage,
                                                                          status, calls) -> None:
    model, nlp = feasible
    seen: list[tuple] = []
    monkeypatch.setattr(recipe, "solve_reduced", _recipe_stub(statuses, seen))
    with pytest.raises(SolveError) as err:
        recipe.solve(model, nlp, variant="feasible")
    assert (err.value.stage, err.value.status) == (stage, status) and len(seen) == calls
    assert ("fixed-flows stage was infeasible" in str(err.value)) == (calls == 2)
    assert "\n" not in str(err.value)
