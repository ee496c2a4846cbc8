"""The certificate against clever leaders and for honest ones (issue: accept every honest optimum whatever solver
made it, stay sharp against dearer plans, bounded cost).

* dearer plans (tampered objective, restricted plan, biased leaders from the staged pipeline) are rejected under
  every multiplier attack: their own, zeros, random, huge, another plan's, the best multipliers an exact LP finds,
  and that LP fit inflated along null vectors of J^T;
* honest optima reached by second routes (CasADi's own Ipopt interface at tol 1e-6 and 1e-8, the project backend
  with another objective scaling and barrier strategy at tol 1e-8; other starts of the pipeline are in
  test_kkt_manchester.py), clipped to bounds or shifted off them by 1e-6, are accepted;
* the cost of a verdict is bounded by a deterministic LP budget whatever is sent.

Figures: docs/certificate.md (separation table) and docs/benchmarks.md (timings).
"""

from __future__ import annotations

import re
import resource

import numpy as np
import pytest
import scipy.linalg as sla

from poso_sim.common import OK_STATUSES
from poso_sim.kkt import DEFAULT_TOLERANCES, Tolerances, checker_for, verify
from poso_sim.kkt.decide import LOCAL_MAX_ROWS, min_stationarity

pytestmark = pytest.mark.solver

TOL = DEFAULT_TOLERANCES
GAP = 1e-3  # plans dearer than this (0.1 %) must be rejected


@pytest.fixture(scope="module")
def ms(manchester_solutions):
    return manchester_solutions


def _hour(name: str) -> str | None:
    m = re.search(r"\[([^\]]*)\]$", name)
    return m.group(1).split(",")[-1] if m else None


def jt_null_vectors(nlp, x, hours=(5, 17)) -> list[np.ndarray]:
    """Row-multiplier vectors y with J(x)^T y = 0 (each hour's heat-network balance rows cancel): adding any
    multiple changes no stationarity residual but inflates every term |J_ij y_i| of the columns they touch."""
    jac = nlp.jac_sparse(x).tocsr()
    eq = nlp.g_lb == nlp.g_ub
    out = []
    for t in hours:
        rows = np.array([i for i, nm in enumerate(nlp.row_names) if eq[i] and _hour(nm) == str(t)])
        block = jac[rows].toarray()
        block = block[:, np.abs(block).sum(axis=0) > 0]
        _u, s, vt = sla.svd(block.T, full_matrices=False)
        assert s[-1] < 1e-12 * s[0]
        y = np.zeros(nlp.m)
        y[rows] = vt[-1]
        assert np.abs(jac.T @ y).max() < 1e-10
        out.append(y)
    return out


def attacks(nlp, plan, others, seed=0) -> dict:
    """Multiplier sets a leader could send with ``plan``'s x."""
    rng = np.random.default_rng(seed)
    n, m = nlp.n, nlp.m
    x = np.asarray(plan.x)
    chk = checker_for(nlp)
    # the whole multiplier LP by the dual simplex: an attack's multipliers (the lower bound is the slow test's job)
    t, y, zl, zu = min_stationarity(chk, x, method="simplex")
    out = {
        "own": plan,
        "zeros": plan.with_multipliers(y=np.zeros(m), z_L=np.zeros(n), z_U=np.zeros(n)),
        "random": plan.with_multipliers(y=rng.standard_normal(m), z_L=rng.random(n), z_U=rng.random(n)),
        "huge": plan.with_multipliers(y=1e12 * rng.standard_normal(m), z_L=1e12 * rng.random(n), z_U=np.zeros(n)),
        "lp-best": plan.with_multipliers(y=y, z_L=zl, z_U=zu),
    }
    for k, o in enumerate(others):
        out[f"foreign{k}"] = plan.with_multipliers(y=o.y, z_L=o.z_L, z_U=o.z_U)
    for scale in (1e3, 1e8):
        yy = y + scale * sum(jt_null_vectors(nlp, x))
        out[f"lp-best+null*{scale:g}"] = plan.with_multipliers(y=yy, z_L=zl, z_U=zu)
    return out, t


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@pytest.mark.parametrize("label", ["tampered", "feasible"])
def test_dearer_plans_rejected_under_every_multiplier_attack(ms, label) -> None:
    nlp, plan, opt = ms["problem"], ms[label], ms["optimal"]
    assert (plan.cost - opt.cost) / opt.cost > GAP
    sets, _t = attacks(nlp, plan, [opt, ms["feasible" if label == "tampered" else "tampered"]])
    for name, claim in sets.items():
        c = verify(nlp, claim)
        assert not c.accepted, (label, name)
        assert c.reasons[0].startswith("stationarity"), (label, name, c.reasons)
        if name.startswith("lp-best"):  # inflating J^T's null space does not loosen the column scale
            assert c.dual_residual >= 10 * TOL.dual, (name, c.dual_residual)


