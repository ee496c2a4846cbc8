"""Chains of instances at the scenario level: the `instances:` and `solve_time:` fields (errors name the file, the
line and the field), solves in virtual time (a slow honest leader misses its window) and, with real solves, the
packaged `chain-7` scenario (slow)."""

from __future__ import annotations

import json

import pytest

from poso_sim.errors import ScenarioError
from poso_sim.scenarios import StubPayloads, parse_scenario, run_scenario

GEN = "name: x\nheights: 2\ninstances:\n  generate:\n    seed: 1\n    n: 2\n    ranges:\n      {ranges}\n"


@pytest.mark.parametrize("text, message", [
    (GEN.format(ranges="heat: {level: [8.0, 9.0], noise: 0.0}"),
     r"^s\.yaml, line 4: instances\.generate: manchester-s1-d1: profiles\.heat_load_factor\[0\]: heat demand .* exceeds"),
    (GEN.format(ranges="price: {level: [-1.0, -0.5], noise: 0.0}"),
     r"^s\.yaml, line 4: instances\.generate: manchester-s1-d1: profiles\.price\[0\]: input should be greater"),
    (GEN.format(ranges="load: {noise: 0.9}"), r"line 8: instances\.generate\.ranges\.load\.noise: 0\.9 outside"),
    (GEN.format(ranges="{}").replace("n: 2", "n: 1"), r"line 3: instances: 1 instance\(s\) for 2 heights"),
    ("heights: 1\ninstances: [nope.json]\n", r"line 2: instances\[0\]: nope\.json: no such case file"),
    ("heights: 2\nsolve_time: {model: constant, seconds: 3, speed: {Z: 0.5}}\n", r"solve_time\.speed\.Z: unknown delegate"),
    ("solve_time: {model: quadratic}\n", r"line 1: solve_time"),
    ("heights: 2\nbehaviours:\n  C:\n    replay: {from_height: 1}\n", r"line 4: behaviours\.C\.replay\.from_height"),
])
def test_bad_instances_and_solve_times_are_one_line_errors(text, message):
    with pytest.raises(ScenarioError, match=message) as err:
        parse_scenario(text, "s.yaml")
    assert "\n" not in str(err.value)


def test_listed_instance_failing_its_schema_names_the_file_and_field(tmp_path):
    from poso_sim.cases import load_case

    doc = json.loads(load_case("manchester").model_dump_json(by_alias=True, exclude_none=True))
    doc["profiles"]["price"] = doc["profiles"]["price"][:5]
    (tmp_path / "day1.json").write_text(json.dumps(doc))
    (tmp_path / "s.yaml").write_text("heights: 1\ninstances: [day1.json]\n")
    from poso_sim.scenarios import load_scenario

    with pytest.raises(ScenarioError, match=r"s\.yaml, line 2: instances\[0\]: .*day1\.json.*price") as err:
        load_scenario(tmp_path / "s.yaml")
    assert "\n" not in str(err.value)


SLOW = """
delegates: {{C: 8, D: 9, E: 10, F: 11, G: 12}}
normal_nodes: 3
window: 5.3
heights: 2
solve_time: {spec}
"""


def _run(spec: str):
    return run_scenario(parse_scenario(SLOW.format(spec=spec)), payloads=StubPayloads())


def test_a_slow_honest_leader_misses_its_window_and_is_replaced():
    fast = _run("{model: constant, seconds: 3.0}")
    slow = _run("{model: constant, seconds: 3.0, speed: {C: 0.5}}")  # C needs 6 s > the 5.3 s window
    for r in (fast, slow):
        assert all(r.executed_at(h)["label"] == "optimal" for h in (1, 2))
    assert fast.executed_at(1)["leader"] == "C" and not fast.excluded_by_honest()
    assert fast.solve_seconds == {1: 3.0, 2: 3.0}
    ex = slow.executed_at(1)
    assert (ex["leader"], ex["round"]) == ("D", 2)  # the next leader of the schedule takes over
    assert slow.excluded_by_honest() == ["C"]
    reasons = {e["reason"] for d in slow.honest if d != "C" for e in slow.exclusions[d]}
    assert reasons == {"timeout: no valid proposal in the window"}  # no evidence: C was honest, only slow
    assert slow.executed_at(2)["leader"] == "D" and slow.executed_at(2)["round"] == 1
    # decided one whole window later than with the fast leader: the missed window
    assert slow.decisions_at(1)["E"]["t"] == pytest.approx(fast.decisions_at(1)["E"]["t"] + 5.3)
    assert _run("{model: constant, seconds: 3.0, speed: {C: 0.5}}").trace_digest == slow.trace_digest


