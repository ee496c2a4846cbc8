"""Progress and logging of `poso-sim run` and `verify`: through a pipe a cold `run` prints plain progress lines as
`solve` does (its solves run in worker processes, whose records reach the command); `-v` logs cache hits and
misses, solves and verdicts; progress labels are short (a case file by its name and an 8-character instance id);
`solve --help` and `run --help` describe any problem, not only Manchester."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from poso_sim.progress import format_progress, short_case

ROOT = Path(__file__).resolve().parents[1]

MODULE = '''
from poso_sim.nlp.problems import ProblemDefinition


def build(data, variant):
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.U = pyo.RangeSet(0, 2)
    m.p = pyo.Var(m.U, bounds=(0.0, 200.0), initialize=100.0)
    m.balance = pyo.Constraint(expr=sum(m.p[i] for i in m.U) == 300.0)
    m.cost = pyo.Expression(expr=sum((0.004 + 0.002 * i) * m.p[i] ** 2 + (5.3 + 0.2 * i) * m.p[i] for i in m.U))
    m.obj = pyo.Objective(expr=m.cost - (3.0 if variant == "favoured" else 0.0) * m.p[2])
    return m


def definition() -> ProblemDefinition:
    return ProblemDefinition(build=build, variants=("true", "favoured"), cost_expression="cost")
'''

SCENARIO = """name: units-favoured
case: units3:definition
variants: {tampered: favoured}
delegates: 4
normal_nodes: 1
behaviours:
  A:
    follower_error: others
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("units")
    (d / "units3.py").write_text(MODULE)
    (d / "units.yaml").write_text(SCENARIO)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(d)]),
           "POSO_SIM_CACHE_DIR": str(d / "cache"), "OMP_NUM_THREADS": "1"}
    return d, env


def _poso(project, *args: str) -> subprocess.CompletedProcess:
    d, env = project
    return subprocess.run([sys.executable, "-m", "poso_sim", *args], cwd=d, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.solver
def test_run_through_a_pipe_prints_progress_then_v_logs_cache_and_verdicts(project) -> None:
    cold = _poso(project, "run", "units.yaml", "--quiet")  # stderr is a pipe: plain lines
    assert cold.returncode == 0, cold.stderr
    # both plans are solved in worker processes; their progress reaches the command's stderr as plain lines
    for variant in ("true", "favoured"):
        assert re.search(rf"^solve units3:definition/{variant}: solve done, iterations \d+, cost [\d.]+",
                         cold.stderr, re.M), cold.stderr
    assert "\r" not in cold.stderr and "\x1b" not in cold.stderr
    warm = _poso(project, "run", "-v", "units.yaml", "--quiet")
    assert warm.returncode == 0, warm.stderr
    for variant in ("true", "favoured"):
        assert f"units3:definition {variant}: solution cache hit" in warm.stderr, warm.stderr
    assert re.search(r"verdict on the optimal plan \w+ \(height 1\): ACCEPTED", warm.stderr), warm.stderr
    assert re.search(r"verdict on the tampered plan \w+ \(height 1\): REJECTED \(stationarity", warm.stderr)
    # without -v: no log lines, and nothing to show for cached plans
    quiet = _poso(project, "run", "units.yaml", "--quiet")
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr and "verdict" not in quiet.stderr
    def steady(out: str) -> str:  # the run's report without its wall time
        return re.sub(r"wall time [\d.]+ s", "wall time", out)

    assert steady(cold.stdout) == steady(warm.stdout) == steady(quiet.stdout)  # progress and logs: never on stdout


@pytest.mark.solver
def test_verify_v_logs_the_problem_cache_and_the_verdict(project) -> None:
    assert _poso(project, "solve", "--case", "units3:definition", "--out", "plan.sol").returncode == 0
    r = _poso(project, "-v", "verify", "plan.sol")
    assert r.returncode == 0, r.stderr
    assert "INFO poso_sim.kkt.cli: plan.sol: compiled problem of case units3:definition: compiled-problem cache hit" \
        in r.stderr
    assert re.search(r"INFO poso_sim.kkt.cli: plan.sol: ACCEPTED: cost [\d.]+", r.stderr), r.stderr
    plain = _poso(project, "verify", "plan.sol")
    assert plain.returncode == 0 and plain.stderr == ""


def test_progress_labels_are_short() -> None:
    day = "/home/someone/.cache/poso-sim/instances/manchester-s7-d12-0f1e2d3c4b5a6978.json"
    assert short_case(day) == "manchester 0f1e2d3c"
    assert short_case("manchester") == "manchester" and short_case("units3:definition") == "units3:definition"
    assert short_case("trading-instance-00112233445566778899aabb") == "trading 00112233"
    assert short_case("cases/winter day.json") == "winter day"
    assert len(short_case("x" * 300)) == 40
    p = {"task": "solve", "case": day, "variant": "tampered", "stage": "fixed-flows", "iterations": 212,
         "objective": 815.72, "violation": 3.1e-9, "final": True}
    assert format_progress(p) == "solve manchester 0f1e2d3c/tampered: fixed-flows done, iterations 212, " \
                                 "cost 815.7200, violation 3.1e-09"


@pytest.mark.parametrize("case", ["/home/someone/.cache/poso-sim/instances/manchester-s7-d12-0f1e2d3c4b5a6978.json",
                                  "a_rather_long_module_name.with_a_package:and_a_long_factory_name"])
def test_the_live_line_keeps_stage_iterations_and_cost_on_80_columns(case, monkeypatch) -> None:
    import io
    import logging
    import os as _os

    from poso_sim.progress import PROGRESS_KEY, ProgressHandler

    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=(100, 20): _os.terminal_size((80, 24)))
    out = io.StringIO()
    h = ProgressHandler(0, out, live=True)
    rec = logging.LogRecord("poso_sim.solvers.pipeline", logging.DEBUG, __file__, 1, "it", None, None)
    setattr(rec, PROGRESS_KEY, {"task": "solve", "case": case, "variant": "tampered", "stage": "canonical-polish",
                                "iteration": 1234, "objective": 904.2567, "violation": 3.1e-9})
    h.emit(rec)
    line = out.getvalue().split("\x1b[2K")[-1]
    assert len(line) <= 79, line
    assert "canonical-polish" in line and "it 1234" in line and "cost 904.2567" in line and line.endswith(" s]"), line


@pytest.mark.parametrize("command, words", [
    ("solve", ["any registered", "module:function", "ieee33", "the problem's honest one"]),
    ("run", ["YAML file", "any registered problem", "variants:"]),
])
def test_help_describes_the_general_case(command, words, capsys) -> None:
    from poso_sim.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for w in words:
        assert w in text, (w, text)
    assert "scenario-1 ... scenario-4" not in text and "CHP 3 forced on" not in text
