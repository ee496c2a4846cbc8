"""Compile once per structure: mutable Params as the parameter vector of the compiled functions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyomo.environ as pe
import pytest

from poso_sim.nlp import CompiledNLP, NLPCompileError, compile_nlp, with_model

# fingerprints of the packaged Manchester case as compiled by main before the split (c6a0cc8)
MAIN_FINGERPRINTS = {
    "true": "fc4a91a1d29e9195a2e196addc1c7e8e890e953544b96866c7f6bee9634a5305",
    "tampered": "b6b9909923641d49a5565eef9546c2e86a4bd5700049668f36c5b8552536a52a",
    "feasible": "32f59ba4f1b81ea4339f5b447a9f63a318eb8df016d1e0bfd2f94bb362556d59",
}


def param_model(scale: float = 1.0) -> pe.ConcreteModel:
    """Params everywhere: constants, coefficients, inside exp(), an exponent, the objective, row and var bounds."""
    m = pe.ConcreteModel()
    m.I = pe.RangeSet(3)
    m.d = pe.Param(m.I, mutable=True, initialize=lambda _m, i: scale * (1.0 + 0.5 * i))
    m.c = pe.Param(m.I, mutable=True, initialize=lambda _m, i: 2.0 * scale + i)
    m.k = pe.Param(mutable=True, initialize=0.3 * scale)
    m.cap = pe.Param(mutable=True, initialize=4.0 * scale)
    m.w = pe.Param(initialize=0.25)  # immutable: a constant
    m.x = pe.Var(m.I, bounds=(0.1, m.cap), initialize=1.0)
    m.y = pe.Var(initialize=0.5)
    m.bal = pe.Constraint(m.I, rule=lambda _m, i: m.x[i] + m.y - m.d[i] * 2.0 == 0)
    m.nl = pe.Constraint(expr=pe.exp(m.k * m.x[1]) + m.x[2] ** m.k - m.c[3] / 2 * m.y <= 5)
    m.lim = pe.Constraint(expr=m.x[1] + m.x[2] <= m.cap * 1.5)
    m.cost = pe.Expression(expr=sum(m.c[i] * m.x[i] for i in m.I) + m.w * m.y**2)
    m.obj = pe.Objective(expr=m.cost + m.k * m.x[3] ** 2)
    return m


def points(nlp: CompiledNLP, k: int = 3, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [0.3 + rng.random(nlp.n) for _ in range(k)]


def assert_same_problem(a: CompiledNLP, b: CompiledNLP) -> None:
    """Same values, exact derivatives, bounds and fingerprint."""
    for x in points(a):
        lam = np.linspace(-1.0, 2.0, a.m)
        assert a.f(x) == pytest.approx(b.f(x), rel=1e-14)
        np.testing.assert_allclose(a.g(x), b.g(x), rtol=1e-14)
        np.testing.assert_allclose(a.grad(x), b.grad(x), rtol=1e-14)
        np.testing.assert_allclose(a.jac(x), b.jac(x), rtol=1e-14)
        np.testing.assert_allclose(a.hess(x, lam, 0.7), b.hess(x, lam, 0.7), rtol=1e-14)
        assert a.expr("cost", x) == pytest.approx(b.expr("cost", x), rel=1e-14)
    for k in ("x_lb", "x_ub", "g_lb", "g_ub"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert a.fingerprint == b.fingerprint


def test_params_are_parameters_not_constants() -> None:
    nlp = compile_nlp(param_model(), expressions=("cost",))
    assert nlp.n_p == 8 and nlp.p_names[:3] == ["d[1]", "d[2]", "d[3]"] and nlp.p_names[-1] == "cap"
    np.testing.assert_allclose(nlp.p, [1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 0.3, 4.0])
    assert nlp.x_ub[0] == 4.0 and nlp.g_ub[nlp.row_index("lim")] == 6.0
    # the same model compiled with Params as constants is the same instance
    assert_same_problem(nlp, compile_nlp(param_model(), expressions=("cost",), parameters=False))


@pytest.mark.parametrize("scale", [0.5, 1.7, 3.0])
def test_with_data_equals_a_fresh_compile(scale: float) -> None:
    base = compile_nlp(param_model(), expressions=("cost",))
    fresh = compile_nlp(param_model(scale), expressions=("cost",))
    inst = base.with_data(fresh.p)
    assert_same_problem(inst, fresh)
    assert inst.fingerprint != base.fingerprint
    assert inst.structure_fingerprint == base.structure_fingerprint == fresh.structure_fingerprint
    assert inst._f is base._f  # the compiled functions are shared, not recompiled
    assert base.x_ub[0] == 4.0 and inst.x_ub[0] == pytest.approx(4.0 * scale)  # bounds follow p; base untouched


def test_param_bound_with_domain_follows_data() -> None:
    m = pe.ConcreteModel()
    m.cap = pe.Param(mutable=True, initialize=3.0)
    m.x = pe.Var(domain=pe.NonNegativeReals, bounds=(-1.0, m.cap))  # Pyomo: lower = max(0, -1), upper = min(.., cap)
    m.obj = pe.Objective(expr=(m.x - 5.0) ** 2)
    nlp = compile_nlp(m, smooth=True)
    assert (nlp.x_lb[0], nlp.x_ub[0]) == (0.0, 3.0)
    assert nlp.with_data({"cap": 7.5}).x_ub[0] == 7.5 and nlp.x_ub[0] == 3.0


def test_derivatives_exact_after_update() -> None:
    nlp = compile_nlp(param_model(), expressions=("cost",)).with_data({"k": 0.9, "c[1]": -2.0})
    x, h = points(nlp, 1)[0], 1e-6
    J = nlp.jac_sparse(x).toarray()
    for j in range(nlp.n):
        e = np.zeros(nlp.n)
        e[j] = h
        np.testing.assert_allclose((nlp.g(x + e) - nlp.g(x - e)) / (2 * h), J[:, j], rtol=1e-6, atol=1e-7)
        assert (nlp.f(x + e) - nlp.f(x - e)) / (2 * h) == pytest.approx(nlp.grad(x)[j], rel=1e-6, abs=1e-7)


def test_cost_follows_the_named_expression() -> None:
    nlp = compile_nlp(param_model(), expressions=("cost",))
    x = points(nlp, 1)[0]
    assert nlp.cost(x) == nlp.objective_value(x)  # no cost named: the objective
    nlp.cost_expression = "cost"
    day = nlp.with_data({"c[1]": 10.0})
    assert day.cost(x) == day.expr("cost", x) != nlp.cost(x)


def test_set_parameters_mapping_and_errors() -> None:
    nlp = compile_nlp(param_model())
    fp = nlp.fingerprint
    other = nlp.with_data({"d[2]": 9.0})
    assert nlp.p[1] == 2.0 and other.p[1] == 9.0 and other.p[0] == 1.5
    assert nlp.fingerprint == fp != other.fingerprint
    assert nlp.set_parameters(other.p) is nlp and nlp.fingerprint == other.fingerprint
    with pytest.raises(NLPCompileError, match="'nope' is not a parameter"):
        nlp.with_data({"nope": 1.0})
    with pytest.raises(NLPCompileError, match="has 2 entries, the problem has 8"):
        nlp.with_data([1.0, 2.0])
    with pytest.raises(NLPCompileError, match=r"parameter k is nan"):
        nlp.with_data({"k": float("nan")})


def test_from_bytes_takes_the_data_of_the_model_it_links() -> None:
    original = compile_nlp(param_model(), expressions=("cost",))
    blob = original.to_bytes()
    alone = CompiledNLP.from_bytes(blob)  # no model: the saved instance, structure and data
    assert alone.fingerprint == original.fingerprint and alone.structure_fingerprint == original.structure_fingerprint
    np.testing.assert_array_equal(alone.p, original.p)
    other = param_model(2.5)
    loaded = with_model(CompiledNLP.from_bytes(blob), other)
    assert_same_problem(loaded, compile_nlp(other, expressions=("cost",)))
    x = points(loaded, 1)[0]
    loaded.load_into_model(x)
    assert pe.value(other.obj) == pytest.approx(loaded.f(x), rel=1e-13)
    bad = param_model()
    bad.extra = pe.Param(mutable=True, initialize=1.0)
    with pytest.raises(NLPCompileError, match="mutable Params differ.*model has 9, compiled 8"):
        with_model(CompiledNLP.from_bytes(blob), bad)


def test_with_model_after_update_in_place() -> None:
    m = param_model()
    nlp = compile_nlp(m, expressions=("cost",))
    for i in m.I:
        m.d[i] = 10.0 * i
    m.cap = 7.0
    assert_same_problem(with_model(nlp, m), compile_nlp(param_model(), expressions=("cost",)).with_data(
        {"d[1]": 10.0, "d[2]": 20.0, "d[3]": 30.0, "cap": 7.0}))


# ---- the Manchester case --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manchester():
    from poso_sim.cases import build_model, load_case

    case = load_case("manchester")
    return case, compile_nlp(build_model(case, "true"))


@pytest.mark.parametrize("variant", ["true", "tampered", "feasible"])
def test_split_builder_keeps_main_fingerprint(manchester, variant: str) -> None:
    """The component builders make the same model as main's single builder: same fingerprint, other process."""
    from poso_sim.cases import build_model

    case, nlp = manchester
    fp = nlp.fingerprint if variant == "true" else compile_nlp(build_model(case, variant)).fingerprint
    assert fp == MAIN_FINGERPRINTS[variant]


