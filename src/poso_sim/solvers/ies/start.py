"""A data-only starting point for the IES dispatch NLP.

Nothing here reads a published dispatch: every value is derived from the case data.

1. Heat mass flows: the heat network is a tree whose hub nodes are leaves that only send. Every load draws a
   fixed 20 kg/s, so the flows do not depend on the hour. A small LP chooses the hub injections that minimise
   the pipes' loss weights ``sum a_k m_k`` with every pipe carrying at least ``delta`` kg/s (so no pipe starts at
   the 1e-5 floor, where ``exp(-a/m)`` underflows and the heat no longer depends on the flow) and each hub's
   injection capped so that its own boiler and CHP can heat it.
2. Temperatures: supply temperatures propagate exactly from the hubs (85 degC) along the pipe directions with
   the exponential loss and mixing; load outlets follow from the heat loads (scaled by the day's heat load
   factor, which a generated day draws apart from the electric and gas one); return temperatures propagate
   back towards the hubs. The hub heat duty follows.
3. Dispatch: boilers cover the hub heat duties, CHP 2 covers its own bus load plus a margin (its line may only
   export), CHP 1 supplies line 13's losses; storage holds 150 kWh with the charge that offsets self-discharge.
4. Electric state by a DistFlow sweep on the radial feeder; gas flows on the tree and Weymouth pressures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from poso_sim.solvers.backend import symbolic
from poso_sim.solvers.casadi_ipopt import NO_LAM_P
from poso_sim.solvers.ies.staged import StartError, element_index


@dataclass
class NetworkData:
    """The figures the start point needs, in plain Python containers (built from a Case)."""

    T: list[int]
    price: list[float]
    load_factor: list[float]  # electric and gas loads
    heat_load_factor: list[float]  # heat loads (the case's ``heat_load_factor``, else ``load_factor``)
    hubs: list[int]
    hub_ebus: dict[int, int]
    hub_hbus: dict[int, int]
    hub_gbus: dict[int, int]
    boiler_max: dict[int, float]
    # electric
    ebuses: list[int]
    ebus_p: dict[int, float]
    ebus_q: dict[int, float]
    eslack: int
    ebranches: list[int]
    ebr_from: dict[int, int]
    ebr_to: dict[int, int]
    ebr_r: dict[int, float]
    ebr_x: dict[int, float]
    ebr_z2: dict[int, float]
    v_slack: float
    # heat
    hnodes: list[int]
    hnode_load: dict[int, float]
    hpipes: list[int]
    hp_from: dict[int, int]
    hp_to: dict[int, int]
    hp_a: dict[int, float]  # lambda * L / (Cp * 1000), kg/s
    cp: float
    t_supply: float
    t_ambient: float
    m_load: float
    # gas
    gnodes: list[int]
    gnode_load: dict[int, float]
    gsource: int
    gpipes: list[int]
    gp_from: dict[int, int]
    gp_to: dict[int, int]
    gp_k: dict[int, float]
    p_source: float
    gas_hv: float
    chp_peff: float
    chp_hp: float
    boiler_eff: float
    # storage (same data for all hubs in the Manchester case, but kept per hub)
    bat_init: dict[int, float]
    bat_eff: dict[int, float]
    bat_ret: dict[int, float]
    tank_init: dict[int, float]
    tank_eff: dict[int, float]
    tank_ret: dict[int, float]


def _topological(nodes: list[int], edges: list[tuple[int, int]]) -> list[int]:
    """Kahn's order of a DAG, deterministic (ties by node id)."""
    indeg = {n: 0 for n in nodes}
    succ: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        indeg[b] += 1
        succ[a].append(b)
    ready = sorted(n for n in nodes if indeg[n] == 0)
    order: list[int] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for b in sorted(succ[n]):
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
        ready.sort()
    if len(order) != len(nodes):
        raise ValueError("the pipe directions contain a cycle")
    return order


