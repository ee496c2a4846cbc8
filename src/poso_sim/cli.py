"""The ``poso-sim`` command.

Sub-commands are contributed by the packages that own them (``solve`` here, ``verify`` by :mod:`poso_sim.kkt`,
``scenarios``/``run``/``table3`` by :mod:`poso_sim.report.runs_cli`, ``sweep`` by :mod:`poso_sim.sweep`, ``plot`` by
:mod:`poso_sim.report`). Every user error ends as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from poso_sim import __version__
from poso_sim.errors import PosoError

# The sub-commands, in the order `--help` lists them: name -> (module, function that adds its parsers, one-line
# help). Only the module of the command being run is imported (so that `poso-sim --help` imports neither numpy nor
# Pyomo); a module that is absent is skipped. The help lines here are what the top-level `--help` shows.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "solve": ("poso_sim.cli", "_add_solve", "solve a variant of any registered problem (cached) and print a summary"),
    "verify": ("poso_sim.kkt.cli", "add_verify_parser",
               "check a solution file's KKT certificate against the honest problem of the case it names"),
    "scenarios": ("poso_sim.report.runs_cli", "add_parsers", "list the packaged scenarios"),
    "run": ("poso_sim.report.runs_cli", "add_parsers",
            "run a scenario (packaged or a YAML file, on any problem) in virtual time and report who decided what"),
    "table3": ("poso_sim.report.runs_cli", "add_parsers",
               "the paper's Table 3 (communication records) of a scenario run (packaged or a YAML file)"),
    "sweep": ("poso_sim.sweep.cli", "add_parsers",
              "run a sweep of scenarios (many seeds, faults, committees) and check every trace"),
    "plot": ("poso_sim.report.cli", "add_parsers", "draw a dispatch, a message sequence chart or a sweep to PNG/SVG/PDF"),
}


def _add_solve(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "solve", help=_COMMANDS["solve"][2],
        description="Solve one variant of a problem (the honest one by default) and print its cost, iterations and "
                    "digest. The plan is cached: a second solve of the same problem, data and code is read back. "
                    "The problem is any registered one (manchester, ieee33, ...), 'module:function' returning a "
                    "ProblemDefinition (docs/howto/bring-your-own-problem.md), or a case file of the Manchester "
                    "format.",
    )
    p.add_argument("--case", default="manchester",
                   help="the problem: a registered name (manchester, ieee33, ...), 'module:function', or a case JSON "
                        "file (default: manchester)")
    p.add_argument(
        "--objective",
        default=None, metavar="VARIANT",
        help="the variant to solve (default: the problem's honest one); Manchester and IEEE 33 also have tampered "
             "(the dishonest leader's objective) and feasible (a feasible, dearer plan)",
    )
    p.add_argument("--out", help="write the solution to this file (poso-sim solution format)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-cache", action="store_true", help="solve from scratch and do not store the result")
    p.add_argument("--cache-dir", help="solution cache directory (default: $POSO_SIM_CACHE_DIR or the user cache)")
    p.add_argument("--starts", type=int, default=1, help="best of k start points (k >= 1); the cheapest optimum wins")
    p.set_defaults(func=_run_solve, fast_exit=True)
    return p


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

    definition = problem_definition(args.case)
    variants = definition.variants
    if args.objective is None:
        args.objective = definition.honest_variant
    if args.objective not in variants:
        raise PosoError(f"--objective {args.objective!r}: unknown objective (choose from {', '.join(variants)})")
    if args.starts < 1:
        raise PosoError("--starts must be >= 1")
    out = _check_out_path(args.out)
    from poso_sim.progress import solve_progress_callback

    progress = solve_progress_callback(str(args.case), args.objective)
    sol, cached = solve_case(
        args.case, args.objective, cache=not args.no_cache, cache_dir=args.cache_dir, starts=args.starts,
        progress=progress, return_cached_flag=True,
    )
    progress.finish()
    prices = _settle_prices(args.case, sol) if definition.priced_rows and sol.ok else None
    if prices is not None:
        sol = prices["proposal"]
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
    if prices is not None:
        summary["prices"] = prices["rows"]
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        cb = sol.cost_breakdown or {}
        unit = definition.cost_unit
        print(f"case {sol.case}, objective '{sol.variant}': {sol.status}{' (from cache)' if cached else ''}")
        print(f"  true cost     {sol.cost:10.3f} {unit}")
        # Manchester's parts in their usual order, then any other problem's parts as it names them
        usual = ("grid", "chp", "boiler")
        for part in [p for p in usual if p in cb] + [p for p in cb if p not in usual]:
            print(f"    {part:<10}  {cb[part]:10.3f} {unit}")
        if sol.variant != "true":
            print(f"  objective     {sol.objective:10.3f}   (value of the '{sol.variant}' objective)")
        print(f"  violation     {sol.constraint_violation:10.2e}")
        print(f"  iterations    {sol.iterations:10d}")
        print(f"  solve time    {sol.solve_seconds:10.2f} s")
        for st in sol.stages:
            print(f"    {st['name']:<22} {st['iterations']:5d} it  {st['seconds']:7.2f} s  {st['objective']:.4f}  {st['status']}")
        if prices is not None:
            print("  prices (settlement: the midpoint of each priced row's valid interval; the proposal carries them)")
            for row in prices["rows"]:
                print(f"    {row['name']:<20} {row['settlement']:14.4f}   interval [{row['low']:.4f}, {row['high']:.4f}]")
        print(f"  digest        {sol.digest}")
        if out:
            print(f"  written to    {out}")
    return 0 if sol.ok else 1


def _settle_prices(case: str, sol: Any) -> dict[str, Any]:
    """A plan of a problem with priced rows as the proposal a leader sends: its multipliers completed around the
    settlement prices (``kkt.proposal.settle``), so that ``poso-sim verify`` of the written file judges the prices a
    delegate would demand, not the solver's choice inside a degenerate interval."""
    # the certificate (HiGHS, QDLDL) and the registry, loaded only for a problem with priced rows
    from poso_sim.kkt import verify
    from poso_sim.kkt.proposal import settle
    from poso_sim.nlp.problems import load_problem

    nlp = load_problem(case).nlp
    try:
        proposal = settle(nlp, sol)
    except ValueError as exc:
        raise PosoError(f"{case}: the plan's prices cannot be settled ({exc})") from None
    cert = verify(nlp, proposal)
    if not cert.accepted:  # settle() completed the multipliers around the settlement prices: never expected
        raise PosoError(f"{case}: the settled proposal is not accepted ({'; '.join(cert.reasons)})")
    rows = [{k: r[k] for k in ("name", "low", "high", "settlement")} for r in cert.prices.get("rows", [])]
    return {"proposal": proposal, "rows": rows}