def test_measured_solve_times_replay_from_a_recorded_file(tmp_path):
    rec = tmp_path / "times.json"
    rec.write_text(json.dumps({"height-1": 4.0, "height-2": 1.0}))
    spec = f"{{model: measured, record: {rec}, speed: {{C: 0.5}}}}"
    r = _run(spec)
    assert r.solve_seconds == {1: 4.0, 2: 1.0}  # C, at speed 0.5, takes 8 s at height 1
    assert (r.executed_at(1)["leader"], r.executed_at(1)["round"]) == ("D", 2)  # 8 s > 5.3 s: C misses, D 4 s
    assert r.executed_at(2)["leader"] == "D"
    assert "solve_seconds" in r.to_json() and _run(spec).trace_digest == r.trace_digest
    assert json.loads(rec.read_text()) == {"height-1": 4.0, "height-2": 1.0}  # a record is read, never rewritten


def test_plain_solve_time_number_is_unchanged():
    a = _run("0.0")
    assert a.solve_seconds == {} and "solve_seconds" not in a.to_json() and "instances" not in a.to_json()


# ------------------------------------------------------------------------------------------- real chains
def _check_chain(r, source, replay_height: int) -> None:
    """7 distinct instances, 7 distinct executed optimal plans, each certified on its own instance only, and the
    replayed plan rejected by every honest delegate by the instance fingerprint alone."""
    from poso_sim.kkt import verify
    from poso_sim.protocol import Verdict

    fps = [row["fingerprint"] for row in r.instances]
    assert len(fps) == 7 and len(set(fps)) == 7
    executed = [r.executed_at(h) for h in range(1, 8)]
    assert all(e is not None and e["agreement"] and e["label"] == "optimal" for e in executed)
    assert len({e["digest"] for e in executed}) == 7
    for h, e in enumerate(executed, start=1):
        plan = source.payloads(h)["optimal"]
        assert plan.digest == e["digest"] and plan.solution.fingerprint == fps[h - 1]
        assert Verdict.from_certificate(verify(source.compiled(h), plan.solution)).accepted
        other = source.compiled(h % 7 + 1)  # another day's problem: the plan is not its optimum
        assert not Verdict.from_certificate(verify(other, plan.solution)).accepted
        assert not source.verify(plan, h % 7 + 1).accepted
    assert r.excluded_by_honest() == ["C"]
    for d in ("D", "E", "F", "G"):
        [ex] = r.exclusions[d]
        assert ex["height"] == replay_height and ex["evidence"] and "wrong instance" in ex["reason"]
    assert (executed[replay_height - 1]["leader"], executed[replay_height - 1]["round"]) == ("D", 2)
    assert all(e["leader"] == "C" for e in executed[: replay_height - 1])


def _source(scn):
    from poso_sim.scenarios import InstancePayloads, resolve_instances

    return InstancePayloads(scn.case, resolve_instances(scn))


def _ieee33_days(tmp_path):
    import poso_sim.cases.ieee33 as feeder
    from pathlib import Path

    base = json.loads((Path(feeder.__file__).parent / "ieee33.json").read_text())
    files = []
    for day in range(1, 8):  # the published 24-h profile scaled by 0.90 ... 1.20
        doc = json.loads(json.dumps(base))
        doc["name"] = f"ieee33-day{day}"
        doc["dispatch"]["profiles"]["load"] = [round(v * (0.85 + 0.05 * day), 6) for v in doc["dispatch"]["profiles"]["load"]]
        (tmp_path / f"day{day}.json").write_text(json.dumps(doc))
        files.append(f"day{day}.json")
    return files


def test_chain_of_seven_ieee33_days(tmp_path):
    from poso_sim.scenarios import load_scenario

    files = _ieee33_days(tmp_path)
    (tmp_path / "chain.yaml").write_text(
        "case: ieee33\ndelegates: {C: 8, D: 9, E: 10, F: 11, G: 12}\nheights: 7\n"
        f"instances: {json.dumps(files)}\nbehaviours:\n  C:\n    replay: {{from_height: 3}}\n"
    )
    scn = load_scenario(tmp_path / "chain.yaml")
    r = run_scenario(scn)
    _check_chain(r, _source(scn), 3)
    assert [row["name"] for row in r.instances] == [f"day{d}" for d in range(1, 8)]
    costs = [r.executed_at(h)["cost"] for h in range(1, 8)]
    assert costs == sorted(costs)  # more load every day: a dearer dispatch
    assert run_scenario(scn).trace_digest == r.trace_digest  # deterministic (plans from the cache)


