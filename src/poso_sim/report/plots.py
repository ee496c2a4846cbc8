"""Matplotlib figures of a dispatch plan, a scenario run and a sweep.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``, so it works the same
in a notebook (the figure displays itself), in a script (``fig.savefig("out.png")``) and under the Agg backend in
tests. Nothing here solves or runs anything: pass a :class:`~poso_sim.solvers.Solution`, a run result or a table.

* :func:`dispatch_frame` -- a plan's schedule as a DataFrame (hours x series), read from the canonical vector by
  variable name (``P_grid[t]``, ``P_CHP[c,t]``, ``H_boiler[c,t]``, ``E_bat[c,t]``, ...);
* :func:`plot_dispatch`, :func:`plot_dispatch_comparison` -- the 24 h dispatch (electric power, heat, storage);
* :func:`message_frame`, :func:`plot_message_sequence` -- a message sequence chart of a run's trace;
* :func:`plot_sweep` -- outcome rates and metrics of a sweep table against one parameter.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from poso_sim.nlp.problems import cost_unit
from poso_sim.protocol import Decide

__all__ = [
    "DISPATCH_FAMILIES",
    "dispatch_frame",
    "plot_dispatch",
    "plot_dispatch_comparison",
    "message_frame",
    "plot_message_sequence",
    "plot_sweep",
    "save_figure",
    "SWEEP_INPUTS",
    "SWEEP_SECONDARY",
]

log = logging.getLogger(__name__)

#: Variable families read by :func:`dispatch_frame` (see docs/model.md for units).
DISPATCH_FAMILIES = (
    "P_grid", "P_CHP", "H_CHP", "H_boiler", "E_bat", "P_ch", "P_dis", "E_tank", "H_ch", "H_dis",
)

_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[([^\]]*)\]$")

# one colour per message kind in sequence charts; unknown kinds get grey
_KIND_COLOURS = {
    "proposal": "tab:blue",
    "relay": "tab:green",
    "misbehaviour": "tab:red",
    "decision": "tab:purple",
}
_DROP_COLOUR = "black"


# ------------------------------------------------------------------------------------------------ helpers
def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _new_figure(nrows: int, ncols: int, *, figsize: tuple[float, float], sharex: bool = True, sharey: Any = False,
                layout: str | None = None):
    # pyplot (not Figure()) so that notebooks display the result inline
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, sharex=sharex, sharey=sharey, squeeze=False,
                             layout=layout)
    return fig, axes


def _plain(text: str) -> str:
    """Text shown as typed: a ``$`` would start matplotlib's mathtext (two of them garble the title)."""
    return re.sub(r"(?<!\\)\$", r"\\$", text)


def _names_of(solution: Any, names: Any) -> Sequence[str]:
    if names is None:
        names = getattr(solution, "x_names", None)
    elif hasattr(names, "x_names"):  # a CompiledNLP
        names = names.x_names
    if names is None or len(names) == 0:
        raise ValueError("the solution carries no variable names: pass the CompiledNLP or its x_names")
    return names


def _values_of(solution: Any) -> np.ndarray:
    x = getattr(solution, "x", solution)
    return np.asarray(x, dtype=float).reshape(-1)


