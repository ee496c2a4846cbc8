"""A scenario on one's own problem: `variants:` maps the dishonest plan labels to the problem's variant names, so a
problem whose doctored variant is called `favoured` runs every behaviour; a label without a variant, an unknown
label or an unknown variant is an error at the file's line, at load time."""

from __future__ import annotations

import pytest

from poso_sim.errors import ScenarioError
from poso_sim.nlp.problems import ProblemDefinition, register_problem
from poso_sim.scenarios import load_scenario, parse_scenario, run_scenario

CASE = "tests-three-units"


def _build(data, variant):
    import pyomo.environ as pyo  # inside the builder, as the how-to recommends

    m = pyo.ConcreteModel()
    m.U = pyo.RangeSet(0, 2)
    m.p = pyo.Var(m.U, bounds=(0.0, 200.0), initialize=100.0)
    m.balance = pyo.Constraint(expr=sum(m.p[i] for i in m.U) == 300.0)
    m.cost = pyo.Expression(expr=sum((0.004 + 0.002 * i) * m.p[i] ** 2 + (5.3 + 0.2 * i) * m.p[i] for i in m.U))
    m.obj = pyo.Objective(expr=m.cost - (3.0 if variant == "favoured" else 0.0) * m.p[2])
    return m


register_problem(CASE, ProblemDefinition(build=_build, variants=("true", "favoured"), cost_expression="cost"),
                 replace=True)

HEAD = f"case: {CASE}\ndelegates: 4\nnormal_nodes: 1\n"
LIAR = "behaviours:\n  A:\n    follower_error: others\n"


def _error(tmp_path, text: str) -> str:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{f}, ")
    return msg.removeprefix(f"{f}, ")


def test_a_label_without_a_variant_is_named_at_its_line(tmp_path):
    msg = _error(tmp_path, HEAD + LIAR)
    assert msg.startswith("line 6: behaviours.A.follower_error: sends the 'tampered' plan"), msg
    assert "variants: true, favoured" in msg and "variants: {tampered: VARIANT}" in msg


@pytest.mark.parametrize("mapping, line, field, words", [
    ("{tampered: nope}", 4, "variants.tampered", "has no variant 'nope' (variants: true, favoured)"),
    ("{optimal: favoured}", 4, "variants.optimal", "unknown plan label 'optimal'"),
    ("\n  feasible: nope", 5, "variants.feasible", "has no variant 'nope'"),
])
def test_bad_mappings_are_named_at_their_line(tmp_path, mapping, line, field, words):
    msg = _error(tmp_path, HEAD + f"variants: {mapping}\n" + LIAR.replace("follower_error", "follower_ignore"))
    assert msg.startswith(f"line {line}: {field}: ") and words in msg, msg


def test_without_variants_a_scenario_dumps_as_before():
    scn = parse_scenario("delegates: 4\n")
    assert "variants" not in scn.model_dump()
    mapped = parse_scenario(HEAD + "variants: {tampered: favoured}\n" + LIAR)
    assert mapped.model_dump()["variants"] == {"tampered": "favoured"}
    assert mapped.variant_of("tampered") == "favoured" and mapped.variant_of("feasible") == "feasible"
    assert mapped.variant_of("optimal") == "true" and mapped.variant_of("forged") == "true"


@pytest.mark.solver
def test_a_favoured_plan_is_sent_rejected_and_its_sender_excluded(tmp_path, monkeypatch):
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", str(tmp_path / "cache"))
    from poso_sim.solvers.api import solve_case

    scn = parse_scenario(HEAD + "variants: {tampered: favoured}\n" + LIAR)
    res = run_scenario(scn, payloads="real")
    favoured = solve_case(CASE, "favoured")
    optimum = solve_case(CASE, "true")
    assert favoured.cost > optimum.cost + 1.0
    got = {r["node"]: r for r in res.records if r["kind"] == "received" and r.get("round") == 1 and r["node"] != "A"}
    assert {n: r["label"] for n, r in got.items()} == {"B": "tampered", "C": "tampered", "D": "tampered"}
    assert all(r["claimed_cost"] == pytest.approx(favoured.cost) and r["digest"] == favoured.digest
               for r in got.values())
    assert {n: [e["leader"] for e in ex] for n, ex in res.exclusions.items()} == {"B": ["A"], "C": ["A"], "D": ["A"]}
    (block,) = res.blocks["N1"]
    assert block["leader"] == "B" and block["digest"] == optimum.digest
    assert block["cost"] == pytest.approx(optimum.cost)


@pytest.mark.solver
def test_a_real_sweep_on_the_mapped_problem(tmp_path, monkeypatch):
    """A sweep whose base scenario maps `tampered` to `favoured`: the plans are made from the problem's own variants
    (no `feasible` variant is asked for), every generated case passes the checker."""
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", str(tmp_path / "cache"))
    from poso_sim.sweep import run_sweep
    from poso_sim.sweep.spec import parse_sweep

    spec = parse_sweep(
        "name: units\ncases: 6\nseed: 3\npayloads: real\n"
        f"base: {{case: {CASE}, variants: {{tampered: favoured}}}}\n"
        "parameters:\n  delegates: 4\n  dishonest: 1\n  behaviours: [follower_error, follower_ignore]\n"
    )
    res = run_sweep(spec, workers=1)
    assert len(res.table) == 6 and res.violations.empty, res.violations
