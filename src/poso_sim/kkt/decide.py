"""The exact decision "does a valid multiplier vector exist for this x?", used when the received multipliers fail.

At a feasible point ``x`` the certificate's rules on multipliers are linear in ``(y, z_L, z_U)``:

* an equality row's ``y_i`` is free; an inequality row's ``y_i`` has the sign of the side it may be active on
  (``y <= 0`` at a lower bound, ``y >= 0`` at an upper bound) and, by complementarity, ``|y_i| * slack_i`` may
  not exceed the tolerance, so ``|y_i| <= c / slack_i``: rows with a real slack get a cap near zero, rows at
  their bound are unbounded; a bound multiplier likewise lies in ``[0, c / (x_j - lb_j)]``;
* stationarity ``|grad_j + (J^T y)_j - z_Lj + z_Uj| <= tau * w_j`` with the y-independent scale
  ``w_j = max(1, |grad_j|)``.

Eliminating the bound multipliers (``z_Lj`` in ``[0, Cl_j]`` absorbs up to ``Cl_j`` of a positive residual)
leaves one ranged row per variable on the row multipliers alone::

    -grad_j - tau w_j - Cu_j  <=  (J^T y)_j  <=  -grad_j + tau w_j + Cl_j,      ylo <= y <= yhi

a linear feasibility problem whose answer depends on ``x`` only. Stages, cheapest first; every candidate is
re-checked in full by :meth:`KKTChecker.measures` before it is trusted:

``sanitised``
    the received ``y`` clipped into its box, bound multipliers re-derived from the residual (microseconds);
``recomputed``
    the received multipliers ignored: row multipliers recomputed at ``x`` by a least squares weighted with the
    certificate's own caps (:class:`_LeastSquares`: one numeric LDL^T of a quasi-definite system on the problem's
    fixed pattern, 3-5 ms on Manchester, at most three passes); from here on nothing reads the received
    multipliers, so the verdict of every claim that gets this far is a function of ``x`` alone;
``local-lp``
    the same LP on the neighbourhood of the columns that still fail (first the rows touching them, then also the
    rows touching the columns those rows touch, and so on; everything else kept at the recomputed values): a
    sufficient test, small; the LP stages share a deterministic budget of simplex iterations
    (``Tolerances.lp_iterations``), the same on every delegate; exhausting it rejects;
``lp``
    without a budget only (offline use): the whole LP (HiGHS dual simplex, warm-started from the last optimal
    basis of the same problem). Infeasible means no valid multipliers exist.

The outcome of the stages past ``sanitised`` - multipliers, a proof, or a budget rejection - depends on ``x`` and
the tolerances only, and is kept per point: such an ``x`` sent again (by a relay, or with other multipliers)
costs the sanitised stage and one lookup, and gets the verdict any delegate computes without the cache.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    from poso_sim.kkt.certificate import Tolerances
    from poso_sim.kkt.check import KKTChecker

__all__ = ["MultiplierOutcome", "MultiplierSearch", "min_stationarity"]

#: Safety factor between the LP's targets and the tolerances the re-check applies (HiGHS works to 1e-7).
LP_MARGIN = 0.9
#: A multiplier cap below this is treated as zero (the row or bound is inactive).
CAP_ZERO = 1e-12
#: Largest neighbourhood (row multipliers) the local LP takes; beyond it the whole LP is solved.
LOCAL_MAX_ROWS = 2200
#: Neighbourhood growth steps after the first LP (each adds the rows two steps away in the row-column graph).
LOCAL_HOPS = 4
#: Smallest row weight of the recomputation (J^T has exact null vectors: each hour's heat-balance rows); its
#: inverse is the weight that holds an inactive row's multiplier at 0 (see :class:`_LeastSquares`).
LS_REG = 1e-12
#: Multiplier caps above this count as unbounded in the recomputation's weights.
W_CAP = 1e8
#: Least-squares passes of the recomputation (each one numeric factorisation).
LS_PASSES = 3
#: Free columns failing by less than this factor of the tolerance are re-weighted (farther ones are not noise).
IRLS_REACH = 10.0
#: The local LP looks for row multipliers no larger than this in magnitude (a sufficient test may restrict its
#: search; unrestricted, the simplex can return vertices of 1e19 whose residuals cancellation destroys).
Y_CAP = 1e6
_CACHE_SIZE = 16  # points; a witness keeps y, z_L and z_U (~0.3 MB each on Manchester)


@dataclass
class MultiplierOutcome:
    """Outcome of :meth:`MultiplierSearch.decide`.

    ``stage`` is the last stage run; ``found`` whether it produced multipliers (they are re-checked by the
    caller); ``exists`` is False when the whole LP proved that no valid multipliers exist, None when undecided
    (budget exhausted or a solver status other than optimal/infeasible).
    """

    found: bool
    stage: str
    y: np.ndarray | None = None
    z_L: np.ndarray | None = None
    z_U: np.ndarray | None = None
    exists: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


class _Box:
    """Multiplier caps and stationarity ranges of one point."""

    def __init__(self, chk: "KKTChecker", x: np.ndarray, ev: dict[str, Any], tau: float, ctol: float):
        g, grad = ev["g"], ev["grad"]
        inf = np.inf
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            sl = np.maximum(g - chk.g_lb0, 0.0)
            su = np.maximum(chk.g_ub0 - g, 0.0)
            ylo = np.where(chk.glb_fin, -np.where(sl > 0, ctol / sl, inf), 0.0)
            yhi = np.where(chk.gub_fin, np.where(su > 0, ctol / su, inf), 0.0)
            xl = np.maximum(x - chk.x_lb0, 0.0)
            xu = np.maximum(chk.x_ub0 - x, 0.0)
            cl = np.where(chk.lb_fin, np.where(xl > 0, ctol / xl, inf), 0.0)
            cu = np.where(chk.ub_fin, np.where(xu > 0, ctol / xu, inf), 0.0)
        ylo[chk.row_eq] = -inf
        yhi[chk.row_eq] = inf
        ylo[ylo > -CAP_ZERO] = 0.0
        yhi[yhi < CAP_ZERO] = 0.0
        cl[cl < CAP_ZERO] = 0.0
        cu[cu < CAP_ZERO] = 0.0
        self.ylo, self.yhi, self.cl, self.cu = ylo, yhi, cl, cu
        self.w = np.maximum(1.0, np.abs(grad))
        self.lo0 = -grad - cu
        self.hi0 = -grad + cl
        self.lo = self.lo0 - tau * self.w
        self.hi = self.hi0 + tau * self.w
        self.var_row = self.yhi > self.ylo

    def bound_multipliers(self, r0: np.ndarray, shrink: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``z_L``, ``z_U`` that absorb as much of ``r0 = grad + J^T y`` as their caps (times ``shrink``) allow."""
        return (
            np.minimum(np.maximum(r0, 0.0), shrink * self.cl),
            np.minimum(np.maximum(-r0, 0.0), shrink * self.cu),
        )

    def residual(self, r0: np.ndarray, shrink: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(z_L, z_U, res)``: the bound multipliers of :meth:`bound_multipliers` and the scaled stationarity
        residual ``|r0 - z_L + z_U| / w`` they leave."""
        zl, zu = self.bound_multipliers(r0, shrink)
        return zl, zu, np.abs(r0 - zl + zu) / self.w


_BANNER_LOCK = threading.Lock()
_BANNER_DONE = False


def _new_highs() -> Any:
    """A new HiGHS instance (0.1-0.3 ms). The first one of the process is created with file descriptor 1 pointed
    at /dev/null: the library prints its banner on stdout then, which would corrupt ``poso-sim verify --json``.
    That redirection changes a process-wide descriptor, so it runs once, under a lock, before any other instance
    is made (two threads swapping descriptor 1 at once could leave stdout pointing at /dev/null for good)."""
    global _BANNER_DONE
    import highspy  # HiGHS only when an LP runs: most verdicts need none

    if _BANNER_DONE:
        return highspy.Highs()
    with _BANNER_LOCK:
        if not _BANNER_DONE:
            try:
                h = _first_highs(highspy)
            finally:
                _BANNER_DONE = True
            return h
    return highspy.Highs()


def _first_highs(highspy: Any) -> Any:
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real stdout (embedded interpreters)
        return highspy.Highs()
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return h


def _hinf(a: np.ndarray) -> np.ndarray:
    import highspy  # HiGHS only when an LP runs: most verdicts need none

    out = np.array(a, dtype=float)
    out[np.isposinf(out)] = highspy.kHighsInf
    out[np.isneginf(out)] = -highspy.kHighsInf
    return out


def _run_lp(
    a_csc: sp.csc_matrix,
    col_lo: np.ndarray,
    col_hi: np.ndarray,
    row_lo: np.ndarray,
    row_hi: np.ndarray,
    cost: np.ndarray | None,
    *,
    iterations: int | None,
    basis: Any = None,
    highs: Any = None,
    presolve: bool = True,
    method: str = "simplex",
) -> tuple[str, np.ndarray | None, Any, dict[str, Any]]:
    """One HiGHS LP ``min cost.v  s.t. row_lo <= A v <= row_hi, col_lo <= v <= col_hi``; returns
    ``(status, v, basis, info)`` with status ``optimal``/``infeasible``/``budget`` (the iteration limit) or
    ``other`` (anything else, e.g. an interrupted or failed solve: never kept in the point cache). ``highs`` is an
    instance the caller owns for the duration of the call (one instance must never run two LPs at once)."""
    import highspy  # HiGHS only when an LP runs: most verdicts need none

    h = highs if highs is not None else _new_highs()
    h.clearModel()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("solver", method)
    h.setOptionValue("presolve", "on" if presolve else "off")
    h.setOptionValue("simplex_iteration_limit", int(iterations) if iterations is not None else 10**9)
    # no time limit: a budget cut must be the same on every delegate and under any load, so the only budget is
    # the iteration count (a wall-clock limit would let a busy machine reject a plan an idle one accepts)
    h.setOptionValue("time_limit", highspy.kHighsInf)
    lp = highspy.HighsLp()
    lp.num_col_ = int(a_csc.shape[1])
    lp.num_row_ = int(a_csc.shape[0])
    lp.col_cost_ = np.zeros(a_csc.shape[1]) if cost is None else np.asarray(cost, dtype=float)
    lp.col_lower_ = _hinf(col_lo)
    lp.col_upper_ = _hinf(col_hi)
    lp.row_lower_ = _hinf(row_lo)
    lp.row_upper_ = _hinf(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a_csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a_csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = a_csc.data.astype(float)
    h.passModel(lp)
    if basis is not None:
        h.setBasis(basis)
    h.run()
    ms = h.getModelStatus()
    hi = h.getInfo()
    info = {"iterations": int(hi.simplex_iteration_count), "rows": lp.num_row_, "cols": lp.num_col_}
    if method != "simplex":
        info["ipm_iterations"] = int(hi.ipm_iteration_count)
    if ms == highspy.HighsModelStatus.kOptimal:
        return "optimal", np.array(h.getSolution().col_value, dtype=float), h.getBasis(), info
    # both LPs built here have objectives bounded below (0, or t >= 0): "unbounded or infeasible" is infeasible
    if ms in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return "infeasible", None, None, info
    if ms == highspy.HighsModelStatus.kIterationLimit:
        return "budget", None, None, info
    info["status"] = h.modelStatusToString(ms)
    return "other", None, None, info


def _minimax(
    a: sp.csc_matrix, w: np.ndarray, lo0: np.ndarray, hi0: np.ndarray, ylo: np.ndarray, yhi: np.ndarray, t_max: float
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``min t`` s.t. ``lo0 - t w <= A y <= hi0 + t w``, ``0 <= t <= t_max``: the LP data (matrix, column and row
    bounds, cost). Feasible iff a ``y`` with scaled residual <= ``t_max`` exists; its optimum keeps the residual
    as small as it can be, so an accepted certificate shows the real margin, not the edge of the tolerance."""
    wc = sp.csc_matrix(w.reshape(-1, 1))
    big = sp.vstack([sp.hstack([a, -wc]), sp.hstack([a, wc])]).tocsc()
    inf = np.full(a.shape[0], np.inf)
    cost = np.zeros(a.shape[1] + 1)
    cost[-1] = 1.0
    return big, np.r_[ylo, 0.0], np.r_[yhi, t_max], np.r_[-inf, lo0], np.r_[hi0, inf], cost


class _LeastSquares:
    """The recomputation's weighted least squares on one fixed pattern (all rows, all columns of the problem).

    ``min sum_j r_j^2 / s_j + sum_i y_i^2 / t_i`` with ``r = grad + J^T y``. Column weights: ``s_j = w_j^2 +
    (zcap_j / tau)^2`` - a column whose bound multiplier may absorb up to ``zcap_j`` is free to that extent (an
    exactly active bound: entirely), a column far from its bounds must have ``|r_j| <~ tau w_j``. Row weights:
    ``t_i = (ycap_i / tau)^2`` - a row's multiplier is free as far as complementarity lets it be (a row at its
    bound or an equality: free; a row with a real slack: near 0). Both terms are measured in units of what the
    certificate tolerates, so a multiplier allowed to be 2e-4 is used when a column needs 9e-6 of it.

    Its optimality conditions are the quasi-definite system ``[[S, J^T], [J, -T^-1]] [s; -y] = [grad; 0]``,
    whose pattern is that of the problem's Jacobian whatever the point: the ordering and symbolic analysis are done
    once per problem (QDLDL, 15-20 ms on Manchester), each point costs one numeric factorisation (3-5 ms). A
    quasi-definite matrix has an LDL^T factorisation for every symmetric ordering, without pivoting, so the result
    is deterministic."""

    def __init__(self, n: int, m: int, jr: np.ndarray, jc: np.ndarray):
        self.n, self.m = n, m
        jr = np.asarray(jr, dtype=np.int64)
        jc = np.asarray(jc, dtype=np.int64)
        # upper triangle of the (n + m) matrix, column by column: diagonal of the column block, J^T entries
        # (row j, column n + i), diagonal of the row block; ``src`` maps the CSC slots to [dc, jv, -dr]
        rows = np.r_[np.arange(n), jc, np.arange(n, n + m)]
        cols = np.r_[np.arange(n), n + jr, np.arange(n, n + m)]
        order = np.lexsort((rows, cols))
        self.rows = rows[order].astype(np.int32)
        self.src = order
        self.indptr = np.searchsorted(cols[order], np.arange(n + m + 1)).astype(np.int32)

    def solve(
        self, dc: np.ndarray, jv: np.ndarray, dr: np.ndarray, grad: np.ndarray, factor: "_Factor | None" = None
    ) -> np.ndarray | None:
        """The row multipliers of the weighted least squares. ``factor`` is the caller's own numeric state, reused
        across its calls (None: a new one for this call); the pattern here is shared by every verification of the
        problem, a factorisation never is."""
        import qdldl  # the quasi-definite LDL^T only when multipliers must be recomputed

        factor = _Factor() if factor is None else factor
        data = np.concatenate([dc, jv, -dr])[self.src]
        k = sp.csc_matrix((data, self.rows, self.indptr), shape=(self.n + self.m,) * 2)
        try:
            if factor.solver is None:
                factor.solver = qdldl.Solver(k, upper=True)
            else:
                factor.solver.update(k, upper=True)
            sol = factor.solver.solve(np.r_[grad, np.zeros(self.m)])
        except Exception:  # noqa: BLE001 - a numerically zero pivot: no recomputed multipliers, the LP decides
            factor.solver = None
            return None
        if not np.all(np.isfinite(sol)):
            return None
        return -sol[self.n:]


class _Factor:
    """One QDLDL factorisation of a :class:`_LeastSquares` pattern: the ordering and symbolic analysis on first use
    (15-20 ms alone, 30-40 ms under load on Manchester), then a numeric ``update`` per point (3-5 ms). ``update``
    overwrites the factors in place, so a factorisation belongs to one verification at a time:
    :meth:`MultiplierSearch._factor` lends one out and takes it back. A fresh and a reused factorisation give the
    same result to the bit (the numeric phase reads nothing of the previous point)."""

    __slots__ = ("solver",)

    def __init__(self) -> None:
        self.solver: Any = None


def _feasibility(
    a: sp.csc_matrix, w: np.ndarray, lo0: np.ndarray, hi0: np.ndarray, ylo: np.ndarray, yhi: np.ndarray, t_max: float
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``lo0 - t_max w <= A y <= hi0 + t_max w``: the same question as :func:`_minimax` at ``t = t_max``, one
    ranged row per column, no objective; a zero last column stands for ``t`` so both LPs read alike."""
    big = sp.hstack([a, sp.csc_matrix((a.shape[0], 1))]).tocsc()
    return big, np.r_[ylo, 0.0], np.r_[yhi, 0.0], lo0 - t_max * w, hi0 + t_max * w, np.zeros(a.shape[1] + 1)


def _recompute(
    ls: "_LeastSquares", jt: sp.csc_matrix, grad: np.ndarray, jv: np.ndarray, box: "_Box", tau: float,
    passes: int = LS_PASSES, *, factor: "_Factor | None" = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Row multipliers recomputed at ``x`` from scratch, ignoring the received ones (:class:`_LeastSquares`),
    clipped into the box. A column left to its bound multiplier whose residual came out with the wrong sign cannot
    be absorbed: its weight becomes that of a free column; a free column failing by less than ``IRLS_REACH``
    times the tolerance weighs more; and the system is solved again (at most ``passes`` times). Returns the best
    pass's ``(y, z_L, z_U, failing columns)`` and the number of failing columns after each pass."""
    w = box.w
    zcap = np.minimum(np.maximum(box.cl, box.cu), W_CAP)
    ycap = np.minimum(np.maximum(-box.ylo, box.yhi), W_CAP)
    dc = w**2 + (zcap / tau) ** 2
    with np.errstate(divide="ignore", over="ignore"):
        dr = np.where(ycap > 0, np.maximum((tau / np.where(ycap > 0, ycap, 1.0)) ** 2, LS_REG), 1.0 / LS_REG)
    dr = np.minimum(dr, 1.0 / LS_REG)
    best = None
    history: list[int] = []
    factor = _Factor() if factor is None else factor
    for _ in range(passes):
        got = ls.solve(dc, jv, dr, grad, factor)
        if got is None:
            break
        y = np.clip(got, box.ylo, box.yhi)
        zl, zu, res = box.residual(grad + jt @ y)
        bad = res > tau
        history.append(int(np.count_nonzero(bad)))
        if best is None or history[-1] <= min(history):
            best = (y, zl, zu, bad)
        grow = bad & (dc > w**2 * (1 + 1e-12))
        tight = bad & ~grow & (res < IRLS_REACH * tau)
        if not (grow.any() or tight.any()) or (len(history) > 1 and 2 * history[-1] > history[-2]):
            # nothing left to re-weight, or re-weighting no longer halves the failing columns: at honest points
            # each pass removes most of them (32 -> 2), at points without multipliers they stay (58 -> 37 -> 39)
            break
        dc[grow] = w[grow] ** 2
        # a free column just above the tolerance weighs more in the next pass (a step of iteratively reweighted
        # least squares toward the smallest largest residual)
        dc[tight] = dc[tight] / np.minimum((2.0 * res[tight] / tau) ** 2, 1e4)
    if best is None:  # no factorisation (a numerically zero pivot): zero multipliers, the LP stages decide
        zl, zu, res = box.residual(grad)
        best = (np.zeros(jt.shape[1]), zl, zu, res > tau)
    return (*best, history)


#: Factorisations a problem keeps for reuse when verifications ran at once (more are made while more run at once).
_SPARE_FACTORS = 4


class MultiplierSearch:
    """Per-problem state of the exact decision: the ``J^T`` pattern, the last optimal basis, a point cache.

    Safe to use from several threads at once (docs/kernel.md, "What may run concurrently"). What a verification
    writes is its own: a QDLDL factorisation lent from a small pool (:meth:`_factor`) and a HiGHS instance made for
    it (under 0.3 ms, against 15-50 ms for the LP stages it serves). What verifications share - the point cache, the
    pool, the whole LP's warm basis - is read and written under ``_lock``, never held while anything is computed.
    """

    def __init__(self, chk: "KKTChecker"):
        self.chk = chk
        n, m = chk.n, chk.m
        # J^T as CSC (LP rows = variables, LP columns = row multipliers); perm maps Jacobian order to CSC data
        order = np.lexsort((chk.jc, chk.jr))
        self.perm = order
        self.indptr = np.searchsorted(chk.jr[order], np.arange(m + 1)).astype(np.int64)
        self.indices = chk.jc[order].astype(np.int64)
        self.basis: Any = None
        self.ls = _LeastSquares(n, m, chk.jr, chk.jc)
        self.cache: "OrderedDict[str, MultiplierOutcome]" = OrderedDict()
        self._factors: list[_Factor] = []
        self._lock = threading.Lock()
        self.n, self.m = n, m

    @contextmanager
    def _factor(self) -> Iterator[_Factor]:
        """A factorisation for one verification: a spare one (its symbolic analysis done) or a new one. It goes
        back to the pool only when the verification ended normally: one left by an exception may be half-updated."""
        with self._lock:
            f = self._factors.pop() if self._factors else _Factor()
        yield f
        with self._lock:
            if len(self._factors) < _SPARE_FACTORS:
                self._factors.append(f)

    def _jt(self, jv: np.ndarray) -> sp.csc_matrix:
        return sp.csc_matrix((jv[self.perm], self.indices, self.indptr), shape=(self.n, self.m))

    def _key(self, x: np.ndarray, tol: "Tolerances") -> str:
        h = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes())
        h.update(repr((tol.dual, tol.complementarity, tol.lp_iterations)).encode())
        return h.hexdigest()

    def decide(
        self, x: np.ndarray, y: np.ndarray, ev: dict[str, Any], tol: "Tolerances"
    ) -> MultiplierOutcome:
        """Valid multipliers for ``x`` (a point that passed the primal checks), or why there are none.

        The received multipliers are tried first (clipped into their box: microseconds). Past that, every step is
        a function of ``x`` and the tolerances alone, so its outcome - multipliers found, a proof, or a budget
        rejection - is kept per point (the last ``_CACHE_SIZE`` points): the same ``x`` sent again, by a relay or
        with other multipliers, costs one digest, and the verdict is the one any delegate reaches without the
        cache."""
        t0 = time.perf_counter()
        tau = LP_MARGIN * tol.dual
        box = _Box(self.chk, x, ev, tau, LP_MARGIN * tol.complementarity)
        jt = self._jt(ev["jv"])
        got = self._sanitised(y, ev["grad"], jt, box, tau)
        if got.found:
            got.info["seconds"] = time.perf_counter() - t0
            return got
        key = self._key(x, tol)
        with self._lock:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache.move_to_end(key)
        if hit is not None:
            return MultiplierOutcome(hit.found, hit.stage, hit.y, hit.z_L, hit.z_U, hit.exists,
                            {**got.info, **hit.info, "cached": True, "seconds": time.perf_counter() - t0})
        d = self._from_point(x, ev, tol, box, jt, tau, got.info)
        d.info["seconds"] = time.perf_counter() - t0
        if _cacheable(d):
            with self._lock:
                self.cache[key] = d
                while len(self.cache) > _CACHE_SIZE:
                    self.cache.popitem(last=False)
            # the caller gets its own record: nothing it writes into the info reaches the cached outcome
            d = MultiplierOutcome(d.found, d.stage, d.y, d.z_L, d.z_U, d.exists, dict(d.info))
        return d

    def _sanitised(
        self, y: np.ndarray, grad: np.ndarray, jt: sp.csc_matrix, box: "_Box", tau: float
    ) -> MultiplierOutcome:
        """Stage 1: the received ``y`` clipped into its box (first into a box ten times tighter, so that an
        accepted certificate keeps a margin on complementarity when it can), bound multipliers re-derived."""
        info: dict[str, Any] = {}
        for shrink in (0.1 / LP_MARGIN, 1.0):
            y0 = np.clip(y, shrink * box.ylo, shrink * box.yhi)
            zl, zu, res = box.residual(grad + jt @ y0, shrink)
            bad = res > tau
            info["sanitised_failing_columns"] = int(np.count_nonzero(bad))
            if not bad.any():
                return MultiplierOutcome(True, "sanitised", y0, zl, zu, True, info)
        return MultiplierOutcome(False, "sanitised", info=info)

    def _from_point(
        self, x: np.ndarray, ev: dict[str, Any], tol: "Tolerances", box: "_Box", jt: sp.csc_matrix, tau: float,
        info: dict[str, Any],
    ) -> MultiplierOutcome:
        """Stages 2-4, which read nothing but ``x``: recomputed multipliers, then the local LPs (and, without a
        budget, the whole LP), on a factorisation lent to this call alone and a HiGHS instance of its own."""
        with self._factor() as factor:
            return self._stages(x, ev, tol, box, jt, tau, info, factor)

    def _stages(
        self, x: np.ndarray, ev: dict[str, Any], tol: "Tolerances", box: "_Box", jt: sp.csc_matrix, tau: float,
        info: dict[str, Any], factor: _Factor,
    ) -> MultiplierOutcome:
        """The body of :meth:`_from_point`; ``factor`` is this call's own."""
        chk = self.chk
        info = dict(info)
        grad = ev["grad"]
        # stage 2: multipliers recomputed from x alone (weighted least squares)
        y_ls, zl, zu, bad_ls, hist = _recompute(self.ls, jt, grad, ev["jv"], box, tau, factor=factor)
        info["recomputed_passes"] = hist
        info["recomputed_failing_columns"] = int(np.count_nonzero(bad_ls))
        if not bad_ls.any():
            return MultiplierOutcome(True, "recomputed", y_ls, zl, zu, True, info)
        # the local LP starts from them, never from the received ones: past the sanitised stage every step is a
        # function of x alone, so the verdict does not depend on which multipliers came with the point
        y0, bad = y_ls, bad_ls
        unbounded = tol.lp_iterations is None
        budget = 10**9 if unbounded else int(tol.lp_iterations)
        jt_csr = jt.tocsr()
        highs = _new_highs()  # this verification's own: a HiGHS instance never runs two LPs at once
        # stage 3: LPs on growing neighbourhoods of the failing columns (everything else kept at the sanitised
        # values): a sufficient test; on a problem no larger than the neighbourhood limit it is the whole LP
        used = 0
        info["local"] = []
        rows = np.zeros(self.m, dtype=bool)
        rows[jt_csr[bad].indices] = True
        rows &= box.var_row
        # a failing column that no adjustable multiplier touches cannot be fixed by any multipliers
        reach = np.zeros(self.n, dtype=bool)
        reach[jt[:, rows].tocoo().row] = True
        if np.any(bad & ~reach):
            j = int(np.flatnonzero(bad & ~reach)[0])
            info["unreachable_column"] = chk.x_names[j]
            return MultiplierOutcome(False, "lp", exists=False, info=info)
        for hop in range(LOCAL_HOPS + 1):
            cols = np.zeros(self.n, dtype=bool)
            cols[jt[:, rows].tocoo().row] = True
            grown = np.zeros(self.m, dtype=bool)
            grown[jt_csr[cols].indices] = True
            grown &= box.var_row
            # closed: no adjustable multiplier outside ``rows`` touches a column of the neighbourhood, so the LP
            # over it is a whole connected block of the full LP (its infeasibility is a proof)
            whole = bool(np.array_equal(grown, rows))
            if hop > 0:  # the first LP takes only the rows touching the failing columns (small, often enough)
                if np.count_nonzero(grown) > LOCAL_MAX_ROWS and not unbounded:
                    break
                rows = grown
            a = jt[:, rows]
            cols = np.zeros(self.n, dtype=bool)
            cols[a.tocoo().row] = True
            a = a[cols].tocsc()
            yfix = y0.copy()
            yfix[rows] = 0.0
            fixed = (jt @ yfix)[cols]
            ylo_l = np.maximum(box.ylo[rows], -Y_CAP)
            yhi_l = np.minimum(box.yhi[rows], Y_CAP)
            # the first LP minimises the residual (a witness found there shows the point's real margin); the
            # larger ones only ask whether the tolerance can be met (half the rows, about 30 % less work per
            # verdict on the dearer plans that spend the budget)
            build = _minimax if hop == 0 else _feasibility
            lp = build(a, box.w[cols], box.lo0[cols] - fixed, box.hi0[cols] - fixed, ylo_l, yhi_l, tau)
            status, v, _b, linfo = _run_lp(*lp, iterations=budget - used, highs=highs)
            v = None if v is None else v[:-1]
            used += linfo["iterations"]
            info["local"].append({**linfo, "status": status, "hops": 2 * hop})
            if status == "optimal":
                y1 = y0.copy()
                y1[rows] = np.clip(v, box.ylo[rows], box.yhi[rows])
                zl, zu = box.bound_multipliers(grad + jt @ y1)
                return MultiplierOutcome(True, "local-lp", y1, zl, zu, True, info)
            if status == "other":
                return MultiplierOutcome(False, "lp", exists=None, info=info)
            if status == "budget" or used >= budget:
                return MultiplierOutcome(False, "budget", exists=None, info=info)
            if whole and status == "infeasible":
                return MultiplierOutcome(False, "lp", exists=False, info=info)
            if whole:
                break
        if not unbounded:
            return MultiplierOutcome(False, "budget", exists=None, info=info)
        # stage 4 (no budget: offline use): the whole LP, warm-started from the last optimal basis
        lp = _minimax(jt, box.w, box.lo0, box.hi0, box.ylo, box.yhi, tau)
        with self._lock:
            warm = self.basis
        status, v, basis, ginfo = _run_lp(*lp, iterations=None, basis=warm, highs=highs)
        v = None if v is None else v[:-1]
        info["lp"] = {**ginfo, "status": status, "warm": warm is not None}
        if status == "optimal":
            with self._lock:
                self.basis = basis
            y1 = np.clip(v, box.ylo, box.yhi)
            zl, zu = box.bound_multipliers(grad + jt @ y1)
            return MultiplierOutcome(True, "lp", y1, zl, zu, True, info)
        if status == "infeasible":
            return MultiplierOutcome(False, "lp", exists=False, info=info)
        return MultiplierOutcome(False, "lp", exists=None, info=info)


def _cacheable(d: MultiplierOutcome) -> bool:
    """Whether an outcome may be kept for its point: multipliers found, a proof that none exist, or the iteration
    budget spent - each a function of the point and the tolerances. Anything else (a solver status other than
    optimal, infeasible or the iteration limit) is not kept: the next claim of the point decides afresh."""
    return d.found or d.exists is False or d.stage == "budget"


def min_stationarity(
    chk: "KKTChecker", x: np.ndarray, complementarity: float = 1e-5, *, ev: dict[str, Any] | None = None,
    method: str = "ipm",
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """A lower bound on the scaled stationarity residual that multipliers obeying the sign and complementarity
    rules can leave at ``x``: the optimum ``t`` of ``min t`` s.t. ``|grad + J^T y - z_L + z_U| <= t max(1, |grad|)``
    over the whole problem (no budget; row multipliers limited to ``|y| <= Y_CAP`` as in the decision), by HiGHS's
    interior point method with crossover (``method="ipm"``, 5-15 s on Manchester): on this LP the dual simplex can
    stop at a wrong "optimum" (0.6 where 1e-7 exists, with multipliers at the 1e6 limit), the interior point
    method does not. ``method="simplex"`` is faster and good enough for an attack's multipliers. Returns
    ``(t, y, z_L, z_U)``, the multipliers of the LP's solution. ``t`` is what a dearer plan's separation is measured
    by (no multipliers do better, to the LP's own 1e-7 feasibility tolerance); whether a point is accepted with a
    margin is asked of the certificate itself (``verify(problem, plan, DEFAULT_TOLERANCES.scaled(0.1))``). A
    diagnostic: it may take seconds."""
    x = np.asarray(x, dtype=float)
    ev = ev if ev is not None else chk.evaluate(x)
    box = _Box(chk, x, ev, 0.0, complementarity)
    jt = chk.search._jt(ev["jv"])
    lp = _minimax(jt, box.w, box.lo0, box.hi0, np.maximum(box.ylo, -Y_CAP), np.minimum(box.yhi, Y_CAP), np.inf)
    status, v, _b, _i = _run_lp(*lp, iterations=None, method=method)
    if status != "optimal" or v is None:
        raise RuntimeError(f"stationarity LP ended {status}")
    y = np.clip(v[:-1], box.ylo, box.yhi)
    zl, zu = box.bound_multipliers(ev["grad"] + jt @ y)
    return float(v[-1]), y, zl, zu