def test_optimum_with_degenerate_or_stale_multipliers_accepted(ms) -> None:
    """Multipliers that are not the solver's but fit the optimum after clipping or a small LP are found."""
    nlp, opt = ms["problem"], ms["optimal"]
    # a small multiplier on an inactive CHPOutputLimit row: its product with the row's slack is 1e-3 $, a
    # hundred times the complementarity tolerance (the old least-squares check never zeroed such a row)
    chk = checker_for(nlp)
    g = nlp.g(opt.x)
    slack_u = np.where(np.isfinite(nlp.g_ub), nlp.g_ub - g, 0.0)
    rows = [i for i in nlp.row_indices("CHPOutputLimit") if slack_u[i] > 1.0]
    assert rows
    y = np.array(opt.y)
    y[rows[0]] = 1e-3 / slack_u[rows[0]]
    assert not verify(nlp, opt.with_multipliers(y=y), Tolerances(decide=False)).accepted
    c = verify(nlp, opt.with_multipliers(y=y))
    assert c.accepted and c.found_multipliers and c.received["complementarity"] > 10 * TOL.complementarity, c.reasons
    # the multiplier of a degenerate row (a zero-flow line's SOC row, or a zero-load node's fixing row) set to 0,
    # the bound multiplier of its variable left as it was: another valid split exists and is found
    from test_kkt_manchester import _degenerate_row

    row, _col = _degenerate_row(nlp, opt.x)
    y = np.array(opt.y)
    y[row] = 0.0 if abs(y[row]) > 1e-3 else 0.5
    assert not verify(nlp, opt.with_multipliers(y=y), Tolerances(decide=False)).accepted
    c = verify(nlp, opt.with_multipliers(y=y))
    assert c.accepted and c.found_multipliers, c.reasons


def test_verdict_cost_bounded_on_adversarial_inputs(ms) -> None:
    """Whatever multipliers come with whichever point: the LP stages stay within their deterministic budget (at
    most LOCAL_MAX_ROWS row multipliers, at most ``lp_iterations`` simplex iterations). CPU time per verdict is
    asserted loosely here (shared CI machines); docs/benchmarks.md has median/p99/max on this machine."""
    nlp = ms["problem"]
    rng = np.random.default_rng(7)
    cpu = []
    for label in ("optimal", "tampered", "feasible"):
        plan = ms[label]
        sets = {
            "zeros": plan.with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n)),
            "random": plan.with_multipliers(y=rng.standard_normal(nlp.m)),
            "huge": plan.with_multipliers(y=1e15 * rng.standard_normal(nlp.m)),
            "scaled": plan.with_multipliers(y=1.01 * np.asarray(plan.y)),
        }
        for other in ("optimal", "tampered", "feasible"):
            sets[other] = plan.with_multipliers(y=ms[other].y, z_L=ms[other].z_L, z_U=ms[other].z_U)
        for name, claim in sets.items():
            checker_for(nlp).search.cache.clear()
            c0 = _cpu()
            c = verify(nlp, claim)
            cpu.append(_cpu() - c0)
            for st in c.decision.get("local", []):
                assert st["cols"] <= LOCAL_MAX_ROWS + 1, (label, name, st)
            used = sum(st["iterations"] for st in c.decision.get("local", []))
            assert used <= TOL.lp_iterations, (label, name, used)
            if label != "optimal":
                assert not c.accepted, (label, name)
            else:  # the optimum is accepted whatever it is sent with (its multipliers are recomputed from x)
                assert c.accepted, (name, c.reasons, c.decision)
    assert np.median(cpu) < 0.1 and max(cpu) < 1.0, (np.median(cpu), max(cpu))


