"""Scenario-file conveniences: `all` / `others` targets, equivocation with omissions, duplicate keys, the case
checked at load time, clear latency messages; every error as `<file>, line <n>: <field>: <message>`."""

from __future__ import annotations

import shutil
from importlib import resources

import pytest

from poso_sim.errors import ScenarioError
from poso_sim.protocol import behaviours as B
from poso_sim.scenarios import load_scenario, parse_scenario, run_scenario
from poso_sim.scenarios import schema
from poso_sim.scenarios.schema import EquivocateOmitting

FIVE = "delegates: [C, D, E, F, G]\n"


def _direct_labels(result, leader: str = "C", height: int = 1) -> dict[str, str]:
    """Which payload label each member received straight from the leader in round 1."""
    return {r["node"]: r["label"] for r in result.records
            if r["kind"] == "received" and r.get("height") == height and r.get("round") == 1
            and tuple(r.get("path", ())) == (leader,) and r["node"] != leader}


def _error(tmp_path, text: str) -> str:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg.removeprefix(f"{f}, ")


# ------------------------------------------------------------------------------------------ all / others
def test_others_and_all_expand_to_the_committee():
    scn = parse_scenario(FIVE + "behaviours:\n  F:\n    follower_trick_error: others\n"
                                "  C:\n    follower_error: all\n    follower_ignore: others\n")
    objs = scn.behaviour_objects()
    (trick,) = objs["F"]
    assert isinstance(trick, B.TrickError) and trick.targets == {"C", "D", "E", "G"}
    err, ign = objs["C"]
    assert isinstance(err, B.FollowerError) and err.targets == {"C", "D", "E", "F", "G"}
    assert isinstance(ign, B.FollowerIgnore) and ign.targets == {"D", "E", "F", "G"}


def test_others_in_the_nested_target_fields():
    scn = parse_scenario(FIVE + "behaviours:\n  C:\n    leader_sends: {label: feasible, targets: others}\n"
                                "    delay: {seconds: 0.5, targets: all}\n"
                                "  D:\n    trick_error: {targets: others, label: forged}\n")
    sends, delay = scn.behaviour_objects()["C"]
    assert sends.targets == {"D", "E", "F", "G"} and sends.label == "feasible"
    assert delay.targets == {"C", "D", "E", "F", "G"} and delay.seconds == 0.5
    (trick,) = scn.behaviour_objects()["D"]
    assert trick.targets == {"C", "E", "F", "G"} and trick.label == "forged"


def test_a_leader_lying_to_all_others_is_excluded_and_the_optimum_decided():
    scn = parse_scenario(FIVE + "behaviours:\n  C:\n    follower_error: others\n")
    res = run_scenario(scn, payloads="stub")
    assert _direct_labels(res) == {n: "tampered" for n in "DEFG"}
    assert res.excluded_by_honest() == ["C"]
    assert res.executed["leader"] == "D" and res.executed["label"] == "optimal"


def test_unknown_target_group_is_an_error_with_line(tmp_path):
    msg = _error(tmp_path, FIVE + "behaviours:\n  C:\n    follower_trick_error: everyone\n")
    assert msg.startswith("line 4: behaviours.C.follower_trick_error: ")
    assert "'all' or 'others'" in msg


# -------------------------------------------------------------------------------------------- equivocate
def test_equivocate_mapping_leaves_members_out():
    scn = parse_scenario(FIVE + "behaviours:\n  C:\n    equivocate: {tampered: [D, E], none: [G]}\n")
    res = run_scenario(scn, payloads="stub")
    assert _direct_labels(res) == {"D": "tampered", "E": "tampered", "F": "optimal"}  # G gets nothing
    assert res.excluded_by_honest() == ["C"]


def test_equivocate_list_with_none_cycles_over_the_members():
    scn = parse_scenario(FIVE + "behaviours:\n  C:\n    equivocate: [tampered, none]\n")
    (beh,) = scn.behaviour_objects()["C"]
    assert isinstance(beh, EquivocateOmitting) and beh.labels == ("tampered", None)
    res = run_scenario(scn, payloads="stub")
    assert _direct_labels(res) == {"D": "tampered", "F": "tampered"}


def test_equivocate_without_omission_is_unchanged():
    scn = parse_scenario(FIVE + "behaviours:\n  C:\n    equivocate: [optimal, tampered]\n")
    (beh,) = scn.behaviour_objects()["C"]
    assert type(beh) is B.Equivocate
    assert _direct_labels(run_scenario(scn, payloads="stub")) == {
        "D": "optimal", "E": "tampered", "F": "optimal", "G": "tampered"}


@pytest.mark.parametrize("value, field, words", [
    ("[none, none]", "behaviours.C.equivocate", "silence: true"),
    ("{tampered: [D], bogus: [E]}", "behaviours.C.equivocate.bogus", "unknown payload label 'bogus'"),
    ("{none: [Z]}", "behaviours.C.equivocate.none[0]", "unknown node 'Z'"),
    ("{}", "behaviours.C.equivocate", "at least one label"),
    ("7", "behaviours.C.equivocate", "expected true, a list"),
])
def test_equivocate_errors(tmp_path, value, field, words):
    msg = _error(tmp_path, FIVE + f"behaviours:\n  C:\n    equivocate: {value}\n")
    assert msg.startswith(f"line 4: {field}: "), msg
    assert words in msg


