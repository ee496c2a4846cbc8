"""The whole-network start of a variant (``Recipe(start="network")``): a convex surrogate of the variant's own
problem over the whole network, and the per-hour MILP flow pattern that serves as the first proximal reference.

**The surrogate** (:func:`network_dispatch`) keeps the variant's compiled objective and those of its rows that stay
convex once the losses are dropped: the electric network lossless (``I_line = 0``: the nodal balances and the
voltage drops become linear, flows keep their fixed directions), storage, the CHP circle and heat-to-power ratio,
boiler gas and caps, the heat tree's supply mass balances, and each hub's heat balance with a **uniform
temperature drop** (every hub's return temperature held at the data-only start's mean: heat is proportional to
the water a hub injects). Every other variable (temperatures, return flows, gas) stays at the data-only start; the
current-definition rows (``SOCPeq``) are left out. The rows come from the compiled problem itself, so a variant's
extra rows (``feasible``'s CHP 3 minimum) are kept too. Solved by CasADi's Ipopt (about 6 000 variables; the
monotone barrier strategy, the adaptive one if that fails).

**The MILP pattern** (:func:`milp_flow_pattern`): per hour, which heat pipes carry water (HiGHS through
``scipy.optimize.milp``): each open pipe is charged its fixed loss (``Cp (T_supply - T_ambient) a_k``), open pipes
carry at least 0.05 kg/s, the tree's mass balances hold and the hubs inject what they like (a tie-break of 1e-3 per
kg/s towards the surrogate's injections). Nothing forces a pipe open where no load needs it: a branch without loads
may fall dry, and no hub is held to the water its surrogate heat would need at a uniform temperature drop (its real
return temperature is free). Both such rules led to dearer patterns and a final stage that creeps (docs/solver.md).
"""

from __future__ import annotations

import numpy as np

from poso_sim.solvers.backend import symbolic
from poso_sim.solvers.casadi_ipopt import NO_LAM_P
from poso_sim.solvers.ies.staged import StartError, element_index

__all__ = ["network_dispatch", "milp_flow_pattern"]

#: The components the surrogate decides (all others are held at the data-only start).
_DECIDED = ("P_CHP", "Q_CHP", "H_CHP", "P_grid", "Q_grid", "P_line", "Q_line", "V", "E_bat", "P_ch", "P_dis",
            "H_boiler", "G_boiler", "E_tank", "H_ch", "H_dis", "m_load", "m_sup", "m_hub")  # fmt: skip
#: Row families that are not convex even without losses (the current definition ``v * l = P^2 + Q^2``).
_NONCONVEX = ("SOCPeq",)
#: Ipopt's barrier strategies for the surrogate, in turn until one converges: the monotone one takes about 50
#: iterations (0.75 s) on the base day where the adaptive one takes 85 (1.3 s), and the solves from its start took
#: 1 179 iterations in all on 12 generated days against 1 305.
_MU_STRATEGIES = ("monotone", "adaptive")
#: What the start takes from the surrogate.
_KEPT = ("P_CHP", "Q_CHP", "m_hub", "E_bat", "P_ch", "P_dis", "E_tank", "H_ch", "H_dis", "H_boiler")


def network_dispatch(nlp, x_data: np.ndarray, net) -> dict:
    """The surrogate's dispatch, keyed like :func:`~poso_sim.solvers.ies.start.start_point`'s ``dispatch``:
    ``{component: {(entity, hour): value}}`` for the CHP outputs, the hub injections and the storage.

    Raises :class:`~poso_sim.solvers.ies.staged.StartError` when Ipopt does not solve it."""
    import casadi as ca

    x = np.asarray(x_data, dtype=float).copy()
    sel = np.concatenate([nlp.var_indices(c) for c in _DECIDED])
    const = _lossless_constants(nlp, x, net)
    allowed = np.zeros(nlp.n, dtype=bool)
    allowed[sel] = True
    allowed[list(const)] = True
    for i, val in const.items():
        x[i] = val
    jr, jc = (np.asarray(a) for a in nlp.jac_structure)
    bad = np.bincount(jr, weights=(~allowed[jc]).astype(float), minlength=nlp.m) > 0
    for fam in _NONCONVEX:
        if fam in nlp.row_component_names:
            bad[nlp.row_indices(fam)] = True
    rows = np.flatnonzero(~bad & (np.bincount(jr, minlength=nlp.m) > 0))
    s = ca.SX.sym("s", sel.size)
    xc = ca.SX(ca.DM(x))
    xc[sel.tolist()] = s
    f = symbolic(nlp, "_f", xc)
    g = symbolic(nlp, "_g", xc)[rows.tolist()]
    lbx, ubx = np.asarray(nlp.x_lb)[sel], np.asarray(nlp.x_ub)[sel]
    for strategy in _MU_STRATEGIES:
        solver = ca.nlpsol("network_surrogate", "ipopt", {"x": s, "f": f, "g": g},
                           {"ipopt": {"print_level": 0, "sb": "yes", "tol": 1e-6, "max_iter": 1000,
                                      "mu_strategy": strategy}, "print_time": False, **NO_LAM_P})
        out = solver(x0=np.clip(x[sel], lbx, ubx), lbx=lbx, ubx=ubx, lbg=np.asarray(nlp.g_lb)[rows],
                     ubg=np.asarray(nlp.g_ub)[rows])
        if solver.stats().get("success", False):
            break
    else:
        raise StartError("network surrogate", str(solver.stats().get("return_status")))
    x[sel] = np.asarray(out["x"]).reshape(-1)
    return {c: {element_index(nlp.x_names[i]): float(x[i]) for i in nlp.var_indices(c)} for c in _KEPT}


