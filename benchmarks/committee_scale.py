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


#: what the table above measures (the section's first paragraph; the load of the points is appended)
INTRO = ("One height: N delegates (all honest), 3 normal nodes, signatures on, latency Uniform(10 ms, 50 ms), stub "
         "payloads, through the public command `poso-sim run FILE --stub --json` (default log mode: full up to 256 "
         "delegates, compact above). CPU is user + sys of the whole process (start-up included), RSS its maximum "
         "(`/usr/bin/time`); each point one process under `nice -n 5`. Measured 7 December 2026, 19:43-19:56 UTC: "
         "main at 946aad3 (compact mode with one trace record per message, the cheaper receive path of the protocol "
         "machines and the runner, the virtual loop running timers inside its selector, the network's pending "
         "deliveries keyed by delivery time) against 53b9cb6 (main at the start of that day) and f97e291 (the tree "
         "issue 22 measured), each old tree alternated with main per point in its own round (f97e291 up to "
         "N = 400; the ratio is against the main run it was alternated with); N = 1 000 and 2 000 on main only, run "
         "alongside the alternated rounds (two of these processes at once on the 2 cores). The old trees at "
         "N >= 1 000: see the notes below (53b9cb6 164.0 s, f97e291 about 350 s and 2.7 GiB at N = 1 000). "
         "Reproduce with `python -m benchmarks.bench_scaling --committee --base-src OLD/src --save run.json` per "
         "tree before, and `--load a.json,b.json,...` to write the section from the saved points.")