def heat_flows(
    net: NetworkData, delta: float = 0.05, caps: dict[int, float] | None = None
) -> tuple[dict[int, float], dict[int, float]]:
    """LP for pipe supply flows and hub injections (same in every hour). Returns (m_pipe, m_hub)."""
    nodes, pipes, hubs = net.hnodes, net.hpipes, net.hubs
    node_pos = {n: i for i, n in enumerate(nodes)}
    nv = len(pipes) + len(hubs)
    a_eq = np.zeros((len(nodes), nv))
    b_eq = np.zeros(len(nodes))
    for j, k in enumerate(pipes):
        a_eq[node_pos[net.hp_to[k]], j] += 1.0  # inflow
        a_eq[node_pos[net.hp_from[k]], j] -= 1.0  # outflow
    for j, c in enumerate(hubs):
        a_eq[node_pos[net.hub_hbus[c]], len(pipes) + j] += 1.0
    for n in nodes:
        b_eq[node_pos[n]] = net.m_load if net.hnode_load[n] != 0 else 0.0
    cost = np.array([net.hp_a[k] for k in pipes] + [0.0] * len(hubs))
    bounds = [(delta, None)] * len(pipes)
    for c in hubs:
        bounds.append((0.0, None if caps is None else caps[c]))
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        # without caps the tree is always feasible
        bounds = [(delta, None)] * len(pipes) + [(0.0, None)] * len(hubs)
        res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        if res.status != 0:
            raise StartError("heat-flow start LP", str(res.message))
    m_pipe = {k: float(res.x[j]) for j, k in enumerate(pipes)}
    m_hub = {c: float(res.x[len(pipes) + j]) for j, c in enumerate(hubs)}
    return m_pipe, m_hub


def heat_flows_to_targets(
    net: NetworkData, targets: dict[int, float], delta: float = 0.05
) -> tuple[dict[int, float], dict[int, float]]:
    """LP for one hour's pipe flows with hub injections as close as possible to ``targets`` (an L1 penalty), every
    pipe at least ``delta`` kg/s, then the smallest loss weights ``sum a_k m_k``. Returns (m_pipe, m_hub)."""
    nodes, pipes, hubs = net.hnodes, net.hpipes, net.hubs
    node_pos = {n: i for i, n in enumerate(nodes)}
    npi, nh = len(pipes), len(hubs)
    nv = npi + 3 * nh  # pipes, hub injections, deviations up and down
    a_eq = np.zeros((len(nodes) + nh, nv))
    b_eq = np.zeros(len(nodes) + nh)
    for j, k in enumerate(pipes):
        a_eq[node_pos[net.hp_to[k]], j] += 1.0
        a_eq[node_pos[net.hp_from[k]], j] -= 1.0
    for j, c in enumerate(hubs):
        a_eq[node_pos[net.hub_hbus[c]], npi + j] += 1.0
        r = len(nodes) + j
        a_eq[r, npi + j] = 1.0
        a_eq[r, npi + nh + j] = -1.0
        a_eq[r, npi + 2 * nh + j] = 1.0
        b_eq[r] = max(float(targets[c]), 0.0)
    for n in nodes:
        b_eq[node_pos[n]] = net.m_load if net.hnode_load[n] != 0 else 0.0
    a = np.array([net.hp_a[k] for k in pipes])
    cost = np.concatenate([a, np.zeros(nh), np.full(2 * nh, 1e3 * max(float(a.max()), 1e-6))])
    bounds = [(delta, None)] * npi + [(0.0, None)] * (3 * nh)
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise StartError("heat-flow target LP", str(res.message))
    return ({k: float(res.x[j]) for j, k in enumerate(pipes)}, {c: float(res.x[npi + j]) for j, c in enumerate(hubs)})


