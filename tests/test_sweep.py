"""poso_sim.sweep: sweep files, the case -> scenario mapping, the checker, campaigns on executors, the CLI."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from poso_sim.cli import main as cli_main
from poso_sim.scenarios.model import load_scenario
from poso_sim.scenarios.payloads import StubPayloads
from poso_sim.scenarios.runner import run_scenario
from poso_sim.sweep import (
    BEHAVIOUR_KINDS,
    MUTATIONS,
    SAFETY,
    PayloadDescriptor,
    SweepError,
    check_trace,
    coverage_table,
    packaged_sweeps,
    parse_sweep,
    resolve_sweep,
    run_case,
    run_sweep,
)
from poso_sim.sweep.checker import build_trace, certificates
from poso_sim.sweep.worker import run_scenario_traced

SMALL = """
name: small
mode: random
cases: 40
seed: 11
parameters:
  delegates: {randint: [4, 9]}
  dishonest: {randint: [0, max]}
  signatures: [true, false]
  latency: {choice: [0.05, {uniform: [0.01, 0.3]}, [0.1, 0.05]]}
  loss: [0.0, 0.05]
  duplicate: [0.0, 0.05]
  reorder: [0.0, 0.1]
  partition: [0.0, 0.5]
  crash: [0.0, 0.3]
  window: [5.3, 7.7]
  heights: {randint: [1, 2]}
