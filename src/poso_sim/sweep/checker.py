"""The campaign checker: safety and liveness properties checked from a run's trace.

The checker reads only a *trace*: a JSON-encodable dict of what the nodes recorded (rows of the run log,
`poso_sim.scenarios.log`), the blocks the normal nodes executed with their certificates (signed Decisions), the
committee (members, public keys), the experiment's ground truth (which delegates were given dishonest
behaviours, which digests are optimal) and the network's declared conditions (for the liveness premises). It
never looks at a machine's internal state, so it can check the records of a real deployment in the same format.
`build_trace(runner, source)` makes one from a run's log; `check_trace(trace)` returns a `CheckResult`.

Safety (checked on every trace):

``accepted-non-optimal``
    an honest delegate's verification accepted a digest outside the optimal class (an unsound verifier: the
    first line of defence has failed even if nothing bad was decided);
``decided-unverified``
    an honest delegate decided a digest without having recorded an accepting verification of it first;
``decided-rejected``
    an honest delegate decided a digest its own verification rejected;
``decided-non-optimal``
    an honest delegate decided a digest outside the optimal class;
``executed-non-optimal``
    a normal node executed a block whose digest is outside the optimal class;
``chain-integrity``
    a block's hash is not the hash of its header, or it does not link to the block before it in its chain
    (the first to the genesis hash), or heights do not increase;
``chain-agreement``
    two normal nodes executed different contents (round, leader, digest, cost) at one height, or their chains
    differ by block hash over a common prefix of heights;
``certificate``
    a block has no strict majority (> N/2) of distinct committee members whose Decisions match the block's
    content and, with signatures on, carry a valid Ed25519 signature (re-verified here).

Liveness (``liveness``), per height h, only where the premises hold (conservative): (1) the network declares no
loss, partition or crash fault (duplication is harmless; reordering and delay spikes only add to the latency
bound); (2) the latency is bounded (constant or uniform, not log-normal) and
``solve_time + 2 * verify_cost + max latency (+ reorder/spike extra) < window`` (verification charged at a fixed
cost); (3) every honest delegate started round 1 of height h with the same leader L, and L is honest. Then every
honest delegate must decide L's optimal plan in round 1 of h, and every normal node must execute a block at
height h from round 1 of L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from poso_sim.protocol import GENESIS_HASH, Block, Decision, Execute, verify_sig
from poso_sim.scenarios.payloads import OPTIMAL_DISPATCH

__all__ = [
    "build_trace", "check_trace", "certificates", "CheckResult", "SAFETY", "PROPERTIES", "network_premise",
    "TRACE_RECORD_KINDS",
]

SAFETY = (
    "accepted-non-optimal",
    "decided-unverified",
    "decided-rejected",
    "decided-non-optimal",
    "executed-non-optimal",
    "chain-integrity",
    "chain-agreement",
    "certificate",
)
PROPERTIES = SAFETY + ("liveness",)

#: the run-log row kinds a trace keeps (the per-copy `received`/`dropped` rows are not needed by the checker)
TRACE_RECORD_KINDS = frozenset({
    "round_start", "verified", "decided", "executed", "no_majority", "gave_up", "accepted_unchecked", "crashed",
    "conflicting_decisions", "own_plan_rejected", "abandoned",
})
TRACE_FORMAT = "poso-sim/sweep-trace/1"


# ----------------------------------------------------------------------------------------------- traces
def _latency_max(lat: Any) -> float | None:
    """Upper bound of a scenario latency spec (None = unbounded or unknown)."""
    if isinstance(lat, bool):
        return None
    if isinstance(lat, (int, float)):
        return float(lat)
    if isinstance(lat, dict) and len(lat) == 1:
        (kind, v), = lat.items()
        if kind == "constant":
            return float(v)
        if kind == "uniform":
            return float(max(v))
    return None  # log-normal ([mean, sd], lognormal, mean_sd): unbounded


def certificates(log: Any) -> dict[str, list[dict[str, Any]]]:
    """normal node -> the blocks it executed (from the run log's `Execute` entries) with their signed Decisions."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in log.of(Execute):
        b = e.item.block
        out.setdefault(e.node, []).append({
            "height": b.height, "round": b.round, "leader": b.leader, "digest": b.digest, "cost": b.cost,
            "hash": b.hash, "prev_hash": b.prev_hash,
            "decisions": [
                {"height": d.height, "round": d.round, "leader": d.leader, "digest": d.digest, "cost": d.cost,
                 "delegate": d.delegate, "case_id": d.case_id, "signature": bytes(d.signature).hex()}
                for d in b.decisions
            ],
        })
    return out


def build_trace(runner: Any, source: Any) -> dict[str, Any]:
    """The checkable trace of a finished run (a `poso_sim.scenarios.Runner`), read from its run log. Only the plans
    the source has made are looked at (`source.solved()` when it has one): a plan the run never used is not
    solved to build the trace."""
    scn = runner.scn
    committee = runner.committee
    # the plans made so far: a source that solves a plan on first lookup (RealPayloads) solves nothing more here
    solved = getattr(source, "solved", None)
    plans = solved() if solved is not None else source.payloads(1)
    digests = {p.digest: lbl for lbl, p in plans.items()}
    records = runner.log.rows(TRACE_RECORD_KINDS)
    blocks = certificates(runner.log)
    seen = {r["digest"] for r in records if isinstance(r.get("digest"), str)}
    labels = {d: source.label_of(d) for d in sorted(seen | set(digests))}
    return {
        "format": TRACE_FORMAT,
        "case_id": scn.case,
        "members": list(committee.members),
        "observers": list(committee.observers),
        "keys": None if committee.keys is None else {k: bytes(v).hex() for k, v in committee.keys.items()},
        "signatures": bool(scn.signatures),
        "dishonest": list(runner.dishonest),
        "heights": scn.heights,
        "seed": runner.seed,
        "window": scn.window,
        "solve_time": scn.solve_time,
        "verify_cost": scn.verify_cost,
        "network": {
            "latency": scn.network.latency if not isinstance(scn.network.latency, tuple) else list(scn.network.latency),
            "latency_max": _latency_max(scn.network.latency),
            "faults": [f.model_dump(mode="json", exclude_none=True) for f in scn.network.faults],
        },
        "optimal": sorted(d for d, lbl in labels.items() if lbl in OPTIMAL_DISPATCH),
        "labels": labels,
        "records": records,
        "blocks": {n: blocks.get(n, []) for n in runner.normals},
    }


# ------------------------------------------------------------------------------------------ premises
def network_premise(trace: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the network conditions allow the liveness check, and why not."""
    net = trace.get("network") or {}
    extra = 0.0
    for f in net.get("faults") or ():
        t = f.get("type")
        if t in ("loss", "partition", "crash"):
            return False, f"{t} fault"
        if t == "reorder":
            extra = max(extra, float(f.get("extra_delay") or 0.0))
        elif t == "delay_spike":
            extra += float(f.get("extra") or 0.0)
    lmax = net.get("latency_max")
    if lmax is None:
        return False, "unbounded latency"
    vc = trace.get("verify_cost")
    if not isinstance(vc, (int, float)) or isinstance(vc, bool):
        return False, "verification charged by measured time"
    need = float(trace.get("solve_time") or 0.0) + 2.0 * float(vc) + float(lmax) + extra
    if not need < float(trace["window"]):
        return False, f"solve + 2 verify + latency = {need:g} s >= window {float(trace['window']):g} s"
    return True, ""


# ------------------------------------------------------------------------------------------- checking
@dataclass
class CheckResult:
    violations: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)
    premise_heights: int = 0  # heights where the liveness premises held
    live: bool | None = None  # None: no premise held; else whether every premised height was live
    premise_note: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations


def _v(out: list[dict[str, Any]], prop: str, height: int | None, node: str | None, detail: str) -> None:
    out.append({"property": prop, "height": height, "node": node, "detail": detail})


def _content(b: Mapping[str, Any]) -> tuple[Any, ...]:
    return (int(b["round"]), str(b["leader"]), str(b["digest"]), float(b["cost"]))


def _short(d: Any) -> str:
    return str(d)[:10]


def check_trace(trace: Mapping[str, Any]) -> CheckResult:
    """Check every property on one trace (see the module docstring)."""
    res = CheckResult()
    V = res.violations
    members = list(trace["members"])
    n = len(members)
    majority = n // 2 + 1
    dishonest = set(trace.get("dishonest") or ())
    honest = [m for m in members if m not in dishonest]
    honest_set = set(honest)
    optimal = set(trace.get("optimal") or ())
    labels = trace.get("labels") or {}
    records = trace.get("records") or []
    heights = int(trace.get("heights") or 1)
    signatures = bool(trace.get("signatures"))
    keys = {k: bytes.fromhex(v) for k, v in (trace.get("keys") or {}).items()} if signatures else {}

    # ---- index the records
    verified: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    decided: dict[tuple[str, int], dict[str, Any]] = {}
    round1_leader: dict[int, dict[str, str]] = {}
    for r in records:
        k = r.get("kind")
        node = r.get("node")
        if k == "verified":
            verified.setdefault((node, r.get("digest")), []).append((float(r.get("t", 0.0)), bool(r.get("accepted"))))
        elif k == "decided":
            decided.setdefault((node, int(r["height"])), r)
        elif k == "round_start" and int(r.get("round", 0)) == 1:
            round1_leader.setdefault(int(r["height"]), {})[node] = r.get("leader")

    # ---- honest verifications
    for (node, d), vs in sorted(verified.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        if node in honest_set and d not in optimal and any(ok for _, ok in vs):
            _v(V, "accepted-non-optimal", None, node, f"verification accepted {_short(d)} ({labels.get(d)})")

    # ---- honest decisions
    for (node, h), r in sorted(decided.items(), key=lambda kv: (kv[0][1], str(kv[0][0]))):
        if node not in honest_set:
            continue
        d = r.get("digest")
        verdicts = verified.get((node, d), [])
        t = float(r.get("t", math.inf))
        if any(not ok for _, ok in verdicts):
            _v(V, "decided-rejected", h, node, f"decided {_short(d)} ({labels.get(d)}) which its verifier rejected")
        elif not any(ok and vt <= t for vt, ok in verdicts):
            _v(V, "decided-unverified", h, node, f"decided {_short(d)} ({labels.get(d)}) without an accepting verification")
        if d not in optimal:
            _v(V, "decided-non-optimal", h, node, f"decided {_short(d)} ({labels.get(d)}), not an optimal plan")

    # ---- blocks
    blocks: dict[str, list[Mapping[str, Any]]] = {k: list(v) for k, v in (trace.get("blocks") or {}).items()}
    sig_cache: dict[tuple[str, str, tuple[Any, ...]], bool] = {}
    by_height: dict[int, dict[tuple[Any, ...], list[str]]] = {}
    for node, chain in sorted(blocks.items()):
        prev, last = GENESIS_HASH, 0
        for b in chain:
            h = int(b["height"])
            if Block.header_hash(h, b["prev_hash"], b["leader"], int(b["round"]), b["digest"], float(b["cost"])) != b["hash"]:
                _v(V, "chain-integrity", h, node, "block hash does not match its header")
            if b["prev_hash"] != prev or h <= last:
                _v(V, "chain-integrity", h, node, "block does not link to the previous block of its chain")
            prev, last = b["hash"], h
            if b["digest"] not in optimal:
                _v(V, "executed-non-optimal", h, node, f"executed {_short(b['digest'])} ({labels.get(b['digest'])})")
            by_height.setdefault(h, {}).setdefault(_content(b), []).append(node)
            # certificate
            want = (h,) + _content(b)
            good: set[str] = set()
            for dec in b.get("decisions") or ():
                who = dec.get("delegate")
                if who not in members or who in good:
                    continue
                got = (int(dec["height"]), int(dec["round"]), str(dec["leader"]), str(dec["digest"]), float(dec["cost"]))
                if got != want:
                    continue
                if signatures:
                    ck = (who, dec.get("signature", ""), got)
                    ok = sig_cache.get(ck)
                    if ok is None:
                        msg = Decision(got[0], got[1], got[2], got[3], got[4], who, b"", dec.get("case_id", ""))
                        try:
                            sig = bytes.fromhex(dec.get("signature") or "")
                        except ValueError:
                            sig = b""
                        ok = sig_cache[ck] = verify_sig(keys.get(who), sig, msg.signing_bytes())
                    if not ok:
                        continue
                good.add(who)
            if len(good) < majority:
                _v(V, "certificate", h, node, f"{len(good)} valid matching decisions, need {majority} of {n}")
    for h, contents in sorted(by_height.items()):
        if len(contents) > 1:
            desc = "; ".join(f"{'+'.join(sorted(ns))}: r{c[0]} {c[1]} {_short(c[2])}" for c, ns in sorted(contents.items()))
            _v(V, "chain-agreement", h, None, f"normal nodes executed different blocks: {desc}")
    names = sorted(blocks)
    for i, a in enumerate(names):
        for bname in names[i + 1:]:
            for x, y in zip(blocks[a], blocks[bname]):
                if int(x["height"]) != int(y["height"]):
                    break  # one of them skipped a height (no majority): a gap, not a fork
                if x["hash"] != y["hash"]:
                    _v(V, "chain-agreement", int(x["height"]), f"{a},{bname}", "chains differ by block hash")
                    break

    # ---- liveness
    net_ok, why = network_premise(trace)
    premised = 0
    live = True
    notes = []
    if not net_ok:
        notes.append(why)
    for h in range(1, heights + 1):
        if not net_ok:
            break
        leaders = round1_leader.get(h, {})
        if not honest or any(m not in leaders for m in honest):
            notes.append(f"h{h}: not every honest delegate started round 1")
            continue
        ls = {leaders[m] for m in honest}
        if len(ls) != 1:
            notes.append(f"h{h}: honest delegates disagree on the round-1 leader")
            continue
        (lead,) = ls
        if lead not in honest_set:
            notes.append(f"h{h}: round-1 leader {lead} is dishonest")
            continue
        premised += 1
        for m in honest:
            r = decided.get((m, h))
            if r is None or int(r["round"]) != 1 or r.get("leader") != lead or r.get("digest") not in optimal:
                got = "nothing" if r is None else f"r{r['round']} {r.get('leader')} {_short(r.get('digest'))}"
                _v(V, "liveness", h, m, f"premises hold (honest leader {lead}) but decided {got}, not {lead}'s optimal plan in round 1")
                live = False
        for nn, chain in sorted(blocks.items()):
            b = next((b for b in chain if int(b["height"]) == h), None)
            if b is None or int(b["round"]) != 1 or b["leader"] != lead:
                got = "nothing" if b is None else f"r{b['round']} {b['leader']}"
                _v(V, "liveness", h, nn, f"premises hold (honest leader {lead}) but executed {got}")
                live = False
        missing = [o for o in trace.get("observers") or () if o not in blocks]
        for nn in missing:
            _v(V, "liveness", h, nn, "premises hold but the normal node executed nothing")
            live = False
    res.premise_heights = premised
    res.live = live if premised else None
    res.premise_note = "; ".join(notes[:3])

    # ---- outcome summary (for the results table)
    exec_labels, rounds, exec_all = [], [], 0
    for h in range(1, heights + 1):
        contents = by_height.get(h, {})
        if contents:
            c = max(contents, key=lambda c: len(contents[c]))
            exec_labels.append(labels.get(c[2]) or _short(c[2]))
            if sum(len(v) for v in contents.values()) == len(trace.get("observers") or blocks):
                exec_all += 1
        else:
            exec_labels.append("none")
        rs = [int(decided[(m, h)]["round"]) for m in honest if (m, h) in decided]
        rounds.append(max(rs) if rs else 0)
    hd = sum(1 for m in honest for h in range(1, heights + 1) if (m, h) in decided)
    res.outcome = {
        "executed": "|".join(exec_labels),
        "rounds": "|".join(str(r) for r in rounds),
        "heights_executed": exec_all,
        "honest_decided": round(hd / (len(honest) * heights), 4) if honest else 1.0,
        "no_majority": sum(1 for r in records if r.get("kind") == "no_majority"),
    }
    return res
