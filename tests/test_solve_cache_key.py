"""What the solution cache's key covers: a plan is found again only for the problem it solves.

A copy of the package whose IES builder is edited (a coefficient of the heat network) compiles to a problem with
another fingerprint, and its lookup of the Manchester plan misses, by the fast path and by the full key alike,
without solving; the unedited copy finds the plan.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from poso_sim.common import default_cache_dir
from poso_sim.solvers.api import solve_case

pytestmark = pytest.mark.solver

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "poso_sim"

LOOKUP = """
import json, sys
import poso_sim
from poso_sim.nlp.problems import get_compiled
from poso_sim.solvers.api import cached_solution
hit = cached_solution("manchester", "true", cache_dir=sys.argv[1])
print(json.dumps({"file": poso_sim.__file__, "hit": hit.digest if hit is not None else None,
                  "fingerprint": get_compiled("manchester").fingerprint}))
"""


def _lookup(src: Path, solutions: Path, compiled: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "POSO_SIM_CACHE_DIR": str(compiled), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", LOOKUP, str(solutions)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(src.resolve())  # the copy was imported, not the tree
    return got


def test_an_edited_builder_file_is_a_cache_miss(tmp_path) -> None:
    plan = solve_case("manchester", "true")  # from the cache (solved once per machine)
    solutions = default_cache_dir()
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "poso_sim", ignore=shutil.ignore_patterns("__pycache__"))

    same = _lookup(src, solutions, solutions)  # the unedited copy: same sources, so the same compiled problem
    assert same["fingerprint"] == plan.fingerprint
    assert same["hit"] == plan.digest

    heat = src / "poso_sim" / "cases" / "ies" / "heat.py"
    text = heat.read_text()
    rule = "rule=lambda _m, n, t: T_sup[n, t] - t_sup0 == 0)"
    assert text.count(rule) == 1
    heat.write_text(text.replace(rule, "rule=lambda _m, n, t: T_sup[n, t] - (t_sup0 + 0.25) == 0)"))
    edited = _lookup(src, solutions, tmp_path / "compiled")  # compiles the edited model into its own directory
    assert edited["fingerprint"] != plan.fingerprint
    assert edited["hit"] is None