def objective_aware_dispatch(nlp, x_data: np.ndarray, net: NetworkData) -> dict:
    """A convex surrogate of the variant's own objective, for an objective-aware start.

    Variables: the hubs' CHP (P, Q, H), boilers (H, G) and the grid import, per hour; every other variable stays at
    the data-only start ``x_data``. Objective: the variant's compiled objective ``nlp.f`` on that vector (the doctored
    objective for ``tampered``). Rows: the variant's own rows that involve only these variables (CHP circle, CHP
    heat-to-power, boiler gas, ``feasible``'s CHP 3 minimum), plus lossless aggregate balances per hour: grid
    import + CHP power = the start's total, CHP + boiler heat = the start's total hub heat (a uniform loss); hubs
    whose line may only export keep at least their start output. Solved by CasADi's Ipopt.

    Returns per-hour ``P_CHP``, ``Q_CHP`` and hub injections ``m_hub`` (the start's total water split by heat
    share, i.e. a uniform temperature drop), keyed ``(hub, hour)``.
    """
    import casadi as ca

    comps = ("P_CHP", "Q_CHP", "H_CHP", "H_boiler", "G_boiler", "P_grid")
    idx = {c: nlp.var_indices(c) for c in comps}
    sel = np.concatenate([idx[c] for c in comps])
    pos = -np.ones(nlp.n, dtype=np.int64)
    pos[sel] = np.arange(sel.size)
    s = ca.SX.sym("s", sel.size)
    xc = ca.SX(ca.DM(np.asarray(x_data, dtype=float)))
    xc[sel.tolist()] = s
    f = symbolic(nlp, "_f", xc)
    jr, jc = (np.asarray(a) for a in nlp.jac_structure)
    outside = np.bincount(jr, weights=(pos[jc] < 0).astype(float), minlength=nlp.m)
    inside = np.bincount(jr, minlength=nlp.m)
    rows = np.flatnonzero((outside == 0) & (inside > 0))
    g = [symbolic(nlp, "_g", xc)[rows.tolist()]]
    lbg, ubg = [np.asarray(nlp.g_lb)[rows]], [np.asarray(nlp.g_ub)[rows]]

    keyed = {c: {element_index(nlp.x_names[i]): int(pos[i]) for i in idx[c]} for c in comps}
    hubs, T = net.hubs, net.T
    x = np.asarray(x_data, dtype=float)
    for t in T:
        e = s[keyed["P_grid"][t]] + sum(s[keyed["P_CHP"][c, t]] for c in hubs)
        e0 = x[sel[keyed["P_grid"][t]]] + sum(x[sel[keyed["P_CHP"][c, t]]] for c in hubs)
        h = sum(s[keyed["H_CHP"][c, t]] + s[keyed["H_boiler"][c, t]] for c in hubs)
        h0 = sum(x[sel[keyed["H_CHP"][c, t]]] + x[sel[keyed["H_boiler"][c, t]]] for c in hubs)
        g += [e, h]
        lbg += [np.array([e0]), np.array([h0])]
        ubg += [np.array([e0]), np.array([h0])]
    lbx = np.asarray(nlp.x_lb)[sel].copy()
    ubx = np.asarray(nlp.x_ub)[sel].copy()
    adj = defaultdict(list)
    for k in net.ebranches:
        adj[net.ebr_from[k]].append(k)
        adj[net.ebr_to[k]].append(k)
    for c in hubs:
        b = net.hub_ebus[c]
        if b != net.eslack and all(net.ebr_from[k] == b for k in adj[b]):
            for t in T:
                j = keyed["P_CHP"][c, t]
                lbx[j] = max(lbx[j], x[sel[j]])
    solver = ca.nlpsol("surrogate", "ipopt", {"x": s, "f": f, "g": ca.vertcat(*g)},
                       {"ipopt": {"print_level": 0, "sb": "yes", "tol": 1e-6, "max_iter": 500}, "print_time": False,
                        **NO_LAM_P})
    out = solver(x0=np.clip(x[sel], lbx, ubx), lbx=lbx, ubx=ubx, lbg=np.concatenate(lbg), ubg=np.concatenate(ubg))
    if not solver.stats().get("success", False):
        raise StartError("objective-aware surrogate", str(solver.stats().get("return_status")))
    sv = np.asarray(out["x"]).reshape(-1)
    m_total = sum(x[i] for i in nlp.var_indices("m_hub")) / len(T)
    disp: dict[str, dict] = {"P_CHP": {}, "Q_CHP": {}, "m_hub": {}}
    for t in T:
        heat = {c: sv[keyed["H_CHP"][c, t]] + sv[keyed["H_boiler"][c, t]] for c in hubs}
        tot = sum(heat.values()) or 1.0
        for c in hubs:
            disp["P_CHP"][c, t] = float(sv[keyed["P_CHP"][c, t]])
            disp["Q_CHP"][c, t] = float(sv[keyed["Q_CHP"][c, t]])
            disp["m_hub"][c, t] = float(m_total * heat[c] / tot)
    return disp


