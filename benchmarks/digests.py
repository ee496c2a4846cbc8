"""Digests of the simulation's outputs, to show that a change leaves every trace byte for byte as it was.

    python -m benchmarks.digests OUT.json [--quick]      # write the digests of the tree on PYTHONPATH
    python -m benchmarks.digests --diff BEFORE.json AFTER.json

What is digested (stub payloads throughout):

* the packaged scenarios 1-4 and ``chain-7`` with seeds 1, 2 and 3 (``--quick``: seed 1): the kernel trace's digest
  and the run log's digest;
* one-height committees with latency Uniform(10 ms, 50 ms): 20 and 60 delegates with the full run log, 120 and 300
  with the default log mode (compact above 256 delegates); ``--quick`` leaves out 120 and 300;
* the first 200 cases of the ``campaign`` sweep (``--quick``: 60): each case's row without its timings, its kept
  trace and its violations, hashed in order into one digest.

Run it on the tree before a change and on the tree after (``PYTHONPATH=<tree>/src``) and compare with ``--diff``,
which exits 1 when an entry differs or is missing on one side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

SCENARIOS = ("scenario-1", "scenario-2", "scenario-3", "scenario-4", "chain-7")
#: (delegates, log mode or None for the default, heights)
COMMITTEES = ((20, "full", 2), (60, "full", 2), (120, None, 1), (300, None, 1))


def _committee_file(directory: str, n: int, heights: int) -> str:
    path = os.path.join(directory, f"c{n}.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"name: c{n}\ncase: manchester\ndelegates: {n}\nnormal_nodes: 3\nheights: {heights}\nseed: 7\n"
                 "network:\n  latency: {uniform: [0.01, 0.05]}\n")
    return path


def _campaign_digest(cases: int) -> str:
    from poso_sim.sweep.spec import resolve_sweep
    from poso_sim.sweep.worker import PayloadDescriptor, run_case

    h = hashlib.sha256()
    for case in resolve_sweep("campaign").iter_cases(cases):
        out = run_case(case, PayloadDescriptor(), keep_trace=True)
        row = {k: v for k, v in out.row.items() if "wall" not in k and "cpu" not in k and k != "check_seconds"}
        for part in (row, out.trace, out.violations):
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def digests(quick: bool = False) -> dict[str, object]:
    """Every digest listed in the module's documentation, by name."""
    from poso_sim.scenarios.runner import run_scenario

    res: dict[str, object] = {}
    for name in SCENARIOS:
        for seed in (1,) if quick else (1, 2, 3):
            r = run_scenario(name, payloads="stub", seed=seed)
            res[f"{name}/s{seed}"] = [r.trace_digest, r.log.digest()]
    with tempfile.TemporaryDirectory() as directory:
        for n, mode, heights in COMMITTEES:
            if quick and n > 60:
                continue
            r = run_scenario(_committee_file(directory, n, heights), payloads="stub", log_mode=mode)
            res[f"committee{n}/{mode or 'default'}"] = [r.trace_digest, r.log.digest()]
    res["campaign"] = _campaign_digest(60 if quick else 200)
    return res


def diff(before: dict, after: dict) -> list[str]:
    """The names whose digests differ or that one side lacks."""
    return [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.digests", description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="write the digests to this JSON file")
    ap.add_argument("--quick", action="store_true", help="one seed per scenario, small committees, 60 cases")
    ap.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two files written before")
    args = ap.parse_args(argv)
    if args.diff:
        try:
            before, after = (json.load(open(p, encoding="utf-8")) for p in args.diff)
        except (OSError, ValueError) as exc:
            print(f"digests: cannot read {exc}", file=sys.stderr)
            return 2
        bad = diff(before, after)
        print("different: " + ", ".join(bad) if bad else "all equal")
        return 1 if bad else 0
    if not args.out:
        ap.error("give OUT.json or --diff BEFORE AFTER")
    res = digests(args.quick)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1, sort_keys=True)
    print(json.dumps(res, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
