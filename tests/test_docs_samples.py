"""Numbers in the docs that cannot go stale: every sample output of README.md and docs/getting-started.md is
produced again by running its command, and compared with the page.

* getting-started's ``console`` blocks: each ``$ poso-sim ...`` line is run (in order, in one directory, from
  the solution cache) and its output compared line by line with the page's. Costs, iterations, stage lines,
  verdicts, the entry a rejection names, the scenario list and Table 3 are compared exactly; times, residuals in
  scientific notation, SHA-256 digests and the names in a certificate's list of worst residuals (whose order
  among equal 1e-13 values is not stable) are compared by form only.
* the README's command list: each command's exit status, verdict and amounts in its comment;
* the amounts in the prose of both pages (real and stub plan costs), and getting-started's progress sample
  against the stages of the cached feasible plan.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"

pytestmark = pytest.mark.solver

_WORST = re.compile(r"^(    (?:primal|bound|dual|sign|complementarity)\s+)\S+(\s+)<sci>$")


def _norm(text: str) -> list[str]:
    """Lines with their run-dependent parts masked (see the module's documentation)."""
    text = re.sub(r"\b[0-9a-f]{64}\b", "<digest>", text)
    text = re.sub(r"-?\d+(?:\.\d+)?e[-+]\d+", "<sci>", text)
    text = re.sub(r" *\b\d+\.\d+ (?:ms|s)\b", " <time>", text)  # a time's width varies with the load
    return [_WORST.sub(r"\1<name>\2<sci>", ln.rstrip()) for ln in text.rstrip("\n").splitlines()]


def _run(argv: list[str]) -> tuple[int, str]:
    from poso_sim.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def plans() -> dict:
    """The three Manchester plans, from the solution cache (solved once on a cold cache)."""
    from poso_sim.solvers.api import solve_case

    return {v: solve_case("manchester", v) for v in ("true", "tampered", "feasible")}


def _console(page: Path) -> list[tuple[str, str]]:
    out = []
    for block in re.findall(r"```console\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            cmd, _, expected = chunk.partition("\n")
            out.append((cmd, expected))
    return out


def test_getting_started_console_samples_are_what_the_commands_print(plans, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    samples = _console(GETTING_STARTED)
    assert len(samples) >= 8 and samples[0][0].startswith("poso-sim solve")
    for cmd, expected in samples:
        args = shlex.split(cmd)
        assert args[0] == "poso-sim"
        rc, out = _run(args[1:])
        assert rc == (1 if "REJECTED" in expected.splitlines()[0] else 0), (cmd, out)
        got, want = _norm(out), _norm(expected)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{cmd}: line {i + 1} differs\n  page: {w}\n  real: {g}"
        assert len(got) == len(want), (cmd, got[len(want):], want[len(got):])


def test_the_readme_command_list(plans, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    block = re.search(r"## Using it.*?```\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S).group(1)
    checked = 0
    for line in block.strip().splitlines():
        cmd, _, comment = line.partition("#")
        args = shlex.split(cmd)
        if args[1] in ("plot", "sweep"):
            continue  # files, not printed samples (the campaign takes minutes; tests/test_sweep.py runs it)
        rc, out = _run(args[1:])
        want_rc = int(re.search(r"exit status (\d)", comment).group(1)) if "exit status" in comment else 0
        assert rc == want_rc, (line, out)
        for word in ("ACCEPTED", "REJECTED", "stationarity", "scenario-1", "scenario-4"):
            if word in comment:
                assert word in out, (line, out)
        amounts = re.findall(r"(\d+\.\d\d) \$", comment)
        printed = {f"{float(v):.2f}" for v in re.findall(r"-?\d+\.\d+", out)}
        for a in amounts:
            assert a in printed, (line, a, out)
        checked += 1
    assert checked == 8


def _amounts(sentence: str) -> list[float]:
    return [float(a) for a in re.findall(r"(\d+\.\d+) \$", sentence)]


def test_the_costs_in_the_prose(plans) -> None:
    from poso_sim.scenarios.payloads import STUB_COSTS

    real = [round(plans[v].cost, 2) for v in ("true", "tampered", "feasible")]
    stub = [STUB_COSTS[k] for k in ("optimal", "tampered", "feasible")]
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert _amounts(re.search(r"Stub plans carry fixed costs \((.*?)\)", readme).group(1)) == stub
    assert _amounts(re.search(r"the real plans cost (.*?)\.\s", readme).group(1)) == real
    page = " ".join(GETTING_STARTED.read_text(encoding="utf-8").split())
    assert _amounts(re.search(r"its true cost is (\d+\.\d+ \$)", page).group(1)) == [real[1]]
    feasible = re.search(r"true cost (\d+\.\d+ \$) \((\d+\.\d+) in the summary\)", page)
    assert _amounts(feasible.group(1)) == [real[2]] and feasible.group(2) == f"{plans['feasible'].cost:.3f}"
    assert _amounts(re.search(r"fixed digests, costs \((.*?)\)", page).group(1)) == stub


def test_the_progress_sample_is_the_feasible_solve(plans) -> None:
    """The sample log of a first feasible solve: its stages in order, each stage-end line's iterations and cost as
    the cached plan records them."""
    page = GETTING_STARTED.read_text(encoding="utf-8")
    sample = re.search(r"A first solve \(`poso-sim solve --objective feasible --no-cache`\).*?```text\n(.*?)```", page,
                       flags=re.S).group(1)
    stages = {s["name"]: s for s in plans["feasible"].stages}
    names = list(stages)
    seen = []
    for line in sample.splitlines():
        if line == "...":
            continue
        m = re.match(r"solve manchester/feasible: (.+?)(?: done)?, iterations (\d+), cost ([\d.]+), violation \S+$",
                     line)
        assert m, line
        name, its, cost = m.group(1), int(m.group(2)), float(m.group(3))
        assert name in stages, (name, names)
        seen.append(name)
        st = stages[name]
        assert its <= int(st["iterations"]) and cost == pytest.approx(float(st["objective"]), abs=0.3), (line, st)
        if name in ("final", "map-back", "polish", "reduce"):  # lines of ended stages: exact
            assert its == int(st["iterations"]) and cost == pytest.approx(float(st["objective"]), abs=5e-5), line
    assert seen == [n for n in names if n in seen] and seen[-1] == names[-1]
