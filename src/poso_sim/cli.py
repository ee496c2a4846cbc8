"""The ``poso-sim`` command.

Sub-commands are contributed by the packages that own them (``solve`` here, ``verify`` by :mod:`poso_sim.kkt`,
``scenarios``/``run``/``table3`` by :mod:`poso_sim.report.runs_cli`, ``sweep`` by :mod:`poso_sim.sweep`, ``plot`` by
:mod:`poso_sim.report`). Every user error ends as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from poso_sim import __version__
from poso_sim.errors import PosoError

# (module, function that adds its sub-parsers); a module that is absent is skipped
_CONTRIBUTORS = (
    ("poso_sim.kkt.cli", "add_verify_parser"),
    ("poso_sim.report.runs_cli", "add_parsers"),
    ("poso_sim.sweep.cli", "add_parsers"),
    ("poso_sim.report.cli", "add_parsers"),
)


def _add_solve(sub) -> None:
    p = sub.add_parser("solve", help="solve a case variant (cached) and print a summary")
    p.add_argument("--case", default="manchester", help="packaged case name or path to a case JSON file")
    p.add_argument(
        "--objective",
        default="true",
        help="true (the optimum), tampered (the dishonest leader's objective) or feasible (CHP 3 forced on)",
    )
    p.add_argument("--out", help="write the solution to this file (poso-sim solution format)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-cache", action="store_true", help="solve from scratch and do not store the result")
    p.add_argument("--cache-dir", help="solution cache directory (default: $POSO_SIM_CACHE_DIR or the user cache)")
    p.add_argument("--starts", type=int, default=1, help="best of k start points (k >= 1); the cheapest optimum wins")
    p.set_defaults(func=_run_solve)


def _check_out_path(out: str | None) -> Path | None:
    if not out:
        return None
    path = Path(out)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise PosoError(f"--out {out}: is a directory")
    if not parent.exists():
        raise PosoError(f"--out {out}: directory {parent} does not exist")
    import os

    if not os.access(parent, os.W_OK):
        raise PosoError(f"--out {out}: directory {parent} is not writable")
    return path


def _run_solve(args) -> int:
    # imported here, not for --help: the case schema (0.2 s), CasADi and the solver stack
    from poso_sim.nlp.problems import problem_definition
    from poso_sim.nlp.solution import save_solution
    from poso_sim.solvers.api import solve_case

    variants = problem_definition(args.case).variants
    if args.objective not in variants:
        raise PosoError(f"--objective {args.objective!r}: unknown objective (choose from {', '.join(variants)})")
    if args.starts < 1:
        raise PosoError("--starts must be >= 1")
    out = _check_out_path(args.out)
    progress = None
    if not args.json:
        def progress(stage: str, info: dict) -> None:
            if info.get("iter", 0) % 25 == 0:
                print(
                    f"  {stage:<22} iter {info['iter']:>4}  objective {info['objective']:>12.4f}"
                    f"  inf_pr {info['inf_pr']:.1e}  inf_du {info['inf_du']:.1e}",
                    file=sys.stderr,
                    flush=True,
                )

    sol, cached = solve_case(
        args.case, args.objective, cache=not args.no_cache, cache_dir=args.cache_dir, starts=args.starts,
        progress=progress, return_cached_flag=True,
    )
    if out is not None:
        save_solution(sol, out)
    summary = {
        "case": sol.case,
        "variant": sol.variant,
        "status": sol.status,
        "cost": sol.cost,
        "objective": sol.objective,
        "constraint_violation": sol.constraint_violation,
        "iterations": sol.iterations,
        "solve_seconds": sol.solve_seconds,
        "digest": sol.digest,
        "cached": cached,
        "cost_breakdown": sol.cost_breakdown,
        "stages": list(sol.stages),
        "out": str(out) if out else None,
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        cb = sol.cost_breakdown or {}
        print(f"case {sol.case}, objective '{sol.variant}': {sol.status}{' (from cache)' if cached else ''}")
        print(f"  true cost     {sol.cost:10.3f} $")
        for part in ("grid", "chp", "boiler"):
            if part in cb:
                print(f"    {part:<10}  {cb[part]:10.3f} $")
        if sol.variant != "true":
            print(f"  objective     {sol.objective:10.3f}   (value of the '{sol.variant}' objective)")
        print(f"  violation     {sol.constraint_violation:10.2e}")
        print(f"  iterations    {sol.iterations:10d}")
        print(f"  solve time    {sol.solve_seconds:10.2f} s")
        for st in sol.stages:
            print(f"    {st['name']:<22} {st['iterations']:5d} it  {st['seconds']:7.2f} s  {st['objective']:.4f}  {st['status']}")
        print(f"  digest        {sol.digest}")
        if out:
            print(f"  written to    {out}")
    return 0 if sol.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poso-sim", description="Proof-of-Solution consensus for energy dispatch")
    parser.add_argument("--version", action="version", version=f"poso-sim {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_solve(sub)
    for module, func in _CONTRIBUTORS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        getattr(mod, func)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PosoError as exc:
        print(f"poso-sim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("poso-sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
