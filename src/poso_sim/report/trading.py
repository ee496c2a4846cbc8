"""Reports of a market run (read from its run log): the text account, the records table of one round (receivers
by senders, like the paper's Table 3), the `--json` document with the gap to the centralised clearing, and the
figures (the price path of each carrier and zone against the round, each hub's demands).

Every figure function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``.
"""

from __future__ import annotations

from typing import Any

from poso_sim.protocol import Dropped
from poso_sim.protocol.market_messages import DemandReceived, HubExcluded

__all__ = ["records_table", "render_records", "render_market", "market_json", "central_gap", "plot_price_path",
           "plot_hub_demands", "PRICE_LABELS"]

#: the carriers of a price vector, in order (heat: one per zone)
PRICE_LABELS = ("gas", "electricity")


def _label(i: int) -> str:
    return PRICE_LABELS[i] if i < 2 else f"heat zone {i - 1}"


# --------------------------------------------------------------------------------------------- records table
def records_table(res: Any, round: int = 1) -> dict[str, Any]:
    """The demand copies each delegate took in `round`: ``rows[delegate][hub]`` = list of ``{"path", "demand",
    "note"}``; path = the hub, then the forwarding delegates (``H3`` direct, ``H3>H11`` forwarded by H11); `note`
    says why a copy was dropped (a conflicting or forged copy) or ``""``."""
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {d: {h: [] for h in res.hubs} for d in res.delegates}
    for e in res.log:
        it = e.item
        if e.node not in rows:
            continue
        if isinstance(it, DemandReceived) and it.round == round:
            path = ">".join((it.hub,) + tuple(it.path))
            rows[e.node][it.hub].append({"path": path, "demand": list(it.demand), "note": ""})
        elif (isinstance(it, Dropped) and it.round == round and it.message in ("demand", "forward")
              and it.signer in rows[e.node]):
            path = it.signer if it.message == "demand" else f"{it.signer}>{it.src}"
            rows[e.node][it.signer].append({"path": path, "demand": None, "note": it.reason})
    excluded = {(e.node, e.item.hub) for e in res.log.of(HubExcluded) if e.item.round == round}
    return {"round": round, "senders": list(res.hubs), "rows": rows,
            "excluded": sorted(f"{d}:{h}" for d, h in excluded)}


def render_records(res: Any, round: int = 1) -> str:
    """The records table of `round` as text: one row per receiving delegate, one column per sending hub; a cell
    lists the copies as ``<ELEC>PATH`` (the electricity demand in it, MW; ``x`` for a dropped copy, with why)."""
    t = records_table(res, round)
    grid = [["row"] + t["senders"]]
    for d, row in t["rows"].items():
        cells = []
        for h in t["senders"]:
            items = [f"<{c['demand'][1]:.1f}>{c['path']}" if c["demand"] is not None else f"<x>{c['path']} ({c['note']})"
                     for c in row[h]]
            cells.append(", ".join(items) or "–")
        grid.append([d] + cells)
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    lines = [f"Round {round}: demands received (rows: delegates; columns: hubs; <electricity MW>path)"]
    for i, r in enumerate(grid):
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if t["excluded"]:
        lines.append("excluded in this round (delegate:hub): " + ", ".join(t["excluded"]))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ the clearing gap
def central_gap(res: Any, case: Any) -> dict[str, Any]:
    """The gap of the run's final prices and settled demands to the centralised clearing of the same hour
    (`poso_sim.solvers.trading.clear_market` / `compare`). Only for a market of all the case's hubs."""
    ids = [int(h[1:]) for h in res.hubs]
    if sorted(ids) != sorted(case.hub_ids):
        return {"available": False,
                "reason": f"the clearing holds all {len(case.hub_ids)} hubs; this market has {len(ids)}"}
    # the clearing problem (Pyomo, CasADi, Ipopt): only when the gap is asked for
    from poso_sim.solvers.trading import clear_market, compare

    clearing = clear_market(case, res.scenario.hour)
    demands = {int(h[1:]): tuple(s["demand"]) for h, s in res.settlement().items() if s["settled"]}
    gap = compare(case, clearing, res.path[-1], demands)
    cp = clearing.prices
    return {
        "available": True,
        "clearing_prices": {"gas": cp.gas, "elec": cp.elec, "heat": list(cp.heat)},
        "price": {"gas": gap.price["gas"], "elec": gap.price["elec"], "heat": list(gap.price["heat"])},
        "max_price": gap.max_price,
        "demand": {f"H{h}": list(d) for h, d in sorted(gap.demand.items())},
        "max_demand": gap.max_demand,
        "clearing_cost": clearing.cost,
        "notes": list(gap.notes),
    }