def _heat_state(net: NetworkData, m_pipe: dict[int, float], m_hub: dict[int, float]) -> dict[str, dict]:
    """Temperatures of the heat network for fixed flows, propagated exactly, and the hub heat duties."""
    out: dict[str, dict] = defaultdict(dict)
    hub_of_node = {net.hub_hbus[c]: c for c in net.hubs}
    h_in = defaultdict(list)
    h_out = defaultdict(list)
    for k in net.hpipes:
        h_out[net.hp_from[k]].append(k)
        h_in[net.hp_to[k]].append(k)
    order = _topological(net.hnodes, [(net.hp_from[k], net.hp_to[k]) for k in net.hpipes])
    per_hour_pipe, per_hour_hub = m_pipe, m_hub
    ta = net.t_ambient
    for t_i, t in enumerate(net.T):
        # flows may be the same every hour ({k: m}) or per hour ({t: {k: m}})
        m_pipe = per_hour_pipe.get(t, per_hour_pipe) if t in per_hour_pipe and isinstance(per_hour_pipe[t], dict) else per_hour_pipe
        m_hub = per_hour_hub.get(t, per_hour_hub) if t in per_hour_hub and isinstance(per_hour_hub[t], dict) else per_hour_hub
        decay = {k: float(np.exp(-net.hp_a[k] / m_pipe[k])) for k in net.hpipes}
        lam = net.heat_load_factor[t_i]
        tau_s: dict[int, float] = {}
        tau_l: dict[int, float] = {}
        tau_r: dict[int, float] = {}
        th_s: dict[int, float] = {}
        th_r: dict[int, float] = {}
        for n in order:
            if n in hub_of_node:
                tau_s[n] = net.t_supply
            else:
                flow_in = sum(m_pipe[k] for k in h_in[n])
                tau_s[n] = sum(m_pipe[k] * th_s[k] for k in h_in[n]) / flow_in
            for k in h_out[n]:
                th_s[k] = ta + (tau_s[n] - ta) * decay[k]
            loaded = net.hnode_load[n] != 0
            tau_l[n] = tau_s[n] - net.hnode_load[n] * lam / (net.cp * net.m_load) if loaded else 0.0
        for n in reversed(order):
            ml = net.m_load if net.hnode_load[n] != 0 else 0.0
            inflow = sum(m_pipe[k] * th_r[k] for k in h_out[n]) + ml * tau_l[n]
            if n in hub_of_node:
                mh = m_hub[hub_of_node[n]]
                tau_r[n] = inflow / mh if mh > 1e-9 else tau_s[n]
            else:
                tau_r[n] = inflow / sum(m_pipe[k] for k in h_in[n])
            for k in h_in[n]:
                th_r[k] = ta + (tau_r[n] - ta) * decay[k]
        for n in net.hnodes:
            out["T_sup"][n, t] = tau_s[n]
            out["T_ret"][n, t] = tau_r[n]
            out["T_load_out"][n, t] = tau_l[n]
            out["m_load"][n, t] = net.m_load if net.hnode_load[n] != 0 else 0.0
        for k in net.hpipes:
            out["m_sup"][k, t] = m_pipe[k]
            out["m_ret"][k, t] = m_pipe[k]
            out["T_end_sup"][k, t] = th_s[k]
            out["T_end_ret"][k, t] = th_r[k]
        for c in net.hubs:
            out["m_hub"][c, t] = m_hub[c]
            out["hub_heat"][c, t] = net.cp * m_hub[c] * (net.t_supply - tau_r[net.hub_hbus[c]])
    return out


