"""The typed run log (exports, digest stable across processes), the runner's public hooks, lazy plans, and the
awaitable API (the caller's loop keeps running; cancellation stops the run)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from poso_sim.protocol import Decide, Delegate, Dropped, Execute, Received, Verdict, Verified
from poso_sim.report import render_run, render_table3
from poso_sim.scenarios import (
    RealPayloads,
    Session,
    StubPayloads,
    arun_scenario,
    needed_labels,
    resolve_scenario,
    run_scenario,
)
from poso_sim.scenarios import payloads as payloads_mod

STUB = StubPayloads()
OPT, BAD = STUB.digest("optimal"), STUB.digest("tampered")


@pytest.fixture(scope="module")
def run2():
    return run_scenario("scenario-2", payloads="stub")


# ------------------------------------------------------------------------------------------------- the log
def test_log_is_typed_and_every_view_reads_it(run2):
    log = run2.log
    kinds = {type(e.item).__name__ for e in log}
    assert {"RoundStarted", "Received", "Verified", "Decide", "Exclude", "Execute", "Dropped"} <= kinds
    # each decision once: one Decide per (delegate, height), and it is what RunResult.decisions shows
    decides = [(e.node, e.item.height) for e in log.of(Decide)]
    assert len(decides) == len(set(decides)) == sum(len(v) for v in run2.decisions.values())
    assert {(e.node, e.item.height): e.item.digest for e in log.of(Decide)} == {
        (d, h): v["digest"] for d, hs in run2.decisions.items() for h, v in hs.items()}
    # blocks and records are views of the same entries
    assert sum(len(b) for b in run2.blocks.values()) == sum(1 for _ in log.of(Execute))
    assert run2.records == log.rows() and len(run2.records) == len(log)
    # verdicts travel as the protocol's Verdict
    v = [e.item.verdict for e in log.of(Verified)]
    assert v and all(isinstance(x, Verdict) for x in v)
    assert {x.accepted for e in log.of(Verified) for x in [e.item.verdict] if e.item.digest == BAD} == {False}


def test_one_verdict_from_certificate_to_cache():
    cert = SimpleNamespace(accepted=True, cost=np.float64(744.09), reasons=[])
    v = Verdict.from_certificate(cert)
    assert v == Verdict(True, 744.09, ()) and type(v.cost) is float
    assert Verdict.from_certificate(SimpleNamespace(accepted=False, cost=None, reasons=["stationarity"])) == Verdict(
        False, None, ("stationarity",))
    # an acceptance without a finite cost becomes a rejection inside the delegate
    assert not Verdict(True, float("nan")).checked().accepted
    bad = Verdict(True, None).checked()
    assert not bad.accepted and bad.reasons == ("verifier returned no finite cost",)
    assert Verdict(True, 1.0).checked() == Verdict(True, 1.0)


def test_log_exports(run2, tmp_path):
    log = run2.log
    text = log.to_jsonl(tmp_path / "log.jsonl")
    lines = text.splitlines()
    assert len(lines) == len(log) and (tmp_path / "log.jsonl").read_text() == text
    first = json.loads(lines[0])
    assert list(first) == sorted(first) and first["kind"] == "round_start" and first["t"] == 0.0
    drops = [json.loads(x) for x in lines if '"kind":"dropped"' in x]
    assert {d["message"] for d in drops if d["reason"] == "not leader"} == {"proposal", "relay"}
    df = log.to_dataframe()
    assert len(df) == len(log) and list(df.columns[:3]) == ["t", "node", "kind"]
    assert (df.kind == "decided").sum() == sum(1 for _ in log.of(Decide))
    assert run2.to_json()["log_digest"] == log.digest() and len(log.digest()) == 64


def test_log_and_trace_digests_identical_across_processes():
    code = ("from poso_sim.scenarios import run_scenario\n"
            "for n in ('scenario-1', 'scenario-2', 'scenario-3', 'scenario-4'):\n"
            "    r = run_scenario(n, payloads='stub', seed=5)\n"
            "    print(n, r.log.digest(), r.trace_digest)\n")
    outs = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        outs.add(out.stdout)
    assert len(outs) == 1
    here = {f"{n} {r.log.digest()} {r.trace_digest}" for n in ("scenario-1", "scenario-2", "scenario-3", "scenario-4")
            for r in [run_scenario(n, payloads="stub", seed=5)]}
    assert set(outs.pop().splitlines()) == here


# ------------------------------------------------------------------------------------------------ the hooks
def test_observers_see_every_entry_as_it_is_logged():
    seen = []
    r = run_scenario("scenario-1", payloads="stub", observers=[seen.append])
    assert seen == r.log.entries and seen
    assert [e.t for e in seen] == sorted(e.t for e in seen)


def test_verifier_hook_replaces_the_check_and_is_memoised_per_session():
    calls = []

    def accept_all(payload, height):
        calls.append(payload.digest)
        return Verdict(True, payload.claimed_cost, ())

    accept_all.key = "accept-all"
    session = Session()
    r = run_scenario("scenario-1", payloads="stub", verifier=accept_all, session=session)
    # C sends its tampered plan to F only; F's verifier now accepts it, so F decides it in round 1
    assert (r.decisions_at(1)["F"]["digest"], r.decisions_at(1)["F"]["round"]) == (BAD, 1)
    assert len(calls) == len(set(calls)) == r.verifications >= 1
    r2 = run_scenario("scenario-1", payloads="stub", verifier=accept_all, session=session)
    assert r2.verifications == 0 and r2.log.digest() == r.log.digest()
    # the default verifier in another session is unaffected
    honest = run_scenario("scenario-1", payloads="stub", session=Session())
    assert (honest.decisions_at(1)["F"]["digest"], honest.decisions_at(1)["F"]["round"]) == (OPT, 2)


def test_delegate_factory_hook():
    made = []

    def factory(name, *args, **kw):
        made.append(name)
        return Delegate(name, *args, **kw)

    r = run_scenario("scenario-1", payloads="stub", delegate_factory=factory)
    assert made == r.delegates


def test_an_unsigned_run_derives_no_key_pairs_for_its_own_delegates():
    """With signatures off the runner's own delegates get no key pairs (nothing is signed or checked): the run is
    the same as one whose delegate factory is given the derived key pairs, as a factory of one's own still is."""
    from poso_sim.protocol import KeyPair
    from poso_sim.scenarios.model import resolve_scenario

    scn = resolve_scenario("scenario-2").with_(signatures=False)
    given = []

    def factory(name, committee, keys, **kw):
        given.append(keys)
        return Delegate(name, committee, keys, **kw)

    own = run_scenario(scn, payloads="stub")
    other = run_scenario(scn, payloads="stub", delegate_factory=factory)
    assert (own.log.digest(), own.trace_digest) == (other.log.digest(), other.trace_digest)
    assert own.executed and len(given) == len(own.delegates) and all(isinstance(k, KeyPair) for k in given)