def test_verdict_is_a_function_of_the_message(ms) -> None:
    """The point cache changes no verdict: past the received multipliers the decision reads x alone, so the same x
    sent again (by a relay, or with other multipliers) gets the outcome any delegate computes afresh, at the cost
    of a lookup; and claims decided in any order get the same verdicts."""
    nlp, opt, fea, tam = ms["problem"], ms["optimal"], ms["feasible"], ms["tampered"]
    chk = checker_for(nlp)
    claims = [
        opt.with_multipliers(z_L=np.zeros(nlp.n)),  # fixable: bound multipliers missing
        opt.with_multipliers(y=fea.y, z_L=fea.z_L, z_U=fea.z_U),  # the optimum with another plan's multipliers
        opt.with_multipliers(y=np.zeros(nlp.m), z_L=np.zeros(nlp.n), z_U=np.zeros(nlp.n)),
        fea.with_multipliers(y=opt.y, z_L=opt.z_L, z_U=opt.z_U),  # a dearer plan, rejected on the budget
        fea,
        tam.with_multipliers(y=np.zeros(nlp.m)),
    ]

    def fresh(c):
        chk.search.cache.clear()
        return verify(nlp, c)

    cold = [fresh(c) for c in claims]
    chk.search.cache.clear()
    warm = [verify(nlp, c) for c in claims[::-1]][::-1]
    assert [c.accepted for c in cold] == [c.accepted for c in warm] == [True, True, True, False, False, False]
    assert [c.decided_by for c in cold] == [c.decided_by for c in warm]
    # the second claim on the optimum's x and the second on the restricted plan's x were answered from the cache
    assert warm[1].decision.get("cached") and warm[3].decision.get("cached")
    assert not cold[1].decision.get("cached")
    for a, b in zip(cold, warm):
        assert a.dual_residual == b.dual_residual and a.reasons == b.reasons


# -- plans that take solves: cached in the solution cache directory (probes/), slow on a cold cache -------------------

#: both sides of the 0.1 % gap: CHP 3 favoured by 0.005 (+0.11 %) or penalised (+0.002 %); the grid price raised
#: by 0.002 (+0.31 %) or lowered by 0.002 (+0.29 %, the subtlest dearer plan measured). Four staged solves on a cold
#: cache (~35 s each); docs/benchmarks.md has fifteen.
BIASED = [("P_CHP", 3, -0.005), ("P_CHP", 3, 0.005), ("P_grid", None, 0.002), ("P_grid", None, -0.002)]
#: the smallest margin (stationarity lower bound over the tolerance) the policy gives a dearer plan: 4.8x measured
#: for the lowered grid price (docs/certificate.md, "Tolerance policy"); the other dearer plans keep 10x or more
DEARER_MARGIN = 4.0
#: another backend at tol 1e-6, another scaling at tol 1e-8 (benchmarks: all of HONEST_ROUTES)
HONEST_TEST_ROUTES = ("casadi-tol1e-6", "cyipopt-objscale10-tol1e-8")


@pytest.fixture(scope="session")
def biased_plans():
    from _probes import as_solution, biased_plan
    from poso_sim.solvers.api import get_problem

    shared = get_problem("manchester", "true")[1]
    out = {}
    for comp, unit, b in BIASED:
        raw = biased_plan("manchester", b, unit=unit, component=comp)
        out[(comp, b)] = (raw, as_solution(shared, raw, f"{comp}{b:+g}"))
    return out