def _lossless_constants(nlp, x: np.ndarray, net) -> dict[int, float]:
    """``I_line = 0``; each hub's return temperature at the start's mean per hour (a uniform temperature drop)."""
    const = {int(i): 0.0 for i in nlp.var_indices("I_line")}
    for t in net.T:
        hubs = [(nlp.var_index(f"m_hub[{c},{t}]"), nlp.var_index(f"T_ret[{net.hub_hbus[c]},{t}]")) for c in net.hubs]
        water = sum(x[m] for m, _ in hubs)
        drop = sum(x[m] * (net.t_supply - x[tr]) for m, tr in hubs) / water if water > 0 else 0.0
        for _, tr in hubs:
            const[int(tr)] = net.t_supply - drop
    return const


def milp_flow_pattern(net, disp: dict, *, open_min: float = 0.05, closed: float = 0.02) -> tuple[dict, dict]:
    """Per hour, the pipes that carry water and the flows: ``({(pipe, hour): m}, {(hub, hour): m})``; a closed
    pipe gets ``closed`` (a proximal reference, not a flow that balances). ``disp`` is :func:`network_dispatch`'s:
    its hub injections break ties between patterns of equal loss."""
    m_pipe_out: dict = {}
    m_hub_out: dict = {}
    for t in net.T:
        pipes, hubs = _milp_hour(net, {c: disp["m_hub"][c, t] for c in net.hubs}, open_min, closed)
        m_pipe_out.update({(k, t): v for k, v in pipes.items()})
        m_hub_out.update({(c, t): v for c, v in hubs.items()})
    return m_pipe_out, m_hub_out


def _milp_hour(net, target: dict, open_min: float, closed: float) -> tuple[dict, dict]:
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_matrix

    nodes, pipes, hubs = net.hnodes, net.hpipes, net.hubs
    npi, nh = len(pipes), len(hubs)
    pos = {n: i for i, n in enumerate(nodes)}
    # variables: flows m_k, open y_k, injections m_c, deviations d_c
    nv = 2 * npi + 2 * nh
    total = sum(net.m_load for n in nodes if net.hnode_load[n] != 0)
    heat_per_kg = net.cp * (net.t_supply - net.t_ambient)
    cost = np.zeros(nv)
    cost[npi:2 * npi] = [heat_per_kg * net.hp_a[k] for k in pipes]
    cost[2 * npi + nh:] = 1e-3  # a tie-break towards the surrogate's injections
    kcl = lil_matrix((len(nodes), nv))
    for j, k in enumerate(pipes):
        kcl[pos[net.hp_to[k]], j] += 1.0
        kcl[pos[net.hp_from[k]], j] -= 1.0
    for j, c in enumerate(hubs):
        kcl[pos[net.hub_hbus[c]], 2 * npi + j] += 1.0
    load = np.array([net.m_load if net.hnode_load[n] != 0 else 0.0 for n in nodes])
    link = lil_matrix((2 * npi + 2 * nh, nv))  # m_k - M y_k <= 0, m_k - open_min y_k >= 0, |m_c - target| <= d_c
    for j in range(npi):
        link[j, j], link[j, npi + j] = 1.0, -total
        link[npi + j, j], link[npi + j, npi + j] = 1.0, -open_min
    for j, c in enumerate(hubs):
        r = 2 * npi + j
        link[r, 2 * npi + j], link[r, 2 * npi + nh + j] = 1.0, -1.0
        link[r + nh, 2 * npi + j], link[r + nh, 2 * npi + nh + j] = 1.0, 1.0
    tgt = np.array([target[c] for c in hubs])
    lo = np.r_[np.full(npi, -np.inf), np.zeros(npi), np.full(nh, -np.inf), tgt]
    hi = np.r_[np.zeros(npi), np.full(npi, np.inf), tgt, np.full(nh, np.inf)]
    cons = [LinearConstraint(kcl.tocsr(), load, load), LinearConstraint(link.tocsr(), lo, hi)]
    integrality = np.r_[np.zeros(npi), np.ones(npi), np.zeros(2 * nh)]
    bounds = Bounds(np.zeros(nv), np.r_[np.full(npi, np.inf), np.ones(npi), np.full(2 * nh, np.inf)])
    res = milp(cost, constraints=cons, integrality=integrality, bounds=bounds, options={"time_limit": 5.0})
    if res.x is None:
        raise StartError("heat-flow pattern MILP", str(res.message))
    m = res.x
    flows = {k: (float(m[j]) if m[npi + j] > 0.5 else closed) for j, k in enumerate(pipes)}
    return flows, {c: float(m[2 * npi + j]) for j, c in enumerate(hubs)}