def test_a_note_of_your_own_is_logged_under_its_snake_case_name():
    from dataclasses import dataclass

    from poso_sim.protocol import Note, Start

    @dataclass(frozen=True)
    class HeightSeen(Note):
        height: int

    class Noting(Delegate):
        def handle(self, event):
            out = super().handle(event)
            return out + [HeightSeen(event.height)] if isinstance(event, Start) else out

    r = run_scenario("scenario-1", payloads="stub", delegate_factory=Noting)
    rows = [x for x in r.records if x["kind"] == "height_seen"]
    assert [(x["node"], x["height"]) for x in rows] == [(d, 1) for d in r.delegates]
    assert len(r.log.rows(["height_seen"])) == 5


def test_digest_mismatch_is_the_carriers_fault():
    from poso_sim.protocol import Payload
    from poso_sim.scenarios import solution_matches

    p = STUB.payloads(1)
    assert solution_matches(p["optimal"])
    assert not solution_matches(Payload(OPT, "optimal", 744.0, p["tampered"].solution))
    assert not solution_matches(Payload(OPT, "optimal", 744.0, None))


def test_text_account_and_table3_read_the_log(run2):
    text = render_run(run2, max_events=10_000)
    n_shown = sum(1 for e in run2.log.of(Dropped) if e.item.reason == "not leader")
    assert text.count(": not leader") == n_shown == 4
    assert render_table3(run2).count("fails KKT") >= 1


def test_sequence_chart_marks_the_logged_decisions(run2):
    import matplotlib

    matplotlib.use("Agg")
    from poso_sim.report.plots import plot_message_sequence

    n = sum(1 for _ in run2.log.of(Decide))
    for r in (run2, run_scenario("scenario-2", payloads="stub", trace_events=["send", "deliver", "drop"])):
        fig = plot_message_sequence(r)
        stars = [ln for ln in fig.axes[0].lines if ln.get_gid() == "decided"]
        assert len(stars) == n


