"""The staged solve of the IES dispatch NLP (see docs/solver.md).

:func:`solve_reduced` solves the reduced formulation of :mod:`poso_sim.solvers.reduce` in stages, each a
:class:`ProblemView` of a compiled NLP (rows kept, tightened bounds, log-parametrised flows, a proximal term, own
scaling) solved by :class:`~poso_sim.solvers.ipopt.IpoptBackend`:

``fixed-flows``
    From the data-only start point (:mod:`poso_sim.solvers.start`) all heat mass flows are fixed: the heat
    network becomes linear in the temperatures and Ipopt settles the electric and heat dispatch.
``proximal``
    The flows are freed, pipe flows parametrised as ``exp(u)``, with a proximal term ``rho * ||m - m_ref||^2``.
``final``
    A free, warm-started solve of the reduced model to the final tolerance.
``map-back`` and ``polish``
    The point and multipliers are mapped to the canonical model exactly, and a warm-started solve of the full
    canonical problem (all rows, all original bounds) polishes them: the multipliers are the canonical ones.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from poso_sim.solvers.backend import symbolic
from poso_sim.errors import ConfigError, PosoError

logger = logging.getLogger(__name__)

PIPELINE_VERSION = "reduced-prox-9"
#: The solver backends of the pipeline; the default is chosen by measurement (docs/solver.md, docs/benchmarks.md).
BACKENDS = ("casadi", "cyipopt")
DEFAULT_BACKEND = "casadi"
FLOW_COMPONENTS = ("m_sup", "m_ret", "m_hub")
LOG_COMPONENTS = ("m_sup", "m_ret")


@dataclass
class StageReport:
    name: str
    iterations: int
    seconds: float
    objective: float
    status: str
    #: CPU seconds (user + system) of this process since the previous stage ended
    cpu_seconds: float = float("nan")

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "iterations": self.iterations,
            "seconds": round(self.seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "objective": self.objective,
            "status": self.status,
        }


@dataclass
class PipelineResult:
    x: np.ndarray
    y: np.ndarray
    z_L: np.ndarray
    z_U: np.ndarray
    status: str
    objective: float
    iterations: int
    seconds: float
    stages: list[StageReport] = field(default_factory=list)
    message: str = ""
    checks: dict = field(default_factory=dict)
    failed_stage: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed_stage and self.status == "optimal"


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


def make_backend(name: str | None = None):
    """The backend called ``name`` (``"casadi"`` or ``"cyipopt"``; default :data:`DEFAULT_BACKEND`)."""
    name = DEFAULT_BACKEND if name is None else str(name)
    if name == "casadi":
        from poso_sim.solvers.casadi_ipopt import CasadiIpoptBackend

        return CasadiIpoptBackend()
    if name in ("cyipopt", "ipopt"):
        from poso_sim.solvers.ipopt import IpoptBackend

        return IpoptBackend()
    raise ConfigError(f"unknown solver backend {name!r} (choose from {', '.join(BACKENDS)})")


def ipopt_solve(view: ProblemView, x0, options: dict, y0=None, zl0=None, zu0=None, progress=None, backend=None):
    """One Ipopt solve of a problem view through ``backend`` (default :func:`make_backend`).

    Returns ``(x, y, zL, zU, status, iterations, objective, message)`` in the view's variables.
    """
    backend = make_backend() if backend is None or isinstance(backend, str) else backend
    opts = dict(options)
    if view.x_scaling is not None:
        opts.update(x_scaling=view.x_scaling, g_scaling=view.g_scaling)
    callback = None
    if progress is not None:
        def callback(info):
            return progress({"iter": info.iteration, "objective": info.objective, "inf_pr": info.inf_pr,
                             "inf_du": info.inf_du, "mu": info.mu})
    r = backend.solve(view, x0, options=opts, y0=y0, zl0=zl0, zu0=zu0, callback=callback)
    return r.x, r.y, r.zL, r.zU, r.status, r.iterations, r.objective, r.message


_TYPICAL = {
    "I_line": 1000.0, "V": 10.0, "gas_p": 1.0,
    "m_sup": 10.0, "m_ret": 10.0, "m_hub": 10.0, "m_load": 10.0,
    "T_sup": 10.0, "T_ret": 10.0, "T_load_out": 10.0, "T_end_sup": 10.0, "T_end_ret": 10.0,
}


def typical_sizes(nlp) -> np.ndarray:
    """A typical magnitude per variable, by component (powers and energies 100, currents 1000, ...)."""
    per_comp = np.array([_TYPICAL.get(nm, 100.0) for nm in nlp.var_component_names])
    return per_comp[np.asarray(nlp.var_component)]


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


def component_indices(nlp, names) -> np.ndarray:
    comp = np.asarray(nlp.var_component)
    ids = [i for i, nm in enumerate(nlp.var_component_names) if nm in set(names)]
    return np.where(np.isin(comp, ids))[0]


@dataclass(frozen=True)
class Recipe:
    """The stage settings of one solve (chosen per variant by measurement, see docs/solver.md)."""

    #: "data": the data-only start; "objective": built around a convex surrogate of the variant's objective (hub
    #: injections and CHP outputs); "objective-flows": the surrogate's hub injections, the data-only dispatch rules
    start: str = "data"
    #: the first stage holds every flow at its start value ("fixed-flows"); False: a cold proximal stage instead
    fix_flows_first: bool = True
    rho_schedule: tuple[float, ...] = (3e-3,)
    prox_max_iter: int = 150
    final_mu_init: float = 1e-4
    final_tol: float = 1e-8
    #: Ipopt's ``constr_viol_tol`` of the final reduced stage, per backend: with the scaling folded into the
    #: formulation (CasADi) it applies to the scaled rows and must be tight, else the canonical polish needs ~100
    #: iterations instead of ~14.
    final_constr_viol_tol: dict = field(default_factory=lambda: {"casadi": 1e-11, "cyipopt": 1e-8})


#: Recipes by variant (measured, docs/solver.md). ``true``: the data-only start and a small ``mu_init`` in the final
#: stage (40 % fewer final iterations at the same optimum). ``tampered``: the hub injections of the start come from a
#: surrogate of its own objective ("objective-flows"), final ``mu_init`` 1e-7: 467 iterations instead of 505 (725
#: from the data-only start). ``feasible``: a stiffer proximal round (``rho`` 1e-2) and final ``mu_init`` 1e-7: 376
#: iterations instead of 437, same optimum.
RECIPES: dict[str, Recipe] = {
    "true": Recipe(final_mu_init=1e-6),
    "tampered": Recipe(start="objective-flows", final_mu_init=1e-7),
    "feasible": Recipe(rho_schedule=(1e-2,), final_mu_init=1e-7),
}


class SolveError(PosoError):
    """A solve that did not produce an acceptable plan (names the stage and the solver status)."""

    def __init__(self, stage: str, status: str, detail: str = ""):
        self.stage, self.status = stage, status
        super().__init__(f"solve failed at stage {stage!r}: status {status}" + (f" ({detail})" if detail else ""))


def final_check(
    nlp, x, y, zl, zu, *, viol_tol: float = 1e-8, stat_tol: float = 1e-6, comp_tol: float = 5e-7
) -> tuple[bool, dict]:
    """The pipeline's acceptance test of a canonical primal-dual point, in plain numpy.

    * max absolute violation of every row and bound of ``nlp`` <= ``viol_tol``;
    * stationarity ``||grad f + J^T y - z_L + z_U||_inf <= stat_tol * max(1, ||grad f||_inf)``;
    * sign feasibility: ``z_L, z_U >= 0`` and each one-sided inequality's multiplier of the right sign
      (Ipopt's convention: ``y <= 0`` on ``g >= lb`` rows, ``y >= 0`` on ``g <= ub`` rows), to ``stat_tol``;
    * complementarity: every multiplier times the slack of its bound (objective units) <= ``comp_tol`` (half the
      certificate's default tolerance).

    Returns ``(accepted, measures)``.
    """
    from poso_sim.solvers.backend import violation

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    zl, zu = np.asarray(zl, dtype=float), np.asarray(zu, dtype=float)
    viol = float(violation(nlp, x))
    gr = np.asarray(nlp.grad(x), dtype=float)
    r = gr + nlp.jac_sparse(x).T @ y - zl + zu
    scale = max(1.0, float(np.max(np.abs(gr))) if gr.size else 1.0)
    stat = float(np.max(np.abs(r))) / scale if r.size else 0.0
    glb, gub = np.asarray(nlp.g_lb), np.asarray(nlp.g_ub)
    wrong = np.concatenate([
        -zl, -zu,
        np.where(np.isinf(glb) & np.isfinite(gub), -y, 0.0),
        np.where(np.isfinite(glb) & np.isinf(gub), y, 0.0),
    ])
    sign = max(0.0, float(np.max(wrong)) if wrong.size else 0.0) / scale
    comp = np.concatenate(_complementarity(nlp, x, y, zl, zu))
    compl = float(np.max(comp)) if comp.size else 0.0
    ok = bool(np.isfinite(viol) and viol <= viol_tol and stat <= stat_tol and sign <= stat_tol and compl <= comp_tol)
    return ok, {"violation": viol, "stationarity": stat, "sign": sign, "complementarity": compl}


def _complementarity(nlp, x, y, zl, zu) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Complementarity in objective units, each multiplier times the slack of the bound it belongs to: ``z_L``'s,
    ``z_U``'s, and ``y``'s on the lower and on the upper side of the inequality rows (0 where there is none)."""
    g = np.asarray(nlp.g(x), dtype=float)
    glb, gub = np.asarray(nlp.g_lb), np.asarray(nlp.g_ub)
    xlb, xub = np.asarray(nlp.x_lb), np.asarray(nlp.x_ub)
    ineq = glb != gub
    with np.errstate(invalid="ignore"):
        return (
            np.where(np.isfinite(xlb), np.maximum(zl, 0.0) * np.maximum(x - xlb, 0.0), 0.0),
            np.where(np.isfinite(xub), np.maximum(zu, 0.0) * np.maximum(xub - x, 0.0), 0.0),
            np.where(ineq & np.isfinite(glb), np.maximum(-y, 0.0) * np.maximum(g - glb, 0.0), 0.0),
            np.where(ineq & np.isfinite(gub), np.maximum(y, 0.0) * np.maximum(gub - g, 0.0), 0.0),
        )


def tidy_multipliers(nlp, x, y, zl, zu, *, comp_tol: float = 5e-7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The multipliers with the barrier's leftovers on inactive rows and bounds set to zero.

    An interior-point solve ends with every inequality multiplier near ``mu / slack``; in its internal scaling
    that is tiny, but a row whose slack is huge (a CHP output limit 1e6 away from binding, scaled down by the
    gradient-based row scaling) keeps a product ``|y| * slack`` of 4e-3 $ unscaled, which no certificate should
    accept as complementary. Where a multiplier's product exceeds half of ``comp_tol`` it is set to zero; the
    caller re-checks the point (stationarity moves by ``|y_i| |J_i|``, 1e-9 for those rows)."""
    x, y = np.asarray(x, dtype=float), np.array(y, dtype=float)
    zl, zu = np.array(zl, dtype=float), np.array(zu, dtype=float)
    half = 0.5 * comp_tol
    c_zl, c_zu, c_ylb, c_yub = _complementarity(nlp, x, y, zl, zu)
    y[(c_ylb > half) | (c_yub > half)] = 0.0
    zl[c_zl > half] = 0.0
    zu[c_zu > half] = 0.0
    return y, zl, zu


def _emit(label: dict, stage: str, iterations: int, objective: float, violation: float, final: bool) -> None:
    logger.info(
        "%s %s: stage %s, %d iterations, objective %.6f, violation %.1e",
        label.get("case", "?"), label.get("variant", "?"), stage, iterations, objective, violation,
        extra={"poso_progress": {"task": "solve", **label, "stage": stage, "iterations": int(iterations),
                                 "objective": float(objective), "violation": float(violation), "final": final}},
    )


def solve_reduced(
    model,
    nlp,
    x_start: np.ndarray,
    *,
    final_tol: float | None = None,
    rho_schedule=None,
    max_rounds: int = 1,
    scaling: bool = True,
    prox_max_iter: int | None = None,
    polish: bool = True,
    progress: Callable[[str, dict], None] | None = None,
    backend: str | None = None,
    recipe: Recipe | None = None,
    label: dict | None = None,
) -> PipelineResult:
    """The staged solve on the reduced formulation (:mod:`poso_sim.solvers.reduce`), mapped back to ``nlp``.

    Stages: reduce; fixed flows; proximal rounds with log-parametrised pipe flows; a final reduced solve at
    ``final_tol``; map the point and multipliers to the canonical model; polish there (warm start); the final
    check (:func:`final_check`). ``status`` is ``"optimal"`` only if the polish converged and the check accepts the
    point; otherwise it names the failing stage (``"polish:max_iter"``, ``"check:rejected"``, ...).

    Progress: INFO records at each stage end and throttled DEBUG records per iteration on this module's logger,
    with ``extra={"poso_progress": {...}}`` (``label`` adds e.g. the case and variant); ``progress(stage, info)``
    is called at every iteration as well.
    """
    from poso_sim.solvers.backend import violation
    from poso_sim.solvers.reduce import cached_reduction

    rc = recipe or Recipe()
    final_tol = rc.final_tol if final_tol is None else final_tol
    rho_schedule = rc.rho_schedule if rho_schedule is None else tuple(rho_schedule)
    prox_max_iter = rc.prox_max_iter if prox_max_iter is None else prox_max_iter
    bname = DEFAULT_BACKEND if backend is None else ("cyipopt" if backend == "ipopt" else str(backend))
    be = make_backend(bname)
    label = dict(label or {})
    label.setdefault("backend", bname)
    t_all = time.perf_counter()
    stages: list[StageReport] = []
    debug_on = logger.isEnabledFor(logging.DEBUG)

    def report(name):
        last = [0.0]

        def cb(info):
            if debug_on:
                now = time.perf_counter()
                if now - last[0] >= 0.2:
                    last[0] = now
                    logger.debug(
                        "%s iteration %d objective %.6f", name, info["iter"], info["objective"],
                        extra={"poso_progress": {"task": "solve", **label, "stage": name, "iterations": info["iter"],
                                                 "iteration": info["iter"], "objective": float(info["objective"]),
                                                 "violation": float(info["inf_pr"]), "final": False}},
                    )
            if progress is not None:
                return progress(name, info)
            return None

        return cb if (progress is not None or debug_on) else None

    cpu_mark = [time.process_time()]

    def add(rep: StageReport) -> None:
        now = time.process_time()
        rep.cpu_seconds = now - cpu_mark[0]
        cpu_mark[0] = now
        stages.append(rep)

    def done(rep: StageReport, viol: float, final: bool = False) -> None:
        add(rep)
        _emit(label, rep.name, rep.iterations, rep.objective, viol, final)

    t0 = time.perf_counter()
    red = cached_reduction(model, nlp, x_start)
    rn = red.nlp
    x = np.clip(red.to_reduced(x_start), rn.x_lb, rn.x_ub)
    done(StageReport("reduce", 0, time.perf_counter() - t0, float(rn.f(x)), f"n={rn.n} m={rn.m}"), violation(rn, x))

    flows = component_indices(rn, ("m_sup", "m_hub"))
    log_idx = component_indices(rn, ("m_sup",))
    lb, ub = np.array(rn.x_lb, dtype=float), np.array(rn.x_ub, dtype=float)
    typical = typical_sizes(rn)
    # stage 1: flows fixed (in the same log-parametrised view as the later stages: one structure for all)
    t0 = time.perf_counter()
    prox_view = ProblemView(rn, log_idx=log_idx, prox_idx=flows, prox_ref=x[flows], prox_weight=0.0, prox_space="x")
    v = prox_view.from_x(x)
    view1 = ProblemView(rn, log_idx=log_idx, prox_idx=flows, prox_ref=x[flows], prox_weight=0.0, prox_space="x")
    first = "fixed-flows"
    if rc.fix_flows_first:
        view1.x_lb, view1.x_ub = view1.x_lb.copy(), view1.x_ub.copy()
        view1.x_lb[flows] = v[flows]
        view1.x_ub[flows] = v[flows]
    else:
        # flows free from the start, held near the start's pattern by the first proximal weight
        first = f"proximal-cold rho={rho_schedule[0]:g}"
        view1.prox_weight = float(rho_schedule[0])
        rho_schedule = rho_schedule[1:]
    if scaling:
        view1.set_scaling(typical, v)
    v, y, zl, zu, st, it, obj, msg = ipopt_solve(
        view1, v, {"tol": 1e-6, "mu_init": 1e-1, "max_iter": 1500}, progress=report(first), backend=be
    )
    x = view1.to_x(v)
    done(StageReport(first, it, time.perf_counter() - t0, float(rn.f(x)), st), violation(rn, x))
    if st not in ("optimal", "acceptable"):
        return _failed(nlp, red, x, stages, t_all, first, st, msg)
    if rc.fix_flows_first:
        zl[flows] = 0.0
        zu[flows] = 0.0

    warm = {
        "warm_start_init_point": "yes",
        "mu_init": 1e-4,
        "warm_start_bound_push": 1e-6,
        "warm_start_mult_bound_push": 1e-6,
        "warm_start_slack_bound_push": 1e-6,
        "tol": 1e-7,
        "max_iter": prox_max_iter,
    }
    if scaling:
        prox_view.set_scaling(typical, v)
    f_prev = float(rn.f(x))
    rounds = 0
    stalled = False
    for rho in rho_schedule:
        if stalled:
            break
        for _ in range(max_rounds):
            rounds += 1
            prox_view.prox_ref = prox_view.to_x(v)[flows]
            prox_view.prox_weight = float(rho)
            t0 = time.perf_counter()
            v_new, y2, zl2, zu2, st, it, obj, msg = ipopt_solve(
                prox_view, v, warm, y0=y, zl0=zl, zu0=zu, progress=report(f"proximal-{rounds}"), backend=be
            )
            x_new = prox_view.to_x(v_new)
            f_new = float(rn.f(x_new))
            done(StageReport(f"proximal rho={rho:g}", it, time.perf_counter() - t0, f_new, st), violation(rn, x_new))
            usable = st in ("optimal", "acceptable") or (
                st == "max_iter" and np.all(np.isfinite(v_new)) and np.all(np.isfinite(y2))
            )
            if not usable:
                break
            # a round stopped at its iteration cap is kept: its iterate is interior and closer to the optimum
            v, y, zl, zu = v_new, y2, zl2, zu2
            improved = f_prev - f_new
            f_prev = min(f_prev, f_new)
            if st == "max_iter" or improved < 1e-3:
                # the proximal term no longer moves the flows (or the round ran long): the free solve takes over
                stalled = True
                break
    # final reduced solve without the proximal term (same view, weight 0)
    prox_view.prox_weight = 0.0
    t0 = time.perf_counter()
    final = dict(warm)
    final.update({"tol": final_tol, "max_iter": 1500, "mu_init": rc.final_mu_init,
                  "constr_viol_tol": rc.final_constr_viol_tol.get(bname, 1e-8)})
    v_new, y2, zl2, zu2, st, it, obj, msg = ipopt_solve(
        prox_view, v, final, y0=y, zl0=zl, zu0=zu, progress=report("final"), backend=be
    )
    xr = prox_view.to_x(v_new)
    done(StageReport("final", it, time.perf_counter() - t0, obj, st), violation(rn, xr))
    if st not in ("optimal", "acceptable"):
        return _failed(nlp, red, xr, stages, t_all, "final", st, msg)
    v, y, zl, zu = v_new, y2, zl2, zu2
    status = st
    s = np.ones(rn.n)
    s[log_idx] = xr[log_idx]
    zl, zu = zl / s, zu / s
    # map back to the canonical model
    t0 = time.perf_counter()
    xc = red.to_canonical(xr)
    yc, zlc, zuc = red.canonical_multipliers(xc, y, zl, zu)
    done(StageReport("map-back", 0, time.perf_counter() - t0, float(nlp.f(xc)), "mapped"), violation(nlp, xc))
    message = msg
    failed_stage = ""
    measures: dict = {}
    if polish:
        # a warm start with a tiny barrier parameter: 1-3 iterations from the mapped point (at mu_init 1e-8 the
        # CasADi build took 14-136). Each attempt must pass the final check; the next one starts again from the
        # mapped point: the CasADi build's true plan stops at a row complementarity of 2.7e-6 (which the
        # certificate rejects) with Ipopt's default bound relaxation and passes in 3 iterations without it, while
        # without it the tampered plan needs 23-110 iterations and passes in 1 with it
        mapped = (xc, yc, zlc, zuc)
        for attempt, (mu0, relax, max_it) in enumerate(((1e-9, 1e-8, 200), (1e-9, 0.0, 200), (1e-10, 1e-8, 400))):
            t0 = time.perf_counter()
            popts = dict(warm)
            popts.update({"tol": final_tol, "mu_init": mu0, "warm_start_bound_push": 1e-9,
                          "warm_start_mult_bound_push": 1e-9, "warm_start_slack_bound_push": 1e-9, "max_iter": max_it,
                          "constr_viol_tol": 1e-8, "nlp_scaling_method": "none", "bound_relax_factor": relax})
            xp, yp, zlp, zup, st2, it2, obj2, msg2 = ipopt_solve(
                ProblemView(nlp), mapped[0], popts, y0=mapped[1], zl0=mapped[2], zu0=mapped[3],
                progress=report("polish"), backend=be,
            )
            name = "polish" if attempt == 0 else f"polish-retry{attempt}"
            add(StageReport(name, it2, time.perf_counter() - t0, obj2, st2))
            xc, yc, zlc, zuc, status, message = xp, yp, zlp, zup, st2, msg2
            ok, measures = final_check(nlp, xc, yc, zlc, zuc)
            if st2 == "optimal" and not ok and measures["complementarity"] > 5e-7:
                # the barrier's leftovers on rows far from binding: zeroed, and the point checked again
                ty, tzl, tzu = tidy_multipliers(nlp, xc, yc, zlc, zuc)
                tok, tmeasures = final_check(nlp, xc, ty, tzl, tzu)
                if tok:
                    yc, zlc, zuc, ok, measures = ty, tzl, tzu, tok, tmeasures
            if st2 == "optimal" and ok:
                failed_stage = ""
                break
            failed_stage = "polish" if st2 != "optimal" else "check"
            if attempt < 2:
                _emit(label, name, it2, obj2, measures["violation"], False)
        if failed_stage == "check":
            status = "rejected"
    else:
        ok, measures = final_check(nlp, xc, yc, zlc, zuc)
        if not ok:
            failed_stage, status = "check", "rejected"
    if failed_stage == "check":
        message = (f"final check: violation {measures['violation']:.1e}, stationarity {measures['stationarity']:.1e}, "
                   f"sign {measures['sign']:.1e}, complementarity {measures['complementarity']:.1e}")
    if polish:
        _emit(label, stages[-1].name, stages[-1].iterations, stages[-1].objective, measures["violation"], True)
    return PipelineResult(
        x=xc, y=yc, z_L=zlc, z_U=zuc, status=f"{failed_stage}:{status}" if failed_stage else status,
        objective=float(nlp.f(xc)), iterations=sum(s_.iterations for s_ in stages),
        seconds=time.perf_counter() - t_all, stages=stages, message=message, checks=measures, failed_stage=failed_stage,
    )


def _failed(nlp, red, xr, stages, t_all, stage, status, msg) -> PipelineResult:
    xc = red.to_canonical(xr)
    z = np.zeros(nlp.n)
    return PipelineResult(
        x=xc, y=np.zeros(nlp.m), z_L=z, z_U=z.copy(), status=f"{stage}:{status}", objective=float(nlp.f(xc)),
        iterations=sum(s_.iterations for s_ in stages), seconds=time.perf_counter() - t_all, stages=stages,
        message=msg, failed_stage=stage,
    )
