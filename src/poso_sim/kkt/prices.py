"""Priced rows: rows whose multipliers are part of a proposal (the prices of a market), and their check.

For a dispatch the certificate judges the point: a plan is accepted when *some* multipliers make ``x`` a KKT
point. In a market the multipliers of the balance rows are the prices, and the prices are the payments, so a
problem may declare **priced rows** (``ProblemDefinition.priced_rows``: row names or component names, e.g.
``("elec_balance", "heat_balance")``; the registry copies them onto the compiled problem as ``priced_rows``, so a
verifier without Pyomo knows them). For such a problem a plan that passes the point's check goes through the
stage ``price``:

1. **The valid prices** (:func:`analyse`). ``M(x)``, the multipliers the certificate accepts at ``x`` with half
   its tolerances (stationarity ``tol.dual / 2``, complementarity ``tol.complementarity / 2``, the sign rules),
   is a polyhedron; the valid values of priced row ``p`` form the interval ``[min y_p, max y_p]`` over it (two
   LPs per priced row, one HiGHS instance per analysis, warm-started from each other; row multipliers limited to
   ``|y| <= Y_CAP`` as in the decision). Half the tolerances: the settlement prices below then leave the other
   multipliers at least half the tolerance to work with (the price check finds them at 0.9 of it).
2. **The settlement rule** ("midpoint"): the settlement price of each priced row is the midpoint of its
   interval, when the midpoints are valid together (one LP, each row held within ``PRICE_BAND * tol.price`` of
   its midpoint, relative to ``max(1, |price|)``: room for the LP's own tolerances). When they are not (two
   prices tied by one converter), the sequential midpoints: in the problem's row order, the midpoint of each
   row's interval given the earlier rows held at their settlement prices - always valid together, as each
   conditional interval is non-empty by convexity. Where prices are unique each interval is a few ``tol.dual``
   wide and the rule returns the price. Midpoints because a leader who may pick any valid price picks the end
   that favours a friend.
3. **The proposal's prices are checked** (:func:`price_stage`): every priced multiplier sent must equal its
   settlement price within ``tol.price * max(1, |settlement|)``, and the prices as sent, held fixed, must admit
   the other multipliers that make ``x`` a KKT point within the certificate's tolerances (the certificate's own
   decision, :mod:`poso_sim.kkt.decide`, with the priced rows' multipliers fixed: their part of ``J^T y`` moves
   into the gradient). Any failure rejects with ``decided_by="price"`` and a reason that names the row.

The leader's side (:func:`poso_sim.kkt.proposal.settle`) turns a solver's solution into the proposal the
certificate expects (the settlement prices and multipliers completed around them). The hub's side
(:func:`poso_sim.kkt.proposal.own_check`): a hub's own best response at the proposed prices, judged on the hub's
own problem only (docs/certificate.md, "Priced rows").
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from poso_sim.errors import ProblemError
from poso_sim.kkt.decide import LP_MARGIN, Y_CAP, MultiplierOutcome, _Box, _hinf, _new_highs

if TYPE_CHECKING:  # pragma: no cover
    from poso_sim.kkt.certificate import Certificate, Tolerances
    from poso_sim.kkt.check import KKTChecker

__all__ = [
    "PriceInterval",
    "PriceAnalysis",
    "priced_row_indices",
    "analyse",
    "fixed_price_multipliers",
    "price_stage",
    "PRICE_RULE",
]

#: The settlement rule's name (recorded in certificates).
PRICE_RULE = "midpoint"
#: Share of the certificate's tolerances that defines the set of valid multipliers behind the price intervals.
PRICE_SHARE = 0.5
#: Earlier priced rows are held within this share of ``tol.price`` of their settlement price (relative to
#: ``max(1, |price|)``) while the later ones' conditional intervals are computed.
PRICE_BAND = 0.1
_CACHE_SIZE = 8


def priced_row_indices(problem: Any) -> np.ndarray:
    """Indices of the rows that ``problem.priced_rows`` names, in row order: an entry names one row exactly
    (``heat_balance[2]``) or every row of a component (``heat_balance`` names ``heat_balance[1]``, ...). An entry
    that names no row is a ``ProblemError``."""
    specs = tuple(getattr(problem, "priced_rows", ()) or ())
    if not specs:
        return np.zeros(0, dtype=np.int64)
    names = list(problem.row_names)
    hit = np.zeros(len(names), dtype=bool)
    for spec in specs:
        mine = [i for i, nm in enumerate(names) if nm == spec or nm.startswith(spec + "[")]
        if not mine:
            raise ProblemError(f"priced row {spec!r} names no row of the problem")
        hit[mine] = True
    return np.flatnonzero(hit).astype(np.int64)


@dataclass(frozen=True)
class PriceInterval:
    """One priced row at a point: ``[low, high]``, the values its multiplier takes over all valid multipliers;
    ``[given_low, given_high]``, the same given the earlier priced rows' settlement prices; ``settlement``, the
    midpoint of the latter (the price the proposal must carry)."""

    name: str
    low: float
    high: float
    settlement: float
    given_low: float
    given_high: float

    @property
    def width(self) -> float:
        return self.high - self.low

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "low": self.low, "high": self.high, "settlement": self.settlement,
                "given_low": self.given_low, "given_high": self.given_high}


@dataclass
class PriceAnalysis:
    """Outcome of :func:`analyse`: ``status`` is ``optimal`` (every interval computed), ``infeasible`` (no
    multipliers valid at half the tolerances), ``budget`` (the price LPs' iteration budget ran out) or
    ``other``; ``rows`` are the intervals when optimal."""

    status: str
    rows: list[PriceInterval] = field(default_factory=list)
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    iterations: int = 0
    lps: int = 0
    seconds: float = 0.0
    joint: bool | None = None  # the intervals' midpoints were valid together (None: one priced row, not asked)

    @property
    def settlement(self) -> np.ndarray:
        return np.array([r.settlement for r in self.rows], dtype=float)


class _PriceLP:
    """The LP of the valid row multipliers at one point: ``lo - t w <= J^T y <= hi + t w`` (bound multipliers
    eliminated as in the decision), ``ylo <= y <= yhi``; only the row multipliers that may be non-zero are
    columns. One HiGHS instance, kept for the analysis of one point (never shared between threads)."""

    def __init__(self, jt: Any, box: _Box, tau: float, budget: int | None):
        import highspy  # HiGHS only when prices are analysed

        self.cols = np.flatnonzero(box.var_row)
        self.pos = {int(c): k for k, c in enumerate(self.cols)}
        a = jt[:, self.cols].tocsc()
        self.lo = np.maximum(box.ylo[self.cols], -Y_CAP)
        self.hi = np.minimum(box.yhi[self.cols], Y_CAP)
        self.budget = budget
        self.last: np.ndarray | None = None
        self.used = 0
        self.lps = 0
        h = self.h = _new_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("solver", "simplex")
        # primal simplex: each LP after the first changes one cost only, its last basis stays primal feasible (on
        # the 24-hour clearing: 34 000 iterations for the 382 LPs where the dual simplex takes 145 000)
        h.setOptionValue("simplex_strategy", 4)
        h.setOptionValue("time_limit", highspy.kHighsInf)  # the only budget is the iteration count (never time)
        lp = highspy.HighsLp()
        lp.num_col_ = int(a.shape[1])
        lp.num_row_ = int(a.shape[0])
        lp.col_cost_ = np.zeros(a.shape[1])
        lp.col_lower_ = _hinf(self.lo)
        lp.col_upper_ = _hinf(self.hi)
        lp.row_lower_ = _hinf(box.lo0 - tau * box.w)
        lp.row_upper_ = _hinf(box.hi0 + tau * box.w)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data.astype(float)
        h.passModel(lp)
        self._hs = highspy

    def extreme(self, row: int | None, sense: float) -> tuple[str, float]:
        """``min sense * y_row`` over the LP: ``(status, value of y_row)``; ``row=None``: feasibility only."""
        hs = self._hs
        k = 0 if row is None else self.pos[row]
        h = self.h
        left = None if self.budget is None else self.budget - self.used
        if left is not None and left <= 0:
            return "budget", float("nan")
        h.setOptionValue("simplex_iteration_limit", 10**9 if left is None else int(left))
        h.changeColCost(k, 0.0 if row is None else float(sense))
        h.run()
        self.lps += 1
        self.used += int(h.getInfo().simplex_iteration_count)
        ms = h.getModelStatus()
        value = float(h.getSolution().col_value[k]) if ms == hs.HighsModelStatus.kOptimal else float("nan")
        self.last = np.array(h.getSolution().col_value, dtype=float) if ms == hs.HighsModelStatus.kOptimal else None
        h.changeColCost(k, 0.0)  # (a change of the model clears its status: read first)
        if ms == hs.HighsModelStatus.kOptimal:
            return "optimal", value
        if ms in (hs.HighsModelStatus.kInfeasible, hs.HighsModelStatus.kUnboundedOrInfeasible):
            return "infeasible", value
        if ms == hs.HighsModelStatus.kIterationLimit:
            return "budget", value
        return "other", value

    def full(self, m: int) -> np.ndarray:
        """The last optimal LP solution as a whole row-multiplier vector (zeros on the rows that are not columns)."""
        y = np.zeros(m)
        if self.last is not None:
            y[self.cols] = self.last
        return y

    def hold(self, row: int, lo: float, hi: float) -> None:
        k = self.pos[row]
        self.h.changeColBounds(k, float(max(lo, self.lo[k])), float(min(hi, self.hi[k])))

    def release(self, row: int) -> None:
        k = self.pos[row]
        self.h.changeColBounds(k, float(self.lo[k]), float(self.hi[k]))


def analyse(chk: "KKTChecker", x: np.ndarray, ev: dict[str, Any], tol: "Tolerances") -> PriceAnalysis:
    """The price intervals and settlement prices at ``x`` (see the module's documentation); kept per point."""
    idx = chk.priced
    key = _point_key(x, tol)
    cache = _cache_of(chk)
    with cache.lock:
        hit = cache.items.get(key)
        if hit is not None:
            cache.items.move_to_end(key)
            return hit
    t0 = time.perf_counter()
    out = _analyse(chk, x, ev, tol, idx)
    out.seconds = time.perf_counter() - t0
    if out.status not in ("optimal", "infeasible", "budget"):
        return out  # an interrupted or failed LP: not a function of the point, not kept
    with cache.lock:
        cache.items[key] = out
        while len(cache.items) > _CACHE_SIZE:
            cache.items.popitem(last=False)
    return out


def _analyse(chk: "KKTChecker", x: np.ndarray, ev: dict[str, Any], tol: "Tolerances", idx: np.ndarray) -> PriceAnalysis:
    tau = PRICE_SHARE * tol.dual
    box = _Box(chk, x, ev, tau, PRICE_SHARE * tol.complementarity)
    jt = chk.search._jt(ev["jv"])
    lp = _PriceLP(jt, box, tau, getattr(tol, "price_lp_iterations", None))
    out = PriceAnalysis("optimal", indices=idx)

    def interval(row: int) -> tuple[float, float] | None:
        if row not in lp.pos:  # an inactive inequality: its multiplier is 0
            return 0.0, 0.0
        ends = []
        for sense in (1.0, -1.0):
            status, v = lp.extreme(row, sense)
            if status != "optimal":
                out.status = status
                return None
            ends.append(v)
        return min(ends), max(ends)

    # each priced row's interval over all valid multipliers; the settlement prices are their midpoints when those
    # are valid together (one LP), else in row order the midpoint of each interval given the earlier rows'
    # settlement prices
    whole = []
    for row in idx:
        got = interval(int(row))
        if got is None:
            break
        whole.append(got)
    if out.status == "optimal" and _jointly_valid(lp, idx, whole, tol, out):
        out.rows = [PriceInterval(chk.row_names[int(r)], lo, hi, 0.5 * (lo + hi), lo, hi) for r, (lo, hi) in zip(idx, whole)]
        idx = idx[:0]
    for k, row in enumerate(idx if out.status == "optimal" else ()):
        row = int(row)
        given = whole[k] if k == 0 else interval(row)
        if given is None:
            break
        s = 0.5 * (given[0] + given[1])
        out.rows.append(PriceInterval(chk.row_names[row], whole[k][0], whole[k][1], s, given[0], given[1]))
        if k + 1 < idx.size and row in lp.pos:
            band = _band(given[0], given[1], tol)
            lp.hold(row, s - band, s + band)
    if out.status != "optimal":
        out.rows = []
    out.iterations, out.lps = lp.used, lp.lps
    return out


def _band(lo: float, hi: float, tol: "Tolerances") -> float:
    """How far from a settlement price its row is held while the later rows' intervals are computed."""
    s = 0.5 * (lo + hi)
    return min(0.5 * (hi - lo), PRICE_BAND * tol.price * max(1.0, abs(s)))


def _jointly_valid(lp: _PriceLP, idx: np.ndarray, whole: list, tol: "Tolerances", out: PriceAnalysis) -> bool:
    """Whether the intervals' midpoints are valid together (every row held within its band); the holds are
    released when they are not (the sequential rule then holds the rows one by one)."""
    rows = [(int(r), lo, hi) for r, (lo, hi) in zip(idx, whole) if int(r) in lp.pos]
    if len(rows) < 2:
        return True
    for r, lo, hi in rows:
        s, band = 0.5 * (lo + hi), _band(lo, hi, tol)
        lp.hold(r, s - band, s + band)
    status, _ = lp.extreme(None, 0.0)
    if status in ("optimal", "infeasible"):
        if status == "infeasible":
            for r, _lo, _hi in rows:
                lp.release(r)
        out.joint = status == "optimal"
        return status == "optimal"
    out.status = status
    return False


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: "OrderedDict[str, PriceAnalysis]" = OrderedDict()


_CACHES_LOCK = threading.Lock()


def _cache_of(chk: Any) -> _Cache:
    with _CACHES_LOCK:
        c = chk.__dict__.get("_price_cache")
        if c is None:
            c = chk.__dict__["_price_cache"] = _Cache()
        return c


def _point_key(x: np.ndarray, tol: "Tolerances") -> str:
    h = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    h.update(repr((tol.dual, tol.complementarity, tol.price, getattr(tol, "price_lp_iterations", None))).encode())
    return h.hexdigest()


def fixed_price_multipliers(
    chk: "KKTChecker", x: np.ndarray, y: np.ndarray, ev: dict[str, Any], tol: "Tolerances"
) -> MultiplierOutcome:
    """With the priced rows' multipliers held at ``y``'s values, the other multipliers that make ``x`` a KKT point
    (the certificate's own stages: the received ones clipped, recomputed, local LPs). The priced part of ``J^T y``
    moves into the gradient; the scale of every column stays the objective's own gradient. A found ``y`` carries
    the fixed prices; it is re-checked by the caller."""
    idx = chk.priced
    search = chk.search
    jt = search._jt(ev["jv"])
    fixed = np.zeros(chk.m)
    fixed[idx] = y[idx]
    grad = ev["grad"] + jt @ fixed
    ev2 = {**ev, "grad": grad}
    tau = LP_MARGIN * tol.dual
    box = _Box(chk, x, ev2, tau, LP_MARGIN * tol.complementarity)
    box.w = np.maximum(1.0, np.abs(ev["grad"]))
    box.lo, box.hi = box.lo0 - tau * box.w, box.hi0 + tau * box.w
    box.ylo[idx] = 0.0
    box.yhi[idx] = 0.0
    box.var_row = box.yhi > box.ylo
    free = np.array(y, dtype=float)
    free[idx] = 0.0
    dec = search._sanitised(free, grad, jt, box, tau)
    if not dec.found:
        dec = search._from_point(x, ev2, tol, box, jt, tau, dec.info)
    if dec.found and dec.y is not None:
        full = np.array(dec.y, dtype=float)
        full[idx] = y[idx]
        dec.y = full
    return dec


def price_stage(
    chk: "KKTChecker", cert: "Certificate", x: np.ndarray, y: np.ndarray, y_final: np.ndarray,
    ev: dict[str, Any], tol: "Tolerances",
) -> None:
    """The stage ``price`` of a plan whose point passed: fills ``cert.prices`` and, when the proposed prices are
    not the settlement prices or admit no valid multipliers, appends the reasons and sets ``decided_by``."""
    t0 = time.perf_counter()
    idx = chk.priced
    ana = analyse(chk, x, ev, tol)
    info: dict[str, Any] = {"rule": PRICE_RULE, "joint": ana.joint, "status": ana.status, "lps": ana.lps,
                            "iterations": ana.iterations,
                            "analysis_seconds": ana.seconds}
    cert.prices = info
    reasons: list[str] = []
    if ana.status != "optimal":
        why = {"infeasible": f"no multipliers are valid at {PRICE_SHARE:g} of the tolerances",
               "budget": f"the price LPs' budget of {getattr(tol, 'price_lp_iterations', None)} iterations ran out"}
        reasons.append(f"price: no price intervals ({why.get(ana.status, 'LP status ' + ana.status)})")
    else:
        rows = []
        for r, i in zip(ana.rows, idx):
            p = float(y[i])
            ok = abs(p - r.settlement) <= tol.price * max(1.0, abs(r.settlement))
            rows.append({**r.as_dict(), "proposed": p, "ok": ok})
            if not ok:
                where = "inside" if r.low <= p <= r.high else "outside"
                given = "" if (r.given_low, r.given_high) == (r.low, r.high) else (
                    f", [{r.given_low:.8g}, {r.given_high:.8g}] given the earlier rows' settlement prices")
                reasons.append(
                    f"price: {r.name} proposed {p:.8g}, the settlement price is {r.settlement:.8g} "
                    f"({where} the valid interval [{r.low:.8g}, {r.high:.8g}]{given}; rule: {PRICE_RULE})"
                )
        info["rows"] = rows
    if not reasons:
        if np.array_equal(y_final[idx], y[idx]):  # the multipliers that decided the point kept the prices
            info["admissible"] = "decided"
        else:
            dec = fixed_price_multipliers(chk, x, y, ev, tol)
            ok = False
            if dec.found:
                cand = chk.measures(x, dec.y, dec.z_L, dec.z_U, ev)
                ok = not any(chk.failures(cand, tol).values())
            info["admissible"] = dec.stage if ok else False
            if not ok:
                reasons.append("price: the proposed prices, held fixed, admit no multipliers that make the point a "
                               f"KKT point (search ended at stage {dec.stage})")
    info["seconds"] = time.perf_counter() - t0
    if reasons:
        cert.reasons.extend(reasons)
        cert.decided_by = "price"
