"""The tampered recipe's start (poso_sim.solvers.ies.network_start): the whole-network surrogate and the per-hour
MILP flow pattern. No staged solve runs here (about 3 s: one surrogate, 24 small MILPs)."""

from __future__ import annotations

import numpy as np
import pytest

from poso_sim.solvers.api import get_problem
from poso_sim.solvers.ies import canonical_start, network_start
from poso_sim.solvers.ies.network_start import milp_flow_pattern, network_dispatch
from poso_sim.solvers.ies.start import network_data

pytestmark = pytest.mark.solver


@pytest.fixture(scope="module")
def tampered():
    model, nlp = get_problem("manchester", "tampered")
    net = network_data(model._case)
    x_data = canonical_start(nlp, model._case)
    return nlp, net, x_data, network_dispatch(nlp, x_data, net)


def test_surrogate_dispatch_is_feasible_for_its_hub_rows_and_follows_the_doctored_objective(tampered) -> None:
    nlp, net, _, disp = tampered
    for (c, t), p in disp["P_CHP"].items():
        assert p ** 2 + disp["Q_CHP"][c, t] ** 2 <= 1e6 * (1 + 1e-6)  # the CHP circle
    for c in net.hubs:  # battery and tank schedules stay within their bounds
        assert all(30 - 1e-6 <= disp["E_bat"][c, t] <= 300 + 1e-6 for t in net.T)
        assert all(-1e-6 <= disp["H_dis"][c, t] <= 50 + 1e-6 for t in net.T)
    # the doctored objective rewards CHP 3 at 1 $/kWh: the surrogate runs it every hour (the data-only start does not)
    assert min(disp["P_CHP"][3, t] for t in net.T) > 300
    # hubs inject all the loads' water
    loads = sum(net.m_load for n in net.hnodes if net.hnode_load[n] != 0)
    for t in net.T:
        assert sum(disp["m_hub"][c, t] for c in net.hubs) == pytest.approx(loads, rel=1e-6)


def test_milp_pattern_balances_the_tree_feeds_every_load_and_closes_the_dearest_pipes(tampered) -> None:
    nlp, net, _, disp = tampered
    m_pipe, m_hub = milp_flow_pattern(net, disp)
    hub_node = {net.hub_hbus[c]: c for c in net.hubs}
    for t in net.T:
        flow = {k: (m_pipe[k, t] if m_pipe[k, t] > 0.02 else 0.0) for k in net.hpipes}
        assert all(v == 0.0 or v >= 0.05 - 1e-9 for v in flow.values())  # open pipes carry at least 0.05 kg/s
        for n in net.hnodes:
            inflow = sum(flow[k] for k in net.hpipes if net.hp_to[k] == n)
            outflow = sum(flow[k] for k in net.hpipes if net.hp_from[k] == n)
            injected = m_hub[hub_node[n], t] if n in hub_node else 0.0
            load = net.m_load if net.hnode_load[n] != 0 else 0.0
            assert inflow + injected - outflow == pytest.approx(load, abs=1e-6), (n, t)
            assert injected >= -1e-9
    # the cheapest pattern of the base day: the branch behind node 27 (no load) falls dry (pipes 23, 24, 26), and
    # the long pipes 32 and 33 towards node 20 close (a rule that every node keeps an open in-pipe, or that each hub
    # injects the water its surrogate heat needs, kept them open and the solve crept to a dearer optimum)
    for t in net.T:
        closed = {k for k in net.hpipes if m_pipe[k, t] == 0.02}
        assert {23, 24, 26, 32, 33} <= closed, (t, closed)


def test_network_start_is_built_around_the_variant_and_its_reference_differs_only_in_flows(tampered) -> None:
    nlp, net, x_data, _ = tampered
    model, _ = get_problem("manchester", "tampered")
    x_start, x_ref = network_start(nlp, model._case)
    assert nlp.f(x_start) < nlp.f(x_data) - 5000  # the doctored objective: -10 906 against 1 361 on the base day
    flows = np.concatenate([nlp.var_indices(c) for c in ("m_sup", "m_ret", "m_hub")])
    others = np.setdiff1d(np.arange(nlp.n), flows)
    np.testing.assert_array_equal(x_start[others], x_ref[others])
    assert not np.allclose(x_start[flows], x_ref[flows])
    assert x_start[nlp.var_indices("m_sup")].min() >= 0.05 - 1e-9  # no pipe starts near the loss cliff's floor


def test_surrogate_that_fails_with_the_monotone_barrier_is_solved_with_the_adaptive_one(tampered, monkeypatch) -> None:
    """The monotone strategy is tried first; when it does not converge (here: stopped after 3 iterations), the
    adaptive one solves the surrogate, and no StartError reaches the recipe."""
    import importlib

    import casadi as ca

    ns = importlib.import_module("poso_sim.solvers.ies.network_start")
    nlp, net, x_data, disp = tampered
    real, tried = ca.nlpsol, []

    def nlpsol(name, plugin, problem, opts):
        tried.append(opts["ipopt"]["mu_strategy"])
        if opts["ipopt"]["mu_strategy"] == "monotone":
            opts = {**opts, "ipopt": {**opts["ipopt"], "max_iter": 3}}
        return real(name, plugin, problem, opts)

    monkeypatch.setattr(ca, "nlpsol", nlpsol)
    got = ns.network_dispatch(nlp, x_data, net)
    assert tried == ["monotone", "adaptive"]
    assert max(abs(got["P_CHP"][k] - disp["P_CHP"][k]) for k in disp["P_CHP"]) < 1.0  # the same convex optimum