def _hub_duties(net: NetworkData, m_pipe: dict[int, float], m_hub: dict[int, float]) -> dict[int, float]:
    """Peak heat duty of each hub over the horizon for given flows."""
    state = _heat_state(net, m_pipe, m_hub)
    return {c: max(state["hub_heat"][c, t] for t in net.T) for c in net.hubs}


def start_point(
    net: NetworkData, *, delta: float = 0.05, chp2_margin: float = 30.0, dispatch: dict | None = None
) -> dict[str, dict]:
    """All variable values of the canonical model, as ``{component: {index: value}}``.

    ``dispatch`` (see :func:`objective_aware_dispatch`): per-hour hub injections ``m_hub[(c, t)]`` and CHP outputs
    ``P_CHP``/``Q_CHP[(c, t)]`` to build the start around, instead of the data-only rules, and optionally the
    storage schedule (``E_bat``, ``P_ch``, ``P_dis``, ``E_tank``, ``H_ch``, ``H_dis``).
    """
    v: dict[str, dict] = defaultdict(dict)
    m_pipe, m_hub = _start_flows(net, delta, dispatch)
    state = _heat_state(net, m_pipe, m_hub)
    for key in ("T_sup", "T_ret", "T_load_out", "m_load", "m_sup", "m_ret", "T_end_sup", "T_end_ret", "m_hub"):
        v[key] = state[key]
    _storage_start(net, v)
    for key in ("E_bat", "P_ch", "P_dis", "E_tank", "H_ch", "H_dis"):  # a dispatch's storage schedule
        if dispatch is not None and key in dispatch:
            v[key] = dict(dispatch[key])
    tree = _ElectricTree(net)
    for t_i, t in enumerate(net.T):
        lam = net.load_factor[t_i]
        pc, qc = _hub_dispatch(net, v, state["hub_heat"], tree, t, lam, chp2_margin, dispatch)
        _distflow_hour(net, v, tree, t, lam, pc, qc)
    _gas_start(net, v)
    return dict(v)


def _start_flows(net: NetworkData, delta: float, dispatch: dict | None) -> tuple[dict, dict]:
    """The heat flows of the start: the loss-weighted LP with the hub injections capped so that each boiler alone
    covers its hub's peak duty (a few LP passes), or per hour towards the dispatch's hub injections."""
    if dispatch is not None:
        m_pipe, m_hub = {}, {}
        for t in net.T:
            m_pipe[t], m_hub[t] = heat_flows_to_targets(net, {c: dispatch["m_hub"][c, t] for c in net.hubs}, delta)
        return m_pipe, m_hub
    caps = {c: net.boiler_max[c] / (net.cp * 4.0) for c in net.hubs}
    for _ in range(6):
        m_pipe, m_hub = heat_flows(net, delta=delta, caps=caps)
        duty = _hub_duties(net, m_pipe, m_hub)
        over = {c: duty[c] / (0.95 * net.boiler_max[c]) for c in net.hubs}
        if max(over.values()) <= 1.0:
            break
        for c in net.hubs:
            if over[c] > 1.0:
                caps[c] = m_hub[c] / over[c]
    return m_pipe, m_hub


