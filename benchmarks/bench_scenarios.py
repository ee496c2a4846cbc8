"""Benchmarks of poso_sim.scenarios.

Workloads:

* **end to end, real payloads** (`--real`): `run_scenario("scenario-1")` with a warm solution cache, in a fresh
  process: loading the plans scenario 1 needs (optimal and tampered: plans are made lazily) and the verifier's
  compiled problem, the first KKT verification of each digest, then the simulation; and the same scenario again in the same process (problem, plans and verdicts
  cached). Goal: <= 2 s wall for a run with a warm cache.
* **per-message protocol overhead** (stub payloads, so no KKT; signatures off, so no crypto): a committee of 9
  honest delegates and 3 normal nodes over 20 heights with 10 ms latency; wall time per message sent, with the
  trace on and off, and with signatures on for comparison.

``python -m benchmarks.bench_scenarios [--real] [--write]`` (``--write`` replaces the "Scenarios" section of
docs/benchmarks.md). Wall times are the best of 3 runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Scenarios"


def _best(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def per_message() -> list[dict]:
    from poso_sim.scenarios import Scenario, StubPayloads, run_scenario

    rows = []
    base = Scenario(name="bench", delegates=9, normal_nodes=3, heights=20, seed=1, network={"latency": 0.01})
    variants = [
        ("signatures off, trace on", base.with_(signatures=False), None),
        ("signatures off, trace off", base.with_(signatures=False), []),
        ("signatures on, trace off", base, []),
        ("scenario-2 (stub), signatures on, trace on", "scenario-2", None),
    ]
    for label, scn, events in variants:
        src = StubPayloads()

        def go(scn=scn, events=events, src=src):
            return run_scenario(scn, payloads=src, trace_events=events)

        wall, res = _best(go)
        rows.append({
            "workload": label, "delegates": len(res.delegates), "heights": res.heights_run,
            "messages": res.messages, "wall_s": wall, "us_per_message": 1e6 * wall / max(1, res.messages),
            "virtual_s": res.virtual_seconds,
        })
    return rows


_REAL_CHILD = r"""
import json, time
t0 = time.perf_counter()
from poso_sim.scenarios import RealPayloads, needed_labels, resolve_scenario, run_scenario
t_import = time.perf_counter() - t0
src = RealPayloads("manchester")
t = time.perf_counter(); src.prepare(needed_labels(resolve_scenario("scenario-1"))); t_prepare = time.perf_counter() - t
t = time.perf_counter(); r1 = run_scenario("scenario-1", payloads=src); t_run1 = time.perf_counter() - t
t = time.perf_counter(); r2 = run_scenario("scenario-1", payloads=src); t_run2 = time.perf_counter() - t
print(json.dumps({"import": t_import, "prepare": t_prepare, "first_run": t_run1,
                  "first_run_verifications": r1.verifications, "second_run": t_run2,
                  "sim_wall": r2.wall_seconds, "messages": r2.messages, "total": time.perf_counter() - t0,
                  "executed": r1.executed["cost"], "plans_made": sorted(src.solved())}))
"""


def real_end_to_end() -> dict:
    out = subprocess.run([sys.executable, "-c", _REAL_CHILD], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(rows: list[dict], real: dict | None) -> str:
    lines = [SECTION, "", "`python -m benchmarks.bench_scenarios --real` (see the module docstring for the workloads).", ""]
    lines += machine()
    lines.append("")
    if real is not None:
        lines += [
            "End to end, real payloads, warm solution cache, fresh process (seconds):",
            "",
            "| step | wall s |",
            "|---|---:|",
            f"| imports (`poso_sim.scenarios`) | {real['import']:.2f} |",
            f"| `prepare`: the plans scenario-1 needs ({', '.join(real['plans_made'])}) from the solution cache, "
            f"the verifier's compiled problem and the certificate | {real['prepare']:.2f} |",
            f"| scenario-1, first run ({real['first_run_verifications']} KKT verifications + simulation) | {real['first_run']:.3f} |",
            f"| scenario-1 again (verdicts memoised) | {real['second_run']:.3f} |",
            f"| whole process | {real['total']:.2f} |",
            "",
        ]
    lines += [
        "Per-message protocol overhead (stub payloads: no KKT):",
        "",
        "| workload | delegates | heights | messages | wall s | us/message | virtual s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['delegates']} | {r['heights']} | {r['messages']:,} | {r['wall_s']:.3f} | "
                     f"{r['us_per_message']:.1f} | {r['virtual_s']:.1f} |")
    lines.append("")
    lines.append("us/message = wall time of the whole run (protocol machines, runner, kernel, trace) per message sent; "
                 "with signatures on it includes Ed25519 signing and checking.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="also the end-to-end run on real payloads (warm cache)")
    ap.add_argument("--write", action="store_true", help="replace the Scenarios section of docs/benchmarks.md")
    args = ap.parse_args(argv)
    rows = per_message()
    real = real_end_to_end() if args.real else None
    text = render(rows, real)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