# --------------------------------------------------------------------------------------------- lazy plans
class _FakeSolution:
    def __init__(self, variant: str, cost: float, y=None):
        self.variant, self.cost = variant, cost
        self.y = np.ones(3) if y is None else y
        self.z_L = self.z_U = np.ones(2)
        self.digest = hashlib.sha256(f"{variant}/{cost}/{len(self.y)}".encode()).hexdigest()

    def with_multipliers(self, y, z_L, z_U):
        return _FakeSolution(self.variant + "*", self.cost, y)

    def replace(self, y):
        return _FakeSolution(self.variant, self.cost, y)


def test_a_run_solves_only_the_plans_it_needs(monkeypatch):
    asked: list[list[str]] = []

    def fake_solve(case, variants, **kw):
        vs = list(variants)
        asked.append(vs)
        return {v: _FakeSolution(v, {"true": 744.09, "tampered": 904.17, "feasible": 893.41}[v]) for v in vs}

    monkeypatch.setattr(payloads_mod, "solve_variants", fake_solve)
    monkeypatch.setattr(RealPayloads, "_problem", lambda self: (None, SimpleNamespace(m=3)))
    session = Session()
    src = RealPayloads("manchester", session=session)

    def verdict(payload, height):
        return Verdict(payload.label == "optimal", payload.claimed_cost, () if payload.label == "optimal" else ("kkt",))

    assert needed_labels(resolve_scenario("scenario-1")) == ("optimal", "tampered")
    r = run_scenario("scenario-1", payloads=src, verifier=verdict)
    assert asked == [["true", "tampered"]]  # scenario 1 never uses the feasible-restricted plan
    assert set(src.solved()) == {"optimal", "tampered"}
    assert r.executed["label"] == "optimal" and r.executed["cost"] == pytest.approx(744.09)
    # a later run needing the feasible plan solves that one only; the session keeps the others
    r3 = run_scenario("scenario-3", payloads=RealPayloads("manchester", session=session), verifier=verdict)
    assert asked == [["true", "tampered"], ["feasible"]]
    assert r3.executed["label"] == "optimal"
    # a label nobody prepared is made when it is first looked up
    assert src.payloads(1)["forged"].label == "forged" and asked[-1] == ["true"]


# ------------------------------------------------------------------------------------------ awaitable API
def test_arun_scenario_keeps_the_callers_loop_responsive():
    scn = resolve_scenario("scenario-2").with_(heights=250)

    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.1)
                ticks += 1

        t = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        res = await arun_scenario(scn, payloads="stub")
        wall = time.perf_counter() - t0
        stop.set()
        await t
        return res, ticks, wall

    res, ticks, wall = asyncio.run(main())
    assert wall > 0.5, "the run is too short to show anything"
    assert ticks >= int(wall / 0.1) * 0.5, (ticks, wall)  # a blocked loop would tick about once
    sync = run_scenario(scn, payloads="stub")
    assert res.trace_digest == sync.trace_digest and res.log.digest() == sync.log.digest()


def test_cancelling_arun_scenario_stops_the_run():
    scn = resolve_scenario("scenario-2").with_(heights=10_000)
    entries = []

    async def main():
        task = asyncio.create_task(arun_scenario(scn, payloads="stub", observers=[entries.append]))
        while len(entries) < 50:
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stop_wall = time.perf_counter() - t0
        n = len(entries)
        await asyncio.sleep(0.3)
        return n, stop_wall

    n, stop_wall = asyncio.run(main())
    assert len(entries) == n  # nothing ran after the cancellation returned
    heights = {e.item.height for e in entries if isinstance(e.item, Decide)}
    assert n < 20_000 and len(heights) < 200 and stop_wall < 5.0, (n, len(heights), stop_wall)  # 10 000 heights asked
    assert not [t for t in threading.enumerate() if t.name == "poso-sim-run"]


