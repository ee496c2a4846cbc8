"""The KKT check: integrity of the message, then primal feasibility, stationarity, multiplier signs and
complementarity on the verifier's own compiled problem; when the received multipliers fail, the exact decision
of :mod:`poso_sim.kkt.decide` (does any valid multiplier vector exist for this point?).

Problem (as compiled by :mod:`poso_sim.nlp`)::

    min f(x)   s.t.   g_lb <= g(x) <= g_ub,   x_lb <= x <= x_ub

Multipliers in Ipopt's convention: ``grad f + J^T y - z_L + z_U = 0``, ``z_L, z_U >= 0``; an inequality row
at its lower bound has ``y <= 0``, at its upper bound ``y >= 0``. Scaling of every measure: docs/certificate.md.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from poso_sim.kkt.certificate import DEFAULT_TOLERANCES, Certificate, Tolerances
from poso_sim.kkt.decide import MultiplierSearch
from poso_sim.kkt.origin import problem_of
from poso_sim.kkt.prices import price_stage, priced_row_indices
from poso_sim.nlp.solution import solution_digest

__all__ = ["KKTChecker", "verify", "checker_for", "Measures"]


def _segments(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order of ``keys`` and the (unique key, start) pairs for ``np.*.reduceat`` over non-empty groups."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    if sk.size == 0:
        return order, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    return order, sk[starts].astype(np.int64), starts.astype(np.int64)


@dataclass
class Measures:
    """Scaled per-entry measures of one primal-dual point (arrays) and their maxima."""

    row_viol: np.ndarray  # (m,) scaled violation of g_lb <= g <= g_ub
    bound_viol: np.ndarray  # (n,) scaled violation of x_lb <= x <= x_ub (of x as sent)
    stat: np.ndarray  # (n,) scaled |stationarity residual|
    sign_x: np.ndarray  # (n,) wrong-signed part of bound multipliers (scaled as stat)
    sign_row: np.ndarray  # (m,) wrong-signed part of row multipliers
    comp_x: np.ndarray  # (n,) z_L (x - lb) + z_U (ub - x)
    comp_row: np.ndarray  # (m,) |y| * slack on the side y's sign points to

    def __post_init__(self) -> None:
        self.primal = _mx(self.row_viol)
        self.bound = _mx(self.bound_viol)
        self.dual = _mx(self.stat)
        self.sign = float(max(_mx(self.sign_x), _mx(self.sign_row)))
        self.complementarity = float(max(_mx(self.comp_x), _mx(self.comp_row)))

    def as_dict(self) -> dict[str, float]:
        return {
            "primal_residual": self.primal,
            "bound_violation": self.bound,
            "dual_residual": self.dual,
            "sign_violation": self.sign,
            "complementarity": self.complementarity,
        }


def _mx(a: np.ndarray) -> float:
    return float(a.max()) if a.size else 0.0


class KKTChecker:
    """Precomputed structure of one compiled problem; :meth:`verify` checks solutions against it.

    Build it once per problem (construction ~ a few ms for the Manchester model); :func:`verify` keeps one per
    problem object.
    """

    def __init__(self, problem: Any):
        self.problem = problem
        self.n = int(problem.n)
        self.m = int(problem.m)
        jr, jc = problem.jac_structure
        self.jr = np.asarray(jr, dtype=np.int64)
        self.jc = np.asarray(jc, dtype=np.int64)
        self.x_lb = np.asarray(problem.x_lb, dtype=float)
        self.x_ub = np.asarray(problem.x_ub, dtype=float)
        self.g_lb = np.asarray(problem.g_lb, dtype=float)
        self.g_ub = np.asarray(problem.g_ub, dtype=float)
        self.lb_fin = np.isfinite(self.x_lb)
        self.ub_fin = np.isfinite(self.x_ub)
        self.glb_fin = np.isfinite(self.g_lb)
        self.gub_fin = np.isfinite(self.g_ub)
        self.row_eq = self.glb_fin & self.gub_fin & (self.g_lb == self.g_ub)
        self.x_lb0 = np.where(self.lb_fin, self.x_lb, 0.0)
        self.x_ub0 = np.where(self.ub_fin, self.x_ub, 0.0)
        self.g_lb0 = np.where(self.glb_fin, self.g_lb, 0.0)
        self.g_ub0 = np.where(self.gub_fin, self.g_ub, 0.0)
        self.lb_fin_f = self.lb_fin.astype(float)
        self.ub_fin_f = self.ub_fin.astype(float)
        self.no_glb = (~self.glb_fin).astype(float)
        self.no_gub = (~self.gub_fin).astype(float)
        self.glb_ineq_f = (self.glb_fin & ~self.row_eq).astype(float)
        self.gub_ineq_f = (self.gub_fin & ~self.row_eq).astype(float)
        # scale of bound violations and of the row constants
        self.bound_scale_l = np.maximum(1.0, np.abs(self.x_lb0))
        self.bound_scale_u = np.maximum(1.0, np.abs(self.x_ub0))
        self.row_const = np.maximum(np.abs(self.g_lb0), np.abs(self.g_ub0))
        # the size a variable can have: its largest finite bound, at least 1 (one unit of the variable)
        self.var_mag = np.maximum.reduce(
            [np.ones(self.n), np.where(self.lb_fin, np.abs(self.x_lb0), 0.0), np.where(self.ub_fin, np.abs(self.x_ub0), 0.0)]
        )
        self._search = None
        self.row_order, self.row_keys, self.row_starts = _segments(self.jr, self.m)
        self.x_names = list(problem.x_names)
        self.row_names = list(problem.row_names)
        self.fingerprint = str(getattr(problem, "fingerprint", ""))
        self.has_true_cost = bool(getattr(problem, "has_expr", lambda _n: False)("true_cost"))
        self.priced = priced_row_indices(problem)  # rows whose multipliers are prices (kkt.prices)

    @property
    def search(self) -> Any:
        """The :class:`~poso_sim.kkt.decide.MultiplierSearch` of this problem (warm basis, point cache), built on
        first use - once, whichever thread gets there first."""
        if self._search is None:
            with _BUILD_LOCK:
                if self._search is None:
                    self._search = MultiplierSearch(self)
        return self._search

    # -- evaluation --------------------------------------------------------------------------------------------------
    def evaluate(self, x: np.ndarray) -> dict[str, Any]:
        p = self.problem
        return {
            "f": float(p.f(x)),
            "grad": np.asarray(p.grad(x), dtype=float),
            "g": np.asarray(p.g(x), dtype=float),
            "jv": np.asarray(p.jac(x), dtype=float),
        }

    def _rowmax(self, vals: np.ndarray) -> np.ndarray:
        out = np.zeros(self.m)
        if self.row_keys.size:
            out[self.row_keys] = np.maximum.reduceat(vals[self.row_order], self.row_starts)
        return out

    def row_scale(self, x: np.ndarray, ev: dict[str, Any]) -> np.ndarray:
        """``max(1, |bound|, max_j |J_ij| max(|x_j|, u_j))``: the size the row's largest term has, or can have within
        the variable's finite bounds (``u_j = max(1, |finite bounds|)``), in the row's own unit."""
        terms = np.abs(ev["jv"]) * np.maximum(np.abs(x[self.jc]), self.var_mag[self.jc])
        return np.maximum(np.maximum(1.0, self.row_const), self._rowmax(terms))

    def bound_violation(self, x: np.ndarray) -> np.ndarray:
        """Scaled violation of ``x_lb <= x <= x_ub`` per variable (relative to ``max(1, |bound|)``)."""
        with np.errstate(invalid="ignore"):
            v = np.maximum((self.x_lb - x) / self.bound_scale_l, (x - self.x_ub) / self.bound_scale_u)
        return np.maximum(np.nan_to_num(v, nan=0.0, neginf=0.0), 0.0)

    def measures(
        self,
        x: np.ndarray,
        y: np.ndarray,
        zl: np.ndarray,
        zu: np.ndarray,
        ev: dict[str, Any],
        bound_viol: np.ndarray | None = None,
    ) -> Measures:
        """Measures of ``(x, y, z_L, z_U)``; ``bound_viol`` is that of the ``x`` as sent (default: of ``x``)."""
        g, jv, grad = ev["g"], ev["jv"], ev["grad"]
        # primal: rows (a missing bound gives -inf and drops out of the maximum)
        rs = ev.get("row_scale")
        if rs is None:
            rs = ev["row_scale"] = self.row_scale(x, ev)
        row_viol = np.maximum(self.g_lb - g, g - self.g_ub)
        np.maximum(row_viol, 0.0, out=row_viol)
        row_viol /= rs
        # primal: bounds
        if bound_viol is None:
            bound_viol = self.bound_violation(x)
        # stationarity
        jy = jv * y[self.jr]
        jty = np.bincount(self.jc, weights=jy, minlength=self.n)
        raw = grad + jty
        raw -= zl
        raw += zu
        # scale: the objective's own gradient, never the multipliers (they could be inflated along null vectors
        # of J^T to loosen the test)
        scale = np.maximum(1.0, np.abs(grad))
        stat = np.abs(raw) / scale
        # signs: bound multipliers >= 0, and 0 on a missing bound
        sign_x = np.where(self.lb_fin, np.maximum(-zl, 0.0), np.abs(zl))
        sign_x += np.where(self.ub_fin, np.maximum(-zu, 0.0), np.abs(zu))
        sign_x /= scale
        # rows: y <= 0 needs a finite lower bound, y >= 0 a finite upper bound (equalities: free)
        neg = np.maximum(-y, 0.0)
        pos = np.maximum(y, 0.0)
        sign_row = neg * self.no_glb + pos * self.no_gub
        # complementarity (objective units): multiplier times the slack of the bound it belongs to
        comp_x = np.maximum(zl, 0.0) * (np.maximum(x - self.x_lb0, 0.0) * self.lb_fin_f)
        comp_x += np.maximum(zu, 0.0) * (np.maximum(self.x_ub0 - x, 0.0) * self.ub_fin_f)
        comp_row = neg * (np.maximum(g - self.g_lb0, 0.0) * self.glb_ineq_f)
        comp_row += pos * (np.maximum(self.g_ub0 - g, 0.0) * self.gub_ineq_f)
        return Measures(row_viol, bound_viol, stat, sign_x, sign_row, comp_x, comp_row)

    # -- verdict -----------------------------------------------------------------------------------------------------
    def failures(self, ms: Measures, tol: Tolerances) -> dict[str, bool]:
        return {
            "primal": not (ms.primal <= tol.primal),
            "bound": not (ms.bound <= tol.bound),
            "dual": not (ms.dual <= tol.dual),
            "sign": not (ms.sign <= tol.sign),
            "complementarity": not (ms.complementarity <= tol.complementarity),
        }

    def worst(self, ms: Measures, k: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        def top(measure: str, arr: np.ndarray, names: list[str], prefix: str = "") -> None:
            if not arr.size or k <= 0 or not arr.max() > 0.0:
                return
            kk = min(k, arr.size)
            idx = np.argpartition(-arr, kk - 1)[:kk]
            idx = idx[np.argsort(-arr[idx], kind="stable")]
            for i in idx:
                v = float(arr[i])
                if v > 0.0:
                    out.append({"measure": measure, "name": prefix + names[i], "value": v})

        top("primal", ms.row_viol, self.row_names)
        top("bound", ms.bound_viol, self.x_names)
        top("stationarity", ms.stat, self.x_names)
        top("sign", ms.sign_x, self.x_names, "bound multiplier of ")
        top("sign", ms.sign_row, self.row_names)
        top("complementarity", ms.comp_x, self.x_names, "bounds of ")
        top("complementarity", ms.comp_row, self.row_names)
        return out

    def reasons(self, ms: Measures, tol: Tolerances) -> list[str]:
        out = []

        def at(arr_pairs: list[tuple[np.ndarray, list[str], str]]) -> str:
            best, name = -1.0, "?"
            for arr, names, prefix in arr_pairs:
                if arr.size:
                    i = int(np.argmax(arr))
                    if arr[i] > best:
                        best, name = float(arr[i]), prefix + names[i]
            return name

        if not (ms.primal <= tol.primal):
            where = at([(ms.row_viol, self.row_names, "")])
            out.append(f"primal infeasibility {ms.primal:.3g} > {tol.primal:g} at {where}")
        if not (ms.bound <= tol.bound):
            where = at([(ms.bound_viol, self.x_names, "")])
            out.append(f"primal infeasibility: bound violation {ms.bound:.3g} > {tol.bound:g} at bound of {where}")
        if not (ms.dual <= tol.dual):
            where = at([(ms.stat, self.x_names, "")])
            out.append(f"stationarity {ms.dual:.3g} > {tol.dual:g} at {where}")
        if not (ms.sign <= tol.sign):
            where = at([(ms.sign_x, self.x_names, "bound multiplier of "), (ms.sign_row, self.row_names, "")])
            out.append(f"multiplier sign {ms.sign:.3g} > {tol.sign:g} at {where}")
        if not (ms.complementarity <= tol.complementarity):
            where = at([(ms.comp_x, self.x_names, "bounds of "), (ms.comp_row, self.row_names, "")])
            out.append(f"complementarity {ms.complementarity:.3g} > {tol.complementarity:g} at {where}")
        return out

    # -- integrity ---------------------------------------------------------------------------------------------------
    def integrity(self, solution: Any, claimed_digest: str | None) -> list[str]:
        """The integrity reasons of a message (empty when it is whole)."""
        return self._integrity(solution, claimed_digest)[0]

    def _integrity(self, solution: Any, claimed_digest: str | None) -> tuple[list[str], str]:
        """The integrity reasons and the digest of the content (computed once per verdict)."""
        reasons: list[str] = []
        fp = str(getattr(solution, "fingerprint", "") or "")
        if fp != self.fingerprint:
            reasons.append(
                f"fingerprint mismatch: the solution is for model {fp[:16] or '(none)'}..., "
                f"this problem is {self.fingerprint[:16]}..."
            )
        arrays = {}
        for name, size in (("x", self.n), ("y", self.m), ("z_L", self.n), ("z_U", self.n)):
            a = np.asarray(getattr(solution, name), dtype=float).reshape(-1)
            arrays[name] = a
            if a.size != size:
                reasons.append(f"length mismatch: {name} has {a.size} entries, the problem needs {size}")
            elif not np.all(np.isfinite(a)):
                bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
                reasons.append(f"non-finite values: {name} has {bad} NaN/inf entries")
        names = list(getattr(solution, "x_names", ()) or ())
        if names and len(names) == self.n and names != self.x_names:
            i = next(i for i, (a, b) in enumerate(zip(names, self.x_names)) if a != b)
            reasons.append(f"variable order mismatch: entry {i} is {names[i]}, the problem has {self.x_names[i]}")
        rnames = list(getattr(solution, "row_names", ()) or ())
        if rnames and len(rnames) == self.m and rnames != self.row_names:
            i = next(i for i, (a, b) in enumerate(zip(rnames, self.row_names)) if a != b)
            reasons.append(f"row order mismatch: entry {i} is {rnames[i]}, the problem has {self.row_names[i]}")
        variant = str(getattr(solution, "variant", "") or "")
        actual = solution_digest(fp, variant, arrays["x"], arrays["y"], arrays["z_L"], arrays["z_U"])
        recorded = getattr(solution, "__dict__", {}).get("digest")  # a cached digest that no longer fits the arrays
        for label, d in (("claimed", claimed_digest), ("recorded", recorded)):
            if d is not None and d != actual:
                reasons.append(f"digest mismatch: {label} {str(d)[:16]}... but the content hashes to {actual[:16]}...")
        return reasons, actual

    # -- the check ---------------------------------------------------------------------------------------------------
    def verify(
        self, solution: Any, tolerances: Tolerances | None = None, *, claimed_digest: str | None = None
    ) -> Certificate:
        tol = tolerances or DEFAULT_TOLERANCES
        c0 = time.thread_time()
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        cert = Certificate(
            accepted=False,
            fingerprint=str(getattr(solution, "fingerprint", "") or ""),
            problem_fingerprint=self.fingerprint,
            variant=str(getattr(solution, "variant", "") or ""),
            tolerances=tol.as_dict(),
        )
        reasons, cert.digest = self._integrity(solution, claimed_digest)
        t1 = time.perf_counter()
        timings["integrity"] = t1 - t0
        if reasons:
            cert.reasons = reasons
            cert.integrity_ok = False
            cert.seconds = time.perf_counter() - t0
            cert.cpu_seconds = time.thread_time() - c0
            cert.timings = timings
            return cert
        x_sent = np.asarray(solution.x, dtype=float)
        y = np.asarray(solution.y, dtype=float)
        zl = np.asarray(solution.z_L, dtype=float)
        zu = np.asarray(solution.z_U, dtype=float)
        # bound violations are judged on their own scale (tolerance ``bound``); everything else at x as sent
        bound_viol = self.bound_violation(x_sent)
        x = x_sent
        ev = self.evaluate(x)
        cert.objective = ev["f"]
        cert.cost = float(self.problem.true_cost(x)) if self.has_true_cost else ev["f"]
        t2 = time.perf_counter()
        timings["evaluation"] = t2 - t1
        ms = self.measures(x, y, zl, zu, ev, bound_viol)
        fails = self.failures(ms, tol)
        t3 = time.perf_counter()
        timings["residuals"] = t3 - t2
        cert.received = ms.as_dict()
        final, y_final = ms, y
        cert.decided_by = "received"
        point_ok = not (fails["primal"] or fails["bound"])
        if any(fails.values()) and point_ok and tol.decide:
            dec = self.search.decide(x, y, ev, tol)
            cert.decision = {"stage": dec.stage, "exists": dec.exists, **dec.info}
            cert.decided_by = dec.stage
            if dec.found:
                cand = self.measures(x, dec.y, dec.z_L, dec.z_U, ev, bound_viol)
                if not any(self.failures(cand, tol).values()):
                    final, y_final = cand, dec.y
                    cert.found_multipliers = True
                else:
                    cert.decision["recheck"] = "failed"
            timings["decision"] = time.perf_counter() - t3
        elif not point_ok:
            cert.decided_by = "primal"
        cert.primal_residual = final.primal
        cert.bound_violation = final.bound
        cert.dual_residual = final.dual
        cert.sign_violation = final.sign
        cert.complementarity = final.complementarity
        cert.reasons = self.reasons(final, tol)
        if cert.reasons and cert.decision:
            st = cert.decision.get("stage")
            if st == "budget":
                cert.reasons.append(
                    f"no valid multipliers found within the budget of {tol.lp_iterations} simplex iterations"
                )
            elif cert.decision.get("exists") is False:
                where = cert.decision.get("unreachable_column")
                why = f"no multiplier can act on {where}" if where else "multiplier LP infeasible"
                cert.reasons.append(f"no valid multipliers exist for this point ({why})")
            else:
                cert.reasons.append(f"multiplier search ended at stage {st} without valid multipliers")
        if self.priced.size and not cert.reasons:  # a market's prices are part of the proposal
            t4 = time.perf_counter()
            price_stage(self, cert, x, y, y_final, ev, tol)
            timings["price"] = time.perf_counter() - t4
        cert.accepted = not cert.reasons
        cert.worst = self.worst(final, tol.n_worst)
        cert.seconds = time.perf_counter() - t0
        cert.cpu_seconds = time.thread_time() - c0
        cert.timings = timings
        return cert


_CHECKERS: "weakref.WeakKeyDictionary[Any, KKTChecker]" = weakref.WeakKeyDictionary()
#: Guards the lazily built per-problem state (the checker registry, a checker's multiplier search): two threads
#: verifying one problem at once share one checker, so one point cache and one factorisation pool.
_BUILD_LOCK = threading.RLock()


def checker_for(problem: Any) -> KKTChecker:
    """The cached :class:`KKTChecker` of a compiled problem (built on first use). Thread-safe: a checker may be
    used by several verifications at once (docs/kernel.md)."""
    with _BUILD_LOCK:
        try:
            chk = _CHECKERS.get(problem)
        except TypeError:  # not weak-referenceable
            return KKTChecker(problem)
        if chk is None:
            chk = KKTChecker(problem)
            _CHECKERS[problem] = chk
        return chk


def verify(
    problem: Any,
    solution: Any = None,
    tolerances: Tolerances | None = None,
    *,
    claimed_digest: str | None = None,
) -> Certificate:
    """Check ``solution`` against the verifier's own compiled ``problem``; return a :class:`Certificate`.

    ``problem`` may also be a ``case:`` string, or ``None`` (or left out: ``verify(solution)``) for the case and
    instance the solution names; either way a plan of another problem raises ``ProblemMismatchError``
    (:func:`poso_sim.kkt.origin.problem_of`). ``claimed_digest`` is the digest the message announced (if any); it
    must equal the digest of the content.
    """
    if solution is None:
        problem, solution = None, problem
    if problem is None or isinstance(problem, str):
        problem = problem_of(solution, problem)
    return checker_for(problem).verify(solution, tolerances, claimed_digest=claimed_digest)
