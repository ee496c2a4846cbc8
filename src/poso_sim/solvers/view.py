"""A restriction of a compiled NLP for one stage of a solve (rows kept, tightened bounds, log-parametrised
variables, a proximal term, own scaling), with the callback interface any backend solves."""

from __future__ import annotations

import hashlib

import numpy as np

from poso_sim.solvers.backend import symbolic

__all__ = ["ProblemView"]


class ProblemView:
    """A restriction of a compiled NLP for one stage of the solve.

    * ``rows``: the subset of rows kept (the others are dropped);
    * ``x_lb, x_ub``: tightened bounds (equal bounds fix a variable);
    * ``log_idx``: variables parametrised as ``x = exp(u)`` (the view's own variable is ``u`` there); this bounds
      the curvature of the pipe-loss cliff ``exp(-a/m)`` at small flows;
    * ``prox_idx, prox_ref, prox_weight``: a proximal term ``w * ||v - ref||^2`` on the view's variables.

    It exposes the callback interface of :class:`poso_sim.nlp.CompiledNLP` in the view's variables, so any backend
    can solve it; :meth:`to_x` / :meth:`from_x` convert points.
    """

    def __init__(
        self,
        nlp,
        *,
        rows: np.ndarray | None = None,
        x_lb: np.ndarray | None = None,
        x_ub: np.ndarray | None = None,
        log_idx: np.ndarray | None = None,
        prox_idx: np.ndarray | None = None,
        prox_ref: np.ndarray | None = None,
        prox_weight: float = 0.0,
        prox_space: str = "view",
    ):
        self.prox_space = prox_space
        self.base = nlp
        self.n = nlp.n
        self.rows = np.arange(nlp.m) if rows is None else np.asarray(rows, dtype=np.int64)
        self.m = len(self.rows)
        lbx = np.array(nlp.x_lb if x_lb is None else x_lb, dtype=float)
        ubx = np.array(nlp.x_ub if x_ub is None else x_ub, dtype=float)
        self.log_idx = np.zeros(0, dtype=np.int64) if log_idx is None else np.asarray(log_idx, dtype=np.int64)
        self.x_lb, self.x_ub = lbx.copy(), ubx.copy()
        if len(self.log_idx):
            with np.errstate(divide="ignore"):
                self.x_lb[self.log_idx] = np.log(np.maximum(lbx[self.log_idx], 1e-12))
                self.x_ub[self.log_idx] = np.where(np.isfinite(ubx[self.log_idx]), np.log(np.maximum(ubx[self.log_idx], 1e-12)), np.inf)
        self.g_lb = np.asarray(nlp.g_lb)[self.rows]
        self.g_ub = np.asarray(nlp.g_ub)[self.rows]
        jr, jc = (np.asarray(a, dtype=np.int64) for a in nlp.jac_structure)
        self._jr_full, self._jc_full = jr, jc
        row_map = -np.ones(nlp.m, dtype=np.int64)
        row_map[self.rows] = np.arange(self.m)
        self._jmask = row_map[jr] >= 0
        self.jac_structure = (row_map[jr][self._jmask], jc[self._jmask])
        self.prox_idx = np.zeros(0, dtype=np.int64) if prox_idx is None else np.asarray(prox_idx, dtype=np.int64)
        self.prox_ref = np.zeros(0) if prox_ref is None else np.asarray(prox_ref, dtype=float)
        self.prox_weight = float(prox_weight)
        hr, hc = (np.asarray(a, dtype=np.int64) for a in nlp.hess_structure)
        self._nbase_h = len(hr)
        self._hr_base, self._hc_base = hr, hc
        diag_needed = np.union1d(self.prox_idx, self.log_idx)
        existing = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(hr, hc))}
        extra = [int(p) for p in diag_needed if (int(p), int(p)) not in existing]
        hr = np.concatenate([hr, np.array(extra, dtype=np.int64)])
        hc = np.concatenate([hc, np.array(extra, dtype=np.int64)])
        pos = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(hr, hc))}
        self._prox_hpos = np.array([pos[(int(p), int(p))] for p in self.prox_idx], dtype=np.int64)
        self._log_hpos = np.array([pos[(int(p), int(p))] for p in self.log_idx], dtype=np.int64)
        self.hess_structure = (hr, hc)
        self._lam_full = np.zeros(nlp.m)
        self._is_log = np.zeros(nlp.n, dtype=bool)
        self._is_log[self.log_idx] = True
        self.x_scaling = None
        self.g_scaling = None

    def set_scaling(self, typical: np.ndarray, v_ref: np.ndarray) -> None:
        """Scale each variable by 1/typical size and each row by 1/max|row of the scaled Jacobian| at ``v_ref``."""
        xs = 1.0 / np.asarray(typical, dtype=float)
        xs[self.log_idx] = 1.0
        jr, jc = self.jac_structure
        vals = np.abs(self.jac(v_ref)) / xs[jc]
        rowmax = np.zeros(self.m)
        np.maximum.at(rowmax, jr, vals)
        self.x_scaling = xs
        self.g_scaling = np.clip(1.0 / np.where(rowmax > 0, rowmax, 1.0), 1e-3, 1e3)

    maximize = False

    # -- the same problem as a CasADi graph (for poso_sim.solvers.casadi_ipopt) ---------------------------------------
    def symbolic_key(self) -> tuple:
        """Identifies the structure of :meth:`symbolic` (not its parameter values)."""
        h = hashlib.sha256()
        for a in (self.rows, self.log_idx, self.prox_idx):
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes() + b"|")
        return (self.base.fingerprint, self.n, self.m, self.prox_space, h.hexdigest())

    def symbolic(self):
        """``(w, p, f, g)`` CasADi SX: Ipopt's variables ``w = x_scaling * v``, the parameters
        ``p = [obj_scaling, x_scaling (n), g_scaling (m), prox_weight, prox_ref]``, scaled objective and rows."""
        import casadi as ca

        n, m, npx = self.n, self.m, len(self.prox_idx)
        w = ca.SX.sym("w", n)
        p = ca.SX.sym("p", 2 + n + m + npx)
        s_f, xs, gs, rho = p[0], p[1 : 1 + n], p[1 + n : 1 + n + m], p[1 + n + m]
        ref = p[2 + n + m :]
        v = w / xs
        x = ca.SX(v)
        if len(self.log_idx):
            li = self.log_idx.tolist()
            x[li] = ca.exp(v[li])
        f = symbolic(self.base, "_f", x)
        if npx:
            pi = self.prox_idx.tolist()
            d = (x[pi] if self.prox_space == "x" else v[pi]) - ref
            f = f + rho * ca.sumsqr(d)
        g = symbolic(self.base, "_g", x)
        if self.m != self.base.m:
            g = g[self.rows.tolist()]
        return w, p, s_f * f, gs * g

    def symbolic_params(self) -> np.ndarray:
        """Values of the view's own parameters of :meth:`symbolic` (proximal weight, reference)."""
        return np.concatenate([[self.prox_weight], np.asarray(self.prox_ref, dtype=float)])

    def clip(self, v):
        return np.clip(np.asarray(v, dtype=float), self.x_lb, self.x_ub)

    # conversions between the view's variables and the canonical x
    def to_x(self, v):
        x = np.array(v, dtype=float)
        if len(self.log_idx):
            x[self.log_idx] = np.exp(np.minimum(x[self.log_idx], 700.0))  # trial points may overshoot
        return x

    def from_x(self, x):
        v = np.array(x, dtype=float)
        if len(self.log_idx):
            v[self.log_idx] = np.log(np.maximum(v[self.log_idx], 1e-300))
        return v

    def _scale(self, x):
        s = np.ones(self.n)
        s[self.log_idx] = x[self.log_idx]
        return s

    def _prox_terms(self, v):
        """(value d, first derivative, second derivative) of each proximal coordinate w.r.t. the view variable."""
        p = self.prox_idx
        if self.prox_space == "x" and len(self.log_idx):
            xp = np.where(self._is_log[p], np.exp(v[p]), v[p])
            d = xp - self.prox_ref
            d1 = np.where(self._is_log[p], xp, 1.0)
            d2 = np.where(self._is_log[p], xp, 0.0)
            return d, d1, d2
        d = v[p] - self.prox_ref
        return d, np.ones(len(p)), np.zeros(len(p))

    def f(self, v):
        val = self.base.f(self.to_x(v))
        if len(self.prox_idx):
            d, _, _ = self._prox_terms(v)
            val += self.prox_weight * float(d @ d)
        return val

    def grad(self, v):
        x = self.to_x(v)
        gr = np.array(self.base.grad(x), dtype=float)
        if len(self.log_idx):
            gr[self.log_idx] *= x[self.log_idx]
        if len(self.prox_idx):
            d, d1, _ = self._prox_terms(v)
            gr[self.prox_idx] += 2.0 * self.prox_weight * d * d1
        return gr

    def g(self, v):
        return np.asarray(self.base.g(self.to_x(v)))[self.rows]

    def jac(self, v):
        x = self.to_x(v)
        vals = np.asarray(self.base.jac(x))
        if len(self.log_idx):
            vals = vals * self._scale(x)[self._jc_full]
        return vals[self._jmask]

    def hess(self, v, lam, obj_factor):
        x = self.to_x(v)
        lam_full = self._lam_full
        lam_full[:] = 0.0
        lam_full[self.rows] = lam
        base = np.asarray(self.base.hess(x, lam_full, obj_factor))
        out = np.zeros(len(self.hess_structure[0]))
        if len(self.log_idx):
            s = self._scale(x)
            out[: self._nbase_h] = base * s[self._hr_base] * s[self._hc_base]
            # second derivative of exp: d2x/du2 = x, times the gradient of the Lagrangian in x
            vals = np.asarray(self.base.jac(x))
            jt_lam = np.bincount(self._jc_full, weights=vals * lam_full[self._jr_full], minlength=self.n)
            dl = obj_factor * np.asarray(self.base.grad(x)) + jt_lam
            out[self._log_hpos] += dl[self.log_idx] * x[self.log_idx]
        else:
            out[: self._nbase_h] = base
        if len(self._prox_hpos):
            d, d1, d2 = self._prox_terms(v)
            out[self._prox_hpos] += 2.0 * self.prox_weight * obj_factor * (d1 * d1 + d * d2)
        return out
