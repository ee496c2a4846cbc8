"""The on-disk solution cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poso_sim.solvers import CacheWarning, SolutionCache, cache_key, default_cache_dir
from test_solution import make_solution


def test_cache_key_is_canonical_and_sensitive() -> None:
    k = cache_key("f" * 64, "true", "ipopt", {"tol": 1e-8, "mu_strategy": "monotone"}, "pipe-1")
    assert len(k) == 64
    assert k == cache_key("f" * 64, "true", "ipopt", {"mu_strategy": "monotone", "tol": 1e-8}, "pipe-1")
    variants = [
        cache_key("e" * 64, "true", "ipopt", {"tol": 1e-8, "mu_strategy": "monotone"}, "pipe-1"),
        cache_key("f" * 64, "tampered", "ipopt", {"tol": 1e-8, "mu_strategy": "monotone"}, "pipe-1"),
        cache_key("f" * 64, "true", "other", {"tol": 1e-8, "mu_strategy": "monotone"}, "pipe-1"),
        cache_key("f" * 64, "true", "ipopt", {"tol": 1e-9, "mu_strategy": "monotone"}, "pipe-1"),
        cache_key("f" * 64, "true", "ipopt", {"tol": 1e-8, "mu_strategy": "monotone"}, "pipe-2"),
        cache_key("f" * 64, "true", "ipopt", {"tol": 1e-8, "x_scaling": np.ones(3)}, "pipe-1"),
    ]
    assert len({k, *variants}) == len(variants) + 1


def test_location_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert SolutionCache().path == tmp_path / "c"
    monkeypatch.delenv("POSO_SIM_CACHE_DIR")
    assert "poso-sim" in str(default_cache_dir())


def test_miss_put_hit(tmp_path: Path) -> None:
    cache = SolutionCache(tmp_path / "cache")
    key = cache_key("a" * 64, "true", "ipopt", {}, "1")
    assert cache.get(key) is None and key not in cache
    sol = make_solution()
    path = cache.put(key, sol)
    assert path.name == f"{key}.sol" and key in cache
    hit = cache.get(key)
    assert hit is not None and hit.digest == sol.digest
    assert cache.delete(key) and cache.get(key) is None


def test_corrupt_entry_moved_aside_and_missed(tmp_path: Path) -> None:
    cache = SolutionCache(tmp_path)
    key = cache_key("b" * 64, "true", "ipopt", {}, "1")
    path = cache.put(key, make_solution())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(CacheWarning, match="corrupt cache entry"):
        assert cache.get(key) is None
    assert not path.exists()
    assert len(list(tmp_path.glob(f"{key}.sol.corrupt-*"))) == 1
    # the slot is usable again
    cache.put(key, make_solution())
    assert cache.get(key) is not None


def test_bad_key_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SolutionCache(tmp_path).get("../etc/passwd")


def test_unwritable_cache_dir(tmp_path: Path) -> None:
    from poso_sim.errors import SolutionFileError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = SolutionCache(blocker / "sub")
    with pytest.raises(SolutionFileError, match="cannot create cache directory"):
        cache.put("ab" * 32, make_solution())