def save_figure(fig: Any, path: str, *, dpi: int = 120) -> str:
    """Write ``fig`` to ``path``; the format follows the extension (png, svg, pdf). Returns the path."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    log.info("wrote %s", path)
    return path


# ------------------------------------------------------------------------------------------------ dispatch
def dispatch_frame(solution: Any, names: Any = None, families: Iterable[str] = DISPATCH_FAMILIES):
    """The schedule of a plan as a DataFrame: one row per hour (index ``hour``, 1..24), one column per series.

    Columns are the canonical variable names without the hour: ``P_grid``, ``P_CHP[1]`` ... ``P_CHP[8]``,
    ``H_boiler[1]``, ``E_bat[1]``, ``E_tank[1]``, ... for each family of ``families`` present in the model.

    ``solution`` is a :class:`~poso_sim.solvers.Solution` (or anything with ``x``, or a bare vector);
    ``names`` is needed when it carries no ``x_names``: a ``CompiledNLP`` or the list of names.
    """
    import pandas as pd

    x = _values_of(solution)
    names = _names_of(solution, names)
    if len(names) != x.size:
        raise ValueError(f"{len(names)} names for {x.size} values")
    wanted = tuple(families)
    series: dict[str, dict[int, float]] = {}
    order: dict[str, tuple[int, Any]] = {}
    for i, name in enumerate(names):
        m = _NAME.match(name)
        if not m or m.group(1) not in wanted:
            continue
        fam, idx = m.group(1), [p.strip() for p in m.group(2).split(",")]
        t = int(idx[-1])
        key = fam if len(idx) == 1 else f"{fam}[{','.join(idx[:-1])}]"
        if key not in series:
            elem = tuple(int(p) if p.lstrip("-").isdigit() else p for p in idx[:-1])
            order[key] = (wanted.index(fam), elem)
            series[key] = {}
        series[key][t] = float(x[i])
    if not series:
        raise ValueError(f"no variable of the families {', '.join(wanted)} among the names")
    cols = sorted(series, key=lambda k: (order[k][0], [str(e).zfill(6) for e in order[k][1]]))
    df = pd.DataFrame({k: pd.Series(series[k]) for k in cols})[cols]
    df.index.name = "hour"
    return df.sort_index()


def _hub_label(col: str) -> str:
    return col[col.index("[") + 1 : -1] if "[" in col else ""


def _family_cols(df: Any, fam: str) -> list[str]:
    return [c for c in df.columns if c == fam or c.startswith(fam + "[")]


def _draw_dispatch(axes: Sequence[Any], df: Any, *, legend: bool = True) -> None:
    """Draw the three dispatch panels of one plan on ``axes`` (electric, heat, storage)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    hours = df.index.to_numpy()
    ax_e, ax_h, ax_s = axes

    if "P_grid" in df:
        ax_e.plot(hours, df["P_grid"], color="black", lw=2, drawstyle="steps-mid", label="grid")
    for k, col in enumerate(_family_cols(df, "P_CHP")):
        ax_e.plot(hours, df[col], color=cmap(k % 10), lw=1.2, drawstyle="steps-mid", label=f"CHP {_hub_label(col)}")
    ax_e.set_title("Electric power")
    ax_e.set_ylabel("kW")

    for k, col in enumerate(_family_cols(df, "H_boiler")):
        ax_h.plot(hours, df[col], color=cmap(k % 10), lw=1.2, drawstyle="steps-mid", label=f"boiler {_hub_label(col)}")
    chp_heat = _family_cols(df, "H_CHP")
    if chp_heat:
        ax_h.plot(hours, df[chp_heat].sum(axis=1), color="black", lw=2, ls="--", drawstyle="steps-mid",
                  label="CHP heat (all)")
    ax_h.set_title("Heat")
    ax_h.set_ylabel("kW")

    for fam, label, style in (("E_bat", "batteries", "-"), ("E_tank", "heat tanks", "--")):
        cols = _family_cols(df, fam)
        if cols:
            ax_s.plot(hours, df[cols].sum(axis=1), color="black", lw=2, ls=style, label=f"{label} (all)")
    ax_s.set_title("Stored energy")
    ax_s.set_ylabel("kWh")
    ax_s.set_xlabel("hour")

    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(hours.min() - 0.5, hours.max() + 0.5)
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _plan_title(solution: Any, label: str | None) -> str:
    if label is not None:
        return label
    variant = getattr(solution, "variant", "") or "plan"
    cost = getattr(solution, "cost", float("nan"))
    name = {"true": "optimal"}.get(variant, variant)
    unit = cost_unit(getattr(solution, "case", None))
    return _plain(f"{name} ({cost:.2f} {unit})" if isinstance(cost, float) and math.isfinite(cost) else name)


