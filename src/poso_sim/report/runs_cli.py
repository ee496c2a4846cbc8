"""`poso-sim scenarios`, `poso-sim run`, `poso-sim table3` (registered by `poso_sim.cli` through `add_parsers`).

A face module: it runs scenarios and renders their outcome, so it imports both (the scenarios layer imports no
report code). The scenario machinery is imported inside the commands: importing it costs about 0.3 s, which
``poso-sim --help`` should not pay.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from poso_sim.errors import PosoError
from poso_sim.protocol.delegate import MEASURED, VerifyCost
from poso_sim.report import record_names, render_run, render_table3, table3_json

__all__ = ["add_parsers", "cmd_scenarios", "cmd_run", "cmd_table3"]


def _verify_cost(text: str) -> VerifyCost:
    if text == MEASURED:
        return MEASURED
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 or 'measured', got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 or 'measured', got {text!r}")
    return v


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="a packaged scenario (see `poso-sim scenarios`; trading-12[:variant]) or a "
                                    "scenario YAML file, whose case: names any registered problem "
                                    "(docs/howto/write-a-scenario.md)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--stub", action="store_true", help="stub payloads (fixed digests and costs, no solver, no KKT); "
                                                       "a market: stub best responses")
    p.add_argument("--verify-cost", type=_verify_cost, default=None, metavar="SECONDS",
                   help="virtual seconds charged per verification, or 'measured' (default: the scenario's)")
    p.add_argument("--heights", type=int, default=None, help="override the number of heights to run")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("scenarios", help="list the packaged scenarios")
    p.add_argument("--json", action="store_true", help="print a JSON object name -> description")
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser(
        "run", help="run a scenario (packaged or a YAML file, on any problem) in virtual time and report who decided what",
        description="Run a scenario in virtual time: real plans of its case's problem (solved once, then read from the "
                    "solution cache; progress on stderr) and real certificates, or --stub ones. The scenario is a "
                    "packaged one or any YAML file; its case: names any registered problem, 'module:function' or a "
                    "case file, and its variants: which variant makes each dishonest plan.")
    _common(p)
    p.add_argument("--trace", metavar="FILE", help="write the simulation trace as JSON lines")
    p.add_argument("--log", choices=("full", "compact"), default=None, dest="log_mode",
                   help="the run log: every entry, or the per-copy notes once per height and node (default: full "
                        "up to 256 delegates, compact above; a compact run's trace has no sends and no events of "
                        "the copies left out, and only its digest is kept unless --trace is given)")
    p.add_argument("--quiet", action="store_true", help="without --json: outcomes only, no event list")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("table3", help="the paper's Table 3 (communication records) of a scenario run (packaged or a "
                                      "YAML file)")
    _common(p)
    p.add_argument("--height", type=int, default=None, help="only this height (default: all)")
    p.add_argument("--round", type=int, default=1, help="a trading scenario: the round whose records to show")
    p.add_argument("--names", action="store_true", help="also list the reference's record file names")
    p.set_defaults(func=cmd_table3)


def _run(args: argparse.Namespace, trace: str | None = None) -> Any:
    # the scenario machinery: 0.3 s to import, not for --help (see the top)
    from poso_sim.scenarios.model import Scenario, resolve_scenario
    from poso_sim.scenarios.runner import run_scenario

    scn = resolve_scenario(args.scenario)
    if not isinstance(scn, Scenario):  # a trading market (docs/trading.md)
        # the market machinery, like the scenario machinery: not for --help
        from poso_sim.scenarios.trading_runner import run_trading

        return run_trading(scn, responder="stub" if args.stub else None, seed=args.seed, trace_path=trace,
                           trace_events=None if trace else ("drop", "fault"))
    if args.heights is not None:
        if args.heights < 1:
            raise PosoError("--heights must be >= 1")
        scn = scn.with_(heights=args.heights)
    return run_scenario(scn, payloads="stub" if args.stub else "real", seed=args.seed,
                        verify_cost=args.verify_cost, trace_path=trace, log_mode=getattr(args, "log_mode", None))


def cmd_scenarios(args: argparse.Namespace) -> int:
    from poso_sim.scenarios.model import packaged_scenarios  # not for --help (see the top)

    items = packaged_scenarios()
    if getattr(args, "json", False):
        print(json.dumps(items, indent=2))
    else:
        w = max(map(len, items), default=0)
        for name, desc in items.items():
            print(f"{name.ljust(w)}  {desc}")
    return 0


def _trading_market(args: argparse.Namespace, res: Any) -> int:
    from poso_sim.report import trading as T  # the market's reports (see the top)

    gap = None
    if not args.stub:
        # the trading case: only for the clearing gap of a real run
        from poso_sim.scenarios.trading_runner import load_case

        gap = T.central_gap(res, load_case(res.scenario.case))
    if args.json:
        print(json.dumps(T.market_json(res, gap), sort_keys=True))
    else:
        print(T.render_market(res, gap), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    res = _run(args, args.trace)
    if not hasattr(res, "executed"):  # an iterated trading market (docs/trading.md)
        return _trading_market(args, res)
    market = _market(res) if not args.stub else None
    if args.json:
        out = res.to_json()
        if market is not None:
            out["market"] = market
        print(json.dumps(out, sort_keys=True))
    else:
        print(render_run(res, events=not args.quiet), end="")
        if market is not None:
            print(render_market(market), end="")
    return 0


def _market(res: Any) -> dict[str, Any] | None:
    """A market's outcome (prices, payments, the hubs' own checks) for a run on a case with priced rows."""
    from poso_sim.scenarios.market import MarketPayloads, is_market, market_summary  # not for --help

    if not is_market(res.scenario.case):
        return None
    ex = res.executed
    return market_summary(MarketPayloads(res.scenario.case), ex["digest"] if ex else None)


def render_market(m: dict[str, Any]) -> str:
    """The market block of ``poso-sim run``: decided prices against the centralised multipliers, payments."""
    if not m.get("decided"):
        return "\nmarket: no plan executed\n"
    lines = ["", "market (decided prices; the centralised problem's multipliers):"]
    shown = list(m["prices"].items())
    for row, p in shown[:8]:
        lines.append(f"  {row:<16} {p:12.4f}  {m['centralised_multipliers'][row]:12.4f}")
    if len(shown) > 8:
        lines.append(f"  ... {len(shown) - 8} more priced rows (--json has them all)")
    lines.append(f"  largest gap {m['price_gap']:.3g}; total cost {m['total_cost']:.2f} "
                 f"(centralised {m['centralised_cost']:.2f})")
    ok = [h for h, c in m["hub_checks"].items() if c["accepted"]]
    lines.append("  payments: " + ", ".join(f"hub {h} {v:.2f}" for h, v in m["payments"].items()))
    if m["hub_checks"]:
        lines.append(f"  hubs' own checks at the decided prices: {len(ok)} of {len(m['hub_checks'])} accept")
    return "\n".join(lines) + "\n"


def cmd_table3(args: argparse.Namespace) -> int:
    res = _run(args)
    if not hasattr(res, "executed"):  # a market: the demands one round's delegates received
        from poso_sim.report.trading import records_table, render_records

        if args.json:
            print(json.dumps(records_table(res, args.round)))
        else:
            print(render_records(res, args.round), end="")
        return 0
    if args.json:
        print(json.dumps(table3_json(res, args.height)))
    else:
        print(render_table3(res, args.height), end="")
        if args.names:
            print()
            for n in record_names(res, args.height):
                print(n)
    return 0