def market_json(res: Any, gap: dict[str, Any] | None = None) -> dict[str, Any]:
    """`poso-sim run trading-... --json`: the run's `to_json()` plus the price path and the clearing gap."""
    out = res.to_json()
    out["price_path"] = [list(p) for p in res.path]
    out["gap"] = gap
    return out


# ------------------------------------------------------------------------------------------------------ text
def _fmt(p: Any) -> str:
    return f"gas {p[0]:.2f}, elec {p[1]:.3f}, heat " + " / ".join(f"{h:.3f}" for h in p[2:])


def render_market(res: Any, gap: dict[str, Any] | None = None, *, path_rows: int = 12) -> str:
    """A readable account: the setting, the outcome, the price path (first rounds, then every k-th), the
    exclusions and each hub's settlement."""
    scn = res.scenario
    j = res.to_json()
    out = [f"market {scn.name} (case {scn.case}, hour {scn.hour}, seed {res.seed}, round timeout {scn.round_timeout} s, "
           f"signatures {'on' if scn.signatures else 'off'})",
           f"hubs {', '.join(res.hubs)}; delegates {', '.join(res.delegates)}; dishonest: {', '.join(res.dishonest) or 'none'}",
           f"{'converged' if res.converged else 'ended: ' + str(j['end'])} after {res.rounds} rounds "
           f"({res.messages} messages, {res.virtual_seconds:.1f} virtual s)", ""]
    path = res.path
    step = max(1, (len(path) - 1) // path_rows)
    shown = sorted(set(range(0, min(len(path), 6))) | set(range(0, len(path), step)) | {len(path) - 1})
    out.append("price path (after round k; k = 0: the initial prices)")
    for k in shown:
        out.append(f"  {k:>5}  {_fmt(path[k])}")
    out.append("")
    for d in res.delegates:
        for x in res.exclusions.get(d, []):
            out.append(f"{d} excluded hub {x['hub']} in round {x['round']} ({x['reason']}, "
                       f"{'with proof' if x['evidence'] else 'local'})")
    out.append("settlement (demand gas / elec / heat at the final prices; payment, negative = paid)")
    for h, s in j["settlement"].items():
        d = s["demand"]
        out.append(f"  {h:>4}  {d[0]:9.3f} {d[1]:10.3f} {d[2]:9.3f}  pays {s['payment']:12.2f}"
                   + ("" if s["settled"] else "  (not settled)"))
    if gap is not None:
        out.append("")
        if gap.get("available"):
            cp = gap["clearing_prices"]
            out.append(f"centralised clearing: elec {cp['elec']:.3f}, heat " + " / ".join(f"{h:.3f}" for h in cp["heat"])
                       + f"; largest price gap {gap['max_price']:.4g}, largest demand gap {gap['max_demand']:.4g}")
            out.extend(f"  note: {n}" for n in gap["notes"])
        else:
            out.append(f"centralised clearing: not compared ({gap['reason']})")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------- figures
def _pyplot() -> Any:
    import matplotlib.pyplot as plt  # heavy (0.5 s): only for figures

    return plt


def plot_price_path(res: Any, *, delegate: str | None = None) -> Any:
    """The price of each carrier and heat zone against the round (one panel each; the outside supplier's price
    as a dashed line where the rule compares with it)."""
    plt = _pyplot()
    path = res.price_path[delegate] if delegate else res.path
    n = len(path[0])
    fig, axes = plt.subplots(n, 1, figsize=(7.5, 1.7 * n + 0.6), sharex=True, squeeze=False)
    rounds = list(range(len(path)))
    ref = res.extra.get("references", {})
    for i in range(n):
        ax = axes[i][0]
        ax.plot(rounds, [p[i] for p in path], lw=1.4, color="tab:blue" if i < 2 else "tab:red")
        if i in ref:
            ax.axhline(ref[i], ls="--", lw=0.8, color="grey")
        ax.set_ylabel(_label(i), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("round")
    fig.suptitle(f"{res.scenario.name}: price path ({'converged' if res.converged else 'ended'} after "
                 f"{res.rounds} rounds)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_hub_demands(res: Any) -> Any:
    """Each hub's demand (gas, electricity, heat) against the round (electricity negative = selling)."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 7.0), sharex=True)
    cmap = plt.get_cmap("tab20")
    for j, h in enumerate(res.hubs):
        made = res.demands.get(h) or {}
        rounds = sorted(made)
        for i, ax in enumerate(axes):
            ax.plot(rounds, [made[k][i] for k in rounds], lw=1.0, color=cmap(j % 20), label=h if i == 0 else None)
    for ax, name in zip(axes, ("gas", "electricity", "heat")):
        ax.set_ylabel(name)
        ax.axhline(0.0, lw=0.6, color="black")
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=6, fontsize=7, loc="upper right")
    axes[-1].set_xlabel("round")
    fig.suptitle(f"{res.scenario.name}: each hub's demand by round", fontsize=10)
    fig.tight_layout()
    return fig