def _storage_start(net: NetworkData, v: dict) -> None:
    """Storage holds 150 kWh; the charge offsets self-discharge."""
    for c in net.hubs:
        for t in net.T:
            v["E_bat"][c, t] = net.bat_init[c]
            v["P_ch"][c, t] = (1 - net.bat_ret[c]) * net.bat_init[c]
            v["P_dis"][c, t] = 0.0
            v["E_tank"][c, t] = net.tank_init[c]
            v["H_ch"][c, t] = (1 - net.tank_ret[c]) * net.tank_init[c]
            v["H_dis"][c, t] = 0.0


class _ElectricTree:
    """The radial feeder as a tree rooted at the slack bus: breadth-first order, each bus's line to its parent and
    lines to its children."""

    def __init__(self, net: NetworkData):
        self.net = net
        self.adj: dict[int, list[int]] = defaultdict(list)
        for k in net.ebranches:
            self.adj[net.ebr_from[k]].append(k)
            self.adj[net.ebr_to[k]].append(k)
        self.parent_line: dict[int, int] = {}
        self.child_lines: dict[int, list[int]] = defaultdict(list)
        self.bfs = [net.eslack]
        seen = {net.eslack}
        for b in self.bfs:
            for k in sorted(self.adj[b]):
                other = net.ebr_to[k] if net.ebr_from[k] == b else net.ebr_from[k]
                if other not in seen:
                    seen.add(other)
                    self.parent_line[other] = k
                    self.child_lines[b].append(k)
                    self.bfs.append(other)

    def child(self, k: int, b: int) -> int:
        return self.net.ebr_to[k] if self.net.ebr_from[k] == b else self.net.ebr_from[k]


def _hub_dispatch(net: NetworkData, v: dict, hub_heat: dict, tree: _ElectricTree, t: int, lam: float,
                  chp2_margin: float, dispatch: dict | None) -> tuple[dict, dict]:
    """Hour ``t``'s CHP and boiler outputs: the dispatch's CHP outputs (within the hub's heat duty), or CHP 2
    covering its bus (and a margin: its line may only export) and the boilers the rest of the heat."""
    pc: dict[int, float] = {}
    qc: dict[int, float] = {}
    for c in net.hubs:
        b = net.hub_ebus[c]
        leaf_export = b != net.eslack and all(net.ebr_from[k] == b for k in tree.adj[b])  # its lines may only export
        if dispatch is not None and "P_CHP" in dispatch:
            tank_net = net.tank_eff[c] * v["H_dis"][c, t] - v["H_ch"][c, t] / net.tank_eff[c]
            room = max(hub_heat[c, t] - tank_net, 0.0) / net.chp_hp  # CHP heat cannot exceed the hub's duty
            pc[c] = min(dispatch["P_CHP"][c, t], room)
            qc[c] = dispatch["Q_CHP"][c, t]
        elif leaf_export:
            pc[c] = net.ebus_p[b] * lam + chp2_margin
            qc[c] = net.ebus_q[b] * lam + chp2_margin / 3
        else:
            pc[c] = 0.0
            qc[c] = 0.0
        v["P_CHP"][c, t] = pc[c]
        v["Q_CHP"][c, t] = qc[c]
        v["H_CHP"][c, t] = net.chp_hp * pc[c]
        tank_net = net.tank_eff[c] * v["H_dis"][c, t] - v["H_ch"][c, t] / net.tank_eff[c]
        hb = max(hub_heat[c, t] - net.chp_hp * pc[c] - tank_net, 0.0)
        v["H_boiler"][c, t] = hb
        v["G_boiler"][c, t] = hb / (net.gas_hv * net.boiler_eff)
    return pc, qc