#: dated notes, 7 December 2026 (each paragraph says when and how it was measured)
NOTES = """This round (7 December, 19:43-19:56 UTC, `nice -n 5`; 1-minute load average on the 2 cores 2.0-3.3 during both
alternated rounds and N = 1 000, rising to 4.4-6.7 during the second 53b9cb6 pair below and the last third of N = 2
000). Per message net of start-up (the main N = 10 process, 0.7-0.8 s): full log 50-81 µs at N = 100 and 200,
compact log 26-32 µs at N = 400, 35.6 µs at N = 1 000 and 38.1 µs at N = 2 000 (start-up included, the column
above, these are 28-34, 36 and 38). A second alternated pair against 53b9cb6 (load 2.5-6.1): N = 200 8.1 -> 7.2 s
(1.13x), N = 400 25.0 -> 10.9 s (2.30x). So today's changes on the per-message path gained 2.3-2.6x on a compact
height (N = 400) and 1.1-1.7x on a full-log one (N = 100 and 200), where each copy is still logged and traced three
times; against f97e291 11x at N = 400. Full-log trace digests equal 53b9cb6's (N <= 200); compact ones differ,
since a compact run now traces one record per message (see "Compact mode records less"). N = 1 000: 72.0 s of CPU
and 353 MiB, against 164.0 s for 53b9cb6 and about 350 s and 2.7 GiB for f97e291 (both measured earlier, below),
still 2.4x from the 30 s goal (15 µs per message). N = 2 000 (7 998 566 messages, every delegate and normal node
decided the optimal plan) took 305.2 s of CPU (655.1 s in the first curve below) and peaked at 1 265 MiB, inside
the 2 GiB goal (1 486 MiB earlier).

The curve as first measured (7 December, earlier; load average 9.25 at the start): f97e291 against main at
07f1a88 and after (the per-message work below, with the kernel's move to public asyncio API, a fifth dearer
per message), the same command and scenario, old and new alternated up to N = 400:

| N | messages | log | CPU f97e291 (s) | CPU 07f1a88+ (s) | ratio | µs/message | RSS f97e291 (MiB) | RSS 07f1a88+ (MiB) |
|---:|---:|---|---:|---:|---:|---:|---:|---:|
| 10 | 198 | full | 0.9 | 0.9 | 0.99x | 4343 | 71 | 72 |
| 50 | 4,975 | full | 2.0 | 1.2 | 1.70x | 241 | 78 | 78 |
| 100 | 19,942 | full | 6.5 | 2.3 | 2.81x | 116 | 100 | 95 |
| 200 | 79,877 | full | 24.9 | 6.8 | 3.68x | 85 | 181 | 162 |
| 400 | 319,725 | compact | 99.2 | 23.6 | 4.20x | 74 | 511 | 142 |
| 1,000 | 1,999,290 | compact | - | 165.6 | - | 83 | - | 403 |
| 2,000 | 7,998,566 | compact | - | 655.1 | - | 82 | - | 1487 |

The stub campaign then (`poso-sim sweep campaign --stub --workers 1`, checker included, whole process, 1 000
cases): f97e291 40.8 s of CPU (24.5 cases per CPU-second, 184 MiB), main 33.6 s (29.8, 188 MiB); later figures
in "The packaged campaign".

What changed, per message (the same digests: scenarios 1-4, chain-7, two random-latency committees and the
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

Cheaper protocol machines and runner per message (7 December, evening; f1fbf24 and 839e676). A delivered message
reaches a plain `Delegate` or `NormalNode` through `receive(src, msg)` (what `handle(MessageReceived(src, msg))`
gives, without the event object), and the runner's handler carries the actions out inline, telling an immediate
`Send` and a logged note apart by exact type; a relay's path verdict and whose signature on a copy fails are kept
on the message object per committee (and signature check), as its canonical bytes already were, since one relay
object reaches N - 2 receivers; a cached acceptance in an already relayed round is recorded without the general
submit path; `Send` writes its fields at once; a broadcast's kind and summary are computed once. Every digest of
`benchmarks/digests.py` equal to main before the change. `poso-sim run FILE --stub --json`, whole process, one
height of 300 delegates, 3 normal nodes, Uniform(10 ms, 50 ms), compact log (179 796 messages), alternated on 2
cores at load 5.9-6.9: against main with only these two commits taken out, 4 pairs, 11.9 / 10.6 / 11.6 / 9.2 s
before and 9.8 / 8.6 / 8.9 / 8.4 s after (1.09-1.30x; 47-55 µs per message after, start-up included), max RSS
101 MiB both; against 53b9cb6 (compact mode's change included), 3 pairs, 17.2 / 16.5 / 15.1 s and 8.9 / 7.4 /
9.4 s (1.61-2.23x), 112 -> 102 MiB. N = 200 (79 877 messages, full log), 2 pairs against main without the two
commits: 7.7 / 8.4 s and 5.5 / 5.9 s (1.39-1.43x). N = 1 000 (1 999 290 messages, compact), one pair against main without the two
commits (load 4.7-6.0): 114.9 s before and 81.6 s after (1.41x; 41 µs per message), max RSS 402 -> 391 MiB, the
same trace and log digests. The machines alone (a harness feeding the same height's
180 001 messages to 300 delegates and 3 normal nodes, no kernel, no log; 3 pairs against 53b9cb6): 9.0-11.4 ->
5.8-7.3 µs per message. In the
profile after (cProfile, N = 300, compact), the delegates' `receive` is about 16 % of the run and the runner's
own steps 3 %; the kernel (the asyncio loop, its heap of handles, the network's send and delivery) is about 60 %.
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
            "log": (res.get("log") or {}).get("mode", "full"), "trace_digest": res["trace_digest"],
            "load": round(os.getloadavg()[0], 2)}


def _revision(src: str) -> str:
    """The short commit of the checkout holding `src` ("?" when it is not a git checkout)."""
    out = subprocess.run(["git", "-C", str(Path(src).parent), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


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
    data: dict = {"machine": machine(), "after": [], "before": [], "campaign": {},
                  "head": _revision(new_src), "base": _revision(base_src) if base_src else None}

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
    curves = [(c["before"], c["base"], "^:") for c in data.get("older") or []]
    curves += [(data.get("before"), data.get("base") or "before", "o--"), (data.get("after"), data.get("head") or "after", "s-")]
    for points, label, style in curves:
        pts = sorted((p for p in points or [] if not p.get("partial")), key=lambda p: p["n"])
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


def merge(files: list[str]) -> dict:
    """One report from several saved runs (``--load A.json,B.json``): the first run with a tree before is the
    main comparison; every further run with a tree before is an older comparison (its own alternated points);
    a run without a tree before adds its points (sizes the tree before was not run at) to the main one."""
    runs = [json.loads(Path(f).read_text()) for f in files]
    paired = [r for r in runs if r.get("before")]
    data = dict(paired[0] if paired else runs[0])
    data["after"] = list(data.get("after") or [])
    data["older"] = [{"base": r.get("base") or "?", "before": r["before"], "after": r["after"]} for r in paired[1:]]
    seen = {p["n"] for p in data["after"]}
    for r in runs:
        if not r.get("before"):
            data["after"] += [p for p in r.get("after") or [] if p["n"] not in seen]
            seen |= {p["n"] for p in r.get("after") or []}
    return data


def _table(data: dict) -> list[str]:
    """The markdown table: each tree before (oldest first), the tree after, ratios against each pair's own run."""
    head = data.get("head") or "after"
    comps = [(c["base"], {p["n"]: p for p in c["before"]}, {p["n"]: p for p in c["after"]})
             for c in data.get("older") or []]
    comps.append((data.get("base") or "before", {p["n"]: p for p in data.get("before") or []}, None))
    cols = ["N", "messages", "log", *(f"CPU {b} (s)" for b, _, _ in comps), f"CPU {head} (s)",
            *(f"{b} / {head}" for b, _, _ in comps), f"µs/message {head}",
            *(f"RSS {b} (MiB)" for b, _, _ in comps), f"RSS {head} (MiB)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * 2 + "---|" + "---:|" * (len(cols) - 3)]
    for p in sorted(data.get("after") or [], key=lambda p: p["n"]):
        n = p["n"]
        cpu = [f"{bef[n]['cpu']:.1f}" if n in bef else "-" for _, bef, _ in comps]
        ratio = [f"{bef[n]['cpu'] / (aft or {n: p}).get(n, p)['cpu']:.2f}x" if n in bef else "-"
                 for _, bef, aft in comps]
        rss = [f"{bef[n]['rss']:.0f}" if n in bef else "-" for _, bef, _ in comps]
        if p.get("partial"):  # stopped before the end: the CPU and the peak memory reached by then
            lines.append(f"| {n:,} | ~{p['messages']:,} | {p['log']} | {' | '.join(cpu)} | > {p['cpu']:.0f} (stopped) | "
                         f"{' | '.join('-' for _ in comps)} | - | {' | '.join(rss)} | >= {p['rss']:.0f} |")
            continue
        per_msg = 1e6 * p["cpu"] / max(p["messages"], 1)
        lines.append(f"| {n:,} | {p['messages']:,} | {p['log']} | {' | '.join(cpu)} | {p['cpu']:.1f} | "
                     f"{' | '.join(ratio)} | {per_msg:.0f} | {' | '.join(rss)} | {p['rss']:.0f} |")
    return lines


def section(data: dict) -> str:
    points = [p for c in [data, *(data.get("older") or [])] for k in ("before", "after") for p in c.get(k) or []]
    loads = [p["load"] for p in points if "load" in p]
    load = (f" Load average (1 min) at the points: {min(loads):.1f}-{max(loads):.1f}."
            if loads and len(loads) == len(points) else "")
    lines = [SECTION, "", *data.get("machine", []), "", INTRO + load, "", *_table(data)]
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
