"""A reduced formulation of the IES model for the solver, and the exact maps back to the canonical model.

The reduced model has the same feasible set, expressed with fewer variables and rows:

* variables fixed by a single linear row (``m_load = 20``, hub supply temperature 85, slack voltage, source
  pressure, initial storage, leaf gas flows, ...) become constants and their rows leave;
* on the radial heat network the return flow of a pipe equals its supply flow: ``m_ret`` is replaced by ``m_sup``
  and the return mass balances (implied by the supply ones) leave;
* the pipe outlet temperatures are substituted by their definition
  ``theta = T_out + (tau - T_out) * exp(-a / m)`` into the mixing rows, and the loss rows leave.

A point of the reduced model maps to the canonical vector exactly (:meth:`Reduction.to_canonical`). Its
multipliers map too (:meth:`Reduction.canonical_multipliers`): the multipliers of the rows that left are the
solution of the stationarity equations on the columns those rows touch, a small sparse least-squares problem
that is exactly consistent at a KKT point of the reduced model (documented in docs/solver.md).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from scipy.sparse import csr_matrix, hstack
from scipy.sparse.linalg import lsqr

from poso_sim.solvers.backend import symbolic

SUBSTITUTED_ROWS = ("HBranchTempLossS", "HBranchTempLossR", "HKCLLoadR", "HKCLCHPR")


def fixing_rows(nlp, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equality rows that are linear in exactly one variable: returns (rows, variables, values)."""
    jr, jc = (np.asarray(a) for a in nlp.jac_structure)
    counts = np.bincount(jr, minlength=nlp.m)
    eq = np.asarray(nlp.g_lb) == np.asarray(nlp.g_ub)
    single = np.where((counts == 1) & eq)[0]
    if not len(single):
        return single, single, np.zeros(0)
    pos = np.full(nlp.m, -1)
    pos[jr] = np.arange(len(jr))
    entries = pos[single]
    cols = jc[entries]
    j0 = np.asarray(nlp.jac(x0))[entries]
    x1 = x0.copy()
    x1[cols] += 1.0
    j1 = np.asarray(nlp.jac(x1))[entries]
    linear = (np.abs(j0 - j1) <= 1e-12 * np.maximum(1.0, np.abs(j0))) & (np.abs(j0) > 0)
    # one row per variable
    _, first = np.unique(cols[linear], return_index=True)
    rows = single[linear][first]
    cols = cols[linear][first]
    a = j0[linear][first]
    g0 = np.asarray(nlp.g(x0))[rows]
    values = x0[cols] + (np.asarray(nlp.g_lb)[rows] - g0) / a
    return rows, cols, values


def _case_of(model):
    """The case data of a model built from it (``model._case``), or the case itself."""
    return getattr(model, "_case", model)


_MEMO: dict[tuple, "Reduction"] = {}
_MEMO_LOCK = threading.Lock()  # solves in several threads: the eviction below must not race


def cached_reduction(model, canonical_nlp, x_ref: np.ndarray) -> "Reduction":
    """:class:`Reduction` of ``canonical_nlp`` at ``x_ref``, built once per process (the build is direct and
    vectorised on the canonical problem's CasADi functions: about 0.3 s)."""
    x = np.round(np.asarray(x_ref, dtype=float), 9)
    key = (canonical_nlp.fingerprint, hash(x.tobytes()))
    with _MEMO_LOCK:
        red = _MEMO.get(key)
    if red is None:
        red = Reduction(model, canonical_nlp, x_ref)  # outside the lock: two threads may both build it (0.3 s)
        with _MEMO_LOCK:
            red = _MEMO.setdefault(key, red)
            while len(_MEMO) > 8:
                _MEMO.pop(next(iter(_MEMO)))
    return red


