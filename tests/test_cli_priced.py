"""`poso-sim solve` on a problem with priced rows writes the proposal a leader sends: the settlement prices on the
priced rows, so `poso-sim verify` of the file accepts it even where the solver's own multipliers sit elsewhere in a
degenerate price interval (the night hour's heat prices)."""

from __future__ import annotations

import json

import pytest

from poso_sim.cli import main


@pytest.mark.solver
@pytest.mark.parametrize("case", ["trading-night", "trading"])
def test_solve_writes_the_settled_proposal_and_verify_accepts_it(case, tmp_path, capsys) -> None:
    out = tmp_path / "plan.sol"
    assert main(["solve", "--case", case, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in summary["prices"]}
    assert set(rows) == {"elec_balance", "heat_balance[1]", "heat_balance[2]", "heat_balance[3]"}
    for r in rows.values():
        assert r["low"] <= r["settlement"] <= r["high"]
        assert r["settlement"] == pytest.approx((r["low"] + r["high"]) / 2, rel=1e-9, abs=1e-6)
    assert main(["verify", str(out), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["accepted"] is True
