"""The committee-size curve: one height of N delegates through ``poso-sim run``, and the stub campaign.

Driven by ``python -m benchmarks.bench_scaling --committee`` (see there). Every point is one fresh process of the
public command under ``/usr/bin/time`` (user + sys CPU of the whole process, maximum RSS): a scenario file with N
delegates, 3 normal nodes, one height, latency Uniform(10 ms, 50 ms), signatures on, stub payloads,
``poso-sim run FILE --stub --json`` (the default log mode: full up to 256 delegates, compact above). With
``--base-src`` the same points run on another checkout's ``src`` (the tree before), alternating old and new per
point; the campaign (``poso-sim sweep campaign --stub --workers 1``) likewise. ``--save``/``--load`` keep the raw
points as JSON so the section and the plot can be written again without running anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, machine

SECTION = "## Committee size: one height of N delegates"
IMG = ROOT / "docs" / "img" / "committee_scaling.png"
SIZES = (10, 50, 100, 200, 400, 1000, 2000)

_SCENARIO = """name: scale-{n}
case: manchester
delegates: {n}
normal_nodes: 3
heights: 1
seed: 1
network:
  latency: {{uniform: [0.01, 0.05]}}
"""


#: measured once, 7 December 2026, same machine and load (8-10 on 2 cores), by hand (see each item)
NOTES = """What changed, per message (the same digests: scenarios 1-4, chain-7, two random-latency committees and the
first 300 campaign cases' run logs and checker traces, and all 1 000 campaign rows, compared after every step):
a message's canonical bytes, encoding and validation are computed once per object (one relay object reaches
N-2 receivers); every run checks each distinct Ed25519 signature once (the public path checked 79 341 at
N = 200, now 2N); committee membership is a set lookup; a normal node's tally grows with each vote instead of
being recounted; the young-generation GC threshold is 50 000 during a run; the trace and run-log lines are
written directly (same text) and the log digest is kept. Memory: above 256 delegates the run log is compact
and the kernel trace keeps only its digest; channels without faults are a 9-byte latency-stream state per pair
instead of an object; a round's copies are kept as digest -> paths.

Where a public-path message goes now (cProfile, N = 200, compact log; shares of own time, profiling inflates
small calls): the asyncio loop, one iteration per distinct delivery instant since the kernel delivers through
`call_at` only, 15-20 %; the run log and the trace's user event of each note 20 %; writing and hashing the
trace lines 12 %; sending and delivering (network) 15 %; the delegate's checks 13 %. The loop iteration per
delivery instant (kernel change of 7 December) costs about a fifth: one height of 300 delegates, compact log,
took 56.5 and 62.7 µs per message before it and 71.7 and 72.5 µs after (alternated, `run_scenario` in one
process).

The tree before was not run at N = 1 000 again (about 350 s of CPU and 2.7 GiB for `poso-sim run`, issue 22's
figure on this machine): 6-7 minutes of CPU for one point did not fit a shared session.

N = 2 000 (compact log, 7 998 566 messages, every delegate and normal node decided the optimal plan) peaked at
1 486 MiB, inside the 2 GiB goal: what remains is mostly the messages in flight (each delegate sends its
decision to every other one at the same virtual instant, about 4 million at once) and each round's copies
taken (digest -> paths). The N = 1 000 point again on a quieter machine (load 2, main at da54248): 134 s of
CPU, 403 MiB.

Targets that resist. N = 1 000 in 30 s of CPU: at 60-70 µs per message on this loaded machine, 2 million
messages cost 120-140 s; what remains is spread over the per-message steps above (no single step above a
fifth), and the trace digest alone, three canonical lines per message, is about a tenth. The campaign at 100
cases per CPU-second: a case costs about 34 ms, of which Ed25519 is 27 % (200 cases measured in one process:
per case 36.9 verifications of which 27.5 are the run's distinct checks and 9.4 the checker's independent
re-verification of the certificates, 30.2 signatures, 9.3 key pairs; the per-run memo already removes 89 % of
the checks: 247 asked per case). `cryptography` has no batch verification, keys and signatures differ per case
(each case has its own seed), so caching across cases cannot help; the rest is the simulation itself (about 390
messages per case) and the checker. Later that day (The packaged campaign, "CPU per case"): 19.4 ms a case, 51.5
cases per CPU-second, Ed25519 about 1.5 ms of it (libsodium, and a run's own signatures noted as valid when
made); the per-message simulation, about 14 ms a case, is what resists.

