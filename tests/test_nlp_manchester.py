"""Compile the Manchester model through the bridge (sizes, Jacobian spot-check, compile time)."""

from __future__ import annotations

import time

import numpy as np
import pytest

cases = pytest.importorskip("poso_sim.cases")

from poso_sim.nlp import compile_nlp  # noqa: E402


@pytest.fixture(scope="module")
def manchester():
    if not hasattr(cases, "build_model"):
        pytest.skip("poso_sim.cases.build_model not available")
    t0 = time.perf_counter()
    model = cases.build_model(cases.load_case("manchester"), variant="true")
    t1 = time.perf_counter()
    nlp = compile_nlp(model)
    t2 = time.perf_counter()
    return model, nlp, t1 - t0, t2 - t1


def test_sizes(manchester) -> None:
    _, nlp, build_s, compile_s = manchester
    print(f"\nManchester: build {build_s:.2f} s, compile {compile_s:.2f} s, {nlp.compile_seconds}")
    assert (nlp.n, nlp.m, nlp.nnz_jac) == (12312, 12088, 38440)
    assert "true_cost" in nlp.expression_names
    assert compile_s < 10.0  # generous bound for slow CI machines; typically ~1.5 s


def test_jacobian_sample_matches_central_differences(manchester) -> None:
    _, nlp, _, _ = manchester
    x = nlp.x0.copy()
    rows, cols = nlp.jac_structure
    vals = nlp.jac(x)
    rng = np.random.default_rng(12345)
    pick = rng.choice(rows.size, size=50, replace=False)
    for k in pick:
        i, j = int(rows[k]), int(cols[k])
        h = 1e-6 * max(1.0, abs(x[j]))
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        fd = (nlp.g(xp)[i] - nlp.g(xm)[i]) / (2 * h)
        assert fd == pytest.approx(vals[k], rel=1e-5, abs=1e-6), (nlp.row_names[i], nlp.x_names[j])


def test_true_cost_matches_pyomo(manchester) -> None:
    import pyomo.environ as pe

    model, nlp, _, _ = manchester
    x = nlp.x0 + 0.01
    nlp.load_into_model(x)
    try:
        assert nlp.true_cost(x) == pytest.approx(pe.value(model.true_cost), rel=1e-10, abs=1e-8)
        assert nlp.f(x) == pytest.approx(pe.value(model.obj), rel=1e-10, abs=1e-8)
    finally:
        nlp.load_into_model(nlp.x0)
