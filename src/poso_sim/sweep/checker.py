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

What the certificate check trusts: Ed25519 (`poso_sim.protocol.check_signature`) and nothing the run concluded.
It rebuilds each Decision's signed bytes from the block's fields and takes the public keys from the trace's
committee. `check_trace(trace, sig_check=...)` may be given a memo of that same function (a sweep passes its
session's `SignatureCache.check`): it answers only for the exact (public key, signature, signed bytes) triple
whose check `check_signature` computed in this process, or that a key pair of this process signed with the secret
key of that public key (`SignatureCache.vouch`: the scheme's correctness makes such a check true), so a hit is the
answer a recomputation gives; any other triple (a tampered signature or field, a trace from elsewhere) is computed
here.

Liveness (``liveness``), per height h, only where the premises hold (conservative): (1) the network declares no
loss, partition or crash fault (duplication is harmless; reordering and delay spikes only add to the latency
bound); (2) the latency is bounded (constant or uniform, not log-normal) and
``solve_time + 2 * verify_cost + max latency (+ reorder/spike extra) < window`` (verification charged at a fixed
cost); (3) every honest delegate started round 1 of height h with the same leader L, and L is honest. Then every
honest delegate must decide L's optimal plan in round 1 of h, and every normal node must execute a block at
height h from round 1 of L.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from poso_sim.protocol import GENESIS_HASH, Block, Decision, Execute, check_signature
from poso_sim.protocol.messages import signature_pending, signed_on_demand
from poso_sim.scenarios.payloads import OPTIMAL_DISPATCH

__all__ = [
    "build_trace", "check_trace", "certificates", "complete_signatures", "PendingSignature", "CheckResult", "SAFETY",
    "PROPERTIES", "network_premise",
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


class PendingSignature:
    """The signature of a certificate's decision that its key pair has not made yet (it signs on demand,
    docs/protocol.md), in a trace built with ``pending_signatures=True``: `hex()` makes it. The checker answers
    such a signature through the run's memo without making it (`_certifying_delegates`); a trace handed on is
    completed first (`complete_signatures`)."""

    __slots__ = ("decision",)

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def hex(self) -> str:
        return bytes(self.decision.signature).hex()


def certificates(log: Any, *, pending_signatures: bool = False) -> dict[str, list[dict[str, Any]]]:
    """normal node -> the blocks it executed (from the run log's `Execute` entries) with their signed Decisions
    (with `pending_signatures`, a signature not made yet is a `PendingSignature`)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in log.of(Execute):
        b = e.item.block
        out.setdefault(e.node, []).append({
            **b.fields(),
            "decisions": [
                {"height": d.height, "round": d.round, "leader": d.leader, "digest": d.digest, "cost": d.cost,
                 "delegate": d.delegate, "case_id": d.case_id,
                 "signature": PendingSignature(d) if pending_signatures and signature_pending(d)
                 else bytes(d.signature).hex()}
                for d in b.decisions
            ],
        })
    return out


def complete_signatures(trace: dict[str, Any]) -> dict[str, Any]:
    """`trace` with every `PendingSignature` made and written as hex (in place; the trace `build_trace` gives
    without ``pending_signatures``)."""
    for chain in (trace.get("blocks") or {}).values():
        for b in chain:
            for d in b.get("decisions") or ():
                sig = d.get("signature")
                if type(sig) is PendingSignature:
                    d["signature"] = sig.hex()
    return trace


def build_trace(runner: Any, source: Any, *, pending_signatures: bool = False) -> dict[str, Any]:
    """The checkable trace of a finished run (a `poso_sim.scenarios.Runner`), read from its run log. Only the plans
    the source has made are looked at (`source.solved()` when it has one): a plan the run never used is not
    solved to build the trace. With `pending_signatures`, a certificate's signature the run's key pair has not
    made yet is left a `PendingSignature` (`complete_signatures` makes them: do so before handing it on)."""
    scn = runner.scn
    committee = runner.committee
    # the plans made so far: a source that solves a plan on first lookup (RealPayloads) solves nothing more here
    solved = getattr(source, "solved", None)
    plans = solved() if solved is not None else source.payloads(1)
    digests = {p.digest: lbl for lbl, p in plans.items()}
    records = runner.log.rows(TRACE_RECORD_KINDS)
    blocks = certificates(runner.log, pending_signatures=pending_signatures)
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


@dataclass
class _Trace:
    """What every check reads of one trace: the members and their roles, and the records indexed."""

    trace: Mapping[str, Any]
    members: list[str]
    member_set: frozenset[str]
    majority: int
    honest: list[str]
    honest_set: set[str]
    optimal: set[str]
    labels: Mapping[str, Any]
    records: list[Mapping[str, Any]]
    heights: int
    signatures: bool
    keys: dict[str, bytes]
    sig_check: Callable[[bytes | None, bytes, bytes], bool] = check_signature
    verified: dict[tuple[str, str], list[tuple[float, bool]]] = field(default_factory=dict)
    decided: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    round1_leader: dict[int, dict[str, str]] = field(default_factory=dict)
    blocks: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, trace: Mapping[str, Any], sig_check: Callable[[bytes | None, bytes, bytes], bool] | None = None) -> "_Trace":
        members = list(trace["members"])
        dishonest = set(trace.get("dishonest") or ())
        honest = [m for m in members if m not in dishonest]
        signatures = bool(trace.get("signatures"))
        t = cls(
            trace=trace, members=members, member_set=frozenset(members), majority=len(members) // 2 + 1, honest=honest, honest_set=set(honest),
            optimal=set(trace.get("optimal") or ()), labels=trace.get("labels") or {},
            records=trace.get("records") or [], heights=int(trace.get("heights") or 1), signatures=signatures,
            keys={k: bytes.fromhex(v) for k, v in (trace.get("keys") or {}).items()} if signatures else {},
            blocks={k: list(v) for k, v in (trace.get("blocks") or {}).items()},
            sig_check=sig_check if sig_check is not None else check_signature,
        )
        for r in t.records:
            k = r.get("kind")
            node = r.get("node")
            if k == "verified":
                t.verified.setdefault((node, r.get("digest")), []).append(
                    (float(r.get("t", 0.0)), bool(r.get("accepted"))))
            elif k == "decided":
                t.decided.setdefault((node, int(r["height"])), r)
            elif k == "round_start" and int(r.get("round", 0)) == 1:
                t.round1_leader.setdefault(int(r["height"]), {})[node] = r.get("leader")
        return t


def check_trace(trace: Mapping[str, Any], *,
                sig_check: Callable[[bytes | None, bytes, bytes], bool] | None = None) -> CheckResult:
    """Check every property on one trace (see the module docstring). `sig_check`: what verifies a certificate's
    signatures, `check_signature` (default) or a memo of it (`SignatureCache.check`)."""
    res = CheckResult()
    t = _Trace.of(trace, sig_check)
    _check_verifications(t, res.violations)
    _check_decisions(t, res.violations)
    by_height = _check_blocks(t, res.violations)
    _check_liveness(t, res)
    res.outcome = _outcome(t, by_height)
    return res


def _check_verifications(t: _Trace, V: list[dict[str, Any]]) -> None:
    """An honest verifier accepts only optimal plans."""
    for (node, d), vs in sorted(t.verified.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        if node in t.honest_set and d not in t.optimal and any(ok for _, ok in vs):
            _v(V, "accepted-non-optimal", None, node, f"verification accepted {_short(d)} ({t.labels.get(d)})")


def _check_decisions(t: _Trace, V: list[dict[str, Any]]) -> None:
    """An honest delegate decides only a plan its verifier accepted before, and an optimal one."""
    labels = t.labels
    for (node, h), r in sorted(t.decided.items(), key=lambda kv: (kv[0][1], str(kv[0][0]))):
        if node not in t.honest_set:
            continue
        d = r.get("digest")
        verdicts = t.verified.get((node, d), [])
        when = float(r.get("t", math.inf))
        if any(not ok for _, ok in verdicts):
            _v(V, "decided-rejected", h, node, f"decided {_short(d)} ({labels.get(d)}) which its verifier rejected")
        elif not any(ok and vt <= when for vt, ok in verdicts):
            _v(V, "decided-unverified", h, node, f"decided {_short(d)} ({labels.get(d)}) without an accepting verification")
        if d not in t.optimal:
            _v(V, "decided-non-optimal", h, node, f"decided {_short(d)} ({labels.get(d)}), not an optimal plan")


def _check_blocks(t: _Trace, V: list[dict[str, Any]]) -> dict[int, dict[tuple[Any, ...], list[str]]]:
    """Each chain links and executes optimal plans under a majority certificate; the chains agree. Returns the
    executed block contents per height and the nodes that executed each."""
    sig_cache: dict[tuple[str, str, tuple[Any, ...]], bool] = {}
    by_height: dict[int, dict[tuple[Any, ...], list[str]]] = {}
    for node, chain in sorted(t.blocks.items()):
        prev, last = GENESIS_HASH, 0
        for b in chain:
            h = int(b["height"])
            want = _header_hash(h, b["prev_hash"], b["leader"], int(b["round"]), b["digest"], float(b["cost"]))
            if want != b["hash"]:
                _v(V, "chain-integrity", h, node, "block hash does not match its header")
            if b["prev_hash"] != prev or h <= last:
                _v(V, "chain-integrity", h, node, "block does not link to the previous block of its chain")
            prev, last = b["hash"], h
            if b["digest"] not in t.optimal:
                _v(V, "executed-non-optimal", h, node, f"executed {_short(b['digest'])} ({t.labels.get(b['digest'])})")
            by_height.setdefault(h, {}).setdefault(_content(b), []).append(node)
            good = _certifying_delegates(t, b, sig_cache)
            if len(good) < t.majority:
                _v(V, "certificate", h, node, f"{len(good)} valid matching decisions, need {t.majority} of {len(t.members)}")
    for h, contents in sorted(by_height.items()):
        if len(contents) > 1:
            desc = "; ".join(f"{'+'.join(sorted(ns))}: r{c[0]} {c[1]} {_short(c[2])}" for c, ns in sorted(contents.items()))
            _v(V, "chain-agreement", h, None, f"normal nodes executed different blocks: {desc}")
    names = sorted(t.blocks)
    for i, a in enumerate(names):
        for bname in names[i + 1:]:
            for x, y in zip(t.blocks[a], t.blocks[bname]):
                if int(x["height"]) != int(y["height"]):
                    break  # one of them skipped a height (no majority): a gap, not a fork
                if x["hash"] != y["hash"]:
                    _v(V, "chain-agreement", int(x["height"]), f"{a},{bname}", "chains differ by block hash")
                    break
    return by_height


# Pure functions of a block's or a decision's fields, memoised across the traces a process checks: the same
# headers and decisions (height, round, leader, digest, cost, delegate) recur from case to case, while the
# signatures (keys are derived from each run's seed) do not.
@functools.lru_cache(maxsize=4096)
def _header_hash(height: int, prev_hash: str, leader: str, round: int, digest: str, cost: float) -> str:
    return Block.header_hash(height, prev_hash, leader, round, digest, cost)


@functools.lru_cache(maxsize=8192, typed=True)
def _decision_bytes(height: int, round: int, leader: str, digest: str, cost: float, delegate: str, case_id: str) -> bytes:
    return Decision(height, round, leader, digest, cost, delegate, b"", case_id).signing_bytes()


def _certifying_delegates(t: _Trace, b: Mapping[str, Any], sig_cache: dict) -> set[str]:
    """The members whose decision in block ``b``'s certificate matches the block (and is validly signed)."""
    want = (int(b["height"]),) + _content(b)
    good: set[str] = set()
    members = t.member_set
    for dec in b.get("decisions") or ():
        who = dec.get("delegate")
        if who not in members or who in good:
            continue
        got = (int(dec["height"]), int(dec["round"]), str(dec["leader"]), str(dec["digest"]), float(dec["cost"]))
        if got != want:
            continue
        if t.signatures:
            given = dec.get("signature", "")
            ck = (who, given, got)
            ok = sig_cache.get(ck)
            if ok is None:
                cid = dec.get("case_id", "")
                try:
                    data = _decision_bytes(*got, who, cid)
                except TypeError:  # an unhashable case_id (a malformed trace): nothing to memoise
                    data = Decision(*got, who, b"", cid).signing_bytes()
                public = t.keys.get(who)
                if type(given) is PendingSignature:
                    # a signature the run's key pair makes on demand over these very bytes: through the run's memo
                    # it is answered without being made (`signed_on_demand`), else made and checked
                    d = given.decision
                    if d.signing_bytes() == data and signed_on_demand(d, public, t.sig_check):
                        ok = sig_cache[ck] = True
                        good.add(who)
                        continue
                    sig = bytes(d.signature)
                else:
                    try:
                        sig = bytes.fromhex(given or "")
                    except ValueError:
                        sig = b""
                ok = sig_cache[ck] = t.sig_check(public, sig, data)
            if not ok:
                continue
        good.add(who)
    return good


def _check_liveness(t: _Trace, res: CheckResult) -> None:
    """Where the premises hold (a good network, an honest round-1 leader all honest delegates agree on), every
    honest delegate decides that leader's optimal plan in round 1 and every normal node executes it."""
    V = res.violations
    net_ok, why = network_premise(t.trace)
    premised = 0
    live = True
    notes = [] if net_ok else [why]
    for h in range(1, t.heights + 1):
        if not net_ok:
            break
        lead = _premised_leader(t, h, notes)
        if lead is None:
            continue
        premised += 1
        for m in t.honest:
            r = t.decided.get((m, h))
            if r is None or int(r["round"]) != 1 or r.get("leader") != lead or r.get("digest") not in t.optimal:
                got = "nothing" if r is None else f"r{r['round']} {r.get('leader')} {_short(r.get('digest'))}"
                _v(V, "liveness", h, m, f"premises hold (honest leader {lead}) but decided {got}, not {lead}'s optimal plan in round 1")
                live = False
        for nn, chain in sorted(t.blocks.items()):
            b = next((b for b in chain if int(b["height"]) == h), None)
            if b is None or int(b["round"]) != 1 or b["leader"] != lead:
                got = "nothing" if b is None else f"r{b['round']} {b['leader']}"
                _v(V, "liveness", h, nn, f"premises hold (honest leader {lead}) but executed {got}")
                live = False
        for nn in [o for o in t.trace.get("observers") or () if o not in t.blocks]:
            _v(V, "liveness", h, nn, "premises hold but the normal node executed nothing")
            live = False
    res.premise_heights = premised
    res.live = live if premised else None
    res.premise_note = "; ".join(notes[:3])


def _premised_leader(t: _Trace, h: int, notes: list[str]) -> str | None:
    """The honest round-1 leader of height ``h`` that every honest delegate started with, or None (with a note)."""
    leaders = t.round1_leader.get(h, {})
    if not t.honest or any(m not in leaders for m in t.honest):
        notes.append(f"h{h}: not every honest delegate started round 1")
        return None
    ls = {leaders[m] for m in t.honest}
    if len(ls) != 1:
        notes.append(f"h{h}: honest delegates disagree on the round-1 leader")
        return None
    (lead,) = ls
    if lead not in t.honest_set:
        notes.append(f"h{h}: round-1 leader {lead} is dishonest")
        return None
    return lead


def _outcome(t: _Trace, by_height: dict[int, dict[tuple[Any, ...], list[str]]]) -> dict[str, Any]:
    """The outcome summary of the results table."""
    exec_labels, rounds, exec_all = [], [], 0
    for h in range(1, t.heights + 1):
        contents = by_height.get(h, {})
        if contents:
            c = max(contents, key=lambda c: len(contents[c]))
            exec_labels.append(t.labels.get(c[2]) or _short(c[2]))
            if sum(len(v) for v in contents.values()) == len(t.trace.get("observers") or t.blocks):
                exec_all += 1
        else:
            exec_labels.append("none")
        rs = [int(t.decided[(m, h)]["round"]) for m in t.honest if (m, h) in t.decided]
        rounds.append(max(rs) if rs else 0)
    hd = sum(1 for m in t.honest for h in range(1, t.heights + 1) if (m, h) in t.decided)
    return {
        "executed": "|".join(exec_labels),
        "rounds": "|".join(str(r) for r in rounds),
        "heights_executed": exec_all,
        "honest_decided": round(hd / (len(t.honest) * t.heights), 4) if t.honest else 1.0,
        "no_majority": sum(1 for r in t.records if r.get("kind") == "no_majority"),
    }