def test_manchester_instances_are_parameter_updates(manchester) -> None:
    from poso_sim.cases import build_model, instance_parameters
    from poso_sim.cases.generator import generate_instances

    base, nlp = manchester
    assert nlp.n_p == 24 + 2 * 15 * 24 + 21 * 24 + 37 * 24
    assert nlp.expression_names == ("true_cost", "cost_grid", "cost_chp", "cost_boiler")
    fps = {nlp.fingerprint}
    for case in generate_instances(base, 2, seed=11):
        inst = nlp.with_data(instance_parameters(case))
        fresh = compile_nlp(build_model(case, "true"))
        assert inst.fingerprint == fresh.fingerprint and inst.structure_fingerprint == nlp.structure_fingerprint
        x = nlp.x0 + 0.5
        assert inst.true_cost(x) == pytest.approx(fresh.true_cost(x), rel=1e-14)
        np.testing.assert_allclose(inst.g(x), fresh.g(x), rtol=1e-14, atol=1e-12)
        fps.add(inst.fingerprint)
    assert len(fps) == 3


def test_fingerprint_stable_across_processes(manchester) -> None:
    code = (
        "import json; from poso_sim.cases import build_model, load_case, instance_parameters;"
        "from poso_sim.cases.generator import generate_instances; from poso_sim.nlp import compile_nlp;"
        "b = load_case('manchester'); n = compile_nlp(build_model(b));"
        "i = n.with_data(instance_parameters(generate_instances(b, 1, seed=3)[0]));"
        "print(json.dumps([n.fingerprint, n.structure_fingerprint, i.fingerprint]))"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    from poso_sim.cases import instance_parameters
    from poso_sim.cases.generator import generate_instances

    base, nlp = manchester
    here = nlp.with_data(instance_parameters(generate_instances(base, 1, seed=3)[0]))
    assert out == [nlp.fingerprint, nlp.structure_fingerprint, here.fingerprint]


def test_verifier_changes_instance_by_parameter_update(manchester_solutions) -> None:
    """A verifier turns its problem into another day's by a parameter update; yesterday's plan fails there."""
    from poso_sim.cases import instance_parameters, load_case
    from poso_sim.cases.generator import generate_instances
    from poso_sim.kkt import verify

    base, plan = manchester_solutions["problem"], manchester_solutions["optimal"]
    day = generate_instances(load_case("manchester"), 1, seed=5)[0]
    inst = base.with_data(instance_parameters(day))
    assert verify(base, plan).accepted
    replayed = verify(inst, plan)
    assert not replayed.accepted and replayed.reasons[0].startswith("fingerprint mismatch")
    # relabelled with the day's fingerprint, the plan still is no optimum of the day's data: the loads moved
    relabelled = verify(inst, plan.replace(fingerprint=inst.fingerprint))
    assert not relabelled.accepted
    assert np.max(np.abs(inst.g(plan.x) - base.g(plan.x))) > 1.0  # kW of load balance the plan does not meet
    assert verify(base, plan).accepted  # the base problem is untouched by the update


def test_instance_update_without_pyomo(manchester, tmp_path) -> None:
    """A verifier loads the compiled structure and moves it to another day without importing Pyomo."""
    base, nlp = manchester
    blob = tmp_path / "manchester.nlp"
    blob.write_bytes(nlp.to_bytes())
    code = (
        "import json, sys; from poso_sim.nlp.compiled import CompiledNLP;"
        "from poso_sim.cases import load_case, instance_parameters, generate_instances;"
        f"n = CompiledNLP.from_bytes(open({str(blob)!r}, 'rb').read());"
        "d = n.with_data(instance_parameters(generate_instances(load_case('manchester'), 1, seed=3)[0]));"
        "print(json.dumps([d.fingerprint, d.true_cost(d.x0), 'pyomo' in sys.modules]))"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    from poso_sim.cases import instance_parameters
    from poso_sim.cases.generator import generate_instances

    here = nlp.with_data(instance_parameters(generate_instances(base, 1, seed=3)[0]))
    assert out == [here.fingerprint, pytest.approx(here.true_cost(here.x0), rel=1e-14), False]
