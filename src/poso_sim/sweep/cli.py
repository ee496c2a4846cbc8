"""`poso-sim sweep` (registered by `poso_sim.cli` through `add_parsers`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from poso_sim.errors import PosoError

__all__ = ["add_parsers", "cmd_sweep", "format_sweep_list"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep of scenarios (many seeds, faults, committees) and check every trace",
        description="Run a sweep file (or a packaged sweep, see --list) on a process pool or a Dask cluster, "
        "check safety and liveness on every case, write the results table and print the command that replays "
        "each failing case. Exit status 1 if any property is violated.",
    )
    p.add_argument("sweep", nargs="?", help="a sweep YAML file or a packaged sweep name (campaign, smoke)")
    p.add_argument("--list", action="store_true", help="list the packaged sweeps")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPUs; 1 = no pool)")
    p.add_argument("--out", default=None,
                   help="results: a .parquet/.csv file, or a directory (default: sweep-<name>/); "
                        "failing cases are written to <dir>/cases/case-NNNNN.yaml")
    p.add_argument("--limit", type=int, default=None, help="run only the first N cases")
    p.add_argument("--case", type=int, action="append", default=None, metavar="I",
                   help="run only case I (repeatable); with --write-case, write its scenario instead")
    p.add_argument("--write-case", metavar="FILE", help="write the scenario of --case I to FILE (no run)")
    p.add_argument("--write-cases", choices=("failing", "all", "none"), default="failing",
                   help="which generated scenarios to write under <out>/cases/ (default: failing)")
    p.add_argument("--stub", action="store_true", help="stub payloads (overrides the sweep file)")
    p.add_argument("--real", action="store_true", help="real payloads: cached solutions + KKT certificate")
    p.add_argument("--cache-dir", help="solution cache directory (real payloads)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run on a Dask cluster: a scheduler address, or 'local' for a LocalCluster "
                        "(needs `pip install poso-sim[dask]`)")
    p.add_argument("--mutation", default=None,
                   help="deliberately break a rule to see the checker catch it: accept_unverified, verifier_accepts_all")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    # the process ends once the report is flushed (poso_sim.cli.main), without freeing every row and run object
    p.set_defaults(func=cmd_sweep, fast_exit=True)


def format_sweep_list(descriptions: dict[str, str], width: int | None = None) -> str:
    """`sweep --list`: each packaged sweep's name and its whole description (whitespace joined), wrapped to the
    terminal width and indented under the name's column."""
    import shutil
    import textwrap

    width = width or max(60, min(120, shutil.get_terminal_size((100, 24)).columns))
    w = max(map(len, descriptions), default=0)
    out = []
    for name, desc in descriptions.items():
        text = " ".join(str(desc).split()).replace(" %", "\0%") or "(no description)"  # keep "5 %" together
        lines = [ln.replace("\0", " ") for ln in
                 textwrap.wrap(text, width=max(30, width - w - 2), break_on_hyphens=False)]
        out.append(f"{name.ljust(w)}  {lines[0]}\n" + "".join(f"{' ' * (w + 2)}{ln}\n" for ln in lines[1:]))
    return "".join(out)


def _dask_client(address: str) -> Any:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PosoError("--dask needs the optional dependency: pip install 'poso-sim[dask]'") from None
    if address == "local":
        return Client(LocalCluster(processes=True, threads_per_worker=1))
    return Client(address)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .campaign import format_report, run_sweep
    from .spec import packaged_sweeps, resolve_sweep

    if args.list:
        print(format_sweep_list({name: resolve_sweep(name).description for name in packaged_sweeps()}), end="")
        return 0
    if not args.sweep:
        raise PosoError("sweep: give a sweep file or a packaged sweep name (see --list)")
    if args.stub and args.real:
        raise PosoError("--stub and --real exclude each other")
    if args.workers is not None and args.workers < 1:
        raise PosoError("--workers must be >= 1")
    spec = resolve_sweep(args.sweep)
    if args.write_case:
        if not args.case or len(args.case) != 1:
            raise PosoError("--write-case needs exactly one --case I")
        case = spec.case(args.case[0])
        Path(args.write_case).write_text(case.to_yaml(), encoding="utf-8")
        stub = " --stub" if (spec.payloads == "stub" and not args.real) or args.stub else ""
        print(f"wrote {args.write_case}; run it with: poso-sim run {args.write_case} --seed {case.seed}{stub}")
        return 0
    out = args.out or f"sweep-{spec.name}"
    client = _dask_client(args.dask) if args.dask else None
    if client is not None:  # a local cluster's processes are stopped by the interpreter's exit handlers
        args.fast_exit = False
    try:
        res = run_sweep(
            spec,
            executor=client,
            workers=args.workers,
            out=out,
            limit=args.limit,
            cases=args.case,
            progress=False if (args.no_progress or args.json) else None,
            mutation=args.mutation,
            payloads="stub" if args.stub else ("real" if args.real else None),
            cache_dir=args.cache_dir,
            write_cases=args.write_cases,
            echo=None if args.json else (lambda s: print(s, file=sys.stderr)),
        )
    finally:
        if client is not None:
            client.close()
    if args.json:
        print(json.dumps({
            "sweep": spec.name,
            "cases": len(res.rows),
            "violations": res.n_violations,
            "failing_cases": res.failing_cases,
            "wall_seconds": res.wall_seconds,
            "workers": res.workers,
            "cases_per_second": res.cases_per_second,
            "summary": res.summary_records(),
            "replay": {str(k): v for k, v in res.replay_commands().items()},
            "out": str(res.out_dir) if res.out_dir else None,
        }, sort_keys=True))
    else:
        print(format_report(res), end="")
        print(f"results in {res.out_dir}")
    return 1 if res.n_violations else 0
