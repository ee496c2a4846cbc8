"""The generic machinery of a staged solve: problem views, the backends, the final check, SolveError.

A recipe (the integrated-energy model's staged solve lives in :mod:`poso_sim.solvers.ies`) solves stages, each a
:class:`~poso_sim.solvers.view.ProblemView` of a compiled NLP, through :func:`solve_view` with a backend of
:func:`make_backend`, reports each stage (:class:`StageReport`, :func:`emit_stage`) and ends on
:func:`final_check`, the acceptance test of a canonical primal-dual point (docs/solver.md). A solve that ends
without an acceptable point raises :class:`SolveError`, naming the stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from poso_sim.errors import ConfigError, PosoError
from poso_sim.solvers.backend import RawResult, violation
from poso_sim.solvers.view import ProblemView

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "ProblemView", "SolveError", "StageReport", "backend_name", "emit_stage",
    "final_check", "make_backend", "solve_view", "tidy_multipliers",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: The solver backends; the default is chosen by measurement (docs/solver.md, docs/benchmarks.md).
BACKENDS = ("casadi", "cyipopt")
DEFAULT_BACKEND = "casadi"


@dataclass
class StageReport:
    """One stage of a solve, as :attr:`poso_sim.nlp.Solution.stages` keeps it (:meth:`as_dict`)."""

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


def backend_name(backend: str | None) -> str:
    """The canonical name of a backend choice (``None``: :data:`DEFAULT_BACKEND`; ``"ipopt"`` means cyipopt)."""
    name = DEFAULT_BACKEND if backend is None else ("cyipopt" if backend == "ipopt" else str(backend))
    if name not in BACKENDS:
        raise ConfigError(f"unknown solver backend {backend!r} (choose from {', '.join(BACKENDS)})")
    return name


def make_backend(name: str | None = None, *, progress_interval: float = 0.0):
    """The backend called ``name`` (``"casadi"`` or ``"cyipopt"``; default :data:`DEFAULT_BACKEND`).

    ``progress_interval``: the CasADi backend forwards at most one iteration per that many seconds to a progress
    callback (each forwarded iteration converts the iterate for Python; the count is kept either way)."""
    name = backend_name(name)
    if name == "casadi":
        from poso_sim.solvers.casadi_ipopt import CasadiIpoptBackend  # CasADi's Ipopt: only when a solve runs

        return CasadiIpoptBackend(progress_interval=progress_interval)
    from poso_sim.solvers.ipopt import IpoptBackend  # cyipopt: only when chosen

    return IpoptBackend()


def solve_view(view: ProblemView, x0, options: dict, *, warm: Any = None, progress=None, backend=None) -> RawResult:
    """One Ipopt solve of a problem view through ``backend`` (default :func:`make_backend`), in the view's
    variables; ``warm``: a point whose multipliers start the solve (``y, z_L, z_U``), e.g. the previous stage's.
    ``progress(info)`` gets ``{"iter", "objective", "inf_pr", "inf_du", "mu"}`` at each iteration."""
    backend = make_backend() if backend is None or isinstance(backend, str) else backend
    opts = dict(options)
    if view.x_scaling is not None:
        opts.update(x_scaling=view.x_scaling, g_scaling=view.g_scaling)
    callback = None
    if progress is not None:
        def callback(info):
            return progress({"iter": info.iteration, "objective": info.objective, "inf_pr": info.inf_pr,
                             "inf_du": info.inf_du, "mu": info.mu})
    y0, zl0, zu0 = (None, None, None) if warm is None else (warm.y, warm.z_L, warm.z_U)
    return backend.solve(view, x0, options=opts, y0=y0, zl0=zl0, zu0=zu0, callback=callback)


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


def emit_stage(label: dict, stage: str, iterations: int, objective: float, violation: float, final: bool) -> None:
    """The INFO progress record of a stage's end (``extra["poso_progress"]``, see docs/architecture.md)."""
    logger.info(
        "%s %s: stage %s, %d iterations, objective %.6f, violation %.1e",
        label.get("case", "?"), label.get("variant", "?"), stage, iterations, objective, violation,
        extra={"poso_progress": {"task": "solve", **label, "stage": stage, "iterations": int(iterations),
                                 "objective": float(objective), "violation": float(violation), "final": final}},
    )


