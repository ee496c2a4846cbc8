"""KKT certificate on small NLPs: HS071, a degenerate toy (zero-flow 'line', doubly fixed variable), integrity
reasons, the mapping of multipliers from a reformulated model, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types

import numpy as np
import pyomo.environ as pe
import pytest

from poso_sim.kkt import Certificate, Tolerances, checker_for, map_multipliers, to_shared, verify
from poso_sim.kkt.cli import add_verify_parser, main
from poso_sim.nlp import compile_nlp
from poso_sim.solvers import IpoptBackend, Solution, save_solution
from test_nlp import hs071


def solve(nlp, **opts) -> Solution:
    r = IpoptBackend().solve(nlp, nlp.x0, options=opts or None)
    assert r.status == "optimal"
    return Solution(
        x=r.x, y=r.y, z_L=r.z_L, z_U=r.z_U, x_names=nlp.x_names, row_names=nlp.row_names, variant="true",
        case="toy", cost=nlp.f(r.x), objective=r.objective, status=r.status, fingerprint=nlp.fingerprint,
    )


def degenerate_toy() -> pe.ConcreteModel:
    """A 'line' without flow (v*l == p^2 at p = l = 0) and a variable fixed by its bound and an equality."""
    m = pe.ConcreteModel()
    m.v = pe.Var(bounds=(1, 2), initialize=1.2)
    m.l = pe.Var(bounds=(0, None), initialize=0.5)
    m.p = pe.Var(bounds=(0, None), initialize=0.5)
    m.w = pe.Var(bounds=(0, 5), initialize=1.0)
    m.s = pe.Var(initialize=0.0)
    m.obj = pe.Objective(expr=3 * m.p + m.l + (m.v - 1.5) ** 2 + 2 * m.w + (m.s - 1) ** 2)
    m.soc = pe.Constraint(expr=m.v * m.l - m.p**2 == 0)
    m.fix = pe.Constraint(expr=m.w == 0)
    m.cap = pe.Constraint(expr=m.s + m.p <= 4)
    return m


@pytest.fixture(scope="module")
def hs():
    nlp = compile_nlp(hs071())
    return nlp, solve(nlp)


@pytest.fixture(scope="module")
def toy():
    nlp = compile_nlp(degenerate_toy())
    return nlp, solve(nlp)


def test_hs071_accepted_with_margin(hs) -> None:
    nlp, sol = hs
    c = verify(nlp, sol)
    assert isinstance(c, Certificate)
    assert c.accepted and not c.found_multipliers and c.reasons == []
    assert c.cost == pytest.approx(17.0140173, abs=1e-6)
    tol = Tolerances()
    assert c.primal_residual < tol.primal / 10
    assert c.dual_residual < tol.dual / 10
    assert c.complementarity < tol.complementarity / 10
    assert c.sign_violation == 0.0
    assert c.seconds > 0 and set(c.timings) >= {"integrity", "evaluation", "residuals"}
    d = c.to_dict()
    json.dumps(d)
    assert d["accepted"] is True and d["verify_seconds"] == c.seconds
    assert "accepted" in c._repr_html_()


def test_integrity_reasons_named(hs) -> None:
    nlp, sol = hs
    cases = {
        "fingerprint mismatch": sol.replace(fingerprint="0" * 64),
        "length mismatch": sol.replace(x=np.r_[sol.x, 1.0], z_L=np.r_[sol.z_L, 0], z_U=np.r_[sol.z_U, 0], x_names=()),
        "non-finite values": sol.replace(y=np.array([np.nan, sol.y[1]])),
    }
    for reason, bad in cases.items():
        c = verify(nlp, bad)
        assert not c.accepted and not c.integrity_ok
        assert any(r.startswith(reason) for r in c.reasons), (reason, c.reasons)
    inf = verify(nlp, sol.replace(x=np.r_[sol.x[:3], np.inf]))
    assert any(r.startswith("non-finite values: x") for r in inf.reasons)
    c = verify(nlp, sol, claimed_digest="ab" * 32)
    assert not c.accepted and c.reasons[0].startswith("digest mismatch: claimed")
    # a cached digest that no longer matches the arrays (content swapped after hashing)
    forged = sol.replace()
    _ = forged.digest
    object.__setattr__(forged, "x", sol.x + 1e-3)
    c = verify(nlp, forged)
    assert not c.accepted and any(r.startswith("digest mismatch: recorded") for r in c.reasons)
    c = verify(nlp, sol.replace(x_names=list(reversed(nlp.x_names))))
    assert not c.accepted and c.reasons[0].startswith("variable order mismatch")


def test_perturbed_primal_rejected(hs) -> None:
    nlp, sol = hs
    c = verify(nlp, sol.replace(x=sol.x + np.array([0, 1e-4, 0, 0])))
    assert not c.accepted and c.reasons[0].startswith("primal infeasibility")
    assert c.worst[0]["measure"] == "primal" and c.worst[0]["name"] in ("c1", "c2")


def test_hs071_unique_multipliers_need_the_decision_and_signs_checked(hs) -> None:
    nlp, sol = hs
    # bound multipliers re-derived from stationarity (they are a function of x and y)
    c = verify(nlp, sol.with_multipliers(z_L=np.zeros(4)))
    assert c.accepted and c.found_multipliers and c.decided_by == "sanitised" and c.received["dual_residual"] > 1e-3
    # without the decision the same claim fails on stationarity at x[1], which sits at its lower bound
    c = verify(nlp, sol.with_multipliers(z_L=np.zeros(4)), Tolerances(decide=False))
    assert not c.accepted and "stationarity" in c.reasons[0] and "x[1]" in c.reasons[0]
    # a wrong-signed bound multiplier is a sign violation
    zl = sol.z_L.copy()
    zl[nlp.var_index("x[2]")] = -0.5
    c = verify(nlp, sol.with_multipliers(z_L=zl), Tolerances(decide=False))
    assert not c.accepted and any(r.startswith("multiplier sign") for r in c.reasons)
    # no multipliers at all, or wrong ones: the point is a KKT point; the multipliers recomputed from x alone (least
    # squares on the active set) are HS071's unique ones, the same whatever was sent
    found = []
    for y in (np.zeros(2), np.array([5.0, -3.0]), np.array([1e9, 1e9])):
        c = verify(nlp, sol.with_multipliers(y=y, z_L=np.zeros(4), z_U=np.zeros(4)))
        assert c.accepted and c.found_multipliers and c.decided_by == "recomputed", (y, c.reasons)
        found.append(checker_for(nlp).search.decide(np.asarray(sol.x), y, checker_for(nlp).evaluate(np.asarray(sol.x)), Tolerances()).y)
        np.testing.assert_allclose(found[-1], sol.y, rtol=1e-6, atol=1e-9)
        assert np.array_equal(found[-1], found[0])
        assert c.dual_residual <= Tolerances().dual and c.complementarity <= Tolerances().complementarity


def test_degenerate_toy_any_valid_multipliers(toy) -> None:
    nlp, sol = toy
    iv = {nm: nlp.var_index(nm) for nm in ("v", "l", "p", "w", "s")}
    ir = {nm: nlp.row_index(nm) for nm in ("soc", "fix", "cap")}
    assert sol.x[iv["p"]] == pytest.approx(0, abs=1e-6) and sol.x[iv["l"]] == pytest.approx(0, abs=1e-6)
    c = verify(nlp, sol)
    assert c.accepted and not c.found_multipliers
    v = sol.x[iv["v"]]
    # another valid choice: sigma + 0.3 with z_L(l) + 0.3 v; y_fix + 1 with z_L(w) + 1
    y = sol.y.copy()
    zl = sol.z_L.copy()
    y[ir["soc"]] += 0.3
    zl[iv["l"]] += 0.3 * v
    y[ir["fix"]] += 1.0
    zl[iv["w"]] += 1.0
    c = verify(nlp, sol.with_multipliers(y=y, z_L=zl), Tolerances(decide=False))
    assert c.accepted, c.reasons
    # the same row multipliers with stale bound multipliers: decided by re-deriving z from stationarity
    c = verify(nlp, sol.with_multipliers(y=y))
    assert c.accepted and c.found_multipliers and c.decided_by == "sanitised"
    # a sigma for which no valid z_L(l) exists (z_L would be negative): the multiplier LP finds valid ones
    y2 = sol.y.copy()
    y2[ir["soc"]] = -5.0
    c = verify(nlp, sol.with_multipliers(y=y2))
    assert c.accepted and c.found_multipliers and c.decided_by in ("recomputed", "local-lp"), c.reasons
    # a tiny multiplier on the inactive inequality (s + p <= 4 has slack 3): clipped to its cap, accepted
    y3 = sol.y.copy()
    y3[ir["cap"]] = 1e-10
    c = verify(nlp, sol.with_multipliers(y=y3), Tolerances(decide=False))
    assert c.accepted  # 1e-10 * 3 is within the complementarity tolerance already
    y3[ir["cap"]] = 1e-3
    assert not verify(nlp, sol.with_multipliers(y=y3), Tolerances(decide=False)).accepted
    c = verify(nlp, sol.with_multipliers(y=y3))
    assert c.accepted and c.found_multipliers and c.decided_by in ("sanitised", "recomputed", "local-lp")
    assert c.dual_residual <= Tolerances().dual / 10 and c.complementarity <= Tolerances().complementarity / 10
    c = verify(nlp, sol.with_multipliers(y=y2), Tolerances(decide=False))
    assert not c.accepted and "at l" in " ".join(c.reasons)


def test_degenerate_toy_rejects_non_kkt_points(toy) -> None:
    nlp, sol = toy
    ip, is_ = nlp.var_index("p"), nlp.var_index("s")
    # a different feasible point (s moved off its optimum): no multipliers make it stationary
    x = sol.x.copy()
    x[is_] += 0.01
    c = verify(nlp, sol.replace(x=x))
    assert not c.accepted and "stationarity" in c.reasons[0] and c.reasons[0].endswith("at s")
    # the whole multiplier LP of this small problem is infeasible: proved, not a budget verdict
    assert c.decided_by == "lp" and any("no valid multipliers exist" in r for r in c.reasons), c.reasons
    # the same point with zero multipliers: the proof is kept per point, a lookup decides
    z = verify(nlp, sol.replace(x=x).with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n)))
    assert not z.accepted and z.decided_by == "lp" and z.decision.get("cached") is True
    # flow on the line with the current unchanged: infeasible
    x = sol.x.copy()
    x[ip] = 0.1
    c = verify(nlp, sol.replace(x=x))
    assert not c.accepted and "soc" in c.reasons[0]


def reformulated_hs071() -> pe.ConcreteModel:
    """HS071 plus x5 fixed by an equality; then presolved: x5 substituted, x1 = exp(u1), c2 scaled by 1/2."""
    m = pe.ConcreteModel()
    m.u1 = pe.Var(bounds=(0, math.log(5)), initialize=0.0)
    m.x = pe.Var([2, 3, 4], bounds=(1, 5), initialize={2: 5, 3: 5, 4: 1})
    x1 = pe.exp(m.u1)
    x5 = 2.0
    m.obj = pe.Objective(expr=x1 * m.x[4] * (x1 + m.x[2] + m.x[3]) + m.x[3] + (x5 - 1) * m.x[2])
    m.c1 = pe.Constraint(expr=x1 * m.x[2] * m.x[3] * m.x[4] >= 25)
    m.c2 = pe.Constraint(expr=0.5 * (x1**2 + m.x[2] ** 2 + m.x[3] ** 2 + m.x[4] ** 2) == 20)
    return m


def canonical_hs071_plus() -> pe.ConcreteModel:
    m = hs071()
    m.x5 = pe.Var(bounds=(0, 10), initialize=1.0)
    m.obj.deactivate()
    m.obj2 = pe.Objective(expr=m.x[1] * m.x[4] * (m.x[1] + m.x[2] + m.x[3]) + m.x[3] + (m.x5 - 1) * m.x[2])
    m.fix5 = pe.Constraint(expr=m.x5 - 2 == 0)
    return m


def test_multipliers_from_reformulated_model_after_mapping() -> None:
    canon = compile_nlp(canonical_hs071_plus())
    ref = compile_nlp(reformulated_hs071())
    r = IpoptBackend().solve(ref, ref.x0)
    assert r.status == "optimal"
    # primal map: x1 = exp(u1), x5 = 2 (the presolved value)
    x = np.zeros(canon.n)
    x[canon.var_index("x[1]")] = math.exp(r.x[ref.var_index("u1")])
    for i in (2, 3, 4):
        x[canon.var_index(f"x[{i}]")] = r.x[ref.var_index(f"x[{i}]")]
    x[canon.var_index("x5")] = 2.0
    # naive: take the multipliers as they are (c2 unscaled, fixing row 0, bound multipliers of u1 as of x1)
    y_raw = np.zeros(canon.m)
    y_raw[canon.row_index("c1")] = r.y[ref.row_index("c1")]
    y_raw[canon.row_index("c2")] = r.y[ref.row_index("c2")]
    zl = np.zeros(canon.n)
    zl[canon.var_index("x[1]")] = r.z_L[ref.var_index("u1")]
    naive = Solution(x=x, y=y_raw, z_L=zl, z_U=np.zeros(canon.n), fingerprint=canon.fingerprint, variant="true")
    c = verify(canon, naive, Tolerances(decide=False))
    assert not c.accepted
    # mapped: rows kept carry over (times the factor the row was scaled by), eliminated rows are unknown (NaN)
    y_known = np.full(canon.m, np.nan)
    y_known[canon.row_index("c1")] = r.y[ref.row_index("c1")]
    y_known[canon.row_index("c2")] = 0.5 * r.y[ref.row_index("c2")]
    y, zl, zu = map_multipliers(canon, x, y_known)
    # within the stationarity tolerance (5e-6 of the column scale) of the exact value -x2
    assert y[canon.row_index("fix5")] == pytest.approx(-x[canon.var_index("x[2]")], abs=2e-5)
    mapped = Solution(x=x, y=y, z_L=zl, z_U=zu, fingerprint=canon.fingerprint, variant="true")
    c = verify(canon, mapped, Tolerances(decide=False))
    assert c.accepted, c.reasons


def test_to_shared_drops_extra_rows_and_keeps_x(toy) -> None:
    nlp, sol = toy
    m = degenerate_toy()
    m.extra = pe.Constraint(expr=m.s >= -10)
    own = compile_nlp(m)
    r = IpoptBackend().solve(own, own.x0)
    own_sol = Solution(x=r.x, y=r.y, z_L=r.z_L, z_U=r.z_U, x_names=own.x_names, row_names=own.row_names,
                       variant="feasible", fingerprint=own.fingerprint)
    assert verify(nlp, own_sol).reasons[0].startswith("fingerprint mismatch")
    shared = to_shared(own_sol, nlp, own)
    assert shared.fingerprint == nlp.fingerprint and shared.y.size == nlp.m and shared.variant == "feasible"
    np.testing.assert_array_equal(shared.x, own_sol.x)
    assert verify(nlp, shared).accepted  # the extra row is inactive: the plan is also optimal for the shared problem


def test_cli_exit_codes(tmp_path, hs, monkeypatch, capsys) -> None:
    nlp, sol = hs
    from poso_sim.nlp import problems

    monkeypatch.setattr(problems, "load_problem",
                        lambda case="x", variant=None: types.SimpleNamespace(nlp=nlp, from_disk=True))
    good = tmp_path / "good.sol"
    save_solution(sol, good)
    assert main([str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("accepted", "verify_seconds", "cost", "reasons", "worst", "primal_residual", "dual_residual",
                "complementarity"):
        assert key in out
    assert out["accepted"] is True and out["verify_seconds"] < 1
    bad = tmp_path / "bad.sol"
    save_solution(sol.replace(x=sol.x + 1e-3), bad)
    assert main([str(bad)]) == 1
    assert "REJECTED" in capsys.readouterr().out
    junk = tmp_path / "junk.sol"
    junk.write_bytes(b"\x89PNG not a solution")
    assert main([str(junk), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.sol" in err and "Traceback" not in err
    assert main([str(tmp_path / "missing.sol")]) == 2
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    p = add_verify_parser(sub)
    assert p.parse_args([str(good), "--json"]).json is True


def test_module_entry_point_unreadable(tmp_path) -> None:
    junk = tmp_path / "x.sol"
    junk.write_text("{}")
    r = subprocess.run([sys.executable, "-m", "poso_sim.kkt.cli", str(junk), "--json"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0


def test_recomputation_least_squares_solves_its_normal_equations() -> None:
    """The recomputation's weighted least squares (one quasi-definite LDL^T on the problem's fixed pattern, the
    ordering reused): its y satisfies the normal equations J S^-1 (grad + J^T y) + T^-1 y = 0, for new weights and
    values on the same pattern (explicit zeros included), against a dense solve."""
    from poso_sim.kkt.decide import _Factor, _LeastSquares

    rng = np.random.default_rng(3)
    n, m = 40, 25
    dense = (rng.random((m, n)) < 0.15) * rng.standard_normal((m, n))
    jr, jc = np.nonzero(dense)
    ls = _LeastSquares(n, m, jr, jc)
    factor = _Factor()
    for trial in range(4):
        jv = rng.standard_normal(jr.size)
        if trial == 1:
            jv[:5] = 0.0  # a value may be zero where the pattern has an entry
        jmat = np.zeros((m, n))
        jmat[jr, jc] = jv
        dc = np.exp(rng.uniform(-2, 8, n))
        dr = np.exp(rng.uniform(-12, 4, m))
        grad = rng.standard_normal(n)
        y = ls.solve(dc, jv, dr, grad, factor)
        assert y is not None
        normal = jmat @ ((grad + jmat.T @ y) / dc) + dr * y
        assert np.abs(normal).max() < 1e-8 * max(1.0, np.abs(grad).max())
        expect = np.linalg.solve(jmat @ np.diag(1 / dc) @ jmat.T + np.diag(dr), -jmat @ (grad / dc))
        np.testing.assert_allclose(y, expect, rtol=1e-6, atol=1e-9)
