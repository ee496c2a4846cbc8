"""Checked repair of multipliers at degenerate points.

At a degenerate point (a line without flow, a variable fixed both by a bound and by an equality) the
multipliers are not unique, and a solver may return a valid-looking set that fails only there, or a set another
solver would not return. When the received multipliers fail *only* on dual measures (stationarity, signs,
complementarity) and the point itself is feasible, the verifier tries to find valid multipliers for the same
``x`` itself:

stage ``bounds``
    Keep the row multipliers, re-derive the bound multipliers from stationarity: with
    ``r0 = grad f + J^T y``, a variable at its lower bound gets ``z_L = max(r0, 0)``, at its upper bound
    ``z_U = max(-r0, 0)``; "at its bound" means the complementarity product the new value would create stays
    below a tenth of the tolerance. Everything else gets zero.
stage ``least-squares``
    On the neighbourhood of the columns that still fail (the rows touching them, and the columns those rows
    touch), solve a bounded linear least-squares problem for the row multipliers (equalities free, active
    inequalities sign-constrained, inactive inequalities set to zero) and the bound multipliers of active bounds
    (non-negative), minimising the scaled stationarity residual of those columns plus a tiny proximity term to
    the received values. Up to three rounds, each widening the neighbourhood by the columns that still fail.

Whatever comes out is **re-checked in full** by :meth:`KKTChecker.measures`; a repair is never trusted. It cannot
make a non-KKT point pass: a repaired certificate shows valid multipliers for which the point is an approximate
KKT point of the verifier's problem, to the same tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    from poso_sim.kkt.certificate import Tolerances
    from poso_sim.kkt.check import KKTChecker, Measures

__all__ = ["RepairResult", "repair_multipliers", "rederive_bound_multipliers", "least_squares_multipliers"]

MAX_LSQ_UNKNOWNS = 800


@dataclass
class RepairResult:
    y: np.ndarray | None = None
    z_L: np.ndarray | None = None
    z_U: np.ndarray | None = None
    measures: "Measures | None" = None
    info: dict[str, Any] = field(default_factory=dict)


def rederive_bound_multipliers(chk: "KKTChecker", x, y, ev, comp_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Bound multipliers re-derived from stationarity for fixed row multipliers ``y`` (stage ``bounds``)."""
    r0 = ev["grad"] + np.bincount(chk.jc, weights=ev["jv"] * y[chk.jr], minlength=chk.n)
    sl = np.where(chk.lb_fin, np.maximum(x - chk.x_lb0, 0.0), 0.0)
    su = np.where(chk.ub_fin, np.maximum(chk.x_ub0 - x, 0.0), 0.0)
    cand_l = np.maximum(r0, 0.0)
    cand_u = np.maximum(-r0, 0.0)
    lim = 0.1 * comp_tol
    zl = np.where(chk.lb_fin & (cand_l * sl <= lim), cand_l, 0.0)
    zu = np.where(chk.ub_fin & (cand_u * su <= lim), cand_u, 0.0)
    return zl, zu