def _distflow_hour(net: NetworkData, v: dict, tree: _ElectricTree, t: int, lam: float, pc: dict, qc: dict) -> None:
    """Hour ``t``'s electric state: a DistFlow sweep (8 backward/forward passes) on the tree for the net demand."""
    pd = {b: net.ebus_p[b] * lam for b in net.ebuses}
    qd = {b: net.ebus_q[b] * lam for b in net.ebuses}
    for c in net.hubs:
        b = net.hub_ebus[c]
        pd[b] -= pc[c] + net.bat_eff[c] * v["P_dis"][c, t] - v["P_ch"][c, t] / net.bat_eff[c]
        qd[b] -= qc[c]
    ell = {k: 0.0 for k in net.ebranches}
    volt = {b: net.v_slack for b in net.ebuses}
    for _ in range(8):
        P: dict[int, float] = {}
        Q: dict[int, float] = {}
        rp: dict[int, float] = {}
        rq: dict[int, float] = {}
        for b in reversed(tree.bfs):  # backward sweep over the tree rooted at the slack
            if b == net.eslack:
                continue
            k = tree.parent_line[b]
            kids = tree.child_lines[b]
            rp[b] = pd[b] + sum(rp[tree.child(j, b)] + net.ebr_r[j] * ell[j] / 1000 for j in kids)
            rq[b] = qd[b] + sum(rq[tree.child(j, b)] + net.ebr_x[j] * ell[j] / 1000 for j in kids)
            if net.ebr_from[k] == b:  # the line points towards the slack: b sends -R into it
                P[k], Q[k] = -rp[b], -rq[b]
            else:
                P[k] = rp[b] + net.ebr_r[k] * ell[k] / 1000
                Q[k] = rq[b] + net.ebr_x[k] * ell[k] / 1000
        for b in tree.bfs:  # forward sweep: voltages
            if b == net.eslack:
                continue
            k = tree.parent_line[b]
            drop = 2 * (net.ebr_r[k] * P[k] + net.ebr_x[k] * Q[k]) / 1000 - net.ebr_z2[k] * ell[k] / 1e6
            parent = net.ebr_from[k] if net.ebr_to[k] == b else net.ebr_to[k]
            volt[b] = volt[parent] - drop if net.ebr_to[k] == b else volt[parent] + drop
        for k in net.ebranches:
            ell[k] = (P[k] ** 2 + Q[k] ** 2) / volt[net.ebr_from[k]]
    for k in net.ebranches:
        v["P_line"][k, t] = max(P[k], 0.0)
        v["Q_line"][k, t] = max(Q[k], 0.0)
        v["I_line"][k, t] = ell[k]
    for b in net.ebuses:
        v["V"][b, t] = volt[b]
    v["P_grid"][t] = max(sum(P[k] for k in tree.child_lines[net.eslack]), 0.0)
    v["Q_grid"][t] = max(sum(Q[k] for k in tree.child_lines[net.eslack]), 0.0)


def _gas_start(net: NetworkData, v: dict) -> None:
    """Gas: tree flows from the source (loads, CHPs' and boilers' gas) and Weymouth pressures."""
    g_in = defaultdict(list)
    g_out = defaultdict(list)
    for k in net.gpipes:
        g_out[net.gp_from[k]].append(k)
        g_in[net.gp_to[k]].append(k)
    g_order = _topological(net.gnodes, [(net.gp_from[k], net.gp_to[k]) for k in net.gpipes])
    hub_at_gbus = {b: c for c, b in net.hub_gbus.items()}
    for t_i, t in enumerate(net.T):
        lam = net.load_factor[t_i]
        flow: dict[int, float] = {}
        for n in reversed(g_order):
            dem = net.gnode_load[n] * lam / net.gas_hv
            if n in hub_at_gbus:
                c = hub_at_gbus[n]
                dem += v["P_CHP"][c, t] / (net.chp_peff * net.gas_hv) + v["G_boiler"][c, t]
            for k in g_in[n]:
                flow[k] = dem + sum(flow[j] for j in g_out[n])
            if n == net.gsource:
                v["gas_source"][t] = dem + sum(flow[j] for j in g_out[n])
        pres = {net.gsource: net.p_source}
        for n in g_order:
            for k in g_out[n]:
                pres[net.gp_to[k]] = pres[n] - net.gp_k[k] * flow[k] ** 2
        for k in net.gpipes:
            v["gas_flow"][k, t] = flow[k]
        for n in net.gnodes:
            v["gas_p"][n, t] = pres[n]