def test_log_lines_are_canonical_json_and_the_digest_is_kept_until_an_append(run2):
    from poso_sim.common import canonical_json
    from poso_sim.scenarios.log import RunLog

    log = run2.log
    assert list(log.lines()) == [canonical_json(e.row()) for e in log]
    d = log.digest()
    assert log.digest() == d == hashlib.sha256("".join(canonical_json(e.row()) + "\n" for e in log).encode()).hexdigest()
    own = RunLog()
    own.append(np.float64(0.5), "A", Dropped("x", "B", path=("a", "b")))  # a hand-made entry: not a plain float time
    first = own.digest()
    own.append(1.0, "A", Dropped("y"))
    assert own.digest() != first and list(own.lines())[0] == canonical_json(own.entries[0].row())


def test_a_run_restores_the_garbage_collector_settings():
    import gc

    before = (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled())
    run_scenario("scenario-2", payloads="stub")
    assert (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()) == before


def test_checking_a_run_solves_no_plan_it_did_not_use(monkeypatch):
    from poso_sim.scenarios.model import Scenario
    from poso_sim.sweep import check_trace
    from poso_sim.sweep.checker import build_trace
    from poso_sim.sweep.worker import run_scenario_traced

    asked: list[list[str]] = []

    def fake_solve(case, variants, **kw):
        vs = list(variants)
        asked.append(vs)
        return {v: _FakeSolution(v, {"true": 744.09, "tampered": 904.17, "feasible": 893.41}[v]) for v in vs}

    monkeypatch.setattr(payloads_mod, "solve_variants", fake_solve)
    monkeypatch.setattr(RealPayloads, "_problem", lambda self: (None, SimpleNamespace(m=3)))
    session = Session()
    src = RealPayloads("manchester", session=session)
    session.seed_verdict(src.key, src.prepare(["optimal"])["optimal"].digest, Verdict(True, 744.09, ()))
    runner, _ = run_scenario_traced(Scenario(delegates=4, normal_nodes=2), src, session=session)
    res = check_trace(build_trace(runner, src))
    assert res.ok and res.outcome["executed"] == "optimal"
    assert asked == [["true"]] and set(src.solved()) == {"optimal"}  # an honest run: tampered, feasible unsolved


def test_a_compact_log_keeps_each_per_copy_note_once_per_height_and_node():
    from collections import Counter

    from poso_sim.protocol import DecisionSeen
    from poso_sim.scenarios.log import COMPACT_ABOVE, COMPACTED

    scn = resolve_scenario("scenario-3").with_(heights=2)
    full = run_scenario(scn, payloads="stub")
    seen = []
    compact = run_scenario(scn, payloads="stub", log_mode="compact", observers=[seen.append])
    assert not compact.trace.kept and compact.trace_digest != full.trace_digest  # the digest of a compact trace
    assert len(seen) == len(full.log) and compact.log.mode == "compact"  # observers see every entry
    n_full, n_kept = Counter(e.kind for e in full.log), Counter(e.kind for e in compact.log)
    assert {k: n_full[k] - n_kept[k] for k in n_full if n_full[k] != n_kept[k]} == dict(compact.log.omitted)
    assert set(compact.log.omitted) <= {"received", "decision_seen", "dropped"} and compact.log.omitted["decision_seen"]
    kept = [e for e in compact.log if isinstance(e.item, COMPACTED)]
    keys = [(type(e.item), getattr(e.item, "height", None), e.node, getattr(e.item, "reason", None)) for e in kept]
    assert len(keys) == len(set(keys))
    first_seen = next(e for e in full.log if isinstance(e.item, DecisionSeen))
    assert first_seen in compact.log.entries  # the first copy is the one kept
    for view in ("decisions", "exclusions", "blocks"):
        assert getattr(compact, view) == getattr(full, view)
    assert compact.executed == full.executed and compact.to_json()["log"]["omitted"] == dict(compact.log.omitted)
    assert "log" not in full.to_json() and full.log.mode == "full" and COMPACT_ABOVE >= 100


# ------------------------------------------------------------------------------------------------ compact mode
_C40 = """name: c40
case: manchester
delegates: 40
normal_nodes: 3
heights: 2
seed: 11
network:
  latency: {uniform: [0.01, 0.05]}
  faults:
    - {type: duplicate, p: 0.05}
    - {type: loss, p: 0.02}
behaviours:
  A:
    follower_error: others
"""


