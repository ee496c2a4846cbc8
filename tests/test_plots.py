"""Plots, HTML renderings and `poso-sim plot`: content checks (axes, series, labels) on the Agg backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
from poso_sim.report.html import certificate_html, outcome_html, solution_html, table3_html  # noqa: E402
from poso_sim.report.plots import (  # noqa: E402
    dispatch_frame,
    message_frame,
    plot_dispatch,
    plot_dispatch_comparison,
    plot_message_sequence,
    plot_sweep,
)

HUBS = range(1, 9)
HOURS = range(1, 25)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _names() -> list[str]:
    names = [f"P_CHP[{c},{t}]" for c in HUBS for t in HOURS]
    names += [f"P_grid[{t}]" for t in HOURS]
    names += [f"I_line[{k},{t}]" for k in (1, 2) for t in HOURS]  # not a dispatch family: ignored
    for fam in ("H_CHP", "E_bat", "H_boiler", "E_tank"):
        names += [f"{fam}[{c},{t}]" for c in HUBS for t in HOURS]
    return names


def _plan(scale: float = 1.0, **meta):
    from poso_sim.nlp.solution import Solution

    names = _names()
    x = np.zeros(len(names))
    for i, n in enumerate(names):
        fam, idx = n[:-1].split("[")
        parts = [int(p) for p in idx.split(",")]
        x[i] = scale * (100 * parts[0] + parts[-1]) if fam != "P_grid" else scale * 1000 + parts[0]
    return Solution(x=x, y=np.zeros(3), z_L=np.zeros(x.size), z_U=np.zeros(x.size), x_names=names,
                    **{"variant": "true", "case": "manchester", "cost": 744.09, "status": "optimal", **meta})


def _labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


# ------------------------------------------------------------------------------------------------ dispatch
def test_dispatch_frame_reads_by_name():
    sol = _plan()
    df = dispatch_frame(sol)
    assert df.index.name == "hour" and list(df.index) == list(HOURS)
    assert "I_line[1]" not in df.columns
    assert df.columns[0] == "P_grid"  # families in DISPATCH_FAMILIES order, hubs numerically
    assert [c for c in df.columns if c.startswith("P_CHP")] == [f"P_CHP[{c}]" for c in HUBS]
    assert df.loc[7, "P_CHP[3]"] == 307 and df.loc[24, "P_grid"] == 1024
    assert df.loc[5, "E_tank[8]"] == 805
    # bare vector plus names (a CompiledNLP-like object or a list)
    df2 = dispatch_frame(sol.x, type("N", (), {"x_names": _names()})())
    pd.testing.assert_frame_equal(df, df2)


def test_dispatch_frame_errors():
    with pytest.raises(ValueError, match="no variable names"):
        dispatch_frame(np.zeros(3))
    with pytest.raises(ValueError, match="2 names for 3"):
        dispatch_frame(np.zeros(3), ["a", "b"])
    with pytest.raises(ValueError, match="no variable of the families"):
        dispatch_frame(np.zeros(2), ["V[1,1]", "V[1,2]"])


def test_plot_dispatch_content():
    fig = plot_dispatch(_plan())
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Electric power", "Heat", "Stored energy"]
    assert [ax.get_ylabel() for ax in axes] == ["kW", "kW", "kWh"]
    assert axes[2].get_xlabel() == "hour"
    assert "optimal" in fig._suptitle.get_text() and "744.09" in fig._suptitle.get_text()
    e, h, s = axes
    assert len(e.lines) == 9 and _labels(e) == ["grid"] + [f"CHP {c}" for c in HUBS]
    assert len(h.lines) == 9 and _labels(h) == [f"boiler {c}" for c in HUBS] + ["CHP heat (all)"]
    assert _labels(s) == ["batteries (all)", "heat tanks (all)"]
    grid_line = e.lines[0]
    assert list(grid_line.get_xdata()) == list(HOURS)
    assert grid_line.get_ydata()[0] == 1001
    # totals: sum over hubs of 100*c + t at t = 1
    assert s.lines[0].get_ydata()[0] == sum(100 * c + 1 for c in HUBS)


def test_plot_dispatch_into_given_axes():
    fig, axes = plt.subplots(3, 1)
    assert plot_dispatch(_plan(), axes=axes, title="mine") is fig
    assert fig._suptitle.get_text() == "mine"
    with pytest.raises(ValueError, match="three panels"):
        plot_dispatch(_plan(), axes=axes[:2])


def test_plot_dispatch_comparison_content():
    a = _plan()
    b = _plan(2.0, variant="tampered", cost=904.17)
    fig = plot_dispatch_comparison(a, b)
    assert len(fig.axes) == 6
    left, right = fig.axes[0], fig.axes[1]
    assert "optimal (744.09 \\$)" in left.get_title() and "tampered (904.17 \\$)" in right.get_title()
    assert "Electric power" in left.get_title()
    assert "vs" in fig._suptitle.get_text()
    assert left.get_legend() is None and _labels(right)[0] == "grid"
    assert right.lines[1].get_ydata()[0] == 2 * left.lines[1].get_ydata()[0]
    # rows share their y scale
    assert left.get_ylim() == right.get_ylim()
    fig2 = plot_dispatch_comparison(a, b, labels=("A", "B"))
    assert fig2.axes[0].get_title().startswith("A")


def _overlaps_title(fig) -> list[str]:
    """Titles of the visible panels whose drawn extent (title and tick labels included) meets the figure title."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    st = fig._suptitle.get_window_extent(r)
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_tightbbox(r).overlaps(st)]


