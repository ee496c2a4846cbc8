"""Sweep case generation (poso_sim.sweep.spec): deterministic cases, built without YAML text."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from poso_sim.sweep.spec import SweepError, parse_sweep, resolve_sweep, scenario_yaml

#: SHA-256 over the first 200 cases of the packaged campaign (scenario YAML and parameter row of each), as
#: generated at c6a0cc8: the split of the case builder changed no draw.
CAMPAIGN_200 = "7064253a33ddb97c259c392d23ba8b5d2e108e1620b2f90bee4d70b7db3a5b9b"


def _digest(spec, n):
    h = hashlib.sha256()
    for c in spec.iter_cases(n):
        h.update(scenario_yaml(c.scenario).encode())
        h.update(repr(sorted(c.params.items())).encode())
    return h.hexdigest()


def test_campaign_cases_are_the_same_as_before():
    assert _digest(resolve_sweep("campaign"), 200) == CAMPAIGN_200


def test_a_case_is_the_same_alone_or_in_a_run():
    spec = resolve_sweep("campaign")
    cases = list(spec.iter_cases(30))
    for i in (0, 7, 29):
        alone = spec.case(i)
        assert alone.scenario == cases[i].scenario and alone.params == cases[i].params


def test_cases_are_built_without_yaml_text(monkeypatch):
    spec = resolve_sweep("smoke")
    base = spec.base_scenario()

    def no_yaml(*a, **k):
        raise AssertionError("a case went through YAML text")

    monkeypatch.setattr(yaml, "safe_dump", no_yaml)
    monkeypatch.setattr(yaml, "safe_load", no_yaml)
    from poso_sim.sweep.spec import _make_case

    c = _make_case(spec, 3, base)
    assert c.scenario.source.endswith("case 3") and c.scenario.name.endswith("case-00003")


def test_a_bad_generated_case_is_one_line_naming_the_case():
    with pytest.raises(SweepError) as e:  # parse_sweep builds case 0 to fail early
        parse_sweep("name: bad\nmode: product\nparameters:\n  delegates: [3]\n  window: [-1.0]\n", "bad.yaml")
    msg = str(e.value)
    assert msg.startswith("bad.yaml: case 0:") and "window" in msg and "\n" not in msg
