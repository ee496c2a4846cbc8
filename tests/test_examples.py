"""The example notebooks (examples/NN_*.py, jupytext percent scripts) run as they are shown in the docs.

* stub payloads (no solver): every example, in-process with runpy -- fast, always on;
* real payloads (cached Ipopt solves, the real certificate): marked ``solver``;
* one example executed as a notebook in an IPython kernel (jupytext + nbclient), skipped if those are absent.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES_DIR))
import run_examples  # noqa: E402

sys.path.remove(str(EXAMPLES_DIR))

EXAMPLES = run_examples.examples()
IDS = [p.stem for p in EXAMPLES]


def test_examples_exist():
    assert [p.name for p in EXAMPLES] == ["01_solve_and_verify.py", "02_scenarios_table3.py", "03_sweep.py",
                                          "04_trading_market.py"]
    for p in EXAMPLES:
        text = p.read_text()
        assert "format_name: percent" in text and "# %% [markdown]" in text, p


def _run(path: Path, monkeypatch, stub: bool) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if stub:
        monkeypatch.setenv("POSO_SIM_EXAMPLES_STUB", "1")
    else:
        monkeypatch.delenv("POSO_SIM_EXAMPLES_STUB", raising=False)
    monkeypatch.chdir(EXAMPLES_DIR)
    try:
        return runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_stub(path, monkeypatch):
    ns = _run(path, monkeypatch, stub=True)
    if path.name.startswith("02"):
        assert len(ns["runs"]) == 4 and list(ns["outcomes"].index) == [f"scenario-{i}" for i in range(1, 5)]
    if path.name.startswith("03"):
        assert len(ns["sweep"]) == 27 and ns["sweep"]["safe"].all()
    if path.name.startswith("04"):
        assert ns["honest"].converged and ns["variants"]["safe"].all()


@pytest.mark.solver
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_real(path, monkeypatch):
    ns = _run(path, monkeypatch, stub=False)
    if path.name.startswith("01"):
        assert ns["cert_opt"].accepted and not ns["cert_tam"].accepted


def test_example_as_notebook(tmp_path):
    pytest.importorskip("jupytext")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = run_examples.run_notebook(EXAMPLES[1], stub=True, timeout=600, out_dir=tmp_path)
    assert (tmp_path / "02_scenarios_table3.ipynb").is_file()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    html = [o["data"]["text/html"] for o in outputs if "data" in o and "text/html" in o["data"]]
    assert any("Table 3" in h for h in html) and any("Run of scenario-1" in h for h in html)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the sequence charts rendered inline


ENV_PROBE = '''# %%
import json, os, sys
print(json.dumps({"cache": os.environ.get("POSO_SIM_CACHE_DIR"), "omp": os.environ.get("OMP_NUM_THREADS"),
                  "openblas": os.environ.get("OPENBLAS_NUM_THREADS"), "stub": os.environ.get("POSO_SIM_EXAMPLES_STUB"),
                  "mine": os.environ.get("POSO_SIM_TEST_MARK"), "python": sys.executable, "cwd": os.getcwd()}))
'''


def test_notebook_kernel_gets_the_callers_environment(tmp_path, monkeypatch):
    """The kernel sees the cache location (a relative one made absolute), the thread limits and any other
    variable of the caller, and runs this interpreter."""
    pytest.importorskip("jupytext")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import json

    probe = tmp_path / "nb" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(ENV_PROBE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", "my-cache")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("POSO_SIM_TEST_MARK", "from-the-caller")
    nb = run_examples.run_notebook(probe, stub=True, timeout=120)
    (out,) = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("name") == "stdout"]
    seen = json.loads(out["text"])
    assert seen["cache"] == str(tmp_path / "my-cache")
    assert seen["omp"] == "1" and seen["openblas"] == "1" and seen["mine"] == "from-the-caller"
    assert seen["stub"] == "1"
    assert os.path.realpath(seen["python"]) == os.path.realpath(sys.executable)
    assert seen["cwd"] == str(probe.parent)
    assert os.environ["POSO_SIM_CACHE_DIR"] == "my-cache"  # the caller's own environment is untouched


def test_script_examples_get_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = run_examples._env(False, base={"POSO_SIM_CACHE_DIR": "c", "PYTHONPATH": f"src{os.pathsep}/abs",
                                         "OMP_NUM_THREADS": "2", "POSO_SIM_EXAMPLES_STUB": "1"})
    assert env == {"POSO_SIM_CACHE_DIR": str(tmp_path / "c"), "PYTHONPATH": f"{tmp_path / 'src'}{os.pathsep}/abs",
                   "OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg"}