"""


@pytest.fixture(scope="module")
def small():
    return parse_sweep(SMALL, "<small>")


@pytest.fixture(scope="module")
def small_result(small):
    return run_sweep(small, workers=1, progress=False)


# ------------------------------------------------------------------------------------------ sweep files
def test_packaged_sweeps_parse():
    names = packaged_sweeps()
    assert {"campaign", "smoke"} <= set(names)
    camp = resolve_sweep("campaign")
    assert camp.n_cases >= 1000 and camp.mode == "random"
    assert resolve_sweep("smoke").n_cases == 72


def test_case_mapping_is_deterministic_and_independent(small):
    a = small.case(17)
    b = parse_sweep(SMALL, "<again>").case(17)
    assert a.scenario.model_dump(exclude={"source"}) == b.scenario.model_dump(exclude={"source"})
    assert a.params == b.params
    # a case does not depend on the number of cases in the sweep
    bigger = parse_sweep(SMALL.replace("cases: 40", "cases: 400"), "<bigger>")
    assert bigger.case(17).params == a.params
    # another sweep seed gives other cases
    other = parse_sweep(SMALL.replace("seed: 11", "seed: 12"), "<other>")
    assert [other.case(i).params for i in range(5)] != [small.case(i).params for i in range(5)]


def test_generated_cases_respect_bounds(small):
    for c in small.iter_cases():
        n, f = c.params["N"], c.params["f"]
        assert 4 <= n <= 9 and 0 <= f and 2 * f < n
        assert c.scenario.delegate_names[:2] == ["A", "B"]
        assert len(c.scenario.dishonest) == f
        for fault in c.scenario.network.faults:
            if fault.type == "crash":
                assert fault.node in c.scenario.dishonest


def test_product_mode_grid():
    spec = parse_sweep(
        "mode: product\nrepeat: 2\nparameters:\n  delegates: [4, 6]\n  dishonest: [0, max]\n  signatures: [true, false]\n",
        "<grid>",
    )
    assert spec.n_cases == 16
    got = [(c.params["N"], c.params["f"], c.params["signatures"]) for c in spec.iter_cases()]
    assert got[0] == got[1] == (4, 0, True)  # repeat: consecutive cases share a grid point
    assert got[2] == (4, 0, False)
    assert got[-1] == (6, 2, False)
    assert len(set(got)) == 8
    assert len({c.seed for c in spec.iter_cases()}) == 16  # every case its own seed


def test_large_committees_generated_names():
    spec = parse_sweep("mode: product\nparameters:\n  delegates: [30, 100]\n  dishonest: max\n", "<big>")
    c = spec.case(1)
    names = c.scenario.delegate_names
    assert len(names) == 100 and names[:3] == ["A", "B", "C"] and names[26] == "D26" and names[-1] == "D99"
    assert c.scenario.delegate_ids["D99"] == 8 + 99
    assert c.params["f"] == 49


def test_base_scenario_kept_with_dishonest_base():
    spec = parse_sweep("mode: product\nrepeat: 2\nbase: scenario-2\nparameters:\n  dishonest: base\n"
                       "  loss: [0.0, 0.05]\n", "<four>")
    assert spec.n_cases == 4
    c = spec.case(3)
    assert c.scenario.delegate_names == ["C", "D", "E", "F", "G"] and c.scenario.dishonest == ["C", "F"]
    assert c.scenario.window == 7.7 and c.scenario.heights == 2  # unset parameters fall back on the base
    assert [f.type for f in c.scenario.network.faults] == ["loss"]
    res = run_sweep(spec, workers=1, progress=False)
    assert res.n_violations == 0 and (res.table.executed == "optimal|optimal").all()


def test_hundred_delegates_one_height():
    spec = parse_sweep("mode: product\nparameters:\n  delegates: 100\n  dishonest: 0\n"
                       "  latency: {uniform: [0.01, 0.05]}\n", "<100>")
    out = run_case(spec.case(0), PayloadDescriptor.prepare("stub"), keep_trace=True)
    assert out.violations == [] and out.row["live"] is True and out.row["liveness_premise"] == 1
    assert out.row["messages"] > 19_000 and out.row["rounds"] == "1"
    assert len(out.trace["blocks"]["N1"][0]["decisions"]) >= 51


@pytest.mark.parametrize(
    "text, msg",
    [
        ("mode: random\n", "cases: required"),
        ("cases: 3\nparameters:\n  delegates: 4\n  dishonest: 2\n", "f <= (N-1)//2"),
        ("cases: 3\nparameters:\n  behaviours: [follower_error, nope]\n", "unknown behaviour kind 'nope'"),
        ("cases: 3\nparamters: {}\n", "unknown field"),
        ("cases: 3\nparameters:\n  window: {uniform: [1]}\n", "expected [lo, hi]"),
        ("cases: 3\nparameters:\n  latency: -1\n", "latency"),
        ("cases: [\n", "invalid YAML"),
    ],
)
def test_bad_sweep_files(text, msg):
    with pytest.raises(SweepError) as ei:
        parse_sweep(text, "bad.yaml")
    assert "bad.yaml" in str(ei.value) and msg in str(ei.value)


def test_case_yaml_round_trip_and_replay(small, tmp_path):
    desc = PayloadDescriptor.prepare("stub")
    for i in (3, 8, 21):
        case = small.case(i)
        path = tmp_path / f"case-{i:05d}.yaml"
        path.write_text(case.to_yaml())
        back = load_scenario(path)
        assert back.model_dump(exclude={"source", "name"}) == case.scenario.model_dump(exclude={"source", "name"})
        # the replay (the scenario layer's own runner, as `poso-sim run FILE --seed N --stub`) gives the same run
        out = run_case(case, desc, keep_trace=True)
        res = run_scenario(back, payloads="stub", seed=case.seed, trace_events=[])
        chains = {n: [b["hash"] for b in bl] for n, bl in out.trace["blocks"].items()}
        assert chains == {n: [b["hash"] for b in res.blocks.get(n, [])] for n in res.normals}
        decided = {(r["node"], r["height"]): r["digest"] for r in out.trace["records"] if r["kind"] == "decided"}
        assert decided == {(d, h): v["digest"] for d, hs in res.decisions.items() for h, v in hs.items()}



def test_compact_log_gives_the_full_logs_trace():
    """The sweep's runs keep a compact log (the checker reads no per-copy note): over campaign cases with every
    kind of fault, the checker's trace, the messages and the log's records are a full log's, and the per-copy
    notes the compact log leaves out are counted."""
    from poso_sim.scenarios.log import PER_COPY, kind_of
    from poso_sim.sweep.checker import TRACE_RECORD_KINDS

    cases = list(resolve_sweep("campaign").iter_cases(24))
    assert any(c.params["loss"] for c in cases) and any(c.params["crash"] for c in cases)
    omitted = 0
    for case in cases:
        src = StubPayloads()
        full, _ = run_scenario_traced(case.scenario, src, log_mode="full")
        compact, _ = run_scenario_traced(case.scenario, src)
        assert compact.log.mode == "compact" and full.log.mode == "full"
        assert build_trace(compact, src) == build_trace(full, src)
        assert (compact.net.sent, compact.end_time, compact.height_timeouts) == \
            (full.net.sent, full.end_time, full.height_timeouts)
        per_copy = sum(1 for e in full.log if type(e.item) in PER_COPY)
        kept = sum(1 for e in compact.log if type(e.item) in PER_COPY)
        assert kept + sum(compact.log.omitted.values()) == per_copy
        assert [e for e in compact.log if type(e.item) not in PER_COPY] == \
            [e for e in full.log if type(e.item) not in PER_COPY]
        omitted += sum(compact.log.omitted.values())
    assert omitted > 1000
    assert not {kind_of(t) for t in PER_COPY} & TRACE_RECORD_KINDS  # what the compact log leaves out is unread


# -------------------------------------------------------------------------------------------- checker
def _trace(scenario_name="scenario-2", **changes):
    from poso_sim.scenarios.model import resolve_scenario

    from poso_sim.scenarios.model import Scenario

    data = resolve_scenario(scenario_name).model_dump(exclude={"source"})
    scn = Scenario.model_validate({**data, **changes})
    src = StubPayloads()
    runner, _ = run_scenario_traced(scn, src)
    return build_trace(runner, src)


def test_checker_passes_packaged_scenarios():
    for name in ("scenario-1", "scenario-2", "scenario-3", "scenario-4"):
        res = check_trace(_trace(name))
        assert res.ok, (name, res.violations)
        assert res.outcome["executed"].split("|")[0] == "optimal"


def test_checker_trace_is_json():
    tr = _trace()
    again = json.loads(json.dumps(tr))
    assert check_trace(again).ok


def test_checker_memo_of_signed_bytes_and_hashes_is_exact():
    """The checker memoises decisions' signed bytes and block header hashes across traces (pure functions of their
    fields): what it verifies is what a fresh Decision and Block compute, and a field changed in a trace (a
    decision's digest or round, a block's cost) is checked against its own bytes, cold or warm."""
    from poso_sim.protocol import Block, Decision
    from poso_sim.sweep import checker as C

    tr = _trace()
    for cold in (True, False):
        if cold:
            C._decision_bytes.cache_clear()
            C._header_hash.cache_clear()
        assert check_trace(tr).ok
        for d in tr["blocks"]["N1"][0]["decisions"]:
            got = (d["height"], d["round"], d["leader"], d["digest"], float(d["cost"]))
            assert C._decision_bytes(*got, d["delegate"], d["case_id"]) == \
                Decision(*got, d["delegate"], b"", d["case_id"]).signing_bytes()
        b = tr["blocks"]["N1"][0]
        assert C._header_hash(b["height"], b["prev_hash"], b["leader"], b["round"], b["digest"], b["cost"]) == b["hash"] \
            == Block.header_hash(b["height"], b["prev_hash"], b["leader"], b["round"], b["digest"], b["cost"])
        bad = copy.deepcopy(tr)
        for d in bad["blocks"]["N1"][0]["decisions"]:
            d["case_id"] = "other"  # same content as the block, bytes that were never signed
        assert {v["property"] for v in check_trace(bad).violations} == {"certificate"}
        bad = copy.deepcopy(tr)
        bad["blocks"]["N1"][0]["cost"] += 1.0
        assert "chain-integrity" in {v["property"] for v in check_trace(bad).violations}


def test_checker_catches_forged_certificate():
    tr = _trace()
    bad = copy.deepcopy(tr)
    block = bad["blocks"]["N1"][0]
    for d in block["decisions"]:
        d["signature"] = "00" * 64
    props = {v["property"] for v in check_trace(bad).violations}
    assert props == {"certificate"}
    # signatures off: only distinct matching members count
    thin = copy.deepcopy(tr)
    thin["blocks"]["N2"][0]["decisions"] = thin["blocks"]["N2"][0]["decisions"][:2]
    assert {v["property"] for v in check_trace(thin).violations} == {"certificate"}


def test_checker_memo_answers_only_what_the_run_checked():
    """Through the run's signature memo the checker gets the same verdicts; the certificates' signatures are all
    memo hits (the normal nodes checked them), and a forged one is still computed and rejected."""
    from poso_sim.protocol import SignatureCache
    from poso_sim.scenarios.model import Scenario, resolve_scenario
    from poso_sim.scenarios.session import Session

    session = Session()
    scn = Scenario.model_validate(resolve_scenario("scenario-2").model_dump(exclude={"source"}))
    src = StubPayloads()
    runner, _ = run_scenario_traced(scn, src, session=session)
    tr = build_trace(runner, src)
    memo = session.signatures
    before = memo.computed
    plain, memoised = check_trace(tr), check_trace(tr, sig_check=memo.check)
    assert memoised.ok and (memoised.violations, memoised.outcome) == (plain.violations, plain.outcome)
    assert memo.computed == before and memo.calls > 0
    bad = copy.deepcopy(tr)
    for d in bad["blocks"]["N1"][0]["decisions"]:
        d["signature"] = d["signature"][:-2] + ("00" if d["signature"][-2:] != "00" else "01")
    res = check_trace(bad, sig_check=memo.check)
    assert {v["property"] for v in res.violations} == {"certificate"}
    assert memo.computed == before + len(bad["blocks"]["N1"][0]["decisions"])
    assert check_trace(bad, sig_check=SignatureCache(limit=0).check).violations == res.violations


def test_vouched_signatures_are_valid_and_never_reach_the_checker():
    """A signature made by a noted key pair is answered true without computing; what a run's nodes check of it
    is what check_signature says; the checker's `verified` computes it anyway, and a triple nobody signed (an
    altered message) is computed and rejected."""
    from poso_sim.protocol import KeyPair, SignatureCache, check_signature

    cache = SignatureCache()
    kp = KeyPair.generate(b"vouch").noting(cache)
    sig = kp.sign(b"data")
    plain = KeyPair.generate(b"vouch")
    assert (kp.seed, kp.public) == (plain.seed, plain.public) and sig == plain.sign(b"data")
    assert (cache.vouched, cache.computed) == (1, 0)
    assert cache.check(kp.public, sig, b"data") is True and cache.computed == 0
    assert cache.check(kp.public, sig, b"datA") is False and cache.computed == 1
    assert cache.verified(kp.public, sig, b"data") is check_signature(kp.public, sig, b"data") is True
    assert cache.computed == 2 and cache.check(kp.public, sig, b"data") and cache.computed == 2
    off = SignatureCache(limit=0)  # the comparison mode computes everything, vouches for nothing
    KeyPair.generate(b"vouch").noting(off).sign(b"data")
    assert off.vouched == 0 and off.check(kp.public, sig, b"data") and off.computed == 1


def test_a_key_pair_vouches_only_under_its_own_public_key():
    """A noted key pair whose public key is not its seed's (made by hand) notes nothing: a check of its signature
    under that public key is computed, and false."""
    from poso_sim.protocol import KeyPair, SignatureCache
    from poso_sim.protocol.identity import NotedKeyPair

    cache = SignatureCache()
    real, other = KeyPair.generate(b"mine"), KeyPair.generate(b"theirs")
    liar = NotedKeyPair(real.seed, other.public, cache)  # claims another node's public key
    sig = liar.sign(b"data")
    assert sig == real.sign(b"data") and cache.vouched == 0
    assert cache.check(other.public, sig, b"data") is False and cache.computed == 1
    assert cache.check(real.public, sig, b"data") is True and cache.computed == 2


def test_campaign_checker_takes_vouched_signatures_with_the_same_verdicts():
    """`run_case` checks the certificates through the session's memo: every signature there was made by the run's
    key pairs, so the checker computes none, with the verdicts of a checker that computes all; an altered
    signature or decision field in the same trace is computed and rejected."""
    from poso_sim.protocol import SignatureCache
    from poso_sim.sweep.worker import session_for

    spec = resolve_sweep("campaign")
    desc = PayloadDescriptor()
    sigs = session_for(desc)[0].signatures
    checked = 0
    for case in spec.iter_cases(12):
        if not case.scenario.signatures:
            continue
        orig = sigs.check
        computed = []

        def counting(public, signature, data, _orig=orig):
            before = sigs.computed
            ok = _orig(public, signature, data)
            computed.append(sigs.computed - before)
            return ok

        out = run_case(case, desc, keep_trace=True)
        tr = out.trace
        plain = check_trace(tr, sig_check=SignatureCache(limit=0).check)
        memoised = check_trace(tr, sig_check=counting)
        assert (memoised.violations, memoised.outcome) == (plain.violations, plain.outcome)
        assert out.violations == plain.violations
        blocks = [b for chain in tr["blocks"].values() for b in chain]
        if not blocks:
            continue
        assert computed and sum(computed) == 0  # every certificate signature was made in this process
        checked += 1
        bad = copy.deepcopy(tr)
        dec = next(b for chain in bad["blocks"].values() for b in chain)["decisions"][0]
        dec["signature"] = dec["signature"][:-2] + ("00" if dec["signature"][-2:] != "00" else "01")
        computed.clear()
        res = check_trace(bad, sig_check=counting)
        assert sum(computed) >= 1
        assert res.violations == check_trace(bad, sig_check=SignatureCache(limit=0).check).violations
    assert checked >= 3


def test_pending_certificate_signatures_give_the_same_verdicts_unmade():
    """A trace built with pending signatures is checked without making them (through the run's memo), with the
    verdicts of the complete trace; completed it is the trace built without pending signatures; a decision's
    field changed in the trace makes its pending signature and fails the check."""
    from poso_sim.protocol import SignatureCache
    from poso_sim.sweep.checker import PendingSignature, complete_signatures
    from poso_sim.sweep.worker import session_for

    spec = resolve_sweep("campaign")
    session = session_for(PayloadDescriptor())[0]
    sigs = session.signatures
    case = next(c for c in spec.iter_cases(12) if c.scenario.signatures and not c.scenario.dishonest)
    runner, _ = run_scenario_traced(case.scenario, StubPayloads(), session=session)
    lazy = build_trace(runner, StubPayloads(), pending_signatures=True)
    pend = [d for chain in lazy["blocks"].values() for b in chain for d in b["decisions"]]
    assert pend and all(type(d["signature"]) is PendingSignature for d in pend)
    vouched = sigs.vouched
    res = check_trace(lazy, sig_check=sigs.check)
    assert res.ok and sigs.vouched == vouched  # no signature made to check them
    bad = copy.copy(lazy)
    bad["blocks"] = copy.deepcopy({n: [dict(b, decisions=[dict(d) for d in b["decisions"]]) for b in chain]
                                   for n, chain in lazy["blocks"].items()}, memo={id(d["signature"]): d["signature"]
                                                                                  for d in pend})
    for d in next(iter(bad["blocks"].values()))[0]["decisions"]:
        d["case_id"] = "another"
    computed = sigs.computed
    assert {v["property"] for v in check_trace(bad, sig_check=sigs.check).violations} == {"certificate"}
    assert sigs.computed > computed  # made and checked: they do not sign those bytes
    full = complete_signatures(lazy)
    assert full == build_trace(runner, StubPayloads())
    plain = check_trace(full, sig_check=SignatureCache(limit=0).check)
    assert (plain.violations, plain.outcome) == (res.violations, res.outcome)


def test_checker_catches_non_optimal_and_forks():
    tr = _trace()
    tampered = next(d for d, lbl in tr["labels"].items() if lbl == "tampered")
    bad = copy.deepcopy(tr)
    b = bad["blocks"]["N3"][0]
    b["digest"] = tampered
    props = {v["property"] for v in check_trace(bad).violations}
    assert {"executed-non-optimal", "chain-integrity", "chain-agreement", "certificate"} <= props


def test_checker_catches_a_wrong_hash_under_a_header_seen_before():
    """Block hashes are computed once per distinct header: a node whose block repeats another node's header but
    carries another hash is still caught."""
    tr = _trace()
    bad = copy.deepcopy(tr)
    first, second = sorted(bad["blocks"])[:2]
    assert bad["blocks"][first][0]["hash"] == bad["blocks"][second][0]["hash"]
    bad["blocks"][second][0]["hash"] = "0" * 64
    res = check_trace(bad)
    assert ("chain-integrity", second) in {(v["property"], v["node"]) for v in res.violations}
    assert ("chain-integrity", first) not in {(v["property"], v["node"]) for v in res.violations}


def test_checker_catches_bad_honest_decisions():
    tr = _trace()
    tampered = next(d for d, lbl in tr["labels"].items() if lbl == "tampered")
    honest = [m for m in tr["members"] if m not in tr["dishonest"]]
    bad = copy.deepcopy(tr)
    for r in bad["records"]:
        if r["kind"] == "decided" and r["node"] == honest[0]:
            r["digest"] = tampered
    props = {v["property"] for v in check_trace(bad).violations}
    assert {"decided-non-optimal", "decided-rejected"} <= props
    # a decision with no accepting verification on record
    bad2 = copy.deepcopy(tr)
    bad2["records"] = [r for r in bad2["records"] if not (r["kind"] == "verified" and r["node"] == honest[1])]
    assert {v["property"] for v in check_trace(bad2).violations} == {"decided-unverified"}


def test_liveness_premises():
    # honest first leader, bounded latency, no loss: premised and live
    tr = _trace("scenario-1", behaviours={}, network={"latency": {"uniform": [0.01, 0.2]}})
    res = check_trace(tr)
    assert res.ok and res.premise_heights == 1 and res.live is True
    # a dishonest first leader (scenario 1): not premised at height 1 (but height 2's leader D is honest)
    res = check_trace(_trace("scenario-1", heights=2))
    assert res.premise_heights == 1 and res.live is True and "leader C is dishonest" in res.premise_note
    # lossy network or unbounded latency: no premise
    for net in ({"latency": 0.05, "faults": [{"type": "loss", "p": 0.01}]}, {"latency": [0.1, 0.05]}):
        res = check_trace(_trace("scenario-1", behaviours={}, network=net))
        assert res.premise_heights == 0 and res.live is None
    # latency beyond the window: no premise
    res = check_trace(_trace("scenario-1", behaviours={}, network={"latency": 6.0}))
    assert res.premise_heights == 0
    # a silent honest-looking leader breaks liveness when the checker is told it is honest
    tr = _trace("scenario-1", behaviours={"C": {"silence": True}})
    tr["dishonest"] = []
    res = check_trace(tr)
    assert res.live is False and {v["property"] for v in res.violations} == {"liveness"}


def test_a_released_run_is_freed_without_the_cycle_collector():
    """After `Runner.release` nothing of the network points back at the runner: dropping the runner frees the run
    (its machines and log) by reference counting, with the cycle collector off."""
    import gc
    import weakref

    scn = next(c.scenario for c in resolve_sweep("campaign").iter_cases(40) if c.params["crash"])
    src = StubPayloads()
    gc.collect()
    gc.disable()
    try:
        kept, _ = run_scenario_traced(scn, src)
        dead = weakref.ref(kept)
        del kept
        assert dead() is not None  # unreleased: held by its network's handlers until the collector runs
        runner, _ = run_scenario_traced(scn, src)
        sent, rows = runner.net.sent, runner.log.rows()
        stats = runner.net.stats()
        runner.release()
        assert (runner.net.sent, runner.log.rows()) == (sent, rows) and sent > 0
        assert runner.net.stats() == stats  # the network's counters stay readable
        ref, net_ref = weakref.ref(runner), weakref.ref(runner.net)
        del runner
        assert ref() is None
        assert net_ref() is None  # the network, its nodes and channels too (Network.release breaks their cycles)
    finally:
        gc.enable()
        gc.collect()


def test_signature_memo_changes_nothing():
    from poso_sim.protocol import SignatureCache, identity
    from poso_sim.scenarios import Session

    orig = identity.check_signature
    spec = resolve_sweep("smoke")
    scn = next(c.scenario for c in spec.iter_cases() if c.scenario.signatures)
    session = Session()
    a, _ = run_scenario_traced(scn, StubPayloads(), sig_memo=True, session=session)
    b, _ = run_scenario_traced(scn, StubPayloads(), sig_memo=False)
    assert a.log.rows() == b.log.rows() and certificates(a.log) == certificates(b.log)
    assert a.log.digest() == b.log.digest() and a.log.entries
    # the memo was used through the public hook: each distinct triple was computed once or, made by the run's
    # own key pairs, noted as valid when signed (vouched) and never computed
    sigs = session.signatures
    assert sigs.calls > sigs.vouched > 0 and len(sigs) == sigs.computed + sigs.vouched
    assert identity.check_signature is orig  # nothing patched
    cache = SignatureCache(limit=2)
    assert not cache.check(b"\x01" * 32, b"\x00" * 64, b"x") and not cache.check(b"\x01" * 32, b"\x00" * 64, b"x")
    assert (cache.calls, cache.computed) == (2, 1)


# -------------------------------------------------------------------------------------------- campaigns
def test_small_campaign_has_no_violations(small_result):
    res = small_result
    assert len(res.table) == 40 and list(res.table.case) == list(range(40))
    assert res.n_violations == 0, res.violations.to_string()
    assert res.table.safe.all()
    summary = res.summary()
    assert list(summary.property) == list(SAFETY) + ["liveness"]
    assert summary.violations.sum() == 0
    assert (res.table.liveness_premise > 0).sum() >= 1
    cov = coverage_table(res.table).set_index("what")["cases"]
    assert cov["signatures off"] > 0 and cov["partition"] > 0 and cov["loss > 0"] > 0


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_broken_rule_is_caught(small, mutation, tmp_path):
    res = run_sweep(small, workers=1, progress=False, mutation=mutation, out=tmp_path)
    assert res.n_violations > 0
    props = set(res.violations.property)
    if mutation == "accept_unverified":
        assert "decided-unverified" in props
    else:
        assert "accepted-non-optimal" in props
    cmds = res.replay_commands()
    assert set(cmds) == set(res.failing_cases)
    assert all(f"--mutation {mutation}" in c for c in cmds.values())
    # the failing cases' traces are kept for inspection
    i = res.failing_cases[0]
    trace = json.loads((tmp_path / "cases" / f"case-{i:05d}.trace.json").read_text())
    assert not check_trace(trace).ok


def test_results_independent_of_executor(small, small_result):
    sub = list(range(0, 40, 3))
    ref = small_result.table.set_index("case").loc[sub].reset_index()
    cols = [c for c in ref.columns if c not in ("wall_seconds", "check_seconds")]
    with ThreadPoolExecutor(2) as ex:
        threaded = run_sweep(small, executor=ex, cases=sub, progress=False, chunk=2)
    pooled = run_sweep(small, workers=2, cases=sub, progress=False, chunk=1)
    for other in (threaded, pooled):
        pd.testing.assert_frame_equal(ref[cols], other.table[cols])


def test_outputs_and_replay_commands(small, tmp_path):
    out = tmp_path / "res.csv"
    res = run_sweep(small, workers=1, limit=6, progress=False, out=out, write_cases="all")
    assert out.exists() and (tmp_path / "summary.txt").exists()
    table = pd.read_csv(out)
    assert list(table.case) == list(range(6))
    assert sorted(res.case_files) == list(range(6))
    from poso_sim.sweep import replay_command

    cmd = replay_command(small, res.case_files[4], small.case(4).seed)
    assert cmd == f"poso-sim run {res.case_files[4]} --seed {small.case(4).seed} --stub"
    pq = run_sweep(small, workers=1, limit=3, progress=False, out=tmp_path / "dir")
    assert (tmp_path / "dir" / "results.parquet").exists()
    assert pd.read_parquet(tmp_path / "dir" / "results.parquet").shape[0] == 3
    assert pq.case_files == {}  # no failing case, nothing written


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_sweep(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SMALL.replace("cases: 40", "cases: 5"))
    rc = cli_main(["sweep", str(f), "--workers", "1", "--out", str(tmp_path / "o"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["cases"] == 5 and data["violations"] == 0
    rc = cli_main(["sweep", str(f), "--workers", "1", "--out", str(tmp_path / "m"), "--no-progress",
                   "--mutation", "accept_unverified", "--case", "1"])
    cap = capsys.readouterr()
    assert rc == 1 and "replay with" in cap.err and "--case 1 --mutation accept_unverified" in cap.err
    assert cli_main(["sweep", "--list"]) == 0
    assert "campaign" in capsys.readouterr().out
    rc = cli_main(["sweep", str(f), "--case", "2", "--write-case", str(tmp_path / "c2.yaml")])
    assert rc == 0 and "poso-sim run" in capsys.readouterr().out
    rc = cli_main(["run", str(tmp_path / "c2.yaml"), "--stub", "--json", "--seed", str(parse_sweep(f.read_text()).case(2).seed)])
    assert rc == 0 and json.loads(capsys.readouterr().out)["executed"]["label"] == "optimal"
    assert cli_main(["sweep", "nope-such-sweep"]) == 2
    assert "no such sweep" in capsys.readouterr().err


def test_cli_sweep_ends_its_process_once_flushed(tmp_path):
    """As the process's command, `sweep` ends the process once its report and files are written (no atexit, no
    teardown), on one worker and on a pool; its exit status and outputs are those of `main(argv)`."""
    import subprocess
    import sys

    f = tmp_path / "s.yaml"
    f.write_text(SMALL.replace("cases: 40", "cases: 4"))
    for workers in ("1", "2"):
        out_dir = tmp_path / f"o{workers}"
        head = ("import atexit, sys\n"
                "atexit.register(lambda: print('teardown', file=sys.stderr))\n"
                "from poso_sim.cli import main\n"
                f"sys.argv = ['poso-sim', 'sweep', {str(f)!r}, '--workers', {workers!r}, '--out', {str(out_dir)!r}, '--json']\n"
                "sys.exit(main())\n")
        run = subprocess.run([sys.executable, "-c", head], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and "teardown" not in run.stderr, run.stderr
        data = json.loads(run.stdout)
        assert data["cases"] == 4 and data["violations"] == 0
        assert len(pd.read_parquet(out_dir / "results.parquet")) == 4 and (out_dir / "summary.txt").read_text()


def test_every_behaviour_kind_is_generated():
    camp = resolve_sweep("campaign")
    seen = set()
    for c in camp.iter_cases(200):
        for opts in c.scenario.behaviours.values():
            seen |= set(opts)
    assert seen == set(BEHAVIOUR_KINDS)


def test_parquet_round_trip(small_result, tmp_path):
    from poso_sim.sweep import save_table

    p = save_table(small_result.table, tmp_path / "t.parquet")
    back = pd.read_parquet(p)
    assert back.shape == small_result.table.shape


def test_tables_without_pandas_match_pandas(small, tmp_path):
    """The report's summary text and the Parquet files are made without pandas; they are what pandas makes of the
    same rows (`to_string`, `to_parquet`): the same text, column types, nulls and values read back."""
    import pyarrow.parquet as pq

    from poso_sim.sweep.campaign import _save_rows, _text_table, format_report, save_table

    res = run_sweep(small, workers=1, limit=8, progress=False, mutation="verifier_accepts_all")
    assert res.n_violations > 0 and any(v["height"] is None for v in res.violation_rows)
    assert _text_table(res.summary_records()) == res.summary().to_string(index=False)
    assert res.summary_records() == res.summary().to_dict(orient="records")
    wide = [{"a": "x", "b": 12345, "c": -3}, {"a": "yyyyyy", "b": 0, "c": 7}]
    assert _text_table(wide) == pd.DataFrame(wide).to_string(index=False)
    assert f"{int(res.table.messages.sum()):,}" in format_report(res)
    odd = [{"i": 1, "f": 0.5, "b": True, "s": "é", "n": None, "m": 2},
           {"i": 2, "f": float("nan"), "b": None, "s": None, "n": None, "m": None},
           {"i": -3, "f": 2, "b": False, "s": "", "n": None, "m": 4}]
    for name, rows, cols in (("rows", res.rows, None), ("violations", res.violation_rows, list(res.violations.columns)),
                             ("odd", odd, None)):
        ours, theirs = tmp_path / f"{name}.parquet", tmp_path / f"{name}-pandas.parquet"
        _save_rows(rows, cols, ours)
        save_table(pd.DataFrame(rows, columns=cols), theirs)
        assert pq.read_schema(ours).remove_metadata().equals(pq.read_schema(theirs).remove_metadata()), name
        pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(theirs))


def test_stub_sweep_command_imports_no_pandas(tmp_path):
    """A stub sweep writes its Parquet table and report without importing pandas (0.4 s of every process)."""
    import subprocess
    import sys

    f = tmp_path / "s.yaml"
    f.write_text(SMALL.replace("cases: 40", "cases: 3"))
    code = ("import sys\nfrom poso_sim.cli import main\n"
            f"rc = main(['sweep', {str(f)!r}, '--workers', '1', '--no-progress', '--out', {str(tmp_path / 'o')!r}])\n"
            "print(rc, 'pandas' in sys.modules, 'concurrent.futures.process' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip().splitlines()[-1] == "0 False False", run.stderr
    assert len(pd.read_parquet(tmp_path / "o" / "results.parquet")) == 3


@pytest.mark.slow
def test_full_campaign_zero_violations(tmp_path):
    res = run_sweep("campaign", workers=2, progress=False, out=tmp_path)
    assert len(res.table) >= 1000
    assert res.n_violations == 0, res.violations.head(20).to_string()
    assert res.table.N.min() == 4 and res.table.N.max() == 15


@pytest.mark.slow
def test_full_campaign_catches_broken_rule(tmp_path):
    res = run_sweep("campaign", workers=2, progress=False, out=tmp_path, mutation="accept_unverified")
    assert res.n_violations > 0 and len(res.failing_cases) > 100