def test_scenario_1_behaviours_on_ieee33():
    from poso_sim.nlp.problems import load_problem
    from poso_sim.scenarios import resolve_scenario
    from poso_sim.solvers.api import solve_case

    r = run_scenario(resolve_scenario("scenario-1").with_(case="ieee33"))
    opt = solve_case("ieee33", "true")
    tampered = solve_case("ieee33", "tampered")
    ex = r.executed
    assert (ex["leader"], ex["round"], ex["digest"], ex["votes"]) == ("D", 2, opt.digest, 4)
    assert r.excluded_by_honest() == ["C"]
    assert r.decisions_at(1)["C"]["digest"] == tampered.digest  # C adopts its own tampered plan
    for d in ("D", "E", "F", "G"):
        assert r.decisions_at(1)[d]["digest"] == opt.digest
    assert ex["cost"] == pytest.approx(opt.cost) and tampered.cost > opt.cost + 50
    honest = load_problem("ieee33").nlp
    assert opt.fingerprint == honest.fingerprint and opt.constraint_violation < 1e-6


@pytest.mark.slow
def test_packaged_chain_7_on_generated_manchester_days():
    from poso_sim.scenarios import resolve_scenario

    scn = resolve_scenario("chain-7")
    r = run_scenario(scn)
    _check_chain(r, _source(scn), 3)
    assert [row["name"] for row in r.instances] == [f"manchester-s4-d{d}" for d in range(1, 8)]


def test_ieee33_chain_lying_replay_and_modelled_solve_times(tmp_path):
    from poso_sim.scenarios import load_scenario

    files = _ieee33_days(tmp_path)
    head = "case: ieee33\ndelegates: {C: 8, D: 9, E: 10, F: 11, G: 12}\nheights: 4\n" f"instances: {json.dumps(files[:4])}\n"
    (tmp_path / "lying.yaml").write_text(
        head + "behaviours:\n  C:\n    replay: {from_height: 2, claim: current}\nsolve_time: {model: measured}\n")
    scn = load_scenario(tmp_path / "lying.yaml")
    r = run_scenario(scn)
    src = _source(scn)
    # the replayed plan claims today's fingerprint: the verifier rejects it (the plan's own is yesterday's)
    for d in ("D", "E", "F", "G"):
        [ex] = r.exclusions[d]
        assert ex["height"] == 2 and ex["evidence"] and "plan is for another instance" in ex["reason"]
    assert [r.executed_at(h)["digest"] for h in range(1, 5)] == [src.payloads(h)["optimal"].digest for h in range(1, 5)]
    # measured: each height's recorded solve time of its plan
    assert r.solve_seconds == {h: src.payloads(h)["optimal"].solution.solve_seconds for h in range(1, 5)}
    assert all(0 < s < 5.3 for s in r.solve_seconds.values())
    (tmp_path / "linear.yaml").write_text(head + "solve_time: {model: linear, base: 1.0, per_variable: 0.0005}\n")
    lin = run_scenario(load_scenario(tmp_path / "linear.yaml"))
    n = src.compiled(1).n
    assert lin.solve_seconds == {h: pytest.approx(1.0 + 0.0005 * n) for h in range(1, 5)}


def test_generated_days_share_one_compiled_structure(tmp_path):
    """Followers' copies of the days are one structure's compiled functions with each day's data: no recompile."""
    from poso_sim.scenarios import InstancePayloads
    from poso_sim.scenarios.instances import _generated

    days = _generated("manchester", 4, 3, {}, tmp_path)
    src = InstancePayloads("manchester", days)
    nlps = [src.compiled(h) for h in (1, 2, 3)]
    assert len({n.fingerprint for n in nlps}) == 3 and len({n.structure_fingerprint for n in nlps}) == 1
    assert nlps[1]._hess is nlps[0]._hess and nlps[2]._jac is nlps[0]._jac  # the same CasADi functions
    assert src.instance_fingerprints == {h: n.fingerprint for h, n in zip((1, 2, 3), nlps)}
    assert not (nlps[0].p == nlps[1].p).all()  # the data differ


def test_a_failed_solve_names_the_instance_and_caches_nothing(tmp_path, monkeypatch):
    import poso_sim.scenarios.payloads as P
    from poso_sim.scenarios import InstanceError, InstancePayloads
    from poso_sim.scenarios.instances import _generated
    from poso_sim.solvers.pipeline import SolveError

    days = _generated("manchester", 4, 2, {}, tmp_path)
    calls = []

    def failing(case, variants, **kw):
        calls.append((case, tuple(variants)))
        raise SolveError("final", "infeasible", f"{case} true: locally infeasible")

    monkeypatch.setattr(P, "solve_variants", failing)
    src = InstancePayloads("manchester", days, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InstanceError, match=r"^instance 1 \(manchester-s4-d1\): solve failed at stage 'final'") as err:
        src.prepare(["optimal"])
    assert "\n" not in str(err.value) and calls == [(days[0].case, ("true",))]
    assert not src.solved() and not list((tmp_path / "cache").rglob("*.sol"))
