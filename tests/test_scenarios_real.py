"""End-to-end: the four packaged scenarios on real plans (cached solves of the Manchester case) and the real KKT
certificate (`poso_sim.kkt.verify`). Marked `solver`: the first run solves the three variants (minutes), later
runs load them from the solution cache."""

from __future__ import annotations

import re

import pytest

from poso_sim.report import render_table3, table3_json
from poso_sim.scenarios import RealPayloads, run_scenario

pytestmark = pytest.mark.solver


@pytest.fixture(scope="session")
def real_payloads():
    src = RealPayloads("manchester")
    src.plans()
    return src


@pytest.fixture(scope="session")
def real_runs(real_payloads):
    return {f"scenario-{i}": run_scenario(f"scenario-{i}", payloads=real_payloads) for i in range(1, 5)}


def test_real_plans_and_certificate(real_payloads):
    p = real_payloads.plans()
    assert 743.9 <= p["optimal"].claimed_cost <= 744.5
    assert p["tampered"].claimed_cost > 744.5 * 1.15  # about 904 $
    assert p["feasible"].claimed_cost > p["optimal"].claimed_cost * 1.001
    assert len({x.digest for x in p.values()}) == 4
    ok = real_payloads.verify(p["optimal"])
    assert ok.accepted and ok.cost == pytest.approx(p["optimal"].claimed_cost, rel=1e-6)
    for lbl in ("tampered", "feasible"):
        v = real_payloads.verify(p[lbl])
        assert not v.accepted and v.reasons, lbl
    # a solution that does not hash to its digest is the carrier's fault
    from poso_sim.protocol import Payload

    from poso_sim.scenarios import solution_matches

    bad = Payload(p["optimal"].digest, "optimal", 744.0, p["tampered"].solution)
    assert solution_matches(p["optimal"]) and not solution_matches(bad)


def test_real_scenario_1_table3(real_runs, real_payloads):
    r = real_runs["scenario-1"]
    opt = real_payloads.plans()["optimal"].digest
    text = render_table3(r)
    assert "| F   | <$904>C (fails KKT) | –  |" in text
    assert "| C   | <$904>C (its own)   | –  |" in text
    assert "| F   | <$744>D           | <$744>DE, <$744>DG |" in text
    d = table3_json(r)[1]["rows"]
    assert re.fullmatch(r"<\$74[34]\.\d\d>DG", d["E"]["R2"][0])
    dec = r.decisions_at(1)
    for x in "DEFG":
        assert (dec[x]["digest"], dec[x]["round"], dec[x]["leader"]) == (opt, 2, "D")
    assert r.executed["digest"] == opt and r.executed["votes"] == 4 and r.excluded_by_honest() == ["C"]


@pytest.mark.parametrize("name, leader, rnd, voters", [
    ("scenario-2", "C", 1, ["D", "E", "F", "G"]),
    ("scenario-3", "D", 2, ["D", "E", "F", "G"]),
    ("scenario-4", "D", 2, ["D", "E", "G"]),
])
def test_real_scenarios_2_to_4(real_runs, real_payloads, name, leader, rnd, voters):
    r = real_runs[name]
    opt = real_payloads.plans()["optimal"]
    ex = r.executed
    assert (ex["digest"], ex["leader"], ex["round"], ex["voters"]) == (opt.digest, leader, rnd, voters)
    assert 743.9 <= ex["cost"] <= 744.5
    assert r.excluded_by_honest() == ["C"]
    for d in r.honest:
        assert r.decisions_at(1)[d]["digest"] == opt.digest


def test_real_run_is_deterministic_and_verifies_once_per_digest(real_payloads, real_runs):
    again = run_scenario("scenario-1", payloads=real_payloads)
    assert again.trace_digest == real_runs["scenario-1"].trace_digest
    assert again.verifications == 0  # memoised across runs in this process


def test_fresh_process_runs_scenario_1_solving_only_what_it_needs(real_payloads):
    # a fresh process (nothing imported ahead): the verifier's problem and the certificate are loaded before the
    # virtual clock starts (the clock forbids the wall-clock reads some imports make), and only the plans
    # scenario 1 uses are made
    import subprocess
    import sys

    code = ("from poso_sim.scenarios import RealPayloads, run_scenario\n"
            "src = RealPayloads('manchester')\n"
            "r = run_scenario('scenario-1', payloads=src)\n"
            "print(sorted(src.solved()), r.executed['label'], r.verifications)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "['optimal', 'tampered'] optimal 2"
