"""Seeded day-ahead instances (poso_sim.cases.generator) and multi-day horizons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poso_sim.cases import build_model, case_from_dict, load_case, update_parameters
from poso_sim.cases.generator import (
    InstanceRanges,
    ProfileRange,
    case_digest,
    case_document,
    generate_instances,
    join_days,
    repeat_days,
    structure_digest,
)
from poso_sim.errors import CaseError


@pytest.fixture(scope="module")
def base():
    return load_case("manchester")


def test_same_seed_same_instances_byte_for_byte(base) -> None:
    a = generate_instances(base, 4, seed=42)
    b = generate_instances(base, 4, seed=42)
    assert [json.dumps(case_document(c), sort_keys=True) for c in a] == [
        json.dumps(case_document(c), sort_keys=True) for c in b
    ]
    assert [case_digest(c) for c in a] == [case_digest(c) for c in b]
    assert len({case_digest(c) for c in a}) == 4  # four different days
    assert case_digest(generate_instances(base, 1, seed=43)[0]) != case_digest(a[0])
    # instance i does not depend on how many are asked for
    assert case_digest(generate_instances(base, 2, seed=42)[1]) == case_digest(a[1])
    assert [c.name for c in a] == [f"manchester-s42-d{i}" for i in range(1, 5)]


def test_instances_valid_and_within_documented_ranges(base) -> None:
    r = InstanceRanges()
    p0, l0 = np.array(base.profiles.price), np.array(base.profiles.load_factor)
    for c in generate_instances(base, 20, seed=5):
        assert case_digest(case_from_dict(case_document(c), c.name)) == case_digest(c)  # schema round trip
        assert c.model_dump(exclude={"name", "description", "profiles"}) == base.model_dump(
            exclude={"name", "description", "profiles"})
        for prof, ref, rng in ((c.profiles.price, p0, r.price), (c.profiles.load_factor, l0, r.load),
                               (c.profiles.heat_load_factor, l0, r.heat)):
            ratio = np.array(prof) / ref
            assert ratio.min() >= rng.level[0] * (1 - 3 * rng.noise) - 1e-5
            assert ratio.max() <= rng.level[1] * (1 + 3 * rng.noise) + 1e-5
            assert ratio.std() > 0  # hourly noise, not only a level
    # the daily shape is kept: generated load profiles correlate with the base one
    loads = np.array([c.profiles.load_factor for c in generate_instances(base, 10, seed=9)])
    assert np.corrcoef(loads.mean(axis=0), l0)[0, 1] > 0.9


def test_invalid_instance_names_instance_and_field(base) -> None:
    with pytest.raises(CaseError, match=r"^manchester-s1-d1: profiles\.price\[0\]: .*greater than or equal to 0"):
        generate_instances(base, 3, seed=1, ranges={"price": {"level": [-1.0, -0.5], "noise": 0.0}})


def test_unservable_instance_names_instance_and_field(base) -> None:
    with pytest.raises(CaseError, match=r"^manchester-s2-d1: profiles\.heat_load_factor\[\d+\]: .*heat"):
        generate_instances(base, 2, seed=2, ranges=InstanceRanges(heat=ProfileRange((8.0, 9.0), 0.0)))


@pytest.mark.parametrize(
    "ranges, match",
    [
        ({"load": {"level": [1.2, 1.1]}}, r"ranges\.load\.level: \(1\.2, 1\.1\)"),
        ({"heat": {"noise": 0.5}}, r"ranges\.heat\.noise: 0\.5 outside"),
        ({"wind": {}}, r"ranges\.wind: unknown profile"),
        ({"price": {"level": "high"}}, r"ranges\.price: level must be"),
    ],
)
def test_bad_ranges_are_one_line_errors(base, ranges, match) -> None:
    with pytest.raises(CaseError, match=match):
        generate_instances(base, 1, seed=0, ranges=ranges)


def test_bad_counts(base) -> None:
    with pytest.raises(CaseError, match="n: the number of instances"):
        generate_instances(base, 0, seed=0)
    with pytest.raises(CaseError, match="seed: must be"):
        generate_instances(base, 1, seed=-3)


def test_multi_day_horizon_couples_storage(base) -> None:
    days = generate_instances(base, 3, seed=8)
    joined = join_days(days)
    assert joined.horizon == 72 and joined.profiles.price[24:48] == days[1].profiles.price
    m = build_model(joined)
    assert len(m.T) == 72 and len(m.EstorageInitial) == len(base.hubs)
    # the battery of day 2's first hour follows day 1's last hour; the cyclic row links hour 72 to hour 1
    assert "E_bat[1,24]" in str(m.EstoragePowereq[1, 25].body)
    assert "E_bat[1,72]" in str(m.EstorageStarteqEnd[1].body)
    assert m.p_demand[4, 30].value == pytest.approx(base.electric.buses[3].p_load * days[1].profiles.load_factor[5])
    tiled = build_model(base, days=2)
    assert len(tiled.T) == 48 and tiled.price[25].value == base.profiles.price[0]
    assert repeat_days(base, 1) is base
    with pytest.raises(CaseError, match="days: must be a positive integer"):
        repeat_days(base, 0)


def test_join_days_rejects_other_structure(base) -> None:
    other = case_from_dict(dict(case_document(base), name="other", scalars=dict(
        case_document(base)["scalars"], v2_max=53.0)), "other")
    with pytest.raises(CaseError, match=r"^other: scalars: day 2 differs from day 1"):
        join_days([base, other])


def test_update_parameters_in_place_is_a_parameter_update(base) -> None:
    from poso_sim.cases import instance_parameters
    from poso_sim.nlp import compile_nlp, with_model

    m = build_model(base)
    nlp = compile_nlp(m)
    day = generate_instances(base, 1, seed=4)[0]
    update_parameters(m, day)
    assert m._case is day
    assert with_model(nlp, m).fingerprint == nlp.with_data(instance_parameters(day)).fingerprint != nlp.fingerprint
    with pytest.raises(ValueError, match="parameter price has 48 elements, the model 24"):
        update_parameters(m, repeat_days(base, 2))


def test_structure_digest_ignores_data_only(base) -> None:
    days = generate_instances(base, 3, seed=12)
    assert {structure_digest(c) for c in days} == {structure_digest(base)}
    assert structure_digest(repeat_days(base, 2)) != structure_digest(base)  # another horizon
    doc = case_document(base)
    doc["heat"]["nodes"][1]["load_kw"] = 0.0 if doc["heat"]["nodes"][1]["load_kw"] else 5.0  # another row set
    assert structure_digest(case_from_dict(doc, "x")) != structure_digest(base)
    doc = case_document(base)
    doc["hubs"][0]["battery"]["retention"] = 0.98
    assert structure_digest(case_from_dict(doc, "x")) != structure_digest(base)


def test_ranges_from_mapping_keep_defaults() -> None:
    r = InstanceRanges.from_dict({"price": {"level": [0.5, 2.0]}})
    assert r.price == ProfileRange((0.5, 2.0), 0.10, 0.6) and r.load == InstanceRanges().load
    assert InstanceRanges.from_dict(r.as_dict()) == r  # a written-out range set reads back the same


def test_instances_as_case_files(base, tmp_path) -> None:
    from poso_sim.cases import save_case

    for c in generate_instances(base, 2, seed=6):
        path = save_case(c, tmp_path / f"{c.name}.json")
        back = load_case(path)
        assert case_digest(back) == case_digest(c) and back.name == c.name