Compact mode records less (7 December, evening; 5bd5b94 and the commit after it). Until then a compact run still wrote three
kernel-trace records per message, each a canonical JSON line hashed into the digest (the send, the delivery, and
the user event of the receiver's `Received` or `DecisionSeen` note), and made a log entry for every copy before
counting it. A compact run now traces no sends and no user event for a copy its log leaves out, and makes no
entry for such a copy, only its count (docs/scenarios.md, "Large committees: compact mode"). Its trace digest
covers what it records (new values); its log digest is unchanged (N = 300 and 1 000), and so are all full-mode
digests, byte for byte. `poso-sim run FILE --stub --json`, whole process, alternated with 53b9cb6 (load 5-7 on 2
cores): N = 300 (179 794 messages), 3 pairs, 14.7 / 13.1 / 14.1 s before and 8.8 / 8.0 / 10.6 s after (1.33-1.67x;
45-59 µs per message after, start-up included), max RSS 110 -> 107 MiB; N = 1 000 (1 999 288 messages), one
pair, 164.0 s before and 115.8 s after (1.42x; 58 µs per message), 403 -> 401 MiB. What a compact message
costs now (cProfile, N = 300, shares of own time): the asyncio loop and the virtual clock 21 %, heap pushes and
pops 10 %, the network and its latency streams 18 %, the delegate and the committee 17 %, the runner 10 %, the
one trace line written and hashed 7 %, the log's count 2 %. The trace and the log are no longer where N = 1 000
in 30 s (15 µs per message) is lost.
"""


def _timed(cmd: list[str], src: str, cwd: str) -> tuple[float, float, str]:
    """(user + sys seconds, max RSS MiB, stdout) of one process running `cmd` on the tree `src`."""
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    full = ["/usr/bin/time", "-f", "TIME %U %S %M", sys.executable, *cmd]
    out = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode not in (0, 1):  # 1: a sweep with violations still measured
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-3:]}")
    t = [ln for ln in out.stderr.splitlines() if ln.startswith("TIME ")][-1].split()
    return float(t[1]) + float(t[2]), float(t[3]) / 1024, out.stdout


def height_point(n: int, src: str, tmp: str) -> dict:
    path = Path(tmp) / f"scale-{n}.yaml"
    path.write_text(_SCENARIO.format(n=n))
    cpu, rss, stdout = _timed(["-m", "poso_sim", "run", str(path), "--stub", "--json"], src, tmp)
    res = json.loads(stdout)
    ok = bool(res["executed"]) and res["executed"]["label"] == "optimal"
    return {"n": n, "cpu": cpu, "rss": rss, "messages": res["messages"], "ok": ok,
            "log": (res.get("log") or {}).get("mode", "full"), "trace_digest": res["trace_digest"]}


def campaign_point(src: str, tmp: str, limit: int | None) -> dict:
    out = Path(tmp) / "campaign"
    cmd = ["-m", "poso_sim", "sweep", "campaign", "--stub", "--workers", "1", "--no-progress", "--out", str(out)]
    if limit:
        cmd += ["--limit", str(limit)]
    cpu, rss, _ = _timed(cmd, src, tmp)
    cases = limit or 1000
    return {"cases": cases, "cpu": cpu, "rss": rss, "per_cpu_second": cases / cpu}


def measure(sizes: list[int], base_src: str | None, base_max: int, campaign_cases: int | None,
            save: str | None) -> dict:
    new_src = str(ROOT / "src")
    data: dict = {"machine": machine(), "after": [], "before": [], "campaign": {}}

    def keep() -> None:
        if save:
            Path(save).write_text(json.dumps(data, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        if campaign_cases is not None:
            for label, src in (("before", base_src), ("after", new_src)):
                if src:
                    print(f"campaign {label}", file=sys.stderr, flush=True)
                    data["campaign"][label] = campaign_point(src, tmp, campaign_cases or None)
                    keep()
        for n in sizes:
            for label, src in (("before", base_src), ("after", new_src)):
                if not src or (label == "before" and n > base_max):
                    continue
                print(f"N={n} {label}", file=sys.stderr, flush=True)
                data[label].append(height_point(n, src, tmp))
                keep()
    return data


def plot(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, style in (("before", "o--"), ("after", "s-")):
        pts = sorted((p for p in data.get(label) or [] if not p.get("partial")), key=lambda p: p["n"])
        if pts:
            ns = [p["n"] for p in pts]
            ax.loglog(ns, [p["cpu"] for p in pts], style, label=label)
            ax2.loglog(ns, [p["rss"] for p in pts], style, label=label)
    ax.set(xlabel="delegates N", ylabel="CPU s (user + sys, whole process)", title="one height, poso-sim run --stub")
    ax2.set(xlabel="delegates N", ylabel="max RSS (MiB)", title="memory")
    ax2.axhline(2048, color="grey", lw=0.8, ls=":")
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
        a.legend()
    fig.tight_layout()
    IMG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG, dpi=110)


def section(data: dict) -> str:
    before = {p["n"]: p for p in data.get("before") or []}
    lines = [SECTION, "", *data.get("machine", []), "",
             "One height: N delegates (all honest), 3 normal nodes, signatures on, latency Uniform(10 ms, 50 ms), "
             "stub payloads, through the public command `poso-sim run FILE --stub --json` (default log mode: full "
             "up to 256 delegates, compact above, whose run keeps only the kernel trace's digest). CPU is user + sys "
             "of the whole process (start-up included), RSS its maximum (`/usr/bin/time`). Before: main at "
             "f97e291; after: main with this work (07f1a88 and after, which also carries the kernel's move to "
             "public asyncio API, a fifth dearer per message, see below); each point one process, old and new "
             "alternated, except N = 1 000 and 2 000 (the tree after only, run alongside the others). Reproduce "
             "with `python -m benchmarks.bench_scaling --committee --base-src OLD/src`.", "",
             "| N | messages | log | CPU before (s) | CPU after (s) | ratio | µs/message after | RSS before (MiB) | "
             "RSS after (MiB) |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for p in sorted(data.get("after") or [], key=lambda p: p["n"]):
        b = before.get(p["n"])
        cpu_b = f"{b['cpu']:.1f}" if b else "-"
        rss_b = f"{b['rss']:.0f}" if b else "-"
        ratio = f"{b['cpu'] / p['cpu']:.2f}x" if b else "-"
        if p.get("partial"):  # stopped before the end: the CPU and the peak memory reached by then
            lines.append(f"| {p['n']:,} | ~{p['messages']:,} | {p['log']} | {cpu_b} | > {p['cpu']:.0f} (stopped) | - | - | "
                         f"{rss_b} | >= {p['rss']:.0f} |")
            continue
        per_msg = 1e6 * p["cpu"] / max(p["messages"], 1)
        lines.append(f"| {p['n']:,} | {p['messages']:,} | {p['log']} | {cpu_b} | {p['cpu']:.1f} | {ratio} | "
                     f"{per_msg:.0f} | {rss_b} | {p['rss']:.0f} |")
    camp = data.get("campaign") or {}
    if camp:
        lines += ["", "The stub campaign (`poso-sim sweep campaign --stub --workers 1`, checker included, whole process):",
                  "", "| tree | cases | CPU s | cases per CPU-second | max RSS MiB |", "|---|---:|---:|---:|---:|"]
        for label in ("before", "after"):
            c = camp.get(label)
            if c:
                lines.append(f"| {label} | {c['cases']} | {c['cpu']:.1f} | {c['per_cpu_second']:.1f} | {c['rss']:.0f} |")
    lines += ["", f"![CPU and memory of one height against N](img/{IMG.name})", "", NOTES]
    return "\n".join(lines)
