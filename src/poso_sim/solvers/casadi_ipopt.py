"""CasADi's bundled Ipopt (``casadi.nlpsol(..., "ipopt", ...)``) as a solver backend.

The problem is handed to Ipopt as a CasADi graph, not as Python callbacks: the compiled problem's own SX functions
(:class:`poso_sim.nlp.CompiledNLP`) are called on fresh symbols, the stage's transformations (kept rows,
log-parametrised variables, a proximal term) are applied symbolically, and the scaling is folded into the
formulation (Ipopt sees ``w = x_scaling * v`` and ``g_scaling * g``). The stage data that changes between solves
of one pipeline (proximal weight and reference, scaling) are parameters, so the derivative functions are built
once per structure and reused (:data:`_STRUCTURES`).

This build of Ipopt (3.14.19, MUMPS 5.8 with METIS ordering) is 2.3-2.6x cheaper per iteration than the
``cyipopt`` wheels' build (3.14.11, MUMPS 5.5 without METIS) on the IES problem; see docs/solver.md.

Multipliers are returned in Ipopt's convention ``grad f + J^T y - z_L + z_U = 0`` like
:class:`poso_sim.solvers.ipopt.IpoptBackend`; warm starts take ``y0, zl0, zu0`` the same way.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from typing import Any, Mapping

import numpy as np

from poso_sim.errors import ConfigError
from poso_sim.solvers.backend import (
    IterInfo, ProgressCallback, RawResult, describe_options, ipopt_status, symbolic,
)

__all__ = ["CasadiIpoptBackend", "casadi_ipopt_version", "RETURN_CODES"]

logger = logging.getLogger(__name__)

#: Ipopt's ApplicationReturnStatus names (as CasADi reports them) -> their numeric codes.
RETURN_CODES: dict[str, int] = {
    "Solve_Succeeded": 0,
    "Solved_To_Acceptable_Level": 1,
    "Infeasible_Problem_Detected": 2,
    "Search_Direction_Becomes_Too_Small": 3,
    "Diverging_Iterates": 4,
    "User_Requested_Stop": 5,
    "Feasible_Point_Found": 6,
    "Maximum_Iterations_Exceeded": -1,
    "Restoration_Failed": -2,
    "Error_In_Step_Computation": -3,
    "Maximum_CpuTime_Exceeded": -4,
    "Maximum_WallTime_Exceeded": -5,
    "Not_Enough_Degrees_Of_Freedom": -10,
    "Invalid_Problem_Definition": -11,
    "Invalid_Option": -12,
    "Invalid_Number_Detected": -13,
    "Unrecoverable_Exception": -100,
    "NonIpopt_Exception_Thrown": -101,
    "Insufficient_Memory": -102,
    "Internal_Error": -199,
}

_DEFAULTS: dict[str, Any] = {
    "tol": 1e-8,
    "mu_strategy": "monotone",
    "linear_solver": "mumps",
    "print_level": 0,
    "sb": "yes",
}


def casadi_ipopt_version() -> str:
    """``"casadi 3.x.y"``: the Ipopt inside is the one bundled with that CasADi release."""
    import casadi

    return f"casadi {casadi.__version__}"


class _Structure:
    """The CasADi functions of one problem structure: oracle, gradient, Jacobian, Hessian of the Lagrangian."""

    def __init__(self, oracle):
        self.oracle = oracle
        t0 = time.perf_counter()
        self.functions = {
            "grad_f": oracle.factory("nlp_grad_f", ["x", "p"], ["f", "grad:f:x"]),
            "jac_g": oracle.factory("nlp_jac_g", ["x", "p"], ["g", "jac:g:x"]),
            "hess_lag": oracle.factory(
                "nlp_hess_l", ["x", "p", "lam:f", "lam:g"], ["triu:hess:gamma:x:x"], {"gamma": ["f", "g"]}
            ),
        }
        self.seconds = time.perf_counter() - t0
        logger.debug("CasADi derivative functions of a %d-variable structure built in %.2f s",
                     oracle.size1_in(0), self.seconds)


#: Structures built in this process, keyed by the problem's ``symbolic_key()``.
_STRUCTURES: dict[tuple, _Structure] = {}
_LOCK = threading.Lock()


class _CompiledStructure:
    """The functions of a plain view of a compiled problem (all rows, no transforms) from the problem's own
    compiled derivatives, with the scaling applied on top: no new automatic differentiation (for the canonical
    polish, a warm start of a few iterations, building them by AD would cost more than the iterations)."""

    def __init__(self, view):
        import casadi as ca

        t0 = time.perf_counter()
        base = view.base
        n, m = view.n, view.m
        w = ca.SX.sym("w", n)
        p = ca.SX.sym("p", 2 + n + m)  # obj_scaling, x_scaling, g_scaling, (proximal weight: unused here)
        s_f, xs, gs = p[0], p[1 : 1 + n], p[1 + n : 1 + n + m]
        x = w / xs
        f = s_f * symbolic(base, "_f", x)
        g = gs * symbolic(base, "_g", x)
        self.oracle = ca.Function("nlp", [w, p], [f, g], ["x", "p"], ["f", "g"])
        # ca.vec: one row, one variable or one nonzero gives a row vector where a column is meant
        grad = s_f * ca.vec(symbolic(base, "_grad", x)) / xs
        jr, jc = (np.asarray(a, dtype=np.int64) for a in base.jac_structure)
        jnz = ca.vec(symbolic(base, "_jac", x)) * ca.vec(gs[jr.tolist()]) / ca.vec(xs[jc.tolist()])
        jsp = ca.Sparsity.triplet(m, n, jr.tolist(), jc.tolist())
        hr, hc = (np.asarray(a, dtype=np.int64) for a in base.hess_structure)  # lower triangle, row >= col
        lam_f, lam_g = ca.SX.sym("lam_f"), ca.SX.sym("lam_g", m)
        hnz = ca.vec(base._hess.fn(x, base.p, lam_g * gs, lam_f * s_f) if base._hess.fn.n_in() > 3 else base._hess.fn(x, lam_g * gs, lam_f * s_f)) / ca.vec(xs[hr.tolist()] * xs[hc.tolist()])
        hsp = ca.Sparsity.triplet(n, n, hc.tolist(), hr.tolist())  # its transpose: the upper triangle
        self.functions = {
            "grad_f": ca.Function("nlp_grad_f", [w, p], [f, grad], ["x", "p"], ["f", "grad_f_x"]),
            "jac_g": ca.Function("nlp_jac_g", [w, p], [g, _sparse(jsp, jr, jc, jnz, m, n)], ["x", "p"],
                                 ["g", "jac_g_x"]),
            "hess_lag": ca.Function("nlp_hess_l", [w, p, lam_f, lam_g], [_sparse(hsp, hc, hr, hnz, n, n)],
                                    ["x", "p", "lam_f", "lam_g"], ["hess_gamma_x_x"]),
        }
        self.seconds = time.perf_counter() - t0


def _sparse(sp, rows: np.ndarray, cols: np.ndarray, nz, nr: int, nc: int):
    """An SX matrix of sparsity ``sp`` whose entry (rows[k], cols[k]) is ``nz[k]`` (any triplet order)."""
    import casadi as ca

    order = np.lexsort((rows, cols))  # CasADi stores column-major: by column, then row
    return ca.SX(sp, nz[order.tolist()])


def _plain(problem) -> bool:
    base = getattr(problem, "base", None)
    return (
        base is not None
        and not len(problem.log_idx)
        and not len(problem.prox_idx)
        and problem.m == base.m
        and base.m > 0
        and len(base.jac_structure[0]) > 0
        and len(base.hess_structure[0]) > 0
        and all(hasattr(getattr(base, k, None), "fn") for k in ("_f", "_g", "_grad", "_jac", "_hess"))
    )


def _structure(problem) -> tuple[_Structure, np.ndarray]:
    """The cached functions of ``problem`` and its current parameter values."""
    key = problem.symbolic_key()
    with _LOCK:
        st = _STRUCTURES.get(key)
        if st is None:
            import casadi as ca

            if _plain(problem):
                st = _CompiledStructure(problem)
            else:
                w, p, f, g = problem.symbolic()
                st = _Structure(ca.Function("nlp", [w, p], [f, g], ["x", "p"], ["f", "g"]))
            _STRUCTURES[key] = st
            if len(_STRUCTURES) > 16:  # a long-lived process solving many problems: keep the newest
                _STRUCTURES.pop(next(iter(_STRUCTURES)))
    return st, problem.symbolic_params()


#: ``nlpsol`` builds, at each construction, a function of the multipliers of the parameters ``p`` at the solution
#: (``nlp_grad``: reverse AD of the whole problem, 0.25-0.35 s of CPU for Manchester, most of a construction, and the
#: stages of a solve build several); it is its only use with CasADi's defaults (``f``, ``g`` and ``lam_x`` are
#: Ipopt's), and the backend reads no ``lam_p``. Without it every other output is the same, bit for bit. The start
#: points' own ``nlpsol`` (the surrogates of :mod:`poso_sim.solvers.ies`) pass it too.
NO_LAM_P: dict[str, Any] = {"no_nlp_grad": True, "calc_lam_p": False}


def _as_view(problem):
    if hasattr(problem, "symbolic"):
        return problem
    from poso_sim.solvers.view import ProblemView  # the view imports no backend: no circle

    return ProblemView(problem)


def _ipopt_value(k: str, v: Any) -> Any:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (int, float, str)):
        return v
    raise ConfigError(f"invalid Ipopt option {k}={v!r}")


#: glibc's malloc serves blocks above its mmap threshold (128 KiB at start) by mmap, so each large block Ipopt,
#: MUMPS or numpy frees and takes again is faulted in anew. glibc raises the threshold itself after the first large
#: free, and a process that wrote or read a compiled problem (a 30 MB bytes object) always had one; a process that
#: compiles without writing one (``--no-cache``) had one or not by the hash seed: 3 of 4 seeds paid 412 000 page
#: faults instead of 93 000, 1.0-1.2 s of system CPU in a cold Manchester solve (docs/benchmarks.md). The
#: threshold is set once, to the value glibc's own rule reaches (32 MiB; trimming at twice that). Blocks above
#: 32 MiB are still mapped anew whenever the heap's top has no room for them: the tampered route's stages took
#: 413 000 page faults that way (1.4-1.6 s of system CPU); a top pad of 256 MiB (address space reserved when the
#: heap grows, not memory: the peak RSS stayed at 330 MB) serves them from the heap (23 000 faults, 0.1 s).
_MALLOC_STEADY = [False]


def _steady_malloc() -> None:
    if _MALLOC_STEADY[0]:
        return
    _MALLOC_STEADY[0] = True
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # glibc's mallopt: only on Linux, once per process

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to set
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    mallopt(-2, 256 << 20)  # M_TOP_PAD


def _make_callback(cb: ProgressCallback, n: int, m: int, g_lb, g_ub, g_scale, obj_scale, state: dict,
                   interval: float = 0.0):
    """A ``casadi.Callback`` called at each Ipopt iteration; forwards an :class:`IterInfo` to ``cb`` (with
    ``interval > 0``: the first iteration, then at most one per ``interval`` seconds, the others costing only
    their count)."""
    import casadi as ca

    class _Iter(ca.Callback):
        def __init__(self):
            ca.Callback.__init__(self)
            self.construct("poso_iteration", {})

        def get_n_in(self):
            return ca.nlpsol_n_out()

        def get_n_out(self):
            return 1

        def get_name_in(self, i):
            return ca.nlpsol_out(i)

        def get_name_out(self, i):
            return "ret"

        def get_sparsity_in(self, i):
            name = ca.nlpsol_out(i)
            if name == "f":
                return ca.Sparsity.scalar()
            if name in ("x", "lam_x"):
                return ca.Sparsity.dense(n)
            if name in ("g", "lam_g"):
                return ca.Sparsity.dense(m)
            return ca.Sparsity(0, 0)

        def eval(self, arg):
            it = state["iter"]
            state["iter"] = it + 1
            if interval > 0.0:
                now = time.perf_counter()
                if it > 0 and now - state["shown"] < interval:
                    return [0]
                state["shown"] = now
            f = float(arg[ca.nlpsol_out().index("f")]) / obj_scale
            g = np.asarray(arg[ca.nlpsol_out().index("g")]).reshape(-1) / g_scale if m else np.zeros(0)
            viol = float(np.max(np.maximum(np.maximum(g_lb - g, g - g_ub), 0.0))) if m else 0.0
            info = IterInfo(iteration=it, objective=f, inf_pr=viol, inf_du=float("nan"), mu=float("nan"))
            if cb(info) is False:
                state["cancelled"] = True
                return [1]
            return [0]

    return _Iter()


class CasadiIpoptBackend:
    """Ipopt bundled with CasADi, through ``casadi.nlpsol``. Same interface as :class:`IpoptBackend`.

    ``problem`` is a :class:`poso_sim.nlp.CompiledNLP` or a :class:`poso_sim.solvers.view.ProblemView` (anything
    with ``symbolic()``, ``symbolic_key()`` and ``symbolic_params()``). ``options`` are Ipopt options plus
    ``obj_scaling``/``x_scaling``/``g_scaling``, which are folded into the formulation (Ipopt then runs with
    ``nlp_scaling_method none``). Note that Ipopt's ``constr_viol_tol`` then applies to the scaled rows.
    """

    name = "casadi"

    def __init__(self, options: Mapping[str, Any] | None = None, *, progress_interval: float = 0.0):
        self.options = {**_DEFAULTS, **(options or {})}
        #: seconds between two iterations forwarded to a progress callback (0: every iteration)
        self.progress_interval = float(progress_interval)

    @property
    def version(self) -> str:
        return casadi_ipopt_version()

    def describe(self, options: Mapping[str, Any] | None = None) -> str:
        opts = {**self.options, **(options or {})}
        shown = describe_options(opts)
        return f"ipopt ({self.version}) {shown}"

    def solve(
        self,
        nlp,
        x0: Any,
        *,
        options: Mapping[str, Any] | None = None,
        y0: Any = None,
        zl0: Any = None,
        zu0: Any = None,
        callback: ProgressCallback | None = None,
    ) -> RawResult:
        import casadi as ca

        _steady_malloc()
        view = _as_view(nlp)
        n, m = view.n, view.m
        opts = {**self.options, **(options or {})}
        obj_scale = float(opts.pop("obj_scaling", 1.0))
        xs = opts.pop("x_scaling", None)
        gs = opts.pop("g_scaling", None)
        xs = np.ones(n) if xs is None else _vec(xs, n, "x_scaling")
        gs = np.ones(m) if gs is None else _vec(gs, m, "g_scaling")
        if obj_scale != 1.0 or not np.all(xs == 1.0) or not np.all(gs == 1.0):
            opts.setdefault("nlp_scaling_method", "none")
        warm = y0 is not None
        if warm:
            opts.setdefault("warm_start_init_point", "yes")
        ipopt_opts = {str(k): _ipopt_value(str(k), v) for k, v in opts.items()}
        st, params = _structure(view)
        p = np.concatenate([[obj_scale], xs, gs, params])
        state = {"iter": 0, "cancelled": False, "shown": -math.inf}
        solver_opts: dict[str, Any] = {
            "ipopt": ipopt_opts,
            "print_time": False,
            "verbose": False,
            "verbose_init": False,
            "error_on_fail": False,
            **NO_LAM_P,
            **st.functions,
        }
        g_lb, g_ub = np.asarray(view.g_lb, dtype=float), np.asarray(view.g_ub, dtype=float)
        iter_cb = None
        if callback is not None:
            iter_cb = _make_callback(callback, n, m, g_lb, g_ub, gs, obj_scale, state, self.progress_interval)
            solver_opts["iteration_callback"] = iter_cb
        try:
            solver = ca.nlpsol("poso", "ipopt", st.oracle, solver_opts)
        except RuntimeError as exc:
            raise ConfigError(f"invalid Ipopt options for the CasADi backend: {str(exc).splitlines()[-1]}") from None
        args = _solver_args(view, x0, (y0, zl0, zu0) if warm else None, xs, gs, obj_scale, p)
        t0 = time.perf_counter()
        try:
            out = solver(**args)
        except RuntimeError as exc:  # a callback or an evaluation error inside CasADi
            raise ConfigError(f"CasADi Ipopt failed: {str(exc).splitlines()[-1]}") from None
        seconds = time.perf_counter() - t0
        return _raw_result(nlp, out, solver.stats(), state, xs, gs, obj_scale, seconds, self.describe(options))


def _solver_args(view, x0: Any, warm: tuple | None, xs: np.ndarray, gs: np.ndarray, obj_scale: float,
                 p: np.ndarray) -> dict[str, Any]:
    """``nlpsol``'s arguments in Ipopt's scaled variables; ``warm``: ``(y0, zl0, zu0)`` of a warm start."""
    n, m = view.n, view.m
    v0 = view.clip(_vec(x0, n, "x0"))
    args: dict[str, Any] = {
        "x0": v0 * xs,
        "p": p,
        "lbx": np.asarray(view.x_lb, dtype=float) * xs,
        "ubx": np.asarray(view.x_ub, dtype=float) * xs,
        "lbg": np.asarray(view.g_lb, dtype=float) * gs,
        "ubg": np.asarray(view.g_ub, dtype=float) * gs,
    }
    if warm is not None:
        y0, zl0, zu0 = warm
        y = _vec(y0, m, "y0")
        zl = np.zeros(n) if zl0 is None else _vec(zl0, n, "zl0")
        zu = np.zeros(n) if zu0 is None else _vec(zu0, n, "zu0")
        args["lam_g0"] = y * obj_scale / gs
        args["lam_x0"] = (zu - zl) * obj_scale / xs
    return args


def _raw_result(nlp, out: dict, stats: dict, state: dict, xs: np.ndarray, gs: np.ndarray, obj_scale: float,
                seconds: float, solver: str) -> RawResult:
    """The solve's point in the problem's own variables and Ipopt's sign convention, and how it ended."""
    name = str(stats.get("return_status", "Internal_Error"))
    code = RETURN_CODES.get(name, -199)
    status = "cancelled" if state["cancelled"] else ipopt_status(code)
    w = np.asarray(out["x"], dtype=float).reshape(-1)
    lam_g = np.asarray(out["lam_g"], dtype=float).reshape(-1)
    lam_x = np.asarray(out["lam_x"], dtype=float).reshape(-1)
    lx = lam_x * xs / obj_scale
    obj = float(out["f"]) / obj_scale
    if getattr(nlp, "maximize", False) and math.isfinite(obj):
        obj = -obj
    return RawResult(
        x=w / xs,
        y=lam_g * gs / obj_scale,
        z_L=np.maximum(-lx, 0.0),
        z_U=np.maximum(lx, 0.0),
        status=status,
        iterations=int(stats.get("iter_count", state["iter"])),
        seconds=seconds,
        objective=obj,
        message=name,
        return_code=code,
        solver=solver,
    )


def _vec(v: Any, size: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size != size:
        raise ValueError(f"{name} has {a.size} entries, expected {size}")
    return a