def _changes(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    d = np.abs(a - b)
    return {"count": int(np.count_nonzero(d > 0)), "max_change": float(d.max()) if d.size else 0.0}


def least_squares_multipliers(
    chk: "KKTChecker",
    x: np.ndarray,
    y: np.ndarray,
    zl: np.ndarray,
    zu: np.ndarray,
    ev: dict[str, Any],
    cols_bad: np.ndarray,
    rows_bad: np.ndarray,
    scale: np.ndarray,
    tol: "Tolerances",
    *,
    max_unknowns: int = MAX_LSQ_UNKNOWNS,
    max_iter: int = 50,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One least-squares round on the neighbourhood of ``cols_bad``/``rows_bad`` (stage ``least-squares``).

    A delegate's repair keeps the defaults (bounded cost); an offline multiplier mapping may raise them.
    """
    from scipy.optimize import lsq_linear

    jr, jc, jv = chk.jr, chk.jc, ev["jv"]
    in_f = np.zeros(chk.n, dtype=bool)
    in_f[cols_bad] = True
    rmask = np.zeros(chk.m, dtype=bool)
    rmask[jr[in_f[jc]]] = True
    rmask[rows_bad] = True
    rows = np.flatnonzero(rmask)
    cmask = np.zeros(chk.n, dtype=bool)
    cmask[jc[rmask[jr]]] = True
    cmask |= in_f
    cols = np.flatnonzero(cmask)
    g = ev["g"]
    rs = ev["row_scale"]
    # activity of inequality rows and of bounds
    act_tol = 1e-7
    at_rl = chk.glb_fin & (np.abs(g - chk.g_lb0) <= act_tol * rs)
    at_ru = chk.gub_fin & (np.abs(chk.g_ub0 - g) <= act_tol * rs)
    free_row = chk.row_eq[rows]
    act_l = at_rl[rows] & ~free_row
    act_u = at_ru[rows] & ~free_row
    var_row = free_row | act_l | act_u
    rows_var = rows[var_row]
    rows_zero = rows[~var_row]
    y_new = y.copy()
    y_new[rows_zero] = 0.0
    at_xl = chk.lb_fin[cols] & (np.abs(x[cols] - chk.x_lb0[cols]) <= act_tol * chk.bound_scale_l[cols])
    at_xu = chk.ub_fin[cols] & (np.abs(chk.x_ub0[cols] - x[cols]) <= act_tol * chk.bound_scale_u[cols])
    zl_cols = cols[at_xl]
    zu_cols = cols[at_xu]
    n_unk = rows_var.size + zl_cols.size + zu_cols.size
    info = {"rows": int(rows.size), "columns": int(cols.size), "unknowns": int(n_unk)}
    if n_unk == 0 or n_unk > max_unknowns:
        info["skipped"] = True
        return y, zl, zu, info
    # fixed part: grad + contributions of rows outside rows_var
    cpos = -np.ones(chk.n, dtype=np.int64)
    cpos[cols] = np.arange(cols.size)
    rpos = -np.ones(chk.m, dtype=np.int64)
    rpos[rows_var] = np.arange(rows_var.size)
    fixed_y = y_new.copy()
    fixed_y[rows_var] = 0.0
    b = (ev["grad"] + np.bincount(jc, weights=jv * fixed_y[jr], minlength=chk.n))[cols]
    # columns of A: [y_rows_var | z_L | z_U]
    sel = (rpos[jr] >= 0) & (cpos[jc] >= 0)
    a_rows = [cpos[jc[sel]], cpos[zl_cols], cpos[zu_cols]]
    a_cols = [rpos[jr[sel]], rows_var.size + np.arange(zl_cols.size), rows_var.size + zl_cols.size + np.arange(zu_cols.size)]
    a_vals = [jv[sel], -np.ones(zl_cols.size), np.ones(zu_cols.size)]
    A = sp.csr_matrix(
        (np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))), shape=(cols.size, n_unk)
    )
    w = 1.0 / scale[cols]
    Aw = sp.diags(w) @ A
    bw = -w * b
    v0 = np.concatenate([y[rows_var], zl[zl_cols], zu[zu_cols]])
    lo = np.full(n_unk, -np.inf)
    hi = np.full(n_unk, np.inf)
    nr = rows_var.size
    rl = act_l[var_row]
    ru = act_u[var_row]
    # an active one-sided inequality: y <= 0 at a lower bound, y >= 0 at an upper bound (ranged rows: by side)
    lo[:nr][ru & ~rl] = 0.0
    hi[:nr][rl & ~ru] = 0.0
    lo[nr:] = 0.0
    v0 = np.clip(v0, lo, hi)
    mu = 1e-6
    Areg = sp.vstack([Aw, mu * sp.identity(n_unk, format="csr")]).tocsr()
    breg = np.concatenate([bw, mu * v0])
    # the repair must stay cheap (a delegate checks within a protocol window): an exact dense solve for a small
    # neighbourhood, a bounded number of sparse iterations otherwise; whatever comes out is re-checked in full
    if n_unk <= 300:
        res = lsq_linear(Areg.toarray(), breg, bounds=(lo, hi), method="bvls", tol=1e-14, max_iter=2000)
    else:
        res = lsq_linear(Areg, breg, bounds=(lo, hi), method="trf", tol=1e-12, lsmr_tol="auto", max_iter=max_iter)
    v = res.x
    y_new[rows_var] = v[:nr]
    zl_new = zl.copy()
    zu_new = zu.copy()
    zl_new[cols[~at_xl]] = 0.0
    zu_new[cols[~at_xu]] = 0.0
    zl_new[zl_cols] = v[nr : nr + zl_cols.size]
    zu_new[zu_cols] = v[nr + zl_cols.size :]
    info["status"] = int(res.status)
    return y_new, zl_new, zu_new, info


def repair_multipliers(
    chk: "KKTChecker",
    x: np.ndarray,
    y: np.ndarray,
    zl: np.ndarray,
    zu: np.ndarray,
    ev: dict[str, Any],
    ms: "Measures",
    tol: "Tolerances",
    *,
    rounds: int = 2,
) -> RepairResult:
    """Try stage ``bounds`` then stage ``least-squares``; return the first multipliers that pass, or the best try."""
    info: dict[str, Any] = {"stage": "bounds"}
    zl1, zu1 = rederive_bound_multipliers(chk, x, y, ev, tol.complementarity)
    m1 = chk.measures(x, y, zl1, zu1, ev)
    info["z_L"] = _changes(zl1, zl)
    info["z_U"] = _changes(zu1, zu)
    if not any(chk.failures(m1, tol).values()):
        return RepairResult(y, zl1, zu1, m1, info)
    cur_y, cur_zl, cur_zu, cur_m = y, zl1, zu1, m1
    info["stage"] = "least-squares"
    info["rounds"] = []
    cols_bad = np.zeros(0, dtype=np.int64)
    n_fail = int(
        np.count_nonzero((m1.stat > tol.dual) | (m1.sign_x > tol.sign) | (m1.comp_x > tol.complementarity))
        + np.count_nonzero((m1.sign_row > tol.sign) | (m1.comp_row > tol.complementarity))
    )
    cap = tol.repair_max_entries if tol.repair_max_entries is not None else max(10, chk.n // 50)
    info["failing_entries"] = n_fail
    if n_fail > cap:
        info["stage"] = "refused"
        info["why"] = f"{n_fail} failing entries after re-deriving bound multipliers exceed the repair limit {cap}"
        return RepairResult(y, zl1, zu1, m1, info)
    for _ in range(rounds):
        bad_c = np.flatnonzero((cur_m.stat > 0.5 * tol.dual) | (cur_m.sign_x > 0.5 * tol.sign) | (cur_m.comp_x > 0.5 * tol.complementarity))
        bad_r = np.flatnonzero((cur_m.sign_row > 0.5 * tol.sign) | (cur_m.comp_row > 0.5 * tol.complementarity))
        cols_bad = np.union1d(cols_bad, bad_c)
        if cols_bad.size == 0 and bad_r.size == 0:
            break
        ny, nzl, nzu, rinfo = least_squares_multipliers(
            chk, x, cur_y, cur_zl, cur_zu, ev, cols_bad, bad_r, cur_m.stat_scale, tol
        )
        info["rounds"].append(rinfo)
        if rinfo.get("skipped"):
            break
        nm = chk.measures(x, ny, nzl, nzu, ev)
        cur_y, cur_zl, cur_zu, cur_m = ny, nzl, nzu, nm
        if not any(chk.failures(nm, tol).values()):
            break
        # widen: every column touched by the rows touching the current failures
        touched = np.zeros(chk.n, dtype=bool)
        touched[cols_bad] = True
        rows = np.zeros(chk.m, dtype=bool)
        rows[chk.jr[touched[chk.jc]]] = True
        touched[chk.jc[rows[chk.jr]]] = True
        cols_bad = np.flatnonzero(touched)
    info["y"] = _changes(cur_y, y)
    info["z_L"] = _changes(cur_zl, zl)
    info["z_U"] = _changes(cur_zu, zu)
    return RepairResult(cur_y, cur_zl, cur_zu, cur_m, info)