def test_dispatch_comparison_title_is_not_mathtext():
    from matplotlib import cbook

    fig = plot_dispatch_comparison(_plan(), _plan(2.0, variant="tampered", cost=904.17))
    title = fig._suptitle.get_text()
    assert not cbook.is_math_text(title)  # two "$" made the part between them mathtext
    assert title.replace("\\$", "$") == "Dispatch: optimal (744.09 $) vs tampered (904.17 $)"
    assert not any(cbook.is_math_text(ax.get_title()) for ax in fig.axes)
    assert _overlaps_title(fig) == []
    # user labels: a lone "$" is text; a pair is the user's own mathtext and kept
    fig2 = plot_dispatch_comparison(_plan(), _plan(), labels=("A (1 $)", "B (2 $)"))
    assert not cbook.is_math_text(fig2._suptitle.get_text())
    fig3 = plot_dispatch_comparison(_plan(), _plan(), labels=("$x_1$", "B"))
    assert fig3._suptitle.get_text() == "Dispatch: $x_1$ vs B"
    fig4 = plot_dispatch(_plan())
    assert not cbook.is_math_text(fig4._suptitle.get_text())


def _campaign_table(n: int = 24) -> pd.DataFrame:
    """Rows shaped like `poso-sim sweep` results (inputs, then outcomes and timings)."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        N = int(rng.integers(4, 8))
        rows.append({"case": i, "N": N, "f": int(rng.integers(0, 2)), "dishonest": "C", "leader_dishonest": bool(i % 2),
                     "kinds": "C:follower_error", "signatures": bool(i % 3), "latency": 0.05, "loss": [0.0, 0.1][i % 2],
                     "duplicate": 0.0, "reorder": 0.0, "partition": "", "crash": "", "window": 5.3, "heights": 2,
                     "seed": 1000 + i, "executed": "optimal|optimal", "rounds": "1|1", "heights_executed": 2,
                     "honest_decided": 1.0, "no_majority": 0, "messages": 10 * N + i % 3, "dropped": i % 4,
                     "verifications": N, "virtual_seconds": 10.6 + i % 2, "height_timeouts": 0,
                     "liveness_premise": 2, "live": True if i % 4 else None, "safe": True, "violations": 0,
                     "violated": "", "wall_seconds": 0.01, "check_seconds": 0.001})
    return pd.DataFrame(rows)


def test_plot_sweep_of_a_campaign_table_plots_outcomes_only():
    df = _campaign_table()
    fig = plot_sweep(df)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [
        "live (rate)", "safe (rate)", "heights_executed", "honest_decided", "messages", "virtual_seconds"]
    assert all(ax.get_xlabel() == "N" for ax in visible)  # the first input that varies
    # live has missing values (premise not met): the rate is over the cases where it is defined
    live = visible[0]
    expected = df.dropna(subset=["live"]).groupby("N")["live"].mean().astype(float)
    np.testing.assert_allclose(live.lines[0].get_ydata(), expected.to_numpy())
    assert list(live.lines[0].get_xdata()) == list(expected.index)
    assert _overlaps_title(fig) == []


def test_plot_sweep_title_clear_of_panels_in_every_shape():
    df = _campaign_table()
    for metrics in (["messages"], ["messages", "dropped"], ["safe", "messages", "dropped", "verifications"],
                    ["messages", "dropped", "verifications", "virtual_seconds", "honest_decided", "safe", "live"]):
        fig = plot_sweep(df, x="loss", metrics=metrics, by="signatures")
        assert [ax.get_title().split(" (")[0] for ax in fig.axes if ax.get_visible()] == metrics
        assert _overlaps_title(fig) == [], metrics
        plt.close(fig)


# ------------------------------------------------------------------------------------------------ sequence chart
def _records():
    # C sends a proposal to D (delivered) and to E (dropped); D relays to E (delivered later); D decides
    return [
        {"seq": 0, "t": 0.0, "ev": "send", "src": "C", "dst": "D", "kind": "proposal", "msg_id": 0, "reason": None, "data": "p"},
        {"seq": 1, "t": 0.0, "ev": "send", "src": "C", "dst": "E", "kind": "proposal", "msg_id": 1, "reason": None, "data": "p"},
        {"seq": 2, "t": 0.1, "ev": "drop", "src": "C", "dst": "E", "kind": "proposal", "msg_id": 1, "reason": "loss:l", "data": "p"},
        {"seq": 3, "t": 0.2, "ev": "deliver", "src": "C", "dst": "D", "kind": "proposal", "msg_id": 0, "reason": None, "data": "p"},
        {"seq": 4, "t": 0.2, "ev": "send", "src": "D", "dst": "E", "kind": "relay", "msg_id": 2, "reason": None, "data": "r"},
        {"seq": 5, "t": 0.4, "ev": "deliver", "src": "D", "dst": "E", "kind": "relay", "msg_id": 2, "reason": None, "data": "r"},
        {"seq": 6, "t": 0.4, "ev": "deliver", "src": "D", "dst": "E", "kind": "relay", "msg_id": 2, "reason": "duplicate", "data": "r"},
        {"seq": 7, "t": 0.5, "ev": "user", "src": "D", "dst": None, "kind": "decided", "msg_id": None, "reason": None, "data": {"node": "D"}},
        {"seq": 8, "t": 0.5, "ev": "timer", "src": "E", "dst": None, "kind": "window", "msg_id": None, "reason": None, "data": None},
    ]


def test_message_frame():
    df = message_frame(_records())
    assert list(df["outcome"]) == ["delivered", "dropped", "delivered", "duplicate"]
    assert df.loc[1, "reason"] == "loss:l"
    assert list(df["kind"]) == ["proposal", "proposal", "relay", "relay"]


def _gids(ax, prefix):
    return [p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith(prefix)]


def test_plot_message_sequence_from_records():
    fig = plot_message_sequence(_records(), lanes=["C", "D", "E"], title="demo")
    ax = fig.axes[0]
    assert ax.get_title() == "demo"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["C", "D", "E"]
    assert ax.get_ylabel() == "virtual time (s)"  # every message takes time: y is time
    lo, hi = ax.get_ylim()
    assert lo > hi  # time goes down
    assert len([ln for ln in ax.lines if (ln.get_gid() or "").startswith("lane:")]) == 3
    assert sorted(_gids(ax, "msg:")) == ["msg:proposal:0", "msg:relay:2", "msg:relay:2"]
    assert _gids(ax, "drop:") == ["drop:proposal:1"]
    assert len([ln for ln in ax.lines if ln.get_gid() == "drop-marker"]) == 1
    assert len([ln for ln in ax.lines if ln.get_gid() == "decided"]) == 1
    assert _labels(ax) == ["proposal", "relay", "dropped", "decided"]


def test_plot_message_sequence_filters_and_order_axis():
    recs = [dict(r, t=0.0) for r in _records()]
    fig = plot_message_sequence(recs, kinds=["relay"])
    ax = fig.axes[0]
    assert "event order" in ax.get_ylabel()
    assert _gids(ax, "drop:") == [] and len(_gids(ax, "msg:relay")) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["D", "E"]
    with pytest.raises(ValueError, match="y="):
        plot_message_sequence(recs, y="sideways")


@pytest.fixture(scope="module")
def stub_run():
    from poso_sim.scenarios.runner import run_scenario

    return run_scenario("scenario-1", payloads="stub")


def test_plot_message_sequence_of_a_run(stub_run):
    fig = plot_message_sequence(stub_run)
    ax = fig.axes[0]
    lanes = [t.get_text() for t in ax.get_xticklabels()]
    assert lanes == stub_run.delegates + stub_run.normals
    assert "scenario-1" in ax.get_title()
    delivered = sum(1 for r in stub_run.trace if r["ev"] == "deliver")
    assert len(_gids(ax, "msg:")) == delivered
    assert "proposal" in _labels(ax) and "decided" in _labels(ax)
    fig2 = plot_message_sequence(stub_run, normals=False)
    assert [t.get_text() for t in fig2.axes[0].get_xticklabels()] == stub_run.delegates


# ------------------------------------------------------------------------------------------------ sweep
def _sweep_table():
    rows = []
    for behaviour in ("error", "ignore"):
        for latency in (0.0, 0.1, 0.2):
            for seed in range(3):
                rows.append({"behaviour": behaviour, "latency": latency, "seed": seed,
                             "safe": True, "decided": seed != 2 or latency < 0.2,
                             "messages": 50 + 10 * latency + seed})
    return pd.DataFrame(rows)


def test_plot_sweep_defaults():
    fig = plot_sweep(_sweep_table())
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    # x defaults to the first varying input column: "behaviour"; seed and latency (an input) are never metrics
    assert titles == ["safe (rate)", "decided (rate)", "messages"]
    assert all(ax.get_xlabel() == "behaviour" for ax in fig.axes if ax.get_visible())
    assert "6" not in fig._suptitle.get_text() and "18 runs" in fig._suptitle.get_text()


def test_plot_sweep_by_and_metrics():
    fig = plot_sweep(_sweep_table(), x="latency", metrics=["decided", "messages"], by="behaviour")
    ax_dec, ax_msg = fig.axes
    assert ax_dec.get_title() == "decided (rate)" and ax_dec.get_ylim() == (-0.05, 1.05)
    assert len(ax_dec.lines) == 2 and _labels(ax_dec) == ["behaviour=error", "behaviour=ignore"]
    assert list(ax_dec.lines[0].get_xdata()) == [0.0, 0.1, 0.2]
    np.testing.assert_allclose(ax_dec.lines[0].get_ydata(), [1, 1, 2 / 3])
    np.testing.assert_allclose(ax_msg.lines[1].get_ydata(), [51, 52, 53])
    assert ax_msg.collections  # the min-max band over seeds


def test_plot_sweep_errors():
    with pytest.raises(ValueError, match="empty"):
        plot_sweep(pd.DataFrame())
    with pytest.raises(ValueError, match="no column 'nope'"):
        plot_sweep(_sweep_table(), x="nope")
    with pytest.raises(ValueError, match="no column 'nope'"):
        plot_sweep(_sweep_table(), x="latency", metrics=["nope"])


# ------------------------------------------------------------------------------------------------ HTML
def test_solution_html():
    sol = _plan(stages=[{"name": "fixed-flow", "iterations": 80, "seconds": 1.5, "objective": 744.5, "status": "optimal"}],
                cost_breakdown={"grid": 241.7, "chp": 401.7, "boiler": 100.6})
    h = solution_html(sol)
    for text in ("Solution", "optimal", "744.09 $", "grid", "fixed-flow", sol.digest[:16]):
        assert text in h
    assert "<script" not in h


def test_certificate_html():
    from poso_sim.kkt import Certificate

    cert = Certificate(accepted=False, reasons=["stationarity"], primal_residual=1e-9, dual_residual=0.25,
                       sign_violation=0.0, complementarity=1e-8, cost=904.17,
                       worst=[{"measure": "dual", "name": "P_CHP[3,7]", "value": 0.25}],
                       tolerances={"primal": 1e-6, "dual": 1e-6, "sign": 1e-6, "complementarity": 1e-6})
    h = certificate_html(cert)
    assert "rejected" in h and "stationarity" in h and "P_CHP[3,7]" in h and "904.17" in h
    assert "✗" in h and "✓" in h


def test_run_html(stub_run):
    h = outcome_html(stub_run)
    assert "scenario-1" in h and "normal nodes" in h and "744.09 $" in h
    t = table3_html(stub_run)
    assert "Leader is C" in t and "Leader is D" in t
    assert "&lt;$904&gt;C" in t and "(its own)" in t and "fails KKT" in t
    assert "&lt;$744&gt;DG" in t or "&lt;$744&gt;DE" in t
    from poso_sim.report.table3 import table3

    t2 = table3_html(table3(stub_run), decimals=2)
    assert "&lt;$744.09&gt;D" in t2 and "fails KKT" not in t2


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_plot_sequence_and_sweep(tmp_path, capsys):
    from poso_sim.cli import main

    out = tmp_path / "seq.svg"
    assert main(["plot", "sequence", "scenario-1", "--stub", "--out", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml") and "<svg" in out.read_text()[:2000]
    table = tmp_path / "sweep.csv"
    _sweep_table().to_csv(table, index=False)
    png = tmp_path / "sweep.png"
    assert main(["plot", "sweep", str(table), "--x", "latency", "--by", "behaviour", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["plot", "sequence", "scenario-1", "--stub", "--out", str(tmp_path / "x.txt")]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert main(["plot", "sweep", str(tmp_path / "missing.csv"), "--out", str(png)]) == 2
    assert main(["plot", "sweep", str(table), "--x", "nope", "--out", str(png)]) == 2


def test_cli_plot_dispatch_from_saved_plans(tmp_path):
    from poso_sim.cli import main
    from poso_sim.nlp.solution import save_solution

    a, b = tmp_path / "a.sol", tmp_path / "b.sol"
    save_solution(_plan(), a)
    save_solution(_plan(2.0, variant="tampered", cost=904.17), b)
    out, csv = tmp_path / "d.png", tmp_path / "d.csv"
    assert main(["plot", "dispatch", "--solution", str(a), "--solution", str(b), "--out", str(out),
                 "--csv", str(csv)]) == 0
    assert out.stat().st_size > 10_000
    df = pd.read_csv(csv, index_col="hour")
    assert df.shape == (24, 41) and df.loc[1, "P_grid"] == 1001


@pytest.mark.solver
def test_plot_dispatch_manchester(tmp_path):
    """The real optimal and tampered plans (cached solves): the tampered plan runs CHP 3 harder."""
    from poso_sim.cli import main
    from poso_sim.solvers.api import solve_case

    opt, tam = solve_case("manchester", "true"), solve_case("manchester", "tampered")
    df_o, df_t = dispatch_frame(opt), dispatch_frame(tam)
    assert df_o.shape == df_t.shape == (24, 1 + 8 * 5 + 8 * 4)  # P_grid + 8 hubs x 9 families
    assert df_t["P_CHP[3]"].sum() > df_o["P_CHP[3]"].sum()
    fig = plot_dispatch_comparison(opt, tam)
    assert "optimal" in fig.axes[0].get_title() and "tampered" in fig.axes[1].get_title()
    out = tmp_path / "both.png"
    assert main(["plot", "dispatch", "--objective", "both", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