# ------------------------------------------------------------------------------------------ duplicate keys
@pytest.mark.parametrize("text, line, field, first", [
    (FIVE + "window: 3\nseed: 1\nwindow: 4\n", 4, "window", 2),
    (FIVE + "behaviours:\n  C:\n    silence: true\n  D:\n    silence: true\n  C:\n    follower_error: [E]\n",
     7, "behaviours.C", 3),
    (FIVE + "network:\n  faults:\n    - type: loss\n      p: 0.1\n      p: 0.2\n", 6, "network.faults[0].p", 5),
    ("delegates: {C: 8, D: 9, C: 10}\n", 1, "delegates.C", 1),
])
def test_duplicate_keys_name_both_lines(tmp_path, text, line, field, first):
    msg = _error(tmp_path, text)
    assert msg == f"line {line}: {field}: duplicate key '{field.rsplit('.', 1)[-1].split('[')[0]}' " \
                  f"(first at line {first}; a key may appear once)"


def test_a_duplicate_no_longer_shifts_the_next_error(tmp_path):
    # before: the second `C:` replaced the first silently and the bad node was reported on the wrong line
    msg = _error(tmp_path, FIVE + "behaviours:\n  C:\n    follower_ignore: [X]\n  C:\n    silence: true\n")
    assert msg.startswith("line 5: behaviours.C: duplicate key")


# --------------------------------------------------------------------------------------------------- case
def test_unknown_case_is_reported_at_load_time(tmp_path):
    msg = _error(tmp_path, FIVE + "seed: 3\ncase: manchster\n")
    assert msg.startswith("line 3: case: unknown case 'manchster': not a registered problem (")
    assert "manchester" in msg


def test_missing_case_file(tmp_path):
    msg = _error(tmp_path, FIVE + "case: nowhere/case.json\n")
    assert msg.startswith("line 2: case: ") and "nowhere/case.json" in msg


def test_bad_case_file_contents_are_reported_at_load_time(tmp_path):
    bad = tmp_path / "case.json"
    bad.write_text('{"name": "x"}')
    msg = _error(tmp_path, FIVE + f"case: {bad}\n")
    assert msg.startswith("line 2: case: ") and "case.json" in msg


def test_case_file_path_is_accepted(tmp_path):
    src = resources.files("poso_sim.cases") / "data" / "manchester.json"
    dst = tmp_path / "my-case.json"
    with resources.as_file(src) as p:
        shutil.copy(p, dst)
    assert parse_scenario(FIVE + f"case: {dst}\n").case == str(dst)


def test_the_case_check_is_the_registry(monkeypatch):
    """`check_case` is the one place, and it asks the problem registry: a problem registered there is a case."""
    from poso_sim.nlp import problems

    calls = []

    def fake_check(case, variant=None):
        calls.append(case)
        if case != "toy":
            raise ScenarioError(f"unknown case {case!r}: not a registered problem (toy)")

    monkeypatch.setattr(problems, "check_case", fake_check)
    monkeypatch.setattr(problems, "registered_problems", lambda: ["toy"])
    assert parse_scenario(FIVE + "case: toy\n").case == "toy" and calls == ["toy"]
    with pytest.raises(ScenarioError, match=r"line 2: case: unknown case 'manchester': not a registered problem"):
        parse_scenario(FIVE + "case: manchester\n")
    assert schema.known_cases() == ["toy"]


def test_checking_a_scenario_loads_neither_casadi_nor_pyomo():
    import subprocess
    import sys

    code = ("import sys\nfrom poso_sim.scenarios import parse_scenario\n"
            "parse_scenario('delegates: 3\\ncase: manchester\\n')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'casadi', 'pyomo'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_with_checks_the_case_too():
    scn = parse_scenario(FIVE)
    with pytest.raises(ScenarioError, match="case: unknown case 'nope'"):
        scn.with_(case="nope")


# ------------------------------------------------------------------------------------------------ latency
@pytest.mark.parametrize("latency, field, words", [
    ("{lognormal: [0.05]}", "network.latency.lognormal", "expected two numbers [median, sigma], got 1 value [0.05]"),
    ("{lognormal: 0.05}", "network.latency.lognormal", "expected two numbers [median, sigma], got 0.05"),
    ("{uniform: [0.1, 0.2, 0.3]}", "network.latency.uniform", "expected two numbers [lo, hi], got 3 values"),
    ("{mean_sd: [0.05]}", "network.latency.mean_sd", "expected two numbers [mean, sd]"),
    ("[0.05]", "network.latency", "a list means [mean, sd] (log-normal): expected two numbers, got 1 [0.05]"),
    ("{lognormal: [a, 0.1]}", "network.latency.lognormal", "could not convert"),
])
def test_latency_messages(tmp_path, latency, field, words):
    msg = _error(tmp_path, FIVE + f"network:\n  latency: {latency}\n")
    assert msg.startswith(f"line 3: {field}: "), msg
    assert words in msg, msg
    assert "unpack" not in msg


def test_good_latency_forms_still_load():
    for lat in ("0.01", "[0.05, 0.02]", "{lognormal: [0.05, 0.3]}", "{uniform: [0.01, 0.02]}", "{constant: 0.1}"):
        assert parse_scenario(FIVE + f"network:\n  latency: {lat}\n").network.build_latency() is not None


def test_generated_committees_up_to_ten_thousand(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("delegates: 2000\nnormal_nodes: 3\n")
    names = load_scenario(big).delegate_names
    assert len(names) == len(set(names)) == 2000 and names[-1] == "D1999"
    msg = _error(tmp_path, "delegates: 10001\n")
    assert msg == f"line 1: delegates: need 1..{schema.MAX_DELEGATES} delegates, got 10001", msg
