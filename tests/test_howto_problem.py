"""docs/howto/bring-your-own-problem.md is run as written: its module, its Python session and its commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "howto" / "bring-your-own-problem.md"

pytestmark = pytest.mark.solver


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def test_the_howto_runs_as_written(tmp_path):
    module, session = _blocks("python")
    assert module.startswith("# dispatch3.py\n")
    (tmp_path / "dispatch3.py").write_text(module)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(tmp_path)]),
           "POSO_SIM_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", session], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    honest, favoured = map(float, re.findall(r"([\d.]+) \$", out.stdout))
    assert favoured > honest > 0
    assert list((tmp_path / "cache" / "compiled").glob("*.nlp"))
    # the first shell block: each command's exit code and verdict are in its comment
    commands, scenario_commands = _blocks("bash")
    code = (
        "import sys\nfrom poso_sim.cli import main\nrc = main(sys.argv[1:])\n"
        "print('PYOMO' if 'pyomo' in sys.modules else 'NO-PYOMO')\nsys.exit(rc)\n"
    )
    for line in commands.strip().splitlines():
        cmd, _, comment = line.partition("#")
        args = cmd.split()
        assert args[:2] == ["poso-sim", "verify"]
        run = subprocess.run([sys.executable, "-c", code, *args[1:]], cwd=tmp_path, env=env, capture_output=True,
                             text=True)
        assert run.returncode == int(re.search(r"exit (\d)", comment).group(1)), (line, run.stdout, run.stderr)
        assert re.search(r"(ACCEPTED|REJECTED)", comment).group(1) in run.stdout
        assert "NO-PYOMO" in run.stdout
    # section 4: the scenario file, then a solve of the favoured variant and a run, each command's exit code and a
    # line of its output in its comment
    (scenario,) = _blocks("yaml")
    (tmp_path / "dispatch3.yaml").write_text(scenario)
    for line in scenario_commands.strip().splitlines():
        cmd, _, comment = line.partition("#")
        args = cmd.split()
        assert args[0] == "poso-sim" and args[1] in ("solve", "run")
        run = subprocess.run([sys.executable, "-m", "poso_sim", *args[1:]], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        assert run.returncode == int(re.search(r"exit (\d)", comment).group(1)), (line, run.stdout, run.stderr)
        assert re.search(r'"(.*)"', comment).group(1) in run.stdout, (line, run.stdout)
    # without the mapping the file is refused at load time, at the behaviour's line, as the page says
    (tmp_path / "unmapped.yaml").write_text(scenario.replace("variants: {tampered: favoured}", "#"))
    run = subprocess.run([sys.executable, "-m", "poso_sim", "run", "unmapped.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    said = re.search(r"`dispatch3\.yaml, (line \d+: [^`]*?)\.\.\.`", PAGE.read_text(encoding="utf-8").replace("\n", " "))
    assert said and f"unmapped.yaml, {said.group(1)}" in run.stderr, (said, run.stderr)