@pytest.mark.slow
def test_biased_leaders_rejected_above_the_gap(ms, biased_plans) -> None:
    """A unit bias on CHP 3 and a grid-price bias, on both sides: every plan more than 0.1 % dearer is rejected
    under its own multipliers, the exact decision, and the best multipliers there are (with a 10x margin)."""
    nlp, opt = ms["problem"], ms["optimal"]
    chk = checker_for(nlp)
    gaps = {}
    for key, (raw, sol) in biased_plans.items():
        assert raw.status in OK_STATUSES, key
        gap = (sol.cost - opt.cost) / opt.cost
        gaps[key] = gap
        if gap > GAP:
            assert not verify(nlp, sol, Tolerances(decide=False)).accepted, key
            c = verify(nlp, sol)
            assert not c.accepted, key
            t, y, zl, zu = min_stationarity(chk, np.asarray(sol.x), 10 * TOL.complementarity)
            assert t >= DEARER_MARGIN * TOL.dual, (key, t)
            if key != ("P_grid", -0.002):
                assert t >= 10 * TOL.dual, (key, t)
            assert not verify(nlp, sol.with_multipliers(y=y, z_L=zl, z_U=zu)).accepted, key
            # and still rejected with every tolerance the margin looser
            assert not verify(nlp, sol, TOL.scaled(DEARER_MARGIN)).accepted, key
    # the sweep reaches dearer plans, and plans on the cheap side of the switch
    assert max(gaps.values()) > GAP and min(gaps.values()) < GAP, gaps


#: leaders whose objective differed from the true one by 0.002 $/kWh on CHP 3 (both signs): plans within 0.002 %
#: of the optimum, whose multipliers are plausible but wrong for the true problem
NEAR_LEADERS = [("P_CHP", 3, 0.002), ("P_CHP", 3, -0.002)]


@pytest.fixture(scope="session")
def near_leaders():
    from _probes import as_solution, biased_plan
    from poso_sim.solvers.api import get_problem

    shared = get_problem("manchester", "true")[1]
    return {
        (comp, b): as_solution(shared, biased_plan("manchester", b, unit=unit, component=comp), f"{comp}{b:+g}")
        for comp, unit, b in NEAR_LEADERS
    }


@pytest.mark.slow
def test_near_leaders_points_judged_by_the_point(ms, near_leaders) -> None:
    """A leader whose CHP 3 price was 0.002 $/kWh lower ends at the true optimum's dispatch (743.9903 $; valid
    multipliers of the true problem leave a stationarity residual below 1e-8): its point is accepted whatever
    multipliers come with it - its own (those of its biased objective), zeros, the optimum's. The leader at +0.002
    lands 0.0015 % dearer, inside the 0.1 % the policy leaves open: its verdict is the same for every claim."""
    nlp, opt = ms["problem"], ms["optimal"]
    n, m = nlp.n, nlp.m
    chk = checker_for(nlp)
    for key, sol in near_leaders.items():
        claims = [sol, sol.with_multipliers(y=np.zeros(m), z_L=np.zeros(n), z_U=np.zeros(n)),
                  sol.with_multipliers(y=opt.y, z_L=opt.z_L, z_U=opt.z_U)]
        verdicts = set()
        for claim in claims:
            chk.search.cache.clear()
            c = verify(nlp, claim)
            verdicts.add(c.accepted)
            assert sum(st["iterations"] for st in c.decision.get("local", [])) <= TOL.lp_iterations
        assert len(verdicts) == 1, key
        if abs(sol.cost - opt.cost) / opt.cost < 1e-6:
            assert verdicts == {True}, key
            t, *_ = min_stationarity(chk, np.asarray(sol.x))
            assert t < TOL.dual / 100, (key, t)


