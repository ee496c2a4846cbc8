"""``poso-sim plot ...``: write the figures of :mod:`poso_sim.report.plots` to PNG, SVG or PDF files.

Registered by :mod:`poso_sim.cli` through :func:`add_parsers`::

    poso-sim plot dispatch --case manchester --objective both --out dispatch.png
    poso-sim plot dispatch --solution plan.sol --out plan.svg
    poso-sim plot sequence scenario-1 --out seq.svg [--stub] [--seed 3]
    poso-sim plot sweep results.csv --x latency --by behaviour --out sweep.png
    poso-sim plot market trading-12 [--what prices|demands] --out prices.png

The format follows the extension of ``--out``. ``poso-sim -v plot ...`` logs the solve stages and the files written.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from poso_sim.errors import PosoError
from poso_sim.nlp.solution import load_solution

# The other layers are imported inside the commands: the solver stack (CasADi), the plots (matplotlib), the
# scenario machinery and the case schema cost 0.2-1 s to import, which `poso-sim --help` should not pay.

__all__ = ["add_parsers", "cmd_plot_dispatch", "cmd_plot_sequence", "cmd_plot_sweep", "cmd_plot_market"]

log = logging.getLogger(__name__)

FORMATS = (".png", ".svg", ".pdf")


def _out_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in FORMATS:
        raise PosoError(f"--out {text}: unknown format {path.suffix or '(none)'!r} (use {', '.join(FORMATS)})")
    if path.is_dir():
        raise PosoError(f"--out {text}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PosoError(f"--out {text}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PosoError(f"--out {text}: directory {parent} is not writable")
    return path


def _agg() -> None:
    import matplotlib  # heavy (about 0.5 s with pyplot): only when a figure is drawn

    matplotlib.use("Agg")


def _save(fig: Any, out: Path) -> int:
    from poso_sim.report.plots import save_figure

    save_figure(fig, str(out))
    print(out)
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("plot", help="draw a dispatch, a message sequence chart or a sweep to PNG/SVG/PDF")
    psub = p.add_subparsers(dest="plot_command", metavar="WHAT")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    d = psub.add_parser("dispatch", help="the 24 h dispatch of a plan (or two side by side)")
    d.add_argument("--case", default="manchester", help="packaged case name or path to a case JSON file")
    d.add_argument("--objective", default="true",
                   help="true, tampered, feasible, or 'both' (optimal and tampered side by side)")
    d.add_argument("--solution", action="append", metavar="FILE",
                   help="plot saved plan(s) instead of solving (give it twice for a comparison)")
    d.add_argument("--cache-dir", help="solution cache directory (default: $POSO_SIM_CACHE_DIR or the user cache)")
    d.add_argument("--csv", metavar="FILE", help="also write the dispatch table (hours x series) as CSV")
    d.add_argument("--out", required=True, help="output file (.png, .svg or .pdf)")
    d.set_defaults(func=cmd_plot_dispatch)

    s = psub.add_parser("sequence", help="message sequence chart of a scenario run")
    s.add_argument("scenario", help="a packaged scenario (see `poso-sim scenarios`) or a YAML file")
    s.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    s.add_argument("--stub", action="store_true", help="stub payloads (no solver, no KKT)")
    s.add_argument("--heights", type=int, default=None, help="override the number of heights")
    s.add_argument("--kind", action="append", metavar="KIND", help="only messages of this kind (repeatable)")
    s.add_argument("--no-normals", action="store_true", help="delegates only (no normal-node lanes)")
    s.add_argument("--y", choices=("auto", "time", "order"), default="auto",
                   help="vertical axis: virtual time, event order, or auto (order when latency is zero)")
    s.add_argument("--out", required=True, help="output file (.png, .svg or .pdf)")
    s.set_defaults(func=cmd_plot_sequence)

    m = psub.add_parser("market", help="a trading run: the price path by round, or each hub's demands")
    m.add_argument("scenario", help="a trading scenario (trading-12, trading-12:price-liar, ...) or a YAML file")
    m.add_argument("--what", choices=("prices", "demands"), default="prices", help="which figure (default prices)")
    m.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    m.add_argument("--stub", action="store_true", help="stub best responses (no solver)")
    m.add_argument("--out", required=True, help="output file (.png, .svg or .pdf)")
    m.set_defaults(func=cmd_plot_market)

    w = psub.add_parser("sweep", help="outcomes of a sweep table (CSV, Parquet or JSON lines) against a parameter")
    w.add_argument("table", help="the sweep's table: .csv, .parquet or .jsonl")
    w.add_argument("--x", default=None, help="the swept column (default: the first that varies)")
    w.add_argument("--metric", action="append", metavar="COLUMN", help="a column to plot (repeatable)")
    w.add_argument("--by", default=None, help="one line per value of this column")
    w.add_argument("--out", required=True, help="output file (.png, .svg or .pdf)")
    w.set_defaults(func=cmd_plot_sweep)


def _progress(stage: str, info: dict) -> None:
    if info.get("iter", 0) % 25 == 0:
        log.info("%s: iteration %d, objective %.4f, inf_pr %.1e", stage, info.get("iter", 0),
                 info.get("objective", float("nan")), info.get("inf_pr", float("nan")))


def _solve(case: str, variant: str, cache_dir: str | None) -> Any:
    # heavy (see the top): the case schema, then CasADi and the solvers
    from poso_sim.nlp.problems import problem_definition
    from poso_sim.solvers.api import solve_case

    variants = problem_definition(case).variants
    if variant not in variants:
        raise PosoError(f"--objective {variant!r}: unknown objective (choose from {', '.join(variants)} or both)")
    log.info("solving %s / %s (cached after the first solve)", case, variant)
    sol, cached = solve_case(case, variant, cache_dir=cache_dir, progress=_progress, return_cached_flag=True)
    log.info("%s / %s: %s, %.3f $%s", case, variant, sol.status, sol.cost, " (from cache)" if cached else "")
    return sol


def cmd_plot_dispatch(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    csv = Path(args.csv) if args.csv else None
    _agg()
    from poso_sim.report.plots import dispatch_frame, plot_dispatch, plot_dispatch_comparison

    names = None
    if args.solution:
        if len(args.solution) > 2:
            raise PosoError("--solution: give one plan, or two to compare")
        sols = [load_solution(f) for f in args.solution]
        if not sols[0].x_names:
            from poso_sim.nlp.problems import get_compiled  # heavy (CasADi, see the top)

            names = get_compiled(sols[0].case or args.case)
    elif args.objective == "both":
        sols = [_solve(args.case, "true", args.cache_dir), _solve(args.case, "tampered", args.cache_dir)]
    else:
        sols = [_solve(args.case, args.objective, args.cache_dir)]
    if len(sols) == 2:
        fig = plot_dispatch_comparison(sols[0], sols[1], names)
    else:
        fig = plot_dispatch(sols[0], names)
    if csv is not None:
        dispatch_frame(sols[0], names).to_csv(csv)
        log.info("wrote %s", csv)
    return _save(fig, out)


def cmd_plot_sequence(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    _agg()
    # heavy (see the top): matplotlib, the scenario machinery
    from poso_sim.report.plots import plot_message_sequence
    from poso_sim.scenarios.model import resolve_scenario
    from poso_sim.scenarios.runner import run_scenario

    scn = resolve_scenario(args.scenario)
    if args.heights is not None:
        if args.heights < 1:
            raise PosoError("--heights must be >= 1")
        scn = scn.with_(heights=args.heights)
    log.info("running %s (%s payloads)", scn.name, "stub" if args.stub else "real")
    result = run_scenario(scn, payloads="stub" if args.stub else "real", seed=args.seed)
    log.info("%s: %d messages, %.3f virtual s", scn.name, result.messages, result.virtual_seconds)
    fig = plot_message_sequence(result, kinds=args.kind, normals=not args.no_normals, y=args.y)
    return _save(fig, out)


def cmd_plot_market(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    _agg()
    # heavy (see the top): matplotlib, the market machinery
    from poso_sim.report.trading import plot_hub_demands, plot_price_path
    from poso_sim.scenarios.trading_runner import resolve_trading, run_trading

    scn = resolve_trading(args.scenario)
    result = run_trading(scn, responder="stub" if args.stub else None, seed=args.seed)
    fig = plot_price_path(result) if args.what == "prices" else plot_hub_demands(result)
    return _save(fig, out)


def _read_table(path: str) -> Any:
    import pandas as pd  # heavy (about 0.4 s): only when a sweep table is read

    p = Path(path)
    if not p.is_file():
        raise PosoError(f"{path}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(p)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(p, lines=suffix == ".jsonl")
    except Exception as exc:  # pandas raises many types; the user gets one line
        raise PosoError(f"{path}: cannot read the table ({exc})") from None
    raise PosoError(f"{path}: unknown table format {suffix!r} (use .csv, .parquet or .jsonl)")


def cmd_plot_sweep(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    df = _read_table(args.table)
    _agg()
    from poso_sim.report.plots import plot_sweep

    try:
        fig = plot_sweep(df, x=args.x, metrics=args.metric, by=args.by)
    except ValueError as exc:
        raise PosoError(str(exc)) from None
    return _save(fig, out)