@pytest.fixture(scope="module")
def c40(tmp_path_factory):
    """40 delegates (a dishonest first leader, lost and duplicated copies), two heights, in both log modes, with
    the kernel trace's records kept."""
    from poso_sim.scenarios.runner import make_runner

    path = tmp_path_factory.mktemp("c40") / "c40.yaml"
    path.write_text(_C40)
    out = {}
    for mode in ("full", "compact"):
        runner = make_runner(str(path), "stub", log_mode=mode, keep_trace=True, session=Session())
        runner.prepare()
        out[mode] = runner.finish(runner.simulate())
    return str(path), out["full"], out["compact"]


def _first_copies(records):
    """`records` (trace records or log entries as (kind, node, height, reason, record)) without the later copies
    of a per-copy note: what a compact run keeps."""
    seen, out = set(), []
    for kind, node, height, reason, r in records:
        if kind in ("received", "decision_seen", "dropped"):
            key = (kind, height, node, reason if kind == "dropped" else None)
            if key in seen:
                continue
            seen.add(key)
        out.append(r)
    return out


def test_a_compact_run_agrees_with_the_full_run_on_everything_both_keep(c40):
    from collections import Counter

    from poso_sim.protocol import HEIGHT_ENDS
    from poso_sim.scenarios.log import COMPACTED

    _, full, compact = c40
    assert compact.log.mode == "compact" and full.log.mode == "full"
    jf, jc = full.to_json(), compact.to_json()
    differ = {k for k in jf.keys() | jc.keys() if jf.get(k) != jc.get(k)}
    assert differ == {"trace_digest", "log_digest", "log", "wall_seconds"}
    assert jc["executed"]["label"] == "optimal" and jc["excluded"] == ["A"] and jc["network"]["dropped"] > 0
    for view in ("decisions", "exclusions", "blocks"):
        assert getattr(compact, view) == getattr(full, view)
    # the counts per kind: the kept entries and the omitted ones make up the full log
    n_full, n_kept = Counter(e.kind for e in full.log), Counter(e.kind for e in compact.log)
    assert n_full == n_kept + compact.log.omitted and jc["log"]["omitted"] == dict(sorted(compact.log.omitted.items()))
    assert set(compact.log.omitted) == {"received", "decision_seen", "dropped"}
    assert not set(COMPACTED) & set(HEIGHT_ENDS)  # a copy left out never ends a height
    # the first copy per (kind, height, receiver) - and reason, for a drop - is the one kept, in order
    firsts = _first_copies((e.kind, e.node, getattr(e.item, "height", None), getattr(e.item, "reason", None), e)
                           for e in full.log)
    assert compact.log.entries == firsts


def test_a_compact_trace_is_the_full_trace_without_sends_and_later_copies(c40):
    """What a compact run's kernel trace records: the full run's records but sends and the user events of the
    per-copy notes the compact log leaves out (numbered again)."""
    from poso_sim.scenarios.log import COMPACT_TRACE_EVENTS

    _, full, compact = c40
    assert compact.trace.events == frozenset(COMPACT_TRACE_EVENTS) and "send" not in COMPACT_TRACE_EVENTS
    want = _first_copies((r["kind"], r["src"], (r["data"] or {}).get("height") if r["ev"] == "user" else None,
                          (r["data"] or {}).get("reason") if r["ev"] == "user" else None,
                          r) for r in full.trace if r["ev"] != "send")
    got = list(compact.trace)
    assert [{**r, "seq": 0} for r in got] == [{**r, "seq": 0} for r in want]
    assert [r["seq"] for r in got] == list(range(len(got)))
    assert sum(r["ev"] == "deliver" for r in got) == compact.network["delivered"] > compact.messages  # duplicates
    assert sum(r["ev"] == "drop" for r in got) == compact.network["dropped"] > 0
    assert sum(r["ev"] == "user" for r in got) < sum(r["ev"] == "user" for r in full.trace) / 5


def test_a_compact_run_is_deterministic_across_processes(c40):
    """The same scenario and seed give the same trace and log digests in two fresh processes (digest-only trace)
    as in this one (records kept)."""
    path, _, compact = c40
    code = ("import sys\nfrom poso_sim.scenarios import run_scenario\n"
            "r = run_scenario(sys.argv[1], payloads='stub', log_mode='compact')\n"
            "print(r.trace_digest, r.log.digest(), r.trace.kept)\n")
    outs = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        outs.add(subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, env=env,
                                check=True).stdout)
    assert outs == {f"{compact.trace_digest} {compact.log.digest()} False\n"}
