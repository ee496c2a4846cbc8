"""`poso-sim verify` and `kkt.verify` on the case a solution file names, and on hostile solution files.

* A plan is checked against the case and instance its file names (`--case` overrides); a plan for another problem
  is its own exit status (3), not REJECTED (1).
* Every malformed file (a header field of the wrong type, deep nesting, truncation, flipped bytes, huge sizes) is
  one line on stderr and exit 2, never a traceback and never exit 1; a file larger than its problem can justify
  is refused before it is read, in bounded memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poso_sim.errors import ProblemMismatchError, SolutionFileError
from poso_sim.kkt import verify
from poso_sim.kkt.cli import EXIT_MISMATCH, main
from poso_sim.nlp.problems import ProblemDefinition, load_problem, register_problem
from poso_sim.nlp.solution import MAGIC, Solution, save_solution

ROOT = Path(__file__).resolve().parents[1]
TINY = "tests-verify-tiny"


def _tiny_build(data, variant):
    import pyomo.environ as pyo  # inside the builder, as the how-to recommends

    m = pyo.ConcreteModel()
    m.I = pyo.RangeSet(0, 2)
    m.x = pyo.Var(m.I, bounds=(0.0, 10.0), initialize=1.0)
    m.total = pyo.Constraint(expr=sum(m.x[i] for i in m.I) == 3.0)
    m.pair = pyo.Constraint(expr=m.x[0] - m.x[1] <= 5.0)
    m.obj = pyo.Objective(expr=sum((m.x[i] - i) ** 2 for i in m.I))
    return m


register_problem(TINY, ProblemDefinition(build=_tiny_build, variants=("true",)), replace=True)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> tuple[Path, bytes]:
    """A valid plan of the tiny problem (its optimum x = (0, 1, 2), all multipliers zero) and its bytes."""
    nlp = load_problem(TINY).nlp
    sol = Solution(x=[0.0, 1.0, 2.0], y=np.zeros(nlp.m), z_L=np.zeros(3), z_U=np.zeros(3), x_names=nlp.x_names,
                   row_names=nlp.row_names, variant="true", case=TINY, fingerprint=nlp.fingerprint, cost=0.0,
                   objective=0.0, status="optimal")
    path = save_solution(sol, tmp_path_factory.mktemp("tiny") / "tiny.sol")
    return path, path.read_bytes()


def _run(path: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(path), "--json", *extra])
    return rc, out.getvalue(), err.getvalue()


def test_the_valid_tiny_plan_is_accepted_without_case(tiny_file) -> None:
    rc, out, err = _run(tiny_file[0])
    assert rc == 0, err
    assert json.loads(out)["accepted"] is True and json.loads(out)["case"] == TINY


# ---- the case comes from the file ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ieee_plan(tmp_path_factory):
    from poso_sim.solvers.api import solve_case

    sol = solve_case("ieee33", "true")  # 2.5 s cold, from the solution cache afterwards
    path = save_solution(sol, tmp_path_factory.mktemp("ieee") / "ieee.sol")
    return sol, path


@pytest.mark.solver
def test_an_ieee33_plan_is_verified_against_its_own_case(ieee_plan, tiny_file) -> None:
    sol, path = ieee_plan
    assert sol.case == "ieee33"
    rc, out, err = _run(path)  # no --case: the file names ieee33
    assert rc == 0, err
    d = json.loads(out)
    assert d["accepted"] is True and d["case"] == "ieee33" and d["cost"] == pytest.approx(4471.4111, abs=1e-3)
    assert verify(sol).accepted and verify(None, sol).accepted and verify("ieee33", sol).accepted
    # named against another problem: a named error and its own exit status, not REJECTED
    rc, out, err = _run(path, "--case", TINY)
    assert rc == EXIT_MISMATCH == 3 and out == ""
    assert err.count("\n") == 1 and "another problem" in err and "ieee.sol" in err
    with pytest.raises(ProblemMismatchError, match="another problem"):
        verify(TINY, sol)
    # the other way round: the tiny plan named against the feeder
    rc, _, err = _run(tiny_file[0], "--case", "ieee33")
    assert rc == 3 and "another problem" in err


def test_a_file_naming_no_case_or_an_untrusted_factory_needs_case(tiny_file, tmp_path) -> None:
    nlp = load_problem(TINY).nlp
    sol = Solution(x=[0.0, 1.0, 2.0], y=np.zeros(nlp.m), z_L=np.zeros(3), z_U=np.zeros(3), fingerprint=nlp.fingerprint)
    for case in ("", "os:abort", "shutil:rmtree"):  # a file must not make the verifier run arbitrary code
        path = save_solution(sol.replace(case=case), tmp_path / "x.sol")
        rc, out, err = _run(path)
        assert rc == 2 and out == "" and err.count("\n") == 1 and "--case" in err, err
        with pytest.raises(SolutionFileError):
            verify(sol.replace(case=case))
        assert _run(path, "--case", TINY)[0] == 0  # the caller names it: checked


# ---- hostile files ----------------------------------------------------------------------------------------------------
def _split(data: bytes) -> tuple[dict, bytes]:
    hlen = struct.unpack_from("<Q", data, 20)[0]
    return json.loads(data[28 : 28 + hlen]), data[28 + hlen : -32]


def _assemble(header: bytes, payload: bytes, hlen: int | None = None) -> bytes:
    """A file with valid checksums around any header bytes (so that reading gets as far as the header)."""
    body = struct.pack("<16sIQ", MAGIC, 1, len(header) if hlen is None else hlen) + header + payload
    return body + hashlib.sha256(body).digest()


def _kind(v) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(v), "null")


_STR, _NUM, _INT = {"str"}, {"int", "float"}, {"int"}
#: every header field and the JSON types it may have (the test's own table of the format, docs/nlp.md)
FIELDS: dict[tuple, set[str]] = {
    ("magic",): _STR, ("format_version",): _INT, ("digest",): _STR, ("arrays",): {"list"},
    ("payload_bytes",): _INT, ("payload_sha256",): _STR, ("meta",): {"dict"}, ("x_names",): {"list"},
    ("row_names",): {"list"}, ("x_names", 0): _STR, ("row_names", 1): _STR, ("arrays", 0): {"dict"},
    **{("arrays", i, k): (_STR if k in ("name", "dtype") else _INT)
       for i in (0, 3) for k in ("name", "dtype", "offset", "length")},
    **{("meta", k): _STR for k in ("variant", "case", "status", "fingerprint", "solver", "message")},
    **{("meta", k): _NUM for k in ("cost", "objective", "solve_seconds", "constraint_violation")},
    ("meta", "iterations"): _INT, ("meta", "stages"): {"list"}, ("meta", "cost_breakdown"): {"dict"},
}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def wrong_type(draw) -> tuple[tuple, object]:
    path = draw(st.sampled_from(sorted(FIELDS, key=repr)))
    value = draw(JSON.filter(lambda v: _kind(v) not in FIELDS[path]))
    return path, value


def _with(header: dict, path: tuple, value) -> dict:
    h = json.loads(json.dumps(header))
    node = h
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return h


def _nested(header: dict, depth: int, closed: bool, where: str) -> bytes:
    deep = "[" * depth + ("]" * depth if closed else "")
    if where == "whole":
        return deep.encode()
    h = _with(header, ("meta", where), "@@")
    return json.dumps(h, allow_nan=True).replace('"@@"', deep).encode()


@st.composite
def malformed(draw, data: bytes) -> bytes:
    header, payload = _split(data)
    kind = draw(st.sampled_from(["type", "nesting", "truncated", "flipped", "sizes", "padded"]))
    if kind == "type":
        path, value = draw(wrong_type())
        return _assemble(json.dumps(_with(header, path, value), allow_nan=True).encode(), payload)
    if kind == "nesting":
        depth = draw(st.sampled_from([2_000, 50_000, 200_000]))
        where = draw(st.sampled_from(["whole", "stages", "variant", "cost_breakdown"]))
        return _assemble(_nested(header, depth, draw(st.booleans()), where), payload)
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flipped":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if kind == "sizes":
        field = draw(st.sampled_from(["hlen", "payload_bytes", "length", "offset"]))
        big = draw(st.sampled_from([2**31, 2**62, 2**64 - 1, -1, -(2**40)]))
        hb = json.dumps(header).encode()
        if field == "hlen":
            return _assemble(hb, payload, hlen=big % 2**64)
        path = {"payload_bytes": ("payload_bytes",), "length": ("arrays", 0, "length"),
                "offset": ("arrays", 1, "offset")}[field]
        return _assemble(json.dumps(_with(header, path, big)).encode(), payload)
    return data + bytes(draw(st.integers(1, 4096)))  # padded: the trailer no longer matches


def _one_clean_line(rc: int, out: str, err: str) -> None:
    assert rc == 2, (rc, out, err)
    assert out == "" and err.count("\n") == 1 and err.startswith("poso-sim verify: ") and "Traceback" not in err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_malformed_file_is_one_line_and_exit_2(tiny_file, data) -> None:
    bad = data.draw(malformed(tiny_file[1]))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bad.sol"
        path.write_bytes(bad)
        _one_clean_line(*_run(path))


@pytest.mark.parametrize("path", sorted(FIELDS, key=repr), ids=lambda p: ".".join(map(str, p)))
def test_each_header_field_of_the_wrong_type_is_named(tiny_file, tmp_path, path) -> None:
    header, payload = _split(tiny_file[1])
    value = [1] if FIELDS[path] != {"list"} else 7
    f = tmp_path / "bad.sol"
    f.write_bytes(_assemble(json.dumps(_with(header, path, value)).encode(), payload))
    rc, out, err = _run(f)
    _one_clean_line(rc, out, err)
    if path[0] != "magic":
        assert [k for k in path if isinstance(k, str)][-1] in err, err  # the field (or the list it is in)


def test_a_huge_file_is_refused_unread_in_bounded_memory(tiny_file, tmp_path) -> None:
    """A 2 GB file (sparse: no disk) whose header names the tiny problem: refused on its size before its bulk is
    read or hashed."""
    f = tmp_path / "huge.sol"
    f.write_bytes(tiny_file[1])
    with f.open("r+b") as fh:
        fh.truncate(2 << 30)
    tracemalloc.start()
    t0 = time.process_time()
    try:
        rc, out, err = _run(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_clean_line(rc, out, err)
    assert "refused unread" in err
    assert time.process_time() - t0 < 2.0 and peak < 32 << 20


@pytest.mark.parametrize("where", ["names", "arrays"])
def test_a_huge_header_is_read_no_further_than_its_metadata(tiny_file, tmp_path, where) -> None:
    """A 48 MB header: of names after the metadata (refused on the file's size, as the tiny problem cannot justify
    it), or of arrays before it (the metadata out of reach: a corrupt header). Either way at most about a MiB of
    it is read."""
    header, payload = _split(tiny_file[1])
    filler = ["n" * 40] * 1_000_000
    if where == "names":
        header = {**header, "x_names": filler}
    else:
        header = {**header, "arrays": header["arrays"] + [{"dtype": "<f8", "length": 0, "name": s, "offset": 0}
                                                          for s in filler[:600_000]]}
    f = tmp_path / "big-header.sol"
    f.write_bytes(_assemble(json.dumps(header, sort_keys=True).encode(), payload))
    assert f.stat().st_size > 40 << 20
    tracemalloc.start()
    try:
        rc, out, err = _run(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_clean_line(rc, out, err)
    assert ("refused unread" if where == "names" else "metadata must lie within the first") in err, err
    assert peak < 24 << 20, peak


def test_the_reported_files_through_the_command(tiny_file, tmp_path) -> None:
    """The three files of the report, through `python -m poso_sim verify F --json` in a fresh process."""
    header, payload = _split(tiny_file[1])
    files = {
        "variant-list": _assemble(json.dumps(_with(header, ("meta", "variant"), ["true"])).encode(), payload),
        "fingerprint-int": _assemble(json.dumps(_with(header, ("meta", "fingerprint"), 7)).encode(), payload),
        "deep": _assemble(b"[" * 200_000, payload),
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for name, content in files.items():
        f = tmp_path / f"{name}.sol"
        f.write_bytes(content)
        r = subprocess.run([sys.executable, "-m", "poso_sim", "verify", str(f), "--json"], capture_output=True,
                           text=True, env=env, timeout=120)
        _one_clean_line(r.returncode, r.stdout, r.stderr)
        assert f.name in r.stderr
