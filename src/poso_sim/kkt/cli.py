"""``poso-sim verify FILE [--case CASE] [--json]`` (also ``python -m poso_sim.kkt.cli``).

The plan is checked against the case and instance its file names (``meta.case``; ``--case`` overrides it), whose
honest problem must have the fingerprint the file records. Exit codes: 0 accepted, 1 rejected, 2 unreadable or
malformed input (one-line message on stderr, no traceback), 3 a plan for another problem than the case named.
A file larger than a plan of its problem can be is refused before it is read (only its header is read first).
``verify_seconds`` is the check itself (integrity, digest, evaluation of f/grad/g/J, residuals, any multiplier
decision) on a problem compiled beforehand; loading the file and compiling the problem are reported separately.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Sequence

from poso_sim.errors import PosoError, ProblemMismatchError, SolutionFileError
from poso_sim.kkt.certificate import Tolerances
from poso_sim.kkt.check import checker_for
from poso_sim.kkt.origin import case_to_check, check_same_problem
from poso_sim.nlp.solution import check_integrity, load_solution, read_header, size_limit

__all__ = ["add_verify_parser", "run_verify", "main", "EXIT_MISMATCH"]

log = logging.getLogger("poso_sim.kkt.cli")

#: Exit status of a plan for another problem than the case it is checked against (0 accepted, 1 rejected, 2 bad
#: input).
EXIT_MISMATCH = 3


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="solution file (poso-sim solution format)")
    p.add_argument("--case", default=None,
                   help="case whose honest problem the plan is checked against (default: the case and instance the "
                        "solution file names)")
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--primal-tol", type=float, default=None, help="primal feasibility tolerance (scaled)")
    p.add_argument("--dual-tol", type=float, default=None, help="stationarity tolerance (scaled)")
    p.add_argument("--comp-tol", type=float, default=None, help="complementarity tolerance (objective units)")
    p.add_argument("--no-decide", action="store_true",
                   help="judge the received multipliers only (do not decide whether valid ones exist)")


def add_verify_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``verify`` sub-command on an ``argparse`` sub-parsers object; returns its parser."""
    p = subparsers.add_parser(
        "verify",
        help="check a solution file's KKT certificate against the honest problem of the case it names",
        description="Check primal feasibility, stationarity, multiplier signs and complementarity of a solution "
                    "against the honest problem of the case it names (or --case). Exit status: 0 accepted, "
                    "1 rejected, 2 bad input, 3 a plan for another problem.",
    )
    _configure(p)
    p.set_defaults(func=run_verify)
    return p


def _fail(msg: str, code: int = 2) -> int:
    print(f"poso-sim verify: {msg}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _load(args: argparse.Namespace) -> tuple[Any, Any, str, float, float]:
    """``(solution, problem, case, load_seconds, compile_seconds)``: the header first (it names the case), then
    the problem, then the file in full if its size fits the problem. Raises the errors :func:`run_verify` maps."""
    from poso_sim.nlp import problems  # CasADi (about 0.2 s): loaded when verifying, not for --help

    t0 = time.perf_counter()
    header = read_header(args.file)
    meta = header["meta"]
    try:
        case = case_to_check(meta.get("case"), args.case)
    except SolutionFileError as exc:
        raise SolutionFileError(f"{args.file}: {exc}") from None
    t_head = time.perf_counter() - t0
    # the compiled functions of the case's honest problem: from the disk cache when they are there, without Pyomo
    # or the model (which nothing here needs)
    loaded = problems.load_problem(case, getattr(args, "variant", None))
    problem = loaded.nlp
    t_compile = time.perf_counter() - t0 - t_head
    log.info("%s: compiled problem of case %s: %s (%.2f s)", args.file, case,
             "compiled-problem cache hit" if loaded.from_disk else "compiled-problem cache miss, compiled", t_compile)
    # a plan of another problem is named as such before its bulk is read (its size may not fit this problem), once
    # its checksum shows that the header is as written (a corrupt file is bad input, whatever it claims)
    try:
        check_same_problem(_Claimed(meta), problem, case)
    except ProblemMismatchError:
        check_integrity(args.file, expected_bytes=header["intact_bytes"])
        raise
    t1 = time.perf_counter()
    sol = load_solution(args.file, max_bytes=size_limit(problem.n, problem.m, [*problem.x_names, *problem.row_names]))
    check_same_problem(sol, problem, case)
    return sol, problem, case, t_head + time.perf_counter() - t1, t_compile


class _Claimed:
    """The fingerprint and case a header claims, in the shape :func:`check_same_problem` reads."""

    def __init__(self, meta: dict) -> None:
        self.fingerprint = meta.get("fingerprint", "")
        self.case = meta.get("case", "")


def _tolerances(args: argparse.Namespace) -> Tolerances:
    kw: dict[str, Any] = {}
    if args.primal_tol is not None:
        kw["primal"] = args.primal_tol
    if args.dual_tol is not None:
        kw["dual"] = args.dual_tol
    if args.comp_tol is not None:
        kw["complementarity"] = args.comp_tol
    if args.no_decide:
        kw["decide"] = False
    return Tolerances(**kw)


def run_verify(args: argparse.Namespace) -> int:
    """Run the check described by ``args``; print the result; return the exit code."""
    try:
        sol, problem, case, t_load, t_compile = _load(args)
    except ProblemMismatchError as e:
        return _fail(f"{args.file}: {e}", EXIT_MISMATCH)
    except (PosoError, ValueError, OSError, RecursionError, MemoryError) as e:
        return _fail(_one_line(e))
    log.info("%s: case %s, %d variables, %d rows, %s", args.file, case, sol.n, sol.m, sol.variant or "?")
    cert = checker_for(problem).verify(sol, _tolerances(args))
    log.info("%s: %s", args.file, cert.summary())
    if args.json:
        d = cert.to_dict()
        d["file"] = str(args.file)
        d["case"] = case
        d["load_seconds"] = t_load
        d["compile_seconds"] = t_compile
        d["verify_seconds_includes"] = (
            "integrity+digest, evaluation of f/grad/g/J, residuals, multiplier decision; not load or compile"
        )
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
