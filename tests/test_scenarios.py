"""poso_sim.scenarios with stub payloads: the four scenarios' outcomes, scenario files and their errors, the
legacy import, the runner's host contract (verification memo and charge, solve time), determinism, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from poso_sim.errors import ScenarioError
from poso_sim.protocol import FollowerError, FollowerIgnore, TrickIgnore
from poso_sim.report import record_names, render_run, render_table3, table3_json
from poso_sim.scenarios import (
    Scenario,
    StubPayloads,
    clear_verdicts,
    generated_name,
    load_scenario,
    packaged_scenarios,
    parse_scenario,
    resolve_scenario,
    run_scenario,
)

STUB = StubPayloads()
OPT, BAD, FEAS = STUB.digest("optimal"), STUB.digest("tampered"), STUB.digest("feasible")
DELEGATES = ["C", "D", "E", "F", "G"]


@pytest.fixture(scope="module")
def runs():
    return {name: run_scenario(name, payloads="stub") for name in packaged_scenarios() if name.startswith("scenario-")}


# -------------------------------------------------------------------------------------- the four scenarios
def test_packaged_scenarios_load():
    names = [n for n in packaged_scenarios() if not n.startswith("trading-")]  # markets: test_trading_scenarios.py
    assert names == ["chain-7", "scenario-1", "scenario-2", "scenario-3", "scenario-4"]
    for n in names:
        s = resolve_scenario(n)
        assert s.name == n and s.delegate_ids == {"C": 8, "D": 9, "E": 10, "F": 11, "G": 12}
        assert s.normal_names == ["N1", "N2", "N3"] and s.case == "manchester" and s.signatures


def test_scenario_1_outcome(runs):
    r = runs["scenario-1"]
    dec = r.decisions_at(1)
    assert dec["C"]["digest"] == BAD and dec["C"]["round"] == 1  # C adopts its own 904 $ plan
    for d in "DEFG":
        assert (dec[d]["digest"], dec[d]["round"], dec[d]["leader"]) == (OPT, 2, "D")
    ex = r.executed
    assert ex["cost"] == pytest.approx(744.09) and ex["leader"] == "D" and ex["round"] == 2
    assert ex["votes"] == 4 and ex["agreement"] and ex["nodes"] == ["N1", "N2", "N3"]
    assert r.excluded_by_honest() == ["C"]
    assert all(e["evidence"] for d in "DEG" for e in r.exclusions[d] if e["leader"] == "C")


SCENARIO_1_TABLE = """\
Phase "Leader is C" (height 1, round 1)
| row | R1                  | R2 |
|-----|---------------------|----|
| C   | <$904>C (its own)   | –  |
| D   | –                   | –  |
| E   | –                   | –  |
| F   | <$904>C (fails KKT) | –  |
| G   | –                   | –  |

