"""poso_sim.common: the one JSON-safe conversion, canonical JSON encoder and atomic writer."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poso_sim.common import OK_STATUSES, atomic_write, canonical_json, default_cache_dir, jsonable

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_jsonable_turns_numpy_tuples_keys_and_bytes_into_json_values():
    v = {1: (np.float64(0.5), np.int32(3), np.bool_(True)), "a": np.arange(3), "b": b"\x01\xff", "c": None}
    assert jsonable(v) == {"1": [0.5, 3, True], "a": [0, 1, 2], "b": "01ff", "c": None}
    assert type(jsonable(np.int64(2))) is int and type(jsonable(np.float32(1.5))) is float


def test_canonical_json_is_sorted_compact_ascii_and_keeps_non_finite_floats():
    text = canonical_json({"b": [1, 2.5], "a": "é", "n": math.nan, "i": -math.inf})
    assert text == '{"a":"\\u00e9","b":[1,2.5],"i":-Infinity,"n":NaN}'
    assert canonical_json({"x": np.float64(0.1)}) == canonical_json({"x": 0.1})


def test_the_encoders_that_use_it_kept_their_bytes():
    # the protocol's signed bytes and the solution cache's keys are this encoder: same text as json.dumps with
    # the options they used before
    from poso_sim.protocol.messages import canonical
    from poso_sim.solvers.cache import key_json as cache_json

    obj = {"z": [1, (2, 3)], "a": {"k": b"\x00\x10"}, "f": 1e-300}
    before = json.dumps({"z": [1, [2, 3]], "a": {"k": "0010"}, "f": 1e-300}, sort_keys=True, separators=(",", ":"),
                        ensure_ascii=True, allow_nan=True)
    assert canonical(obj) == before.encode()
    assert cache_json({"b": 1, "a": [np.int64(2)]}) == '{"a":[2],"b":1}'


def test_atomic_write_replaces_whole_files_and_cleans_up(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write(p, b"one")
    atomic_write(p, b"two", fsync=True)
    assert p.read_bytes() == b"two"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]
    with pytest.raises(OSError):
        atomic_write(tmp_path / "no-such-dir" / "f.bin", b"x")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(OSError):
            atomic_write(ro / "f.bin", b"x")
        assert list(ro.iterdir()) == []


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    from poso_sim.solvers.cache import SolutionCache

    assert SolutionCache().path == tmp_path / "c"


def test_ok_statuses_match_solution_ok():
    from poso_sim.nlp.solution import Solution

    z = np.zeros(1)
    for status, ok in (("optimal", True), ("acceptable", True), ("max_iter", False), ("infeasible", False)):
        assert Solution(x=z, y=z, z_L=z, z_U=z, status=status).ok is ok is (status in OK_STATUSES)


def test_a_plan_renders_as_html_without_the_report_layer():
    code = (
        "import sys, numpy as np\n"
        "from poso_sim.nlp.solution import Solution\n"
        "z = np.zeros(2)\n"
        "h = Solution(x=z, y=z, z_L=z, z_U=z, status='optimal', cost=743.99, case='manchester', variant='true',"
        " stages=[{'name': 'free', 'iterations': 3, 'seconds': 0.5, 'objective': 1.0, 'status': 'optimal'}])._repr_html_()\n"
        "print('743.99' in h, 'free' in h, 'optimal' in h, any(m.startswith('poso_sim.report') for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.stdout.split() == ["True", "True", "True", "False"]


def test_lazy_exports_loads_a_submodule_on_first_access_and_keeps_the_value():
    import types

    from poso_sim.common import lazy_exports

    namespace: dict = {}
    getattr_ = lazy_exports("poso_sim", {"jsonable": "common"}, namespace)
    from poso_sim.common import jsonable

    assert getattr_("jsonable") is jsonable and namespace["jsonable"] is jsonable
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        getattr_("nothing")
    # the packages that load heavy submodules lazily all use it: no module of their own defines __getattr__
    import poso_sim.cases
    import poso_sim.nlp

    for module in (poso_sim.nlp, poso_sim.cases):
        assert isinstance(module, types.ModuleType) and module.__getattr__.__qualname__.startswith("lazy_exports")


def test_module_level_names_have_one_meaning():
    """A module-level function or table name defined in two modules of src/poso_sim means two things: the names
    the issues found so (canonical_json, _STRUCTURES) are each defined once, and no module spells out its own
    module __getattr__ (lazy_exports is the one)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "poso_sim"
    where: dict[str, list[str]] = {}
    module_getattr = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                module_getattr.append(str(path.relative_to(root)))
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [
                t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
            for name in names:
                where.setdefault(name, []).append(str(path.relative_to(root)))
    assert where["canonical_json"] == ["common.py"]
    assert len(where["_STRUCTURES"]) == 1
    assert not module_getattr, module_getattr
    assert len(where["__getattr__"]) >= 4  # the packages' `__getattr__ = lazy_exports(...)`


def test_verify_decision_drop_reasons_and_ok_statuses_have_one_meaning():
    """`verify` is the certificate's check only (a signature or a chain is checked, not verified), `Decision` is
    only the protocol's message, the certificate says decide (never repair), the drop reasons are spelled only in
    the delegate's constants, and the solver's ok statuses only in common.OK_STATUSES (docs/architecture.md)."""
    import ast
    from pathlib import Path

    from poso_sim.protocol import delegate

    root = Path(__file__).resolve().parents[1] / "src" / "poso_sim"
    reasons = {getattr(delegate, k) for k in (
        "MALFORMED", "NOT_MEMBER", "SENDER_MISMATCH", "WRONG_CASE", "BAD_SIGNATURE", "BAD_PATH", "LOOP", "STALE",
        "HEIGHT_CLOSED", "NOT_LEADER", "DUPLICATE", "BUFFER_FULL", "DIGEST_MISMATCH", "FALSE_ACCUSATION",
        "UNSIGNED_PROOF", "UNEXPECTED")}
    assert {"stale", "bad signature", "height closed", "malformed"} <= reasons
    verify_defs, decision_classes, reason_literals, ok_pairs = [], [], [], []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("verify"):
                verify_defs.append((rel, node.name))
            elif isinstance(node, ast.ClassDef) and node.name == "Decision":
                decision_classes.append(rel)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in reasons and rel in (
                    "protocol/normal.py", "protocol/market.py", "report/text.py"):
                reason_literals.append((rel, node.value, node.lineno))
            elif isinstance(node, (ast.Tuple, ast.Set, ast.List)) and rel != "common.py" and sorted(
                    str(getattr(e, "value", "")) for e in node.elts) == ["acceptable", "optimal"]:
                ok_pairs.append((rel, node.lineno))
    # the doors: kkt.verify, KKTChecker.verify, a payload source's verify (and the time a check took)
    assert {name for _, name in verify_defs} == {"verify", "verify_seconds"}, verify_defs
    doors = {rel for rel, name in verify_defs if name == "verify"}
    assert doors == {"kkt/check.py", "scenarios/payloads.py", "scenarios/instances.py"}, doors
    assert decision_classes == ["protocol/messages.py"]
    assert not reason_literals, reason_literals
    assert not ok_pairs, ok_pairs
    for path in sorted((root / "kkt").rglob("*.py")):
        assert "repair" not in path.read_text(encoding="utf-8"), path
