"""Solution digest and the solution file format."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from poso_sim.errors import SolutionFileError
from poso_sim.solvers import FORMAT_VERSION, Solution, load_solution, save_solution
from poso_sim.nlp.solution import MAGIC, encode_solution


def make_solution(n: int = 5, m: int = 3, seed: int = 0, **kw) -> Solution:
    rng = np.random.default_rng(seed)
    base = dict(
        x=rng.normal(size=n),
        y=rng.normal(size=m),
        z_L=rng.random(n),
        z_U=rng.random(n),
        x_names=[f"P[{i},0]" for i in range(n)],
        row_names=[f"bal[{j}]" for j in range(m)],
        variant="true",
        case="manchester",
        cost=1234.5,
        objective=1234.5,
        status="optimal",
        iterations=17,
        solve_seconds=0.25,
        stages=[{"name": "ipopt", "iterations": 17, "seconds": 0.25, "objective": 1234.5}],
        fingerprint="ab" * 32,
        constraint_violation=1e-9,
        solver="ipopt 3.14 tol=1e-08",
        cost_breakdown={"grid": 1000.0, "chp": 234.5},
    )
    base.update(kw)
    return Solution(**base)


def test_digest_stable_and_metadata_independent() -> None:
    a, b = make_solution(), make_solution()
    assert a.digest == b.digest and len(a.digest) == 64
    c = make_solution(solve_seconds=99.0, iterations=3, status="acceptable", solver="x", cost=1.0, case="other")
    assert c.digest == a.digest


@pytest.mark.parametrize("field", ["x", "y", "z_L", "z_U"])
def test_digest_sensitive_to_each_array(field: str) -> None:
    a = make_solution()
    arr = getattr(a, field).copy()
    arr[1] = np.nextafter(arr[1], np.inf)
    assert a.replace(**{field: arr}).digest != a.digest


def test_digest_sensitive_to_fingerprint_and_variant() -> None:
    a = make_solution()
    assert a.replace(fingerprint="cd" * 32).digest != a.digest
    assert a.replace(variant="tampered").digest != a.digest


def test_arrays_are_float64_readonly() -> None:
    a = make_solution(x=[1, 2, 3, 4, 5])
    assert a.x.dtype == np.float64
    with pytest.raises(ValueError):
        a.x[0] = 7.0


def test_with_multipliers() -> None:
    a = make_solution()
    b = a.with_multipliers(y=np.zeros(3))
    assert np.all(b.y == 0) and np.array_equal(b.z_L, a.z_L) and b.digest != a.digest


def test_shape_validation() -> None:
    with pytest.raises(ValueError):
        make_solution(z_L=np.zeros(2))


def test_round_trip(tmp_path: Path) -> None:
    a = make_solution(n=50, m=40)
    p = save_solution(a, tmp_path / "a.sol")
    b = load_solution(p)
    assert b.digest == a.digest
    for f in ("x", "y", "z_L", "z_U"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    for f in ("variant", "case", "cost", "objective", "status", "iterations", "solve_seconds", "stages",
              "fingerprint", "constraint_violation", "solver", "cost_breakdown"):
        assert getattr(a, f) == getattr(b, f), f
    assert list(b.x_names) == list(a.x_names) and list(b.row_names) == list(a.row_names)
    assert not list(tmp_path.glob(".*.tmp")), "temp file left behind"


def test_round_trip_nan_metadata(tmp_path: Path) -> None:
    a = make_solution(cost=float("nan"), x_names=(), row_names=())
    b = load_solution(save_solution(a, tmp_path / "n.sol"))
    assert np.isnan(b.cost) and b.digest == a.digest


def _expect(path: Path, reason: str) -> None:
    with pytest.raises(SolutionFileError) as ei:
        load_solution(path)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    assert reason in msg, msg


def test_truncated(tmp_path: Path) -> None:
    data = encode_solution(make_solution())
    for cut in (len(data) - 1, len(data) // 2, 30, 20, 5):
        p = tmp_path / f"t{cut}.sol"
        p.write_bytes(data[:cut])
        _expect(p, "truncated")


def test_corrupt_bytes(tmp_path: Path) -> None:
    data = bytearray(encode_solution(make_solution()))
    for pos in (40, len(data) // 2, len(data) - 40, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        p = tmp_path / f"c{pos}.sol"
        p.write_bytes(bytes(bad))
        _expect(p, "checksum")


def test_foreign_files(tmp_path: Path) -> None:
    png = tmp_path / "img.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    _expect(png, "not a poso-sim solution file")
    js = tmp_path / "other.json"
    js.write_text(json.dumps({"magic": "something-else", "x": [1, 2]}))
    _expect(js, "not a poso-sim solution file")
    empty = tmp_path / "empty.sol"
    empty.write_bytes(b"")
    _expect(empty, "not a poso-sim solution file")


def test_future_version(tmp_path: Path) -> None:
    data = bytearray(encode_solution(make_solution()))
    struct.pack_into("<I", data, len(MAGIC), FORMAT_VERSION + 1)
    p = tmp_path / "future.sol"
    p.write_bytes(bytes(data))
    _expect(p, "newer than supported")


def test_digest_mismatch_with_valid_checksums(tmp_path: Path) -> None:
    """A well-formed file whose recorded digest does not match its arrays (e.g. a forged header)."""
    import hashlib

    data = encode_solution(make_solution())
    hlen = struct.unpack_from("<Q", data, 20)[0]
    header = json.loads(data[28 : 28 + hlen])
    header["digest"] = "0" * 64
    hb = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    body = data[:16] + struct.pack("<IQ", FORMAT_VERSION, len(hb)) + hb + data[28 + hlen : -32]
    p = tmp_path / "forged.sol"
    p.write_bytes(body + hashlib.sha256(body).digest())
    _expect(p, "digest mismatch")


def test_missing_file_and_unwritable_path(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.sol", "cannot read")
    target = tmp_path / "no" / "such" / "dir" / "a.sol"
    with pytest.raises(SolutionFileError, match=str(target.parent.parent).replace("\\", "\\\\")):
        save_solution(make_solution(), target)


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "keep.sol"
    a = make_solution()
    save_solution(a, p)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(SolutionFileError, match="No space left"):
        save_solution(make_solution(seed=9), p)
    monkeypatch.undo()
    assert load_solution(p).digest == a.digest
    assert not list(tmp_path.glob(".*.tmp"))