Phase "Leader is D" (height 1, round 2)
| row | R1                | R2                 |
|-----|-------------------|--------------------|
| C   | –                 | –                  |
| D   | <$744>D (its own) | –                  |
| E   | <$744>D           | <$744>DG           |
| F   | <$744>D           | <$744>DE, <$744>DG |
| G   | <$744>D           | <$744>DE           |
"""


def test_scenario_1_table3_cell_for_cell(runs):
    r = runs["scenario-1"]
    assert render_table3(r) == SCENARIO_1_TABLE
    phases = table3_json(r)
    assert [(p["leader"], p["height"], p["round"]) for p in phases] == [("C", 1, 1), ("D", 1, 2)]
    c, d = phases
    assert list(c["rows"]) == DELEGATES
    assert c["rows"]["C"] == {"R1": ["<$904.17>C"], "R2": []}
    assert c["rows"]["F"] == {"R1": ["<$904.17>C"], "R2": []}
    assert all(c["rows"][x] == {"R1": [], "R2": []} for x in "DEG")
    assert d["rows"]["C"] == {"R1": [], "R2": []}
    assert d["rows"]["D"] == {"R1": ["<$744.09>D"], "R2": []}
    assert d["rows"]["E"] == {"R1": ["<$744.09>D"], "R2": ["<$744.09>DG"]}
    assert sorted(d["rows"]["F"]["R2"]) == ["<$744.09>DE", "<$744.09>DG"]
    assert d["rows"]["G"] == {"R1": ["<$744.09>D"], "R2": ["<$744.09>DE"]}


def test_record_names(runs):
    r = runs["scenario-1"]
    names = record_names(r)
    import hashlib

    md5 = hashlib.md5(OPT.encode()).hexdigest()
    assert f"Optimization_data_Node12_9via10_{md5}" in names  # D's plan relayed by E, stored by G
    assert f"Optimization_data_Node11_8_{hashlib.md5(BAD.encode()).hexdigest()}" in names
    assert f"Optimization_data_NodeE_DviaG_{md5}" in record_names(r, use_ids=False)
    assert not any(n.startswith("Optimization_data_Node9_9_") for n in names)
    assert any(n.startswith("Optimization_data_Node9_9_") for n in record_names(r, own=True))


def test_scenario_2_outcome(runs):
    r = runs["scenario-2"]
    dec = r.decisions_at(1)
    assert dec["C"]["digest"] == BAD
    # D, E, G decide 744 in C's round; F (a dishonest relay only) decides 744 too: 4 of 5 (see docs/scenarios.md)
    for d in "DEFG":
        assert (dec[d]["digest"], dec[d]["round"], dec[d]["leader"]) == (OPT, 1, "C")
    ex = r.executed
    assert (ex["leader"], ex["round"], ex["votes"]) == ("C", 1, 4) and ex["cost"] == pytest.approx(744.09)
    assert r.excluded_by_honest() == ["C"]
    assert all(e["evidence"] for d in "DEG" for e in r.exclusions[d])
    # height 2: C excluded from leading, D leads round 1
    dec2 = r.decisions_at(2)
    for d in "DEG":
        assert (dec2[d]["leader"], dec2[d]["round"], dec2[d]["digest"]) == ("D", 1, OPT)
    assert r.executed_at(2)["leader"] == "D"
    # three-hop paths and F's bad relay to D
    cells = {x for p in table3_json(r, 1) for row in p["rows"].values() for col in row.values() for x in col}
    assert {"<$744.09>CDE", "<$744.09>CDG", "<$904.17>CF", "<$744.09>C"} <= cells
    c = table3_json(r, 1)[0]["rows"]
    assert c["D"]["R1"] == ["<$744.09>C"] and c["E"]["R1"] == ["<$904.17>C"] and c["G"]["R1"] == []


def test_scenario_3_outcome(runs):
    r = runs["scenario-3"]
    dec = r.decisions_at(1)
    assert dec["C"]["digest"] == FEAS
    for d in "DEFG":
        assert (dec[d]["digest"], dec[d]["round"], dec[d]["leader"]) == (OPT, 2, "D")
    rejected = {x["node"] for x in r.records if x["kind"] == "rejected" and x["digest"] == FEAS}
    assert rejected == set("DEFG")
    assert r.executed["votes"] == 4 and r.excluded_by_honest() == ["C"]


def test_scenario_4_outcome(runs):
    r = runs["scenario-4"]
    dec = r.decisions_at(1)
    assert dec["C"]["digest"] == BAD and dec["F"]["digest"] == BAD and dec["F"]["round"] == 1
    for d in "DEG":
        assert (dec[d]["digest"], dec[d]["round"], dec[d]["leader"]) == (OPT, 2, "D")
    ex = r.executed
    assert ex["votes"] == 3 and ex["voters"] == ["D", "E", "G"] and ex["cost"] == pytest.approx(744.09)
    assert any(x["kind"] == "accepted_unchecked" and x["node"] == "F" for x in r.records)
    assert r.excluded_by_honest() == ["C"]


def test_json_contract(runs):
    j = runs["scenario-1"].to_json()
    for k in ("executed", "excluded", "decisions", "messages", "virtual_seconds", "wall_seconds", "trace_digest"):
        assert k in j
    assert set(j["executed"]) >= {"cost", "digest", "leader", "height", "round", "votes"}
    assert set(j["decisions"]) == set(DELEGATES)
    assert j["virtual_seconds"] == pytest.approx(10.6)
    json.dumps(j)


def test_text_account(runs):
    txt = render_run(runs["scenario-4"])
    assert "F: accepted C's plan without checking it" in txt
    assert "executed D's optimal (744.09 $), round 2, decided by 3 of 5" in txt
    assert "excluded by the honest delegates: C" in txt


# ------------------------------------------------------------------------------------------ runner contract
def test_dropped_copies_are_recorded_as_drops_and_shown(runs):
    # Scenario 2, height 2: C (excluded at height 1) still leads in its own view and sends three proposals
    # and one relay that the honest delegates drop as "not leader". Each must be recorded as a drop with the
    # message kind kept apart from the record kind, and the text account must show it.
    drops = {name: [x for x in r.records if x["kind"] == "dropped"] for name, r in runs.items()}
    assert not any(x["kind"] in ("proposal", "relay", "proof", "decision") for r in runs.values() for x in r.records)
    not_leader = sorted((x["node"], x["message"]) for x in drops["scenario-2"] if x["reason"] == "not leader")
    assert not_leader == [("D", "proposal"), ("D", "relay"), ("E", "proposal"), ("F", "proposal")]
    text = render_run(runs["scenario-2"], max_events=10_000)
    assert text.count("dropped a proposal from C: not leader") == 3
    assert text.count("dropped a relay from") == 1


def test_verification_memoised_per_digest_and_across_runs():
    clear_verdicts()
    src = StubPayloads()
    r1 = run_scenario("scenario-2", payloads=src)
    # every delegate verifies each digest it sees, but the verifier runs once per distinct digest
    verify_records = [x for x in r1.records if x["kind"] == "verified"]
    assert len(verify_records) > 2
    assert r1.verifications == len({x["digest"] for x in verify_records}) == 2
    r2 = run_scenario("scenario-2", payloads=StubPayloads())
    assert r2.verifications == 0 and r2.trace_digest == r1.trace_digest


def test_verify_cost_and_solve_time_are_charged_in_virtual_time():
    r = run_scenario(resolve_scenario("scenario-3").with_(solve_time=0.5), payloads="stub", verify_cost=1.25)
    got = {(x["node"], x["digest"]): x["t"] for x in r.records if x["kind"] == "received" and x["via"] == "R1"}
    ver = {(x["node"], x["digest"]): x["t"] for x in r.records if x["kind"] == "verified"}
    assert got[("D", FEAS)] == pytest.approx(0.5)  # C solved for 0.5 s (it trusts its own plan)
    assert ver[("D", FEAS)] == pytest.approx(1.75)
    own = [x for x in r.records if x["kind"] == "received" and x["via"] == "own" and x["node"] == "D"]
    assert own[0]["t"] == pytest.approx(5.3 + 0.5)
    assert r.executed["cost"] == pytest.approx(744.09)


def test_generic_committee_names_and_ids():
    s = Scenario(delegates=30, normal_nodes=2)
    names = s.delegate_names
    assert names[:3] == ["A", "B", "C"] and names[25] == "Z" and names[26:28] == ["D26", "D27"]
    assert s.delegate_ids["A"] == 8 and s.delegate_ids["D27"] == 35
    assert [generated_name(i) for i in (0, 25, 26)] == ["A", "Z", "D26"]
    r = run_scenario(Scenario(delegates=7, behaviours={"A": {"follower_error": ["B", "C", "D", "E", "F", "G"]}}),
                     payloads="stub")
    assert r.executed["leader"] == "B" and r.executed["cost"] == pytest.approx(744.09) and r.executed["votes"] == 6


def test_signatures_off_runs():
    r = run_scenario(resolve_scenario("scenario-2").with_(signatures=False), payloads="stub")
    for d in "DEG":
        assert r.decisions_at(1)[d]["digest"] == OPT
    assert r.executed["digest"] == OPT


def test_network_model_and_faults_from_yaml(tmp_path):
    f = tmp_path / "net.yaml"
    f.write_text(textwrap.dedent("""\
        delegates: [C, D, E, F, G]
        heights: 2
        network:
          latency: {uniform: [0.01, 0.05]}
          faults:
            - {type: loss, p: 0.3, src: [G]}
            - {type: duplicate, p: 0.2}
            - {type: reorder, p: 0.2, extra_delay: 0.1}
            - {type: partition, isolate: [F], t0: 0, t1: 3}
            - {type: crash, node: G, at: 6.0}
            - {type: delay_spike, extra: 0.2, window: [0, 1]}
    """))
    s = load_scenario(f)
    assert s.name == "net" and len(s.build_faults()) == 6
    r = run_scenario(s, payloads="stub", trace_path=str(tmp_path / "t.jsonl"))
    assert r.network["dropped"] > 0 and r.network["duplicated"] > 0
    assert r.executed["digest"] == OPT
    assert (tmp_path / "t.jsonl").read_text().count("\n") == len(r.trace)


def test_same_seed_same_digest_and_seed_matters():
    s = resolve_scenario("scenario-1").with_(network={"latency": [0.05, 0.02], "faults": [{"type": "loss", "p": 0.1}]})
    a = run_scenario(s, payloads="stub", seed=3)
    b = run_scenario(s, payloads="stub", seed=3)
    c = run_scenario(s, payloads="stub", seed=4)
    assert a.trace_digest == b.trace_digest != c.trace_digest


def test_trace_digest_identical_across_processes(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(textwrap.dedent("""\
        name: cross
        delegates: {C: 8, D: 9, E: 10, F: 11, G: 12}
        heights: 2
        seed: 11
        network:
          latency: [0.05, 0.03]
          faults: [{type: loss, p: 0.1}, {type: duplicate, p: 0.1}, {type: reorder, p: 0.3, extra_delay: 0.2}]
        behaviours:
          C: {follower_ignore: [9, 10, 12], follower_error: [8, 11]}
          F: {follower_trick_ignore: [9, 10, 12]}
    """))
    code = "import sys; from poso_sim.scenarios import run_scenario; print(run_scenario(sys.argv[1], payloads='stub').trace_digest)"
    digests = {run_scenario(str(f), payloads="stub").trace_digest}
    for hs in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hs}
        out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, env=env, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# ------------------------------------------------------------------------------------------------ the CLI
def test_cli(capsys, tmp_path):
    from poso_sim.report.runs_cli import add_parsers  # noqa: F401 (registered by poso_sim.cli)
    from poso_sim.cli import main

    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert all(f"scenario-{i}" in out for i in range(1, 5))
    assert main(["run", "scenario-1", "--stub", "--json", "--seed", "2", "--trace", str(tmp_path / "t.jsonl")]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["seed"] == 2 and j["executed"]["leader"] == "D" and j["excluded"] == ["C"]
    assert (tmp_path / "t.jsonl").exists()
    assert main(["run", "scenario-4", "--stub"]) == 0
    assert "decided by 3 of 5" in capsys.readouterr().out
    assert main(["table3", "scenario-1", "--stub", "--json"]) == 0
    phases = json.loads(capsys.readouterr().out)
    assert phases[0]["rows"]["F"] == {"R1": ["<$904.17>C"], "R2": []}
    assert main(["table3", "scenario-1", "--stub", "--names"]) == 0
    assert capsys.readouterr().out.startswith(SCENARIO_1_TABLE)
    assert main(["run", "scenario-1", "--stub", "--json", "--verify-cost", "0.5"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("delegates: [C, D]\nwindow: -1\n")
    assert main(["run", str(bad), "--stub"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml, line 2: window:" in err and "Traceback" not in err
    assert main(["run", "no-such-scenario", "--stub"]) == 2
    assert "no such scenario" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- errors in scenario files
@pytest.mark.parametrize(
    "text, line, field, words",
    [
        ("delegates: [C, D]\nwindoww: 3\n", 2, "windoww", "unknown field"),
        ("delegates: [C, D]\nwindow: fast\n", 2, "window", "valid number"),
        ("delegates: [C, D]\nheights: 0\n", 2, "heights", "greater than or equal to 1"),
        ("delegates: [C, D, E]\nbehaviours:\n  C:\n    follower_ignore: [D, X]\n", 4,
         "behaviours.C.follower_ignore[1]", "unknown node 'X'"),
        ("delegates: {C: 8, D: 9}\nbehaviours:\n  8:\n    follower_ignore: [9, 13]\n", 4,
         "behaviours.8.follower_ignore[1]", "unknown node id 13"),
        ("delegates: [C, D]\nbehaviours:\n  C:\n    lie_a_lot: [D]\n", 4, "behaviours.C.lie_a_lot", "unknown behaviour"),
        ("delegates: [C, D]\nbehaviours:\n  Q:\n    silence: true\n", 3, "behaviours.Q", "unknown node 'Q'"),
        ("delegates: [C, D]\nbehaviours:\n  N1:\n    silence: true\n", 3, "behaviours.N1", "normal node"),
        ("delegates: [C, D]\nbehaviours:\n  C:\n    equivocate: [optimal, wrong]\n", 4,
         "behaviours.C.equivocate[1]", "unknown payload label"),
        ("delegates: [C, C]\n", 1, "delegates[1]", "duplicate delegate"),
        ("delegates: [C, D]\nnetwork:\n  faults:\n    - {type: loss, p: 0.1}\n    - {type: crash, node: Z, at: 1}\n",
         5, "network.faults[1].node", "unknown node 'Z'"),
        ("delegates: [C, D]\nnetwork:\n  faults:\n    - type: loss\n      p: 1.5\n", 5, "network.faults[0].p", "probability"),
        ("delegates: [C, D]\nnetwork:\n  faults:\n    - {type: flood, p: 0.1}\n", 4, "network.faults[0].type", "Input should be"),
        ("delegates: [C, D]\nnetwork:\n  latency: -1\n", 3, "network.latency", ">= 0"),
        ("delegates: [C, D]\nsignatures: maybe\n", 2, "signatures", "boolean"),
        ("delegates: [C, D]\n  window: 3\n", 2, "(syntax)", "invalid YAML"),
        ("- 1\n- 2\n", 1, "(top level)", "mapping"),
    ],
)
def test_bad_scenario_files_name_file_line_and_field(tmp_path, text, line, field, words):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f)
    msg = str(ei.value)
    assert msg.startswith(f"{f}, line {line}: {field}: "), msg
    assert words in msg, msg
    assert "\n" not in msg


def test_missing_file():
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("/nonexistent/x.yaml")


# ------------------------------------------------------------------------------------------- legacy import
LEGACY = """\
log_level: info
transport: {}
scene:
  class: distributed_consensus.scene.poo.PooScene
  params: {}
