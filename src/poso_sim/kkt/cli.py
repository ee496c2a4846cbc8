"""``poso-sim verify FILE [--case manchester] [--json]`` (also ``python -m poso_sim.kkt.cli``).

Exit codes: 0 accepted, 1 rejected, 2 unreadable input (one-line message on stderr, no traceback).
``verify_seconds`` is the check itself (integrity, digest, evaluation of f/grad/g/J, residuals, any repair) on a
problem compiled beforehand; loading the file and compiling the problem are reported separately.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from poso_sim.errors import PosoError, SolutionFileError
from poso_sim.kkt.certificate import Tolerances
from poso_sim.kkt.check import checker_for
from poso_sim.nlp.solution import load_solution

__all__ = ["add_verify_parser", "run_verify", "main"]


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="solution file (poso-sim solution format)")
    p.add_argument("--case", default="manchester", help="case whose true problem the solution is checked against")
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--primal-tol", type=float, default=None, help="primal feasibility tolerance (scaled)")
    p.add_argument("--dual-tol", type=float, default=None, help="stationarity tolerance (scaled)")
    p.add_argument("--comp-tol", type=float, default=None, help="complementarity tolerance (objective units)")
    p.add_argument("--no-repair", action="store_true", help="do not try to re-derive multipliers")


def add_verify_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``verify`` sub-command on an ``argparse`` sub-parsers object; returns its parser."""
    p = subparsers.add_parser(
        "verify",
        help="check a solution file's KKT certificate against the case's true problem",
        description="Check primal feasibility, stationarity, multiplier signs and complementarity of a solution.",
    )
    _configure(p)
    p.set_defaults(func=run_verify)
    return p


def _fail(msg: str) -> int:
    print(f"poso-sim verify: {msg}", file=sys.stderr)
    return 2


def run_verify(args: argparse.Namespace) -> int:
    """Run the check described by ``args``; print the result; return the exit code."""
    from poso_sim.nlp import problems  # CasADi (about 0.2 s): loaded when verifying, not for --help

    t0 = time.perf_counter()
    try:
        sol = load_solution(args.file)
    except SolutionFileError as e:
        return _fail(str(e))
    except (OSError, ValueError) as e:  # pragma: no cover - load_solution already wraps these
        return _fail(f"{args.file}: {e}")
    t_load = time.perf_counter() - t0
    try:
        # the compiled functions of the case's honest problem: from the disk cache when they are there, without
        # Pyomo or the model (which nothing here needs)
        problem = problems.get_compiled(args.case, getattr(args, "variant", None))
    except (PosoError, ValueError, OSError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    t_compile = time.perf_counter() - t0 - t_load
    chk = checker_for(problem)
    kw = {}
    if args.primal_tol is not None:
        kw["primal"] = args.primal_tol
    if args.dual_tol is not None:
        kw["dual"] = args.dual_tol
    if args.comp_tol is not None:
        kw["complementarity"] = args.comp_tol
    if args.no_repair:
        kw["repair"] = False
    cert = chk.verify(sol, Tolerances(**kw))
    if args.json:
        d = cert.to_dict()
        d["file"] = str(args.file)
        d["case"] = args.case
        d["load_seconds"] = t_load
        d["compile_seconds"] = t_compile
        d["verify_seconds_includes"] = "integrity+digest, evaluation of f/grad/g/J, residuals, repair; not load or compile"
        print(json.dumps(d, indent=None, sort_keys=False))
    else:
        print(f"{args.file}: {cert.summary()}")
        for w in cert.worst[:10]:
            print(f"    {w['measure']:<16} {w['name']:<40} {w['value']:.3e}")
    return 0 if cert.accepted else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="poso-sim verify", description="KKT certificate of a solution file")
    _configure(p)
    args = p.parse_args(argv)
    return run_verify(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