def network_data(case) -> NetworkData:
    """Flatten a Case (or its JSON dictionary) into the containers the start point uses."""
    d = case if isinstance(case, dict) else case.model_dump(by_alias=True)
    s = d["scalars"]
    T = list(range(1, int(d["horizon"]) + 1))
    hubs = sorted(h["id"] for h in d["hubs"])
    H = {h["id"]: h for h in d["hubs"]}
    eb = {b["id"]: b for b in d["electric"]["buses"]}
    ebr = {k["id"]: k for k in d["electric"]["branches"]}
    hn = {n["id"]: n for n in d["heat"]["nodes"]}
    hp = {k["id"]: k for k in d["heat"]["pipes"]}
    gn = {n["id"]: n for n in d["gas"]["nodes"]}
    gp = {k["id"]: k for k in d["gas"]["pipes"]}
    cp = s["cp"]
    heat_lf = d["profiles"].get("heat_load_factor")
    return NetworkData(
        T=T,
        price=list(d["profiles"]["price"]),
        load_factor=list(d["profiles"]["load_factor"]),
        heat_load_factor=list(heat_lf if heat_lf is not None else d["profiles"]["load_factor"]),
        hubs=hubs,
        hub_ebus={c: H[c]["e_bus"] for c in hubs},
        hub_hbus={c: H[c]["h_node"] for c in hubs},
        hub_gbus={c: H[c]["g_node"] for c in hubs},
        boiler_max={c: H[c]["boiler_max_kw"] for c in hubs},
        ebuses=sorted(eb),
        ebus_p={b: eb[b]["p_load"] for b in eb},
        ebus_q={b: eb[b]["q_load"] for b in eb},
        eslack=next(b for b in sorted(eb) if eb[b]["type"] < 0),
        ebranches=sorted(ebr),
        ebr_from={k: ebr[k]["from"] for k in ebr},
        ebr_to={k: ebr[k]["to"] for k in ebr},
        ebr_r={k: ebr[k]["r"] for k in ebr},
        ebr_x={k: ebr[k]["x"] for k in ebr},
        ebr_z2={k: ebr[k]["z2"] for k in ebr},
        v_slack=s["v2_slack"],
        hnodes=sorted(hn),
        hnode_load={n: hn[n]["load_kw"] for n in hn},
        hpipes=sorted(hp),
        hp_from={k: hp[k]["from"] for k in hp},
        hp_to={k: hp[k]["to"] for k in hp},
        hp_a={k: hp[k]["loss_coeff"] * hp[k]["length_m"] / (cp * 1000.0) for k in hp},
        cp=cp,
        t_supply=s["t_supply"],
        t_ambient=s["t_ambient"],
        m_load=s["load_mass_flow"],
        gnodes=sorted(gn),
        gnode_load={n: gn[n]["load_kw"] for n in gn},
        gsource=next(n for n in sorted(gn) if gn[n]["type"] < 0),
        gpipes=sorted(gp),
        gp_from={k: gp[k]["from"] for k in gp},
        gp_to={k: gp[k]["to"] for k in gp},
        gp_k={k: gp[k]["K"] for k in gp},
        p_source=s["gas_source_pressure"],
        gas_hv=s["gas_heating_value"],
        chp_peff=s["chp_power_eff"],
        chp_hp=s["chp_heat_to_power"],
        boiler_eff=s["boiler_eff"],
        bat_init={c: H[c]["battery"]["initial_energy_kwh"] for c in hubs},
        bat_eff={c: H[c]["battery"]["efficiency"] for c in hubs},
        bat_ret={c: H[c]["battery"]["retention"] for c in hubs},
        tank_init={c: H[c]["tank"]["initial_energy_kwh"] for c in hubs},
        tank_eff={c: H[c]["tank"]["efficiency"] for c in hubs},
        tank_ret={c: H[c]["tank"]["retention"] for c in hubs},
    )