def plot_dispatch(solution: Any, names: Any = None, *, axes: Sequence[Any] | None = None, title: str | None = None):
    """The 24 h dispatch of one plan in three panels sharing the hour axis.

    * **Electric power** (kW): the grid import and each CHP's output ``P_CHP[c]`` (one line per CHP);
    * **Heat** (kW): each boiler's output ``H_boiler[c]`` and the CHPs' total heat;
    * **Stored energy** (kWh): total battery energy ``E_bat`` and total heat-tank energy ``E_tank``.

    ``names``: a ``CompiledNLP`` or list of names when the solution carries none. ``axes``: three Axes to draw
    into (a new figure otherwise). ``title``: the figure's title (default: variant and true cost).
    Returns the Figure.
    """
    df = dispatch_frame(solution, names)
    if axes is None:
        fig, grid = _new_figure(3, 1, figsize=(9, 9))
        axes = grid[:, 0]
    else:
        axes = list(axes)
        if len(axes) != 3:
            raise ValueError(f"plot_dispatch draws three panels; got {len(axes)} axes")
        fig = axes[0].figure
    _draw_dispatch(axes, df)
    fig.suptitle(_plan_title(solution, title))
    fig.tight_layout()
    return fig


def plot_dispatch_comparison(sol_a: Any, sol_b: Any, names: Any = None, *, labels: Sequence[str] | None = None):
    """Two plans side by side (e.g. optimal vs tampered): the panels of :func:`plot_dispatch` in two columns,
    each row on a common y scale so the columns compare at a glance. Returns the Figure."""
    df_a = dispatch_frame(sol_a, names)
    df_b = dispatch_frame(sol_b, names if names is not None else None)
    fig, grid = _new_figure(3, 2, figsize=(14, 9), sharey="row")
    _draw_dispatch(grid[:, 0], df_a, legend=False)
    _draw_dispatch(grid[:, 1], df_b, legend=True)
    if labels is not None:  # a label with a lone "$" is text (two of them side by side would make mathtext)
        la, lb = (lab if len(re.findall(r"(?<!\\)\$", lab)) % 2 == 0 else _plain(lab) for lab in labels)
    else:
        la, lb = _plan_title(sol_a, None), _plan_title(sol_b, None)
    for ax, lab in ((grid[0, 0], la), (grid[0, 1], lb)):
        ax.set_title(f"{lab}\nElectric power")
    fig.suptitle(f"Dispatch: {la} vs {lb}")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ sequence chart
def _trace_records(run: Any) -> list[dict[str, Any]]:
    trace = getattr(run, "trace", run)
    if hasattr(trace, "records") and callable(trace.records):
        return list(trace.records())
    if hasattr(trace, "to_dict") and hasattr(trace, "columns"):  # a DataFrame
        return trace.to_dict("records")
    return [dict(r) for r in trace]