@pytest.mark.slow
def test_optimum_accepted_whatever_multipliers_came_with_it(ms, biased_plans, near_leaders) -> None:
    """The true optimum sent with wrong but plausible multipliers: (a) those of the CHP-3 +/-0.002 and +/-0.005
    leaders, (b) a grid-price leader's, (c) zeros, (d) random, (e) 1.01x its own, plus the tampered and restricted
    plans' and huge ones. None of them passes as sent; every claim
    is accepted, by multipliers recomputed from x (the local LP finishing the degenerate entries), each re-checked
    in full, within the iteration budget and the same for every claim (the verdict is a function of the point)."""
    nlp, opt = ms["problem"], ms["optimal"]
    n, m = nlp.n, nlp.m
    rng = np.random.default_rng(7)
    foreign = {f"{comp}{b:+g}": sol for (comp, b), (_raw, sol) in biased_plans.items()}
    foreign.update({f"{comp}{b:+g}": sol for (comp, b), sol in near_leaders.items()})
    foreign.update(tampered=ms["tampered"], feasible=ms["feasible"])
    claims = {f"(a/b) {k}'s": opt.with_multipliers(y=s.y, z_L=s.z_L, z_U=s.z_U) for k, s in foreign.items()}
    claims["(c) zeros"] = opt.with_multipliers(y=np.zeros(m), z_L=np.zeros(n), z_U=np.zeros(n))
    claims["(d) random"] = opt.with_multipliers(y=rng.standard_normal(m), z_L=rng.random(n), z_U=rng.random(n))
    claims["(d) huge"] = opt.with_multipliers(y=1e12 * rng.standard_normal(m))
    claims["(e) 1.01x"] = opt.with_multipliers(y=1.01 * np.asarray(opt.y))
    assert "(a/b) P_CHP+0.002's" in claims and "(a/b) P_grid+0.002's" in claims
    chk = checker_for(nlp)
    stages = set()
    for name, claim in claims.items():
        assert not verify(nlp, claim, Tolerances(decide=False)).accepted, name
        chk.search.cache.clear()
        c = verify(nlp, claim)
        assert c.accepted, (name, c.reasons, c.decision)
        assert c.found_multipliers and c.decided_by in ("sanitised", "recomputed", "local-lp"), (name, c.decided_by)
        assert c.dual_residual <= TOL.dual and c.sign_violation <= TOL.sign, name
        assert sum(st["iterations"] for st in c.decision.get("local", [])) <= TOL.lp_iterations, name
        if c.decided_by != "sanitised":
            stages.add((c.decided_by, c.decision.get("recomputed_failing_columns")))
    # past the sanitised stage nothing depends on the multipliers sent: one path for all of them
    assert len(stages) == 1, stages


def test_recomputed_multipliers_ignore_the_received_ones(ms) -> None:
    """The recomputation is a function of the point: the same multipliers whatever is sent, and at the honest
    optimum they leave a residual only on a few bound-degenerate columns (the local LP's work)."""
    from poso_sim.kkt.decide import _Box, _recompute, LP_MARGIN

    nlp, opt = ms["problem"], ms["optimal"]
    chk = checker_for(nlp)
    x = np.asarray(opt.x)
    ev = chk.evaluate(x)
    tau = LP_MARGIN * TOL.dual
    box = _Box(chk, x, ev, tau, LP_MARGIN * TOL.complementarity)
    jt = chk.search._jt(ev["jv"])
    y1, *_ = _recompute(chk.search.ls, jt, ev["grad"], ev["jv"], box, tau)
    y2, *_ = _recompute(chk.search.ls, jt, ev["grad"], ev["jv"], box, tau)
    assert np.array_equal(y1, y2)
    assert np.all(y1 >= box.ylo) and np.all(y1 <= box.yhi)
    r = ev["grad"] + jt @ y1
    zl, zu = box.bound_multipliers(r)
    bad = np.abs(r - zl + zu) / box.w > tau
    # most columns are already stationary; the rest is left to the local LP
    assert 0 < np.count_nonzero(bad) < 0.02 * nlp.n
    # and a dearer plan gets no such luck: the tampered plan fails on far more columns
    xt = np.asarray(ms["tampered"].x)
    evt = chk.evaluate(xt)
    boxt = _Box(chk, xt, evt, tau, LP_MARGIN * TOL.complementarity)
    jtt = chk.search._jt(evt["jv"])
    rt = evt["grad"] + jtt @ _recompute(chk.search.ls, jtt, evt["grad"], evt["jv"], boxt, tau)[0]
    zlt, zut = boxt.bound_multipliers(rt)
    assert np.count_nonzero(np.abs(rt - zlt + zut) / boxt.w > tau) > np.count_nonzero(bad)