nodes:
  1: {ip: 127.0.0.1, port: 9001, hub: h1, is_delegate: false, is_normal: true, transport: tcpv1}
  8:
    ip: 127.0.0.1
    port: 9008
    hub: h8
    is_delegate: true
    is_normal: false
    transport: tcpv1
    leader_evil:
      follower_ignore: [9, 10, 12]
      follower_error: [8, 11]
  9: {ip: 127.0.0.1, port: 9009, is_delegate: true, transport: tcpv1}
  10: {ip: 127.0.0.1, port: 9010, is_delegate: true, transport: tcpv1}
  11:
    ip: 127.0.0.1
    is_delegate: true
    leader_evil:
      follower_trick_ignore: [9, 10, 12]
      follower_trick_error:
  12: {ip: 127.0.0.1, port: 9012, is_delegate: true, transport: tcpv1}
"""


def test_legacy_import_matches_packaged_scenario_1(tmp_path):
    f = tmp_path / "config.scenepoo.12xdual.yaml"
    f.write_text(LEGACY)
    s = load_scenario(f)
    assert s.delegate_ids == {"C": 8, "D": 9, "E": 10, "F": 11, "G": 12}
    assert s.normal_names == ["N1"]
    b = s.behaviour_objects()
    assert [type(x) for x in b["C"]] == [FollowerIgnore, FollowerError] and [type(x) for x in b["F"]] == [TrickIgnore]
    assert b["C"][0].targets == {"D", "E", "G"} and b["C"][1].targets == {"C", "F"}
    legacy = run_scenario(s, payloads="stub")
    packaged = run_scenario("scenario-1", payloads="stub")
    assert table3_json(legacy) == table3_json(packaged)


def test_legacy_errors(tmp_path):
    f = tmp_path / "legacy.yaml"
    f.write_text(LEGACY.replace("follower_error: [8, 11]", "follower_lie: [8, 11]"))
    with pytest.raises(ScenarioError, match=r"legacy.yaml, line 17: nodes.8.leader_evil.follower_lie: unknown behaviour"):
        load_scenario(f)
    f.write_text(LEGACY.replace("follower_ignore: [9, 10, 12]", "follower_ignore: [9, 10, 13]"))
    with pytest.raises(ScenarioError, match=r"line 16: behaviours.C.follower_ignore\[2\]: unknown node id 13"):
        load_scenario(f)
    f.write_text(LEGACY.replace("is_delegate: true", "is_delegate: false"))
    with pytest.raises(ScenarioError, match="no node has is_delegate"):
        load_scenario(f)


def test_parse_scenario_string_and_defaults():
    s = parse_scenario("delegates: 4\n", defaults={"window": 2.0})
    assert s.window == 2.0 and s.delegate_names == ["A", "B", "C", "D"]
