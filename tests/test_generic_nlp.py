"""The generic path on any well-posed NLP: generated small problems through the registry, both solver backends
and the certificate; and the models it must refuse (no objective, integer variables, an unsupported function)
with one line and exit status 2.

A generated problem (1-60 variables, 0-40 rows) is feasible by construction around a known point ``x0``: sparse,
independent linear equalities through ``x0``, linear inequalities that ``x0`` meets strictly, convex quadratic
balls around ``x0``, bounds on some variables (one-sided, two-sided or none) with ``x0`` strictly inside. So it is
well posed: convex, with a Slater point (bounded multipliers). The objective is a strictly convex quadratic, so
the optimum is unique: both backends must find it (or raise ``SolveError``, which a problem built like this must
not need), the certificate must accept it, and must reject a feasible point on the segment towards ``x0`` that
costs more.
"""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poso_sim.kkt import verify
from poso_sim.nlp.problems import ProblemDefinition, load_problem, register_problem

pytestmark = pytest.mark.solver

_NAMES = itertools.count()


def _spec(seed: int, n: int, m: int, bounds: str) -> dict:
    """A JSON-able description of one problem (see the module's documentation)."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-2, 2, n)
    density = rng.uniform(0.1, 1.0)
    n_eq = min(int(rng.integers(0, m + 1)), max(n - 1, 0))
    rows: list[dict] = []
    eq = np.zeros((0, n))
    for _ in range(n_eq):  # sparse rows, kept only while they stay independent (LICQ of the equalities)
        a = np.where(rng.random(n) < density, rng.normal(size=n), 0.0)
        a[rng.integers(n)] = rng.normal() or 1.0
        if np.linalg.matrix_rank(np.vstack([eq, a])) > eq.shape[0]:
            eq = np.vstack([eq, a])
            rows.append({"kind": "eq", "a": a.tolist(), "rhs": float(a @ x0)})
    while len(rows) < m:
        if rng.random() < 0.7:  # a linear inequality x0 meets strictly (x0 is a Slater point)
            a = np.where(rng.random(n) < density, rng.normal(size=n), 0.0)
            a[rng.integers(n)] = rng.normal() or 1.0
            slack = float(rng.uniform(0.05, 2))
            rows.append({"kind": "le", "a": a.tolist(), "rhs": float(a @ x0) + slack})
        else:  # a convex ball around x0 over some variables
            idx = sorted(set(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False).tolist()))
            rows.append({"kind": "ball", "idx": idx, "r": float(rng.uniform(0.5, 4.0))})
    lb = [None] * n
    ub = [None] * n
    for i in range(n):
        if bounds == "none":
            continue
        k = rng.integers(4)
        if k in (1, 3):
            lb[i] = float(x0[i] - rng.uniform(0.05, 2))
        if k in (2, 3):
            ub[i] = float(x0[i] + rng.uniform(0.05, 2))
    # the unconstrained minimiser lies away from x0, so x0 is (almost surely) not optimal
    return {"n": n, "x0": x0.tolist(), "rows": rows, "lb": lb, "ub": ub,
            "w": rng.uniform(0.5, 3.0, n).tolist(), "c": (x0 + rng.normal(0, 2, n)).tolist()}


def _model(spec: dict):
    import pyomo.environ as pyo

    n = spec["n"]
    m = pyo.ConcreteModel()
    m.I = pyo.RangeSet(0, n - 1)
    m.x = pyo.Var(m.I, bounds=lambda _, i: (spec["lb"][i], spec["ub"][i]), initialize=lambda _, i: spec["x0"][i])
    m.R = pyo.RangeSet(0, len(spec["rows"]) - 1) if spec["rows"] else pyo.Set(initialize=[])

    def row(mm, r):
        d = spec["rows"][r]
        if d["kind"] == "ball":
            return sum((mm.x[i] - spec["x0"][i]) ** 2 for i in d["idx"]) <= d["r"]
        body = sum(a * mm.x[i] for i, a in enumerate(d["a"]) if a != 0.0)
        return body == d["rhs"] if d["kind"] == "eq" else body <= d["rhs"]

    m.rows = pyo.Constraint(m.R, rule=row)
    m.obj = pyo.Objective(expr=sum(spec["w"][i] * (m.x[i] - spec["c"][i]) ** 2 for i in m.I))
    return m


def _register(spec: dict) -> str:
    name = f"tests-generated-{next(_NAMES)}"

    def build(data, variant):
        return _model(spec)

    register_problem(name, ProblemDefinition(build=build, variants=("true",)), replace=True)
    return name


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POSO_SIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "generic-nlp-cache"))


def _check(spec: dict) -> None:
    from poso_sim.nlp import problems

    name = _register(spec)
    try:
        _solve_and_certify(name, spec)
    finally:  # hundreds of generated problems: none stays registered (or memoised) after its example
        with problems._LOCK:
            problems._REGISTRY.pop(name, None)
            for key in [k for k in problems._PROBLEMS if k[0] == name]:
                del problems._PROBLEMS[key]


def _solve_and_certify(name: str, spec: dict) -> None:
    from poso_sim.solvers.api import solve_case
    from poso_sim.solvers.pipeline import SolveError

    nlp = load_problem(name).nlp
    assert (nlp.n, nlp.m) == (spec["n"], len(spec["rows"]))
    plans = {}
    for backend in ("casadi", "cyipopt"):
        try:
            plans[backend] = solve_case(name, "true", cache=False, backend=backend)
        except SolveError as exc:  # the named error is the one allowed failure; a problem built so should not need it
            pytest.fail(f"{backend}: {exc}")
    a, b = plans["casadi"], plans["cyipopt"]
    scale = 1.0 + np.abs(a.x).max()
    assert np.abs(a.x - b.x).max() < 1e-4 * scale  # a unique optimum: both backends find it
    for sol in plans.values():
        cert = verify(nlp, sol)
        assert cert.accepted, cert.reasons
    # a feasible point that costs more: halfway towards the feasible x0 (the feasible set is convex)
    x0 = np.asarray(spec["x0"])
    f_star = nlp.objective_value(a.x)
    for t in (0.5, 1.0):
        xt = a.x + t * (x0 - a.x)
        if nlp.objective_value(xt) > f_star + 1e-3 * (1.0 + abs(f_star)):
            cert = verify(nlp, a.replace(x=xt))
            assert not cert.accepted and cert.primal_residual < 1e-6, (cert.reasons, cert.primal_residual)
            break


SIZES = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(0, 40),
                  st.sampled_from(["none", "some"]))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(SIZES)
def test_generated_nlps_solve_and_certify(sizes) -> None:
    _check(_spec(*sizes))


@pytest.mark.slow
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(SIZES)
def test_generated_nlps_solve_and_certify_many(sizes) -> None:
    _check(_spec(*sizes))


@pytest.mark.parametrize("n, m", [(1, 0), (1, 1), (3, 1), (2, 2), (60, 40)])
def test_the_edge_sizes(n, m) -> None:
    """One variable, no row, one row (it crashed CasADi's backend), the largest generated size."""
    _check(_spec(7, n, m, "some"))


# ---- models the generic path refuses ------------------------------------------------------------------------------
def _bad(kind: str):
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1], bounds=(0, 10), initialize=1)
    m.c = pyo.Constraint(expr=m.x[0] + m.x[1] == 3)
    if kind == "integer":
        m.k = pyo.Var(domain=pyo.Integers, bounds=(0, 3), initialize=1)
        m.obj = pyo.Objective(expr=m.x[0] ** 2 + m.k)
    elif kind == "unsupported":
        m.obj = pyo.Objective(expr=pyo.floor(m.x[0]) + m.x[1] ** 2)
    return m  # "no-objective": none


@pytest.mark.parametrize("kind, words", [("no-objective", "no active Objective"), ("integer", "integer"),
                                         ("unsupported", "floor")])
def test_a_model_the_path_cannot_take_is_one_line_and_exit_2(kind, words) -> None:
    from poso_sim.cli import main

    name = f"tests-bad-{kind}"
    register_problem(name, ProblemDefinition(build=lambda data, variant: _bad(kind), variants=("true",)),
                     replace=True)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["solve", "--case", name, "--no-cache"])
    assert rc == 2 and out.getvalue() == "", (rc, out.getvalue())
    assert err.getvalue().count("\n") == 1 and words in err.getvalue() and name in err.getvalue()