@pytest.fixture(scope="session")
def honest_points():
    from _probes import honest_plan

    return {route: honest_plan(route) for route in HONEST_TEST_ROUTES}


@pytest.mark.slow
def test_honest_optima_from_second_routes_accepted(ms, honest_points) -> None:
    """Another backend (CasADi's Ipopt interface, monotone barrier, tol 1e-6) and the project backend with the
    objective scaled by 10 (tol 1e-8), each from a perturbed start: accepted as delivered, clipped, and with the
    bound entries at 0 moved to -1.15e-6 (a plan computed in other units); with their own multipliers and with
    anybody else's (the verdict is the point's); and with every tolerance ten times tighter (the 10x margin)."""
    from poso_sim.nlp import Solution

    nlp, opt = ms["problem"], ms["optimal"]
    n, m = nlp.n, nlp.m
    tight = TOL.scaled(0.1)
    for route, raw in honest_points.items():
        assert raw.status == "optimal", route
        sol = Solution(x=raw.x, y=raw.y, z_L=raw.z_L, z_U=raw.z_U, fingerprint=nlp.fingerprint, variant="true")
        assert abs(nlp.true_cost(raw.x) - opt.cost) / opt.cost < 1e-6, route
        x_clip = nlp.clip(raw.x)
        # a plan computed in other units: the CHP heat outputs at their bound 0 delivered as -1.15e-6 kW
        x_off = np.array(x_clip)
        h_chp = nlp.var_indices("H_CHP")
        x_off[h_chp[x_off[h_chp] <= 1e-9]] = -1.15e-6
        variants = [("as delivered", raw.x), ("clipped", x_clip)]
        if np.count_nonzero(x_off < 0):  # the tol 1e-6 route leaves its idle CHPs at 1e-7, not at 0
            variants.append(("off bounds", x_off))
        for name, x in variants:
            point = sol.replace(x=x)
            claims = {
                "own": point,
                "zeros": point.with_multipliers(y=np.zeros(m), z_L=np.zeros(n), z_U=np.zeros(n)),
                "the optimum's": point.with_multipliers(y=opt.y, z_L=opt.z_L, z_U=opt.z_U),
                "the tampered plan's": point.with_multipliers(y=ms["tampered"].y, z_L=ms["tampered"].z_L,
                                                             z_U=ms["tampered"].z_U),
            }
            for who, claim in claims.items():
                checker_for(nlp).search.cache.clear()
                c = verify(nlp, claim)
                assert c.accepted, (route, name, who, c.reasons, c.decision)
                assert sum(st["iterations"] for st in c.decision.get("local", [])) <= TOL.lp_iterations // 10
                if name == "off bounds":
                    # moving H_CHP alone breaks the CHP efficiency row by the same 1.15e-6 kW (7.7e-7 scaled): a
                    # property of this emulation, not of a solver's output, so the 10x margin is the solvers' points'
                    continue
                checker_for(nlp).search.cache.clear()
                ct = verify(nlp, claim, tight)
                assert ct.accepted, (route, name, who, "10x tighter", ct.reasons, ct.decision)
