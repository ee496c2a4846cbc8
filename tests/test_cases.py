"""Case loading and validation: the packaged case loads; every kind of broken file gives one CaseError line
naming the file and the field."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pytest

from poso_sim.cases import Case, list_cases, load_case
from poso_sim.cases import topology
from poso_sim.errors import CaseError


@pytest.fixture(scope="module")
def raw() -> dict:
    text = resources.files("poso_sim.cases").joinpath("data").joinpath("manchester.json").read_text()
    return json.loads(text)


def _write(tmp_path: Path, data: dict, name: str = "broken.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data, indent=1))
    return p


def _error_of(tmp_path: Path, raw: dict, mutate) -> str:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(CaseError) as info:
        load_case(_write(tmp_path, data))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("broken.json: ")
    return msg


def test_packaged_case_loads_with_reference_figures():
    assert list_cases() == ["manchester"]
    case = load_case("manchester")
    assert isinstance(case, Case)
    assert case.name == "manchester" and case.horizon == 24
    assert len(case.hubs) == 8
    assert (len(case.electric.buses), len(case.electric.branches)) == (15, 14)
    assert (len(case.heat.nodes), len(case.heat.pipes)) == (36, 35)
    assert (len(case.gas.nodes), len(case.gas.pipes)) == (37, 36)
    assert [(h.e_bus, h.h_node, h.g_node) for h in case.hubs] == [
        (13, 36, 1), (14, 35, 15), (12, 5, 17), (5, 15, 27), (10, 3, 35), (1, 16, 24), (4, 17, 22), (6, 19, 21),
    ]  # fmt: skip
    assert [h.boiler_max_kw for h in case.hubs] == [6000, 6000] + [1000] * 6
    h3 = case.hub(3)
    assert (h3.cost.a, h3.cost.b, h3.cost.e, h3.cost.f) == (0.0835, 22.6, 0.032, 0.001)
    assert (h3.battery.power_max_kw, h3.battery.min_energy_kwh, h3.battery.initial_energy_kwh) == (60, 30, 150)
    assert (h3.tank.power_max_kw, h3.tank.retention, h3.tank.efficiency) == (50, 0.999, 0.9)
    s = case.scalars
    assert (s.v2_min, s.v2_max, s.v2_slack, s.i2_max) == (35.2836, 52.7076, 43.56, 9000)
    assert (s.gas_source_pressure, s.min_pipe_mass_flow, s.gas_heating_value) == (7, 1e-5, 10.833)
    heat = {n.id: n.load_kw for n in case.heat.nodes}
    assert heat[35] == 1000.0 and sum(heat.values()) == pytest.approx(6629.0)
    assert case.electric.branches[0].z2 == 0.27445  # rounded GAMS value, not r^2 + x^2
    assert case.heat.pipes[0].loss_coeff == 0.455
    assert case.gas.pipes[0].K == pytest.approx(2.808e-7)
    assert {n.id: n.load_kw for n in case.gas.nodes}[2] == 36.225
    assert sum(case.profiles.price) == pytest.approx(0.642) and case.profiles.price[7] == 0.06
    assert case.profiles.load_factor[17] == 1.0


def test_load_by_path_equals_packaged(tmp_path, raw):
    assert load_case(_write(tmp_path, raw, "copy.json")) == load_case("manchester")


def test_unknown_case_name_lists_known_cases():
    with pytest.raises(CaseError, match=r"unknown case 'atlantis'.*manchester"):
        load_case("atlantis")


def test_missing_file(tmp_path):
    with pytest.raises(CaseError, match=r"^nothere\.json: file not found"):
        load_case(tmp_path / "nothere.json")


def test_bad_json_names_file_and_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n "name": "x",\n "horizon": 24,,\n "hubs": []\n}\n')
    with pytest.raises(CaseError, match=r"^bad\.json: line 3 column \d+: invalid JSON"):
        load_case(p)


def test_broken_pipe_index(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["heat"]["pipes"][3].__setitem__("to", 99))
    assert msg == "broken.json: heat.pipes[3].to: unknown heat node 99"


def test_negative_capacity(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["hubs"][2]["battery"].__setitem__("capacity_kwh", -5.0))
    assert msg.startswith("broken.json: hubs[2].battery.capacity_kwh: ")
    assert "greater than or equal to 0" in msg


def test_negative_length_and_load(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["gas"]["pipes"][1].__setitem__("length_m", -1.0))
    assert msg.startswith("broken.json: gas.pipes[1].length_m: ")
    msg = _error_of(tmp_path, raw, lambda d: d["electric"]["buses"][4].__setitem__("p_load", -3.0))
    assert msg.startswith("broken.json: electric.buses[4].p_load: ")


def test_disconnected_network(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["electric"]["branches"].pop(5))  # line 5->6
    assert msg == "broken.json: electric.branches: network is disconnected: bus 6 is not connected to the rest"


def test_non_radial_network(tmp_path, raw):
    extra = {"id": 15, "from": 2, "to": 9, "r": 0.01, "x": 0.01, "z2": 0.0002}
    msg = _error_of(tmp_path, raw, lambda d: d["electric"]["branches"].append(extra))
    assert msg.startswith("broken.json: electric.branches: network is not radial")


def test_wrong_profile_length(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["profiles"]["load_factor"].pop())
    assert msg == "broken.json: profiles.load_factor: has 23 values, horizon is 24"


def test_duplicate_id(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["gas"]["nodes"][3].__setitem__("id", 3))
    assert msg == "broken.json: gas.nodes[3].id: duplicate id 3"


def test_hub_bus_of_wrong_type(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["hubs"][0].__setitem__("e_bus", 2))
    assert msg == "broken.json: hubs[0].e_bus: electric bus 2 is of type 0, not of hub type 1"


def test_heat_hub_must_be_sending_leaf(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["heat"]["pipes"][33].update({"from": 1, "to": 36}))
    assert msg == "broken.json: hubs[0].h_node: heat node 36 must only send supply water, but pipe 34 ends at it"


def test_gas_tree_rooted_at_source(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["gas"]["pipes"][0].update({"from": 1, "to": 16}))
    assert msg.startswith("broken.json: gas.pipes: node 1 cannot be reached from source node 37")


def test_exactly_one_slack(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["electric"]["buses"][1].__setitem__("type", -1))
    assert msg == "broken.json: electric.buses: exactly one slack bus (type -1) is required, found 2"


def test_missing_and_unknown_fields(tmp_path, raw):
    assert _error_of(tmp_path, raw, lambda d: d["scalars"].pop("cp")) == "broken.json: scalars.cp: field required"
    msg = _error_of(tmp_path, raw, lambda d: d["scalars"].__setitem__("cpp", 1.0))
    assert msg == "broken.json: scalars.cpp: unknown field"


def test_storage_levels_consistent(tmp_path, raw):
    msg = _error_of(tmp_path, raw, lambda d: d["hubs"][1]["tank"].__setitem__("initial_energy_kwh", 500.0))
    assert msg == "broken.json: hubs[1].tank.initial_energy_kwh: 500.0 outside [30.0, 300.0]"


def test_topology_helpers():
    edges = [(1, 1, 2), (2, 2, 3), (3, 2, 4)]
    inc, out = topology.adjacency([1, 2, 3, 4], edges)
    assert inc == {1: [], 2: [1], 3: [2], 4: [3]} and out == {1: [1], 2: [2, 3], 3: [], 4: []}
    assert topology.tree_problem([1, 2, 3, 4], edges) is None
    assert "disconnected" in topology.tree_problem([1, 2, 3, 4, 5], edges)
    assert topology.arborescence_problem([1, 2, 3, 4], edges, root=1) is None
    assert "cannot be reached" in topology.arborescence_problem([1, 2, 3, 4], edges, root=2)
    assert topology.sending_leaf_problem(1, edges) is None
    assert "ends at it" in topology.sending_leaf_problem(3, edges)


def _random_networks(seed: int):
    """Random trees (as node lists and directed edges) and the same with one defect: an extra edge, a missing one,
    a reversed one, a self-loop, a duplicate, a stray node."""
    import random

    rng = random.Random(seed)
    n = rng.randint(1, 9)
    nodes = list(range(1, n + 1))
    edges = [(k, rng.randint(1, t - 1), t) for k, t in enumerate(nodes[1:], start=1)]  # away from node 1
    rng.shuffle(edges)
    yield nodes, edges
    k = len(edges) + 1
    yield nodes, edges + [(k, rng.choice(nodes), rng.choice(nodes))]
    if edges:
        i = rng.randrange(len(edges))
        yield nodes, edges[:i] + edges[i + 1:]
        e = edges[i]
        yield nodes, edges[:i] + [(e[0], e[2], e[1])] + edges[i + 1:]
        yield nodes, edges + [edges[i]]
        yield nodes, edges + [(k, e[2], e[1])]
    yield nodes + [n + 1], edges


def _verdicts(nodes, edges):
    out = [topology.tree_problem(nodes, edges)]
    for root in (1, 2):
        try:
            out.append(topology.arborescence_problem(nodes, edges, root))
        except Exception as exc:  # networkx refuses a root that is not a node, on either path
            out.append(type(exc).__name__)
    return out


def test_topology_checks_without_networkx_agree_with_its_explanations(monkeypatch):
    """A valid network is recognised without importing networkx; every verdict equals what the networkx-based
    explanation alone gives (it runs for every network the quick checks do not pass)."""
    cases = [net for seed in range(150) for net in _random_networks(seed)]
    quick = [_verdicts(n, e) for n, e in cases]
    monkeypatch.setattr(topology, "_is_spanning_tree", lambda nodes, edges: False)
    monkeypatch.setattr(topology, "_is_arborescence", lambda nodes, edges, root: False)
    slow = [_verdicts(n, e) for n, e in cases]
    assert sum(q[0] is None for q in quick) >= 150 and sum(q[1] is None for q in quick) >= 150
    assert sum(q[0] is not None for q in quick) >= 300 and sum(q[1] not in (None, "NetworkXError") for q in quick) >= 300
    for q, s, net in zip(quick, slow, cases):
        assert q == s, net
