"""The capacity start of a variant (``Recipe(start="capacity")``): the data-only start point
(:mod:`poso_sim.solvers.ies.start`) with each hub's water chosen by the heat the hub can make.

The data-only start caps each hub's injection so that its boiler alone covers the hub's peak duty, starting from a
cap that assumes a 4 K temperature drop. A variant that forces a CHP on (``feasible``: ``P_CHP[3,t] >= 300 kW``)
makes that hub's heat nearly free, and its optimum carries much more water there: on the base day hub 3 injects
140 kg/s at the optimum against 60 at the data-only start (and hub 1, with the large boiler, 40 against 101). The
recipe's final stage then spends most of its iterations moving that water between hubs.

Here each hub may deliver, every hour, its boiler's cap (95 %) plus the heat of the least CHP output the variant's
rows force (:func:`forced_chp_output`: rows linear in one ``P_CHP`` variable; none in the honest problem), and the
loss-weighted LP of the data-only start routes each hour's water with caps that start at no real limit (a 1 K drop)
and shrink, as there, until each hub's duty fits (:func:`capacity_hub_water`). Everything else (temperatures,
dispatch rules, storage, electric and gas state) is the data-only start's. The honest problem forces no CHP; its
capacity start still differs from the data-only start, whose first caps assume the 4 K drop: hub 1 starts at
40 kg/s (the optimum's) instead of 101.
"""

from __future__ import annotations

import numpy as np

from poso_sim.solvers.ies.staged import element_index

__all__ = ["forced_chp_output", "capacity_hub_water"]

#: The share of a boiler's cap the start plans to use (the data-only start's margin).
BOILER_SHARE = 0.95
#: The temperature drop (K) behind the first caps of the hub injections (the data-only start assumes 4 K).
FIRST_DROP = 1.0


def forced_chp_output(nlp, x: np.ndarray) -> dict[tuple[int, int], float]:
    """``{(hub, hour): least P_CHP}`` that rows linear in a single ``P_CHP`` variable force (a lower bound written
    as a row, as ``feasible``'s ``ForceCHPOn``); ``x`` is any point where ``nlp``'s rows evaluate."""
    if "P_CHP" not in nlp.var_component_names:
        return {}
    jr, jc = (np.asarray(a) for a in nlp.jac_structure)
    counts = np.bincount(jr, minlength=nlp.m)
    chp = np.zeros(nlp.n, dtype=bool)
    chp[nlp.var_indices("P_CHP")] = True
    pos = np.full(nlp.m, -1)
    pos[jr] = np.arange(len(jr))
    rows = np.flatnonzero(counts == 1)
    rows = rows[chp[jc[pos[rows]]]]
    if not len(rows):
        return {}
    entries = pos[rows]
    cols = jc[entries]
    x = np.asarray(x, dtype=float)
    j0 = np.asarray(nlp.jac(x))[entries]
    x1 = x.copy()
    x1[cols] += 1.0
    j1 = np.asarray(nlp.jac(x1))[entries]
    linear = (np.abs(j0 - j1) <= 1e-12 * np.maximum(1.0, np.abs(j0))) & (j0 != 0)
    offset = np.asarray(nlp.g(x))[rows] - j0 * x[cols]  # row = offset + a * P_CHP
    bound = np.where(j0 > 0, np.asarray(nlp.g_lb)[rows] - offset, np.asarray(nlp.g_ub)[rows] - offset) / np.where(
        j0 != 0, j0, 1.0)
    out: dict[tuple[int, int], float] = {}
    for col, b, ok in zip(cols, bound, linear):
        if ok and np.isfinite(b) and b > 0:
            hub, hour = element_index(nlp.x_names[col])
            out[hub, hour] = max(out.get((hub, hour), 0.0), float(b))
    return out


def capacity_hub_water(net, least_chp: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    """Each hub's injection per hour, ``{(hub, hour): kg/s}``: per hour, the data-only start's loss-weighted LP with
    each hub's duty held to its boiler's cap (:data:`BOILER_SHARE`) plus the heat of its least forced CHP output in
    that hour (the caps start at a :data:`FIRST_DROP` temperature drop and shrink where a duty exceeds its limit)."""
    from poso_sim.solvers.ies.start import _heat_state, heat_flows

    limit = {(c, t): max(BOILER_SHARE * net.boiler_max[c] + net.chp_hp * least_chp.get((c, t), 0.0), 1e-6)
             for c in net.hubs for t in net.T}
    caps = {key: lim / (net.cp * FIRST_DROP) for key, lim in limit.items()}
    pipes: dict[int, dict] = {}
    hubs: dict[int, dict] = {}
    pending = list(net.T)
    for _ in range(8):
        for t in pending:
            pipes[t], hubs[t] = heat_flows(net, caps={c: caps[c, t] for c in net.hubs})
        heat = _heat_state(net, pipes, hubs)["hub_heat"]
        over = {(c, t): heat[c, t] / limit[c, t] for t in pending for c in net.hubs}
        pending = [t for t in pending if max(over[c, t] for c in net.hubs) > 1.0]
        if not pending:
            break
        for t in pending:
            for c in net.hubs:
                if over[c, t] > 1.0:
                    caps[c, t] = hubs[t][c] / over[c, t]
    return {(c, t): hubs[t][c] for c in net.hubs for t in net.T}
