"""Trace records, canonical export, digest, DataFrame, and cross-process determinism."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poso_sim.errors import ConfigError
from poso_sim.sim import FIELDS, Network, Trace
from poso_sim.sim.demo import demo_scenario
from poso_sim.sim.pytest_plugin import virtual_time


@virtual_time
async def test_records_have_all_fields_and_user_events():
    net = Network(["A", "B"], latency=0.5, seed=0)
    net.node("A").send("B", object(), kind="k", size=3, summary="s")
    net.node("B").record("hello", {"n": 1})
    await net.idle()
    recs = list(net.trace)
    assert [tuple(r) for r in recs] == [FIELDS] * 3
    assert [r["seq"] for r in recs] == [0, 1, 2]
    send, user, deliver = recs
    assert send == {"seq": 0, "t": 0.0, "ev": "send", "src": "A", "dst": "B", "kind": "k", "msg_id": 0, "size": 3,
                    "reason": None, "data": "s"}
    assert user["ev"] == "user" and user["kind"] == "hello" and user["data"] == {"n": 1} and user["src"] == "B"
    assert deliver["ev"] == "deliver" and deliver["t"] == 0.5 and deliver["msg_id"] == 0


def test_canonical_jsonl_digest_and_dataframe(tmp_path):
    net = demo_scenario(seed=2, rounds=30)
    text = net.trace.to_jsonl(tmp_path / "trace.jsonl")
    assert (tmp_path / "trace.jsonl").read_text() == text
    lines = text.splitlines()
    assert len(lines) == len(net.trace)
    for line in lines[:50]:
        obj = json.loads(line)
        assert list(obj) == sorted(FIELDS)
        assert json.dumps(obj, sort_keys=True, separators=(",", ":")) == line
    assert net.trace.digest() == hashlib.sha256(text.encode()).hexdigest()
    df = net.trace.to_dataframe()
    assert list(df.columns) == list(FIELDS) and len(df) == len(net.trace)
    assert set(df["ev"]) == {"send", "deliver", "drop", "timer", "fault", "user"}
    assert df["t"].is_monotonic_increasing
    assert df["seq"].tolist() == list(range(len(df)))
    reasons = set(df.loc[df.ev == "drop", "reason"])
    assert {"loss:loss0", "crash:n05", "partition:partition4"} <= reasons


@virtual_time
async def test_disabled_events_are_not_recorded_and_bad_data_is_reported():
    net = Network(["A", "B"], latency=0.1, seed=0, trace=Trace(events=["deliver", "user"]))
    net.node("A").send("B", 1)
    await net.idle()
    assert [r["ev"] for r in net.trace] == ["deliver"]
    net.record("bad", {1, 2})
    with pytest.raises(ConfigError, match="trace record 1: data is not JSON-encodable"):
        net.trace.digest()


def test_same_seed_same_digest_different_seed_different_digest():
    a = demo_scenario(seed=5, rounds=20).trace.digest()
    b = demo_scenario(seed=5, rounds=20).trace.digest()
    c = demo_scenario(seed=6, rounds=20).trace.digest()
    assert a == b != c


def test_determinism_across_processes_and_hash_seeds():
    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-m", "poso_sim.sim.demo", "--seed", "9", "--rounds", "30"],
            env=env, capture_output=True, text=True, check=True, timeout=120,
        )
        digests.append(json.loads(out.stdout)["digest"])
    assert digests[0] == digests[1]
    assert digests[0] == demo_scenario(seed=9, rounds=30).trace.digest()


_SCALARS = st.one_of(st.none(), st.text(max_size=6), st.integers(-5, 10**12), st.booleans(),
                     st.floats(allow_nan=False, allow_infinity=False))
_DATA = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.sampled_from(["send", "deliver", "drop", "timer", "user"]),
                          st.one_of(st.none(), st.text(max_size=5)), st.one_of(st.none(), st.text(max_size=5)),
                          st.one_of(st.none(), st.text(max_size=5)), st.one_of(st.none(), st.integers(0, 10**9)),
                          st.one_of(st.none(), st.integers(0, 99), st.booleans()), st.one_of(st.none(), st.text(max_size=8)),
                          _DATA), max_size=12))
def test_canonical_lines_are_the_json_encoders_text(records):
    """The direct formatting of plain records gives exactly the text of the sorted-keys JSON encoder."""
    tr = Trace()
    for rec in records:
        tr.record(*rec)
    enc = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode
    assert list(tr.lines()) == [enc(dict(zip(FIELDS, row))) for row in tr._rows]


def test_non_finite_data_is_refused_by_the_direct_path_too():
    tr = Trace()
    tr.record(1.0, "send", "A", "B", "k", 1, 0, None, "ok")
    tr.record(2.0, "user", "A", None, "x", None, None, None, {"v": float("nan")})
    with pytest.raises(ConfigError, match="trace record 1"):
        list(tr.lines())
