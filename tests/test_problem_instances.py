"""Instances of one structure share compiled functions: the registry hands out a parameter update, not a compile."""

from __future__ import annotations

import numpy as np
import pytest

from poso_sim.cases import build_model, generate_instances, load_case
from poso_sim.errors import ProblemError
from poso_sim.nlp import compile_nlp, problems


@pytest.fixture(scope="module")
def days():
    return generate_instances(load_case("manchester"), 2, seed=11)


def test_instance_is_a_parameter_update_equal_to_a_fresh_compile(days):
    base = problems.load_problem("manchester")
    inst = problems.load_instance("manchester", days[0])
    assert inst.nlp.structure_fingerprint == base.nlp.structure_fingerprint
    assert inst.nlp.fingerprint != base.nlp.fingerprint
    assert not inst.model_built  # no Pyomo model was built for the instance
    assert inst.nlp._f is base.nlp._f  # the same compiled functions
    fresh = compile_nlp(build_model(days[0], "true"), expressions=("true_cost",))
    assert inst.nlp.fingerprint == fresh.fingerprint
    rng = np.random.default_rng(3)
    x = fresh.clip(fresh.x0 + rng.normal(0, 0.1, fresh.n))
    assert inst.nlp.f(x) == pytest.approx(fresh.f(x), rel=1e-12)
    np.testing.assert_allclose(inst.nlp.g(x), fresh.g(x), rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(inst.nlp.g_lb, fresh.g_lb)
    np.testing.assert_array_equal(inst.nlp.x_ub, fresh.x_ub)
    assert inst.cost(x) == pytest.approx(fresh.expr("true_cost", x), rel=1e-12)


def test_each_instance_gets_its_own_object_and_model(days):
    a = problems.load_instance("manchester", days[0])
    b = problems.load_instance("manchester", days[1])
    assert a.nlp is not b.nlp and a.nlp.fingerprint != b.nlp.fingerprint
    model = b.model  # built on demand from the instance's own data and linked
    assert b.model_built and model is b.model
    x = b.nlp.x_from_model()
    assert x.shape == (b.nlp.n,)


def test_definition_needs_structure_key_and_parameters_together():
    with pytest.raises(ProblemError, match="structure_key and parameters go together"):
        problems.ProblemDefinition(build=lambda d, v: None, structure_key=lambda d: b"s")