def _decisions(run: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The delegates' decisions as ``{"node", "t", "seq"}``: from the run log of a ``RunResult`` (placed at the
    kernel-trace position of their moment), or from the ``decided`` user events of bare trace records."""
    log = getattr(run, "log", None)
    if log is None:
        return [{"node": r.get("src") or (r.get("data") or {}).get("node"), "t": r["t"], "seq": r["seq"]}
                for r in records if r.get("ev") == "user" and r.get("kind") == "decided"]
    marks = {(r.get("src"), float(r["t"])): r["seq"] for r in records if r.get("ev") == "user" and r.get("kind") == "decided"}
    times = [float(r["t"]) for r in records]
    out = []
    for e in log.of(Decide):
        seq = marks.get((e.node, float(e.t)))
        if seq is None and records:  # no user events kept: the last kernel record at or before that moment
            i = max(0, bisect.bisect_right(times, float(e.t)) - 1)
            seq = records[i]["seq"]
        out.append({"node": e.node, "t": float(e.t), "seq": seq if seq is not None else 0})
    return out


def message_frame(run: Any):
    """The messages of a run (or of trace records) as a DataFrame, one row per message sent:
    ``msg_id, kind, src, dst, t_send, t_end, seq_send, seq_end, outcome ("delivered" | "dropped" | "in flight"),
    reason, summary``. Duplicated deliveries add rows with outcome "duplicate"."""
    import pandas as pd

    rows: dict[Any, dict[str, Any]] = {}
    extra: list[dict[str, Any]] = []
    for r in _trace_records(run):
        ev = r.get("ev")
        if ev not in ("send", "deliver", "drop"):
            continue
        mid = r.get("msg_id")
        if ev == "send" or mid not in rows:
            rows.setdefault(mid, {
                "msg_id": mid, "kind": r.get("kind"), "src": r.get("src"), "dst": r.get("dst"),
                "t_send": float(r.get("t", 0.0)), "t_end": math.nan, "seq_send": r.get("seq"), "seq_end": None,
                "outcome": "in flight", "reason": None, "summary": r.get("data") if isinstance(r.get("data"), str) else None,
            })
        row = rows[mid]
        if ev == "deliver":
            if row["outcome"] == "delivered":
                extra.append({**row, "t_end": float(r["t"]), "seq_end": r.get("seq"), "outcome": "duplicate",
                              "reason": r.get("reason")})
            else:
                row.update(t_end=float(r["t"]), seq_end=r.get("seq"), outcome="delivered", reason=r.get("reason"))
        elif ev == "drop":
            row.update(t_end=float(r["t"]), seq_end=r.get("seq"), outcome="dropped", reason=r.get("reason"))
    cols = ["msg_id", "kind", "src", "dst", "t_send", "t_end", "seq_send", "seq_end", "outcome", "reason", "summary"]
    return pd.DataFrame(list(rows.values()) + extra, columns=cols)


def plot_message_sequence(
    run: Any,
    *,
    lanes: Sequence[str] | None = None,
    normals: bool = True,
    kinds: Iterable[str] | None = None,
    y: str = "auto",
    max_messages: int = 600,
    title: str | None = None,
    ax: Any = None,
):
    """A message sequence chart: one vertical lane per node, virtual time going down, one arrow per message
    from its sender's lane at the send to the receiver's lane at the delivery.

    Relays and other kinds have their own colours (legend); a dropped message is drawn dashed and ends in a
    cross halfway, with the drop reason's kind; a delegate's decision is marked by a star on its lane.

    ``run``: a ``RunResult`` of :func:`poso_sim.scenarios.runner.run_scenario` (lanes: its delegates, then its
    normal nodes unless ``normals=False``), a :class:`poso_sim.sim.Trace` or a list of trace records.
    ``kinds``: only these message kinds. ``y``: ``"time"`` (virtual seconds), ``"order"`` (event order, for
    runs without latency where everything happens at t = 0) or ``"auto"`` (order when some message is delivered
    at the instant it was sent). Returns the Figure.
    """
    msgs = message_frame(run)
    if kinds is not None:
        kinds = set(kinds)
        msgs = msgs[msgs["kind"].isin(kinds)]
    truncated = 0
    if len(msgs) > max_messages:
        truncated = len(msgs) - max_messages
        msgs = msgs.iloc[:max_messages]
    records = _trace_records(run)
    decided = _decisions(run, records)
    lanes = _sequence_lanes(run, msgs, lanes, normals)
    msgs = msgs[msgs["src"].isin(lanes) & msgs["dst"].isin(lanes)]
    xpos = {n: i for i, n in enumerate(lanes)}
    y, ypos, t_at = _sequence_y(msgs, records, decided, y)

    if ax is None:
        height = 3 + min(12, 0.12 * max(1, len(msgs)))
        fig, grid = _new_figure(1, 1, figsize=(max(6, 1.1 * len(lanes) + 2), height))
        ax = grid[0, 0]
    else:
        fig = ax.figure

    ends = [ypos(r.t_send, r.seq_send) for r in msgs.itertuples()]
    ends += [ypos(r.t_end, r.seq_end) for r in msgs.itertuples() if r.outcome != "in flight"]
    ends += [ypos(float(r["t"]), r["seq"]) for r in decided]
    y_max = max(ends) if ends else 1.0
    y_pad = max(1.0, 0.04 * y_max) if y == "order" else max(0.05, 0.04 * y_max)
    for n, xp in xpos.items():
        ax.axvline(xp, color="0.6", lw=1, zorder=0, gid=f"lane:{n}")
    kinds_seen, n_drop = _draw_messages(ax, msgs, xpos, ypos, y_pad)
    for r in decided:
        node = r["node"]
        if node in xpos:
            ax.plot([xpos[node]], [ypos(float(r["t"]), r["seq"])], marker="*", color="gold", mec="black", ms=12,
                    ls="none", gid="decided", zorder=3)
    _sequence_legend(ax, kinds_seen, n_drop, bool(decided))
    _sequence_axes(ax, lanes, y, y_max, y_pad, t_at)
    if title is None:
        scn = getattr(run, "scenario", None)
        title = "Message sequence" + (f": {scn.name} (seed {getattr(run, 'seed', '?')})" if scn is not None else "")
    if truncated:
        title += f" - first {max_messages} messages ({truncated} more not shown)"
    ax.set_title(title, pad=24)
    fig.tight_layout()
    return fig


def _sequence_lanes(run: Any, msgs: Any, lanes: Sequence[str] | None, normals: bool) -> list[str]:
    """The chart's lanes: as given, else the run's delegates (and normal nodes), else every node of the records."""
    if lanes is None:
        lanes = list(getattr(run, "delegates", []) or [])
        if normals:
            lanes += list(getattr(run, "normals", []) or [])
        if not lanes:  # bare trace records: every node that sent or received, in order of appearance
            seen = [n for n in list(msgs["src"]) + list(msgs["dst"]) if n is not None]
            lanes = list(dict.fromkeys(seen))
    return list(lanes)


def _sequence_y(msgs: Any, records: list, decided: list, y: str) -> tuple[str, Any, dict[int, float]]:
    """The vertical axis: ``"time"`` or ``"order"`` (``"auto"`` resolved), the position of an event
    ``ypos(t, seq)`` and, for ``"order"``, the virtual time at each position."""
    if y == "auto":
        delivered = msgs[msgs["outcome"] != "in flight"]
        y = "order" if (delivered["t_end"] <= delivered["t_send"]).any() else "time"
    if y not in ("time", "order"):
        raise ValueError(f"y={y!r}: choose 'time', 'order' or 'auto'")
    t_at: dict[int, float] = {}
    if y == "time":
        return y, lambda t, seq: float(t), t_at
    seqs = sorted({int(s) for s in msgs["seq_send"].dropna()} | {int(s) for s in msgs["seq_end"].dropna()}
                  | {int(r["seq"]) for r in decided})
    rank = {s: i for i, s in enumerate(seqs)}
    for r in records:
        if r.get("seq") in rank:
            t_at[rank[r["seq"]]] = float(r["t"])
    return y, lambda t, seq: float(rank[int(seq)]), t_at


def _draw_messages(ax: Any, msgs: Any, xpos: dict[str, int], ypos: Any, y_pad: float) -> tuple[dict[str, str], int]:
    """One arrow per message (a dropped one dashed, ending in a cross halfway); returns the kinds drawn with their
    colours and the number of drops."""
    from matplotlib.patches import FancyArrowPatch  # matplotlib (0.5 s to import): only when a chart is drawn

    kinds_seen: dict[str, str] = {}
    n_drop = 0
    for r in msgs.itertuples():
        colour = _KIND_COLOURS.get(r.kind, "tab:gray")
        kinds_seen.setdefault(r.kind, colour)
        x0, y0 = xpos[r.src], ypos(r.t_send, r.seq_send)
        if r.outcome == "in flight":
            continue
        x1, y1 = xpos[r.dst], ypos(r.t_end, r.seq_end)
        if r.outcome == "dropped":
            n_drop += 1
            xm, ym = (x0 + x1) / 2, (y0 + y1) / 2 if y1 > y0 else y0 + 0.5 * y_pad
            ax.add_patch(FancyArrowPatch((x0, y0), (xm, ym), arrowstyle="-", color=colour, lw=1.2, ls="--",
                                         gid=f"drop:{r.kind}:{r.msg_id}"))
            ax.plot([xm], [ym], marker="x", color=_DROP_COLOUR, ms=8, mew=2, ls="none", gid="drop-marker")
            continue
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10, color=colour,
                                     lw=1.2, ls="-" if r.outcome == "delivered" else ":",
                                     gid=f"msg:{r.kind}:{r.msg_id}"))
    return kinds_seen, n_drop


def _sequence_legend(ax: Any, kinds_seen: dict[str, str], n_drop: int, decided: bool) -> None:
    from matplotlib.lines import Line2D  # matplotlib (0.5 s to import): only when a chart is drawn

    handles = [Line2D([], [], color=c, lw=1.5, label=k) for k, c in kinds_seen.items()]
    if n_drop:
        handles.append(Line2D([], [], color=_DROP_COLOUR, marker="x", ls="--", label="dropped"))
    if decided:
        handles.append(Line2D([], [], color="gold", mec="black", marker="*", ms=10, ls="none", label="decided"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _sequence_axes(ax: Any, lanes: list[str], y: str, y_max: float, y_pad: float, t_at: dict[int, float]) -> None:
    """Lane names on top, time going down; in event order, a tick wherever virtual time moves on."""
    ax.set_xticks(range(len(lanes)))
    ax.set_xticklabels(lanes)
    ax.xaxis.tick_top()
    ax.set_xlim(-0.5, len(lanes) - 0.5)
    ax.set_ylim(y_max + y_pad, -y_pad)  # time goes down
    if y == "order":
        ax.set_ylabel("event order (virtual time goes down)")
        ticks, last = [], None
        for k in sorted(t_at):
            if t_at[k] != last:
                ticks.append(k)
                last = t_at[k]
        if len(ticks) > 12:
            ticks = ticks[:: math.ceil(len(ticks) / 12)]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{t_at[k]:.4g} s" for k in ticks])
    else:
        ax.set_ylabel("virtual time (s)")


# ------------------------------------------------------------------------------------------------ sweeps
_NOT_METRICS = {"seed", "run", "index", "case", "trace_digest"}  # identifiers, not outcomes

#: Inputs of a sweep table (`poso_sim.sweep`): never plotted as metrics.
SWEEP_INPUTS = frozenset({
    "N", "f", "dishonest", "leader_dishonest", "kinds", "signatures", "latency", "loss", "duplicate", "reorder",
    "partition", "crash", "window", "heights", "delegates", "behaviour", "behaviours", "scenario", "mutation",
})
#: Secondary outcomes and run-time measurements of a sweep table: plotted only when asked for (``metrics=``).
SWEEP_SECONDARY = frozenset({
    "executed", "rounds", "no_majority", "dropped", "verifications", "height_timeouts", "liveness_premise",
    "violations", "violated", "wall_seconds", "check_seconds",
})


def _is_rate(col: Any) -> bool:
    """Booleans (with missing values allowed: ``live`` is undefined where its premise fails) are drawn as rates."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col):
        return True
    if col.dtype == object:
        vals = col.dropna()
        return len(vals) > 0 and all(isinstance(v, (bool, np.bool_)) for v in vals)
    return False


