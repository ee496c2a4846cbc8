"""A small sweep on real payloads: cached Manchester solutions and the KKT certificate, memoised by digest."""

from __future__ import annotations

import pytest

from poso_sim.sweep import PayloadDescriptor, parse_sweep, run_sweep

pytestmark = pytest.mark.solver

SWEEP = """
name: real-small
cases: 6
seed: 3
payloads: real
parameters:
  delegates: {randint: [4, 6]}
  dishonest: {randint: [1, max]}
  leader_dishonest: 1.0
  behaviours: [follower_error, follower_feasible, forged_multipliers, equivocate, follower_collusion, follower_trick_error]
  loss: [0.0, 0.05]
"""


def test_real_payload_descriptor_verifies_once():
    desc = PayloadDescriptor.prepare("real")
    verdicts = {d: ok for d, ok, _, _ in desc.verdicts}
    # the optimum is accepted, with its own multipliers and with forged ones (the certificate judges the point);
    # the tampered and the feasible-restricted plans are rejected
    assert len(verdicts) == 4 and sum(verdicts.values()) == 2
    assert len({round(cost, 6) for _, ok, cost, _ in desc.verdicts if ok}) == 1  # one dispatch: the optimum


def test_small_real_sweep(tmp_path):
    spec = parse_sweep(SWEEP, "<real>")
    res = run_sweep(spec, workers=2, progress=False, out=tmp_path, write_cases="all")
    assert res.n_violations == 0, res.violations.to_string()
    assert res.table.executed.str.split("|").apply(lambda xs: all(x == "optimal" for x in xs)).any()
    cmd = res.replay_commands()
    assert cmd == {}
    from poso_sim.sweep import replay_command

    line = replay_command(spec, res.case_files[0], spec.case(0).seed)
    assert "--stub" not in line and line.startswith("poso-sim run ")