class _Placeholders:
    """Sub-parsers action wrapper that drops parsers a contributor adds for commands other than the wanted ones."""

    def __init__(self, sub: Any, wanted: set[str]) -> None:
        self._sub = sub
        self._wanted = wanted

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name in self._wanted:
            return self._sub.add_parser(name, **kwargs)
        return argparse.ArgumentParser(prog=name, add_help=False)  # discarded


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """-v/--verbose on a sub-command's parser (and its own sub-commands), counted with the top-level flag."""
    parser.add_argument("-v", "--verbose", dest="verbose_after", action="count", default=argparse.SUPPRESS,
                        help="log more (-vv for debug); same as before the sub-command")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _add_verbose(child)


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in argv (the first word that is one), or None."""
    for word in argv:
        if word == "--":
            return None
        if word in _COMMANDS:
            return word
        if not word.startswith("-"):
            return None  # an unknown command: argparse reports it
    return None


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The argument parser. ``command``: the sub-command whose parser is built in full ("*": all of them,
    None: none; the others get a placeholder that only carries the help line)."""
    parser = argparse.ArgumentParser(prog="poso-sim", description="Proof-of-Solution consensus for energy dispatch")
    parser.add_argument("--version", action="version", version=f"poso-sim {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log poso_sim's steps (stages, cache hits, verdicts); -vv for debug; also accepted "
                             "after the sub-command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    loaded: set[tuple[str, str]] = set()
    for name, (module, func, help_) in _COMMANDS.items():
        if command != "*" and name != command:
            sub.add_parser(name, help=help_)
            continue
        if (module, func) in loaded:
            continue
        loaded.add((module, func))
        if module == __name__:
            mod = sys.modules[__name__]
        else:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name and module.startswith(exc.name):
                    continue
                raise
        wanted = {n for n, (m, f, _) in _COMMANDS.items() if (m, f) == (module, func)}
        if command != "*":
            wanted = {command}  # this module's other commands get placeholders in their turn
        getattr(mod, func)(_Placeholders(sub, wanted))
    for p in set(sub.choices.values()):
        _add_verbose(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` and return its exit code. Without ``argv`` (the process's own command line: the
    ``poso-sim`` script, ``python -m poso_sim``), a command that asks for it (``solve``) ends the process once its
    output is written and flushed, skipping the interpreter's teardown (freeing the compiled problems and the
    Pyomo models object by object: 0.4-0.5 s of CPU after a solve)."""
    entry = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    verbosity = args.verbose + getattr(args, "verbose_after", 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from poso_sim import progress

    progress.configure(verbosity, label=f"poso-sim {args.command}")
    try:
        code = int(args.func(args) or 0)
    except PosoError as exc:
        progress.unconfigure()
        print(f"poso-sim: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        progress.unconfigure()
        print("poso-sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        progress.unconfigure()
    if entry and getattr(args, "fast_exit", False):
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process with ``code`` once stdout and stderr are flushed, without the interpreter's teardown (no
    atexit handlers, no freeing of every object). Only for a command that has written and closed everything it
    produces; a stream that cannot be flushed (a closed pipe) ends the process normally instead."""
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