def plot_sweep(
    df: Any,
    x: str | None = None,
    metrics: Sequence[str] | None = None,
    *,
    by: str | None = None,
    title: str | None = None,
):
    """Outcomes of a sweep against one parameter: one panel per metric, the mean over the runs (seeds) of each
    value of ``x`` with a band from the minimum to the maximum; boolean metrics are drawn as rates in [0, 1].

    ``df``: one row per run (a DataFrame or anything ``pandas.DataFrame`` accepts). ``x``: the swept column
    (default: the first input column with several values). ``metrics``: columns to plot (default: the
    outcomes, rates first -- every boolean or numeric column that is not ``x``, ``by``, an identifier such as
    ``seed``, a sweep input (:data:`SWEEP_INPUTS`) or a secondary outcome or timing of a `poso_sim.sweep` table
    (:data:`SWEEP_SECONDARY`, e.g. ``dropped``, ``wall_seconds``); for a sweep table: live, safe,
    heights_executed, honest_decided, messages, virtual_seconds).
    ``by``: a column whose values become separate lines (e.g. the behaviour or scenario). Returns the Figure.
    """
    import pandas as pd

    df = pd.DataFrame(df)
    if df.empty:
        raise ValueError("plot_sweep: the table is empty")

    def numeric(col: str) -> bool:
        return _is_rate(df[col]) or pd.api.types.is_numeric_dtype(df[col])

    if x is None:
        candidates = [c for c in df.columns if c not in _NOT_METRICS and c != by
                      and (c in SWEEP_INPUTS or not (c in SWEEP_SECONDARY or _is_rate(df[c])))
                      and df[c].nunique() > 1]
        params = [c for c in candidates if not pd.api.types.is_bool_dtype(df[c])]
        if not params:
            raise ValueError("plot_sweep: no column varies; pass x=")
        x = params[0]
    if x not in df:
        raise ValueError(f"plot_sweep: no column {x!r} (columns: {', '.join(map(str, df.columns))})")
    if metrics is None:
        skip = {x, by} | _NOT_METRICS | SWEEP_INPUTS | SWEEP_SECONDARY
        outcomes = [c for c in df.columns if c not in skip and numeric(c)]
        metrics = [c for c in outcomes if _is_rate(df[c])] + [c for c in outcomes if not _is_rate(df[c])]
    metrics = list(metrics)
    missing = [m for m in metrics if m not in df]
    if missing:
        raise ValueError(f"plot_sweep: no column {missing[0]!r}")
    if not metrics:
        raise ValueError("plot_sweep: no numeric or boolean column to plot; pass metrics=")

    n = len(metrics)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    # constrained layout keeps the figure title above the panels (tight_layout let it overlap the top row)
    fig, grid = _new_figure(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), sharex=True, layout="constrained")
    groups = [(None, df)] if by is None else list(df.groupby(by, sort=True))
    categorical = not pd.api.types.is_numeric_dtype(df[x])
    order = list(dict.fromkeys(df[x])) if categorical else sorted(df[x].unique())
    pos = {v: i for i, v in enumerate(order)}
    for k, metric in enumerate(metrics):
        ax = grid[k // ncols, k % ncols]
        rate = _is_rate(df[metric])
        for name, sub in groups:
            vals = sub[metric].astype(float)
            stats = vals.groupby(sub[x]).agg(["mean", "min", "max"])
            stats = stats.loc[[v for v in order if v in stats.index]]
            xs = [pos[v] for v in stats.index] if categorical else stats.index.to_numpy(dtype=float)
            label = metric if name is None else f"{by}={name[0] if isinstance(name, tuple) else name}"
            (line,) = ax.plot(xs, stats["mean"], marker="o", label=label)
            if len(sub) > len(stats):
                ax.fill_between(xs, stats["min"], stats["max"], color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(f"{metric} (rate)" if rate else metric)
        ax.set_ylabel("rate" if rate else metric)
        if rate:
            ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(x)
        if not categorical and pd.api.types.is_integer_dtype(df[x]):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if categorical:
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels([str(v) for v in order], rotation=30, ha="right")
        ax.grid(True, alpha=0.3)
        if by is not None:
            ax.legend(fontsize="small", frameon=False)
    for k in range(n, nrows * ncols):
        grid[k // ncols, k % ncols].set_visible(False)
    fig.suptitle(title or f"Sweep over {x} ({len(df)} runs)")
    return fig