class ReducedNLP:
    """The reduced problem with the callback interface of :class:`poso_sim.nlp.CompiledNLP` (what the pipeline's
    views and both backends use): exact derivatives by CasADi's AD on the SX graph, built once."""

    maximize = False

    def __init__(self, canonical, red: "Reduction", z, f, g):
        import hashlib

        import casadi as ca

        from poso_sim.nlp.compiled import _Evaluator  # CasADi is heavy: only when a reduction is built

        t0 = time.perf_counter()
        keep_x, keep_g = red.red_to_can, red.red_rows_to_can
        self.n, self.m = int(keep_x.size), int(keep_g.size)
        self.x_names = [canonical.x_names[i] for i in keep_x]
        self.row_names = [canonical.row_names[i] for i in keep_g]
        self.x_lb, self.x_ub = np.asarray(canonical.x_lb)[keep_x], np.asarray(canonical.x_ub)[keep_x]
        self.g_lb, self.g_ub = np.asarray(canonical.g_lb)[keep_g], np.asarray(canonical.g_ub)[keep_g]
        self.var_component = np.asarray(canonical.var_component)[keep_x]
        self.var_component_names = list(canonical.var_component_names)
        self.row_component = np.asarray(canonical.row_component)[keep_g]
        self.row_component_names = list(canonical.row_component_names)
        lam = ca.SX.sym("lam", self.m)
        sigma = ca.SX.sym("obj_factor")
        jac = ca.jacobian(g, z)
        hess, _ = ca.hessian(sigma * f + ca.dot(lam, g), z)
        hess = ca.tril(hess)
        self._f = _Evaluator(ca.Function("f", [z], [f]))
        self._grad = _Evaluator(ca.Function("grad_f", [z], [ca.densify(ca.gradient(f, z))]))
        self._g = _Evaluator(ca.Function("g", [z], [ca.densify(g)]))
        self._jac = _Evaluator(ca.Function("jac_g", [z], [jac.nz[:]]))
        self._hess = _Evaluator(ca.Function("hess_lag", [z, lam, sigma], [hess.nz[:]]))
        self.jac_structure = tuple(np.asarray(a, dtype=np.int64) for a in jac.sparsity().get_triplet())
        self.hess_structure = tuple(np.asarray(a, dtype=np.int64) for a in hess.sparsity().get_triplet())
        h = hashlib.sha256(b"poso-sim/reduced/v1\n" + canonical.fingerprint.encode())
        for a in (keep_x, keep_g, red.fixed_idx):
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(red.fixed_val, dtype="<f8").tobytes())
        self.fingerprint = h.hexdigest()
        self.seconds = time.perf_counter() - t0

    def _vec(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.n:
            raise ValueError(f"x has {x.size} entries, the reduced problem has {self.n} variables")
        return x

    def f(self, x) -> float:
        return float(self._f(self._vec(x))[0])

    def grad(self, x):
        return self._grad(self._vec(x))

    def g(self, x):
        return self._g(self._vec(x))

    def jac(self, x):
        return self._jac(self._vec(x))

    def hess(self, x, lam, obj_factor: float = 1.0):
        lam = np.ascontiguousarray(lam, dtype=np.float64).reshape(-1)
        return self._hess(self._vec(x), lam, np.array([obj_factor], dtype=np.float64))

    def clip(self, x):
        return np.minimum(np.maximum(self._vec(x), self.x_lb), self.x_ub)


class Reduction:
    """Build the reduced model of a canonical model and map points and multipliers back."""

    def __init__(self, model, canonical_nlp, x_ref: np.ndarray):
        """Build the reduced problem directly from the canonical problem's CasADi functions (vectorised: the
        canonical rows are evaluated on a symbolic canonical vector that is itself a function of the reduced
        variables), without cloning or recompiling the Pyomo model. ``model`` supplies the case data: the model
        built from it, or the case itself."""
        import casadi as ca

        t0 = time.perf_counter()
        self.canonical = nlp = canonical_nlp
        case = _case_of(model)
        cp = case.scalars.cp
        self.t_amb = float(case.scalars.t_ambient)
        pipes = {p.id: p for p in case.heat.pipes}
        self.a = {k: p.loss_coeff * p.length_m / (cp * 1000.0) for k, p in pipes.items()}
        dumped = {d["id"]: d for d in case.model_dump(by_alias=True)["heat"]["pipes"]}
        self.hfrom = {k: dumped[k]["from"] for k in dumped}
        self.hto = {k: dumped[k]["to"] for k in dumped}
        T = sorted({int(nm.rsplit(",", 1)[1].rstrip("]")) for nm in np.asarray(nlp.x_names)[nlp.var_indices("m_sup")]})

        rows, cols, vals = fixing_rows(nlp, np.clip(x_ref, nlp.x_lb, nlp.x_ub))
        self.fixed = {nlp.x_names[c]: float(v) for c, v in zip(cols, vals)}
        self.removed_rows = [nlp.row_names[i] for i in rows]
        for fam in SUBSTITUTED_ROWS:
            if fam in nlp.row_component_names:
                self.removed_rows.extend(nlp.row_names[i] for i in nlp.row_indices(fam))
        pos = {nm: i for i, nm in enumerate(nlp.x_names)}
        hp = sorted(self.a)
        self._msup = np.array([[pos[f"m_sup[{k},{t}]"] for t in T] for k in hp])
        self._mret = np.array([[pos[f"m_ret[{k},{t}]"] for t in T] for k in hp])
        self._tes = np.array([[pos[f"T_end_sup[{k},{t}]"] for t in T] for k in hp])
        self._ter = np.array([[pos[f"T_end_ret[{k},{t}]"] for t in T] for k in hp])
        self._tsf = np.array([[pos[f"T_sup[{self.hfrom[k]},{t}]"] for t in T] for k in hp])
        self._trt = np.array([[pos[f"T_ret[{self.hto[k]},{t}]"] for t in T] for k in hp])
        self._avec = np.array([self.a[k] for k in hp])[:, None]
        self.fixed_idx = np.array([pos[nm] for nm in self.fixed], dtype=np.int64)
        self.fixed_val = np.array(list(self.fixed.values()), dtype=float)
        gone = np.zeros(nlp.n, dtype=bool)
        gone[self.fixed_idx] = True
        for arr in (self._mret, self._tes, self._ter):
            gone[arr.ravel()] = True
        self.red_to_can = np.flatnonzero(~gone).astype(np.int64)
        rpos = {nm: i for i, nm in enumerate(nlp.row_names)}
        self.removed_idx = np.array(sorted(rpos[nm] for nm in self.removed_rows), dtype=np.int64)
        kept = np.ones(nlp.m, dtype=bool)
        kept[self.removed_idx] = False
        self.red_rows_to_can = np.flatnonzero(kept).astype(np.int64)

        # the canonical vector as a function of the reduced one
        z = ca.SX.sym("z", self.red_to_can.size)
        xc = ca.SX.zeros(nlp.n)
        xc[self.red_to_can.tolist()] = z
        if self.fixed_idx.size:
            xc[self.fixed_idx.tolist()] = ca.DM(self.fixed_val)
        ms, tsf, trt = (a.ravel().tolist() for a in (self._msup, self._tsf, self._trt))
        m = xc[ms]
        decay = ca.exp(-ca.DM(np.repeat(self._avec[:, 0], len(T))) / m)
        xc[self._mret.ravel().tolist()] = m
        xc[self._tes.ravel().tolist()] = self.t_amb + (xc[tsf] - self.t_amb) * decay
        xc[self._ter.ravel().tolist()] = self.t_amb + (xc[trt] - self.t_amb) * decay
        f = symbolic(nlp, "_f", xc)
        g = symbolic(nlp, "_g", xc)[self.red_rows_to_can.tolist()]
        self.nlp = ReducedNLP(nlp, self, z, f, g)
        self.model = None
        self.seconds = time.perf_counter() - t0

    def to_reduced(self, x_can: np.ndarray) -> np.ndarray:
        return np.asarray(x_can, dtype=float)[self.red_to_can]

    def to_canonical(self, x_red: np.ndarray) -> np.ndarray:
        x = np.zeros(self.canonical.n)
        x[self.red_to_can] = x_red
        x[self.fixed_idx] = self.fixed_val
        m = x[self._msup]
        decay = np.exp(-self._avec / m)
        x[self._mret] = m
        x[self._tes] = self.t_amb + (x[self._tsf] - self.t_amb) * decay
        x[self._ter] = self.t_amb + (x[self._trt] - self.t_amb) * decay
        return x

    def canonical_multipliers(self, x_can, y_red, zl_red, zu_red):
        """Canonical (y, z_L, z_U) at ``x_can`` from the reduced model's multipliers.

        Kept rows keep their multipliers; variables that left have zero bound multipliers; the removed rows'
        multipliers ``y_R`` solve ``J[R, C]^T y_R = -(grad f + J[K, C]^T y_K - z_L + z_U)_C`` on the columns ``C``
        they touch. Where a pipe sits at its minimum flow, the reduced model's single bound multiplier stands for
        both ``m_sup`` and ``m_ret``: the lower-bound multipliers of both become unknowns of the same system.
        """
        nlp = self.canonical
        y = np.zeros(nlp.m)
        y[self.red_rows_to_can] = y_red
        zl = np.zeros(nlp.n)
        zu = np.zeros(nlp.n)
        zl[self.red_to_can] = zl_red
        zu[self.red_to_can] = zu_red
        x_can = np.asarray(x_can, dtype=float)
        lb = np.asarray(nlp.x_lb)
        at_floor = x_can[self._mret] - lb[self._mret] <= 1e-7 * np.maximum(1.0, np.abs(lb[self._mret]))
        free_z = np.concatenate([self._msup[at_floor], self._mret[at_floor]])
        zl[free_z] = 0.0
        jr, jc = (np.asarray(a) for a in nlp.jac_structure)
        J = csr_matrix((np.asarray(nlp.jac(x_can)), (jr, jc)), shape=(nlp.m, nlp.n))
        resid = np.asarray(nlp.grad(x_can)) + J.T @ y - zl + zu
        R = self.removed_idx
        JR = J[R]
        cols = np.union1d(np.unique(JR.indices), free_z)
        pos = -np.ones(nlp.n, dtype=np.int64)
        pos[cols] = np.arange(cols.size)
        zcols = csr_matrix(
            (-np.ones(free_z.size), (pos[free_z], np.arange(free_z.size))), shape=(cols.size, free_z.size)
        )
        A = hstack([JR[:, cols].T, zcols]).tocsr()
        sol = lsqr(A, -resid[cols], atol=1e-15, btol=1e-15, iter_lim=20000)[0]
        y[R] = sol[: R.size]
        zl[free_z] = sol[R.size :]
        return y, zl, zu
