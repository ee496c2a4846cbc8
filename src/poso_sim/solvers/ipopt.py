"""Ipopt backend over ``cyipopt.Problem`` using the CompiledNLP callbacks, plus a Pyomo SolverFactory passthrough."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from poso_sim.errors import ConfigError
from poso_sim.solvers.backend import IterInfo, ProgressCallback, RawResult, describe_options, ipopt_status

if TYPE_CHECKING:  # pragma: no cover
    from poso_sim.nlp import CompiledNLP

__all__ = ["IpoptBackend", "PyomoSolverFactoryBackend", "DEFAULT_IPOPT_OPTIONS", "DUAL_CONVENTIONS", "ipopt_version"]

#: Options used unless overridden (``options`` passed to :meth:`IpoptBackend.solve` win).
DEFAULT_IPOPT_OPTIONS: dict[str, Any] = {
    "tol": 1e-8,
    "mu_strategy": "monotone",
    "linear_solver": "mumps",
    "print_level": 0,
    "sb": "yes",
}

#: Keys handled by the backend itself rather than passed to Ipopt.

_BIG = 1e20  # Ipopt treats |bound| >= 1e19 as "no bound"


def ipopt_version() -> str:
    try:
        import cyipopt

        return ".".join(str(v) for v in cyipopt.IPOPT_VERSION)
    except Exception:  # noqa: BLE001
        return "unknown"


class _Adapter:
    """The object cyipopt calls back into."""

    def __init__(self, nlp: "CompiledNLP", callback: ProgressCallback | None):
        self.nlp = nlp
        self.callback = callback
        self.iterations = 0
        self.jac_structure = tuple(np.asarray(a, dtype=np.int32) for a in nlp.jac_structure)
        self.hess_structure = tuple(np.asarray(a, dtype=np.int32) for a in nlp.hess_structure)
        self.cancelled = False

    def objective(self, x: np.ndarray) -> float:
        return self.nlp.f(x)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return self.nlp.grad(x)

    def constraints(self, x: np.ndarray) -> np.ndarray:
        return self.nlp.g(x)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        return self.nlp.jac(x)

    def jacobianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        return self.jac_structure

    def hessian(self, x: np.ndarray, lagrange: np.ndarray, obj_factor: float) -> np.ndarray:
        return self.nlp.hess(x, lagrange, obj_factor)

    def hessianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hess_structure

    def intermediate(
        self,
        alg_mod: int,
        iter_count: int,
        obj_value: float,
        inf_pr: float,
        inf_du: float,
        mu: float,
        d_norm: float,
        regularization_size: float,
        alpha_du: float,
        alpha_pr: float,
        ls_trials: int,
    ) -> bool:
        self.iterations = int(iter_count)
        if self.callback is None:
            return True
        info = IterInfo(
            iteration=int(iter_count),
            objective=float(obj_value),
            inf_pr=float(inf_pr),
            inf_du=float(inf_du),
            mu=float(mu),
            alpha_pr=float(alpha_pr),
            alpha_du=float(alpha_du),
            restoration=alg_mod == 1,
        )
        if self.callback(info) is False:
            self.cancelled = True
            return False
        return True


def _bounds(a: np.ndarray) -> np.ndarray:
    return np.clip(np.where(np.isfinite(a), a, np.sign(a) * _BIG), -_BIG, _BIG).astype(np.float64)


def _vec(v: Any, size: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size != size:
        raise ValueError(f"{name} has {a.size} entries, expected {size}")
    return a


class IpoptBackend:
    """Ipopt via cyipopt (MUMPS). ``options`` are Ipopt options plus ``obj_scaling``/``x_scaling``/``g_scaling``.

    Multipliers use Ipopt's convention ``grad f + J^T y - z_L + z_U = 0``. Giving ``y0`` turns on
    ``warm_start_init_point`` (unless set explicitly); ``zl0``/``zu0`` default to the current Ipopt defaults when
    omitted.
    """

    name = "ipopt"

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options = {**DEFAULT_IPOPT_OPTIONS, **(options or {})}

    @property
    def version(self) -> str:
        return ipopt_version()

    def describe(self, options: Mapping[str, Any] | None = None) -> str:
        """``"ipopt 3.14.x (mumps) tol=...,..."`` summary of the effective options."""
        opts = {**self.options, **(options or {})}
        shown = describe_options(opts)
        return f"ipopt {self.version} {shown}"

    def solve(
        self,
        nlp: "CompiledNLP",
        x0: Any,
        *,
        options: Mapping[str, Any] | None = None,
        y0: Any = None,
        zl0: Any = None,
        zu0: Any = None,
        callback: ProgressCallback | None = None,
    ) -> RawResult:
        import cyipopt

        opts = {**self.options, **(options or {})}
        obj_scaling = float(opts.pop("obj_scaling", 1.0))
        x_scaling = opts.pop("x_scaling", None)
        g_scaling = opts.pop("g_scaling", None)
        x0 = nlp.clip(_vec(x0, nlp.n, "x0"))
        adapter = _Adapter(nlp, callback)
        problem = cyipopt.Problem(
            n=nlp.n,
            m=nlp.m,
            problem_obj=adapter,
            lb=_bounds(nlp.x_lb),
            ub=_bounds(nlp.x_ub),
            cl=_bounds(nlp.g_lb),
            cu=_bounds(nlp.g_ub),
        )
        try:
            if obj_scaling != 1.0 or x_scaling is not None or g_scaling is not None:
                problem.set_problem_scaling(
                    obj_scaling=obj_scaling,
                    x_scaling=None if x_scaling is None else _vec(x_scaling, nlp.n, "x_scaling"),
                    g_scaling=None if g_scaling is None else _vec(g_scaling, nlp.m, "g_scaling"),
                )
                opts.setdefault("nlp_scaling_method", "user-scaling")
            warm = y0 is not None
            if warm:
                opts.setdefault("warm_start_init_point", "yes")
            _add_options(problem, opts)
            kwargs: dict[str, Any] = {}
            if warm:
                kwargs["lagrange"] = _vec(y0, nlp.m, "y0")
                kwargs["zl"] = np.zeros(nlp.n) if zl0 is None else _vec(zl0, nlp.n, "zl0")
                kwargs["zu"] = np.zeros(nlp.n) if zu0 is None else _vec(zu0, nlp.n, "zu0")
            t0 = time.perf_counter()
            x, info = problem.solve(x0, **kwargs)
            seconds = time.perf_counter() - t0
        finally:
            problem.close()
        code = int(info["status"])
        status = ipopt_status(code)
        if adapter.cancelled:
            status = "cancelled"
        x = np.asarray(x, dtype=np.float64).copy()
        obj = float(info["obj_val"])
        if nlp.maximize and math.isfinite(obj):
            obj = -obj
        msg = info.get("status_msg", b"")
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        return RawResult(
            x=x,
            y=np.asarray(info["mult_g"], dtype=np.float64).copy(),
            z_L=np.asarray(info["mult_x_L"], dtype=np.float64).copy(),
            z_U=np.asarray(info["mult_x_U"], dtype=np.float64).copy(),
            status=status,
            iterations=adapter.iterations,
            seconds=seconds,
            objective=obj,
            message=str(msg),
            return_code=code,
            solver=self.describe(options),
        )



def _add_options(problem: Any, opts: Mapping[str, Any]) -> None:
    """Ipopt options on a cyipopt problem (booleans as yes/no, numpy scalars as Python's); a bad one is one line."""
    for k, v in opts.items():
        if isinstance(v, bool):
            v = "yes" if v else "no"
        elif isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating,)):
            v = float(v)
        try:
            problem.add_option(str(k), v)
        except (TypeError, ValueError):
            raise ConfigError(f"invalid Ipopt option {k}={v!r}") from None

#: Sign conventions of the suffixes a Pyomo solver returns, as factors to Ipopt's convention
#: ``grad f + J^T y - z_L + z_U = 0``: ``y = dual_factor * dual``, ``z_L = zl_factor * zL_out``,
#: ``z_U = zu_factor * zU_out``. The AMPL solver library interface (the ``ipopt`` executable) writes
#: ``dual = -y`` and ``ipopt_zU_out = -z_U`` (its upper-bound multipliers are non-positive).
DUAL_CONVENTIONS: dict[str, tuple[float, float, float]] = {
    "ipopt": (-1.0, 1.0, -1.0),
}


def _model_constraints(model, nlp) -> list:
    """The model's active constraints in the compiled problem's row order (a problem whose variables were linked
    to a model without its constraints, e.g. one loaded from disk)."""
    from pyomo.core import Constraint, SortComponents

    cons = list(model.component_data_objects(Constraint, active=True, descend_into=True, sort=SortComponents.deterministic))
    if [c.name for c in cons] != list(nlp.row_names):
        raise RuntimeError(f"the model's {len(cons)} constraints differ from the compiled problem's {nlp.m} rows")
    return cons


class PyomoSolverFactoryBackend:
    """Passthrough to ``pyomo.environ.SolverFactory(name)`` (e.g. an ``ipopt`` executable).

    Solves the Pyomo model the NLP was compiled from (values are written into it). Multipliers are read from the
    ``dual``/``ipopt_zL_out``/``ipopt_zU_out`` suffixes and converted to Ipopt's convention with the solver's sign
    convention: :data:`DUAL_CONVENTIONS` by solver name, or ``convention=(dual, zL, zU)`` factors given explicitly
    (an unknown solver without one is a :class:`ConfigError`, never a guess). Multipliers the solver did not report
    are NaN, not zero, and the result's ``message`` names them. Use :meth:`available` first.
    """

    def __init__(
        self,
        name: str = "ipopt",
        options: Mapping[str, Any] | None = None,
        *,
        convention: tuple[float, float, float] | None = None,
    ):
        self.name = name
        self.options = dict(options or {})
        if convention is None:
            convention = DUAL_CONVENTIONS.get(name)
        if convention is None:
            raise ConfigError(
                f"solver {name!r}: unknown multiplier sign convention; pass convention=(dual, zL, zU) factors "
                f"(known: {', '.join(DUAL_CONVENTIONS)})"
            )
        self.convention = tuple(float(c) for c in convention)

    def available(self) -> bool:
        try:
            import pyomo.environ as pe

            return bool(pe.SolverFactory(self.name).available(exception_flag=False))
        except Exception:  # noqa: BLE001
            return False

    def solve(
        self,
        nlp: "CompiledNLP",
        x0: Any,
        *,
        options: Mapping[str, Any] | None = None,
        y0: Any = None,
        zl0: Any = None,
        zu0: Any = None,
        callback: ProgressCallback | None = None,
    ) -> RawResult:
        import pyomo.environ as pe
        from pyomo.opt import TerminationCondition as TC

        if not nlp._var_data:
            raise RuntimeError("this CompiledNLP has no Pyomo model attached")
        model = nlp._var_data[0].model()
        cons = list(nlp._con_data)
        if len(cons) != nlp.m:
            cons = _model_constraints(model, nlp)
        nlp.load_into_model(nlp.clip(_vec(x0, nlp.n, "x0")))
        suffixes = {}
        for sname, direction in (("dual", pe.Suffix.IMPORT), ("ipopt_zL_out", pe.Suffix.IMPORT), ("ipopt_zU_out", pe.Suffix.IMPORT)):
            if model.component(sname) is None:
                model.add_component(sname, pe.Suffix(direction=direction))
                suffixes[sname] = True
        fd, fl, fu = self.convention
        missing = []
        try:
            solver = pe.SolverFactory(self.name)
            t0 = time.perf_counter()
            res = solver.solve(model, options={**self.options, **(options or {})}, load_solutions=False)
            seconds = time.perf_counter() - t0
            tc = res.solver.termination_condition
            if len(res.solution) > 0:
                model.solutions.load_from(res)
            x = nlp.x_from_model()

            def read(sname: str, items, factor: float, bounded: np.ndarray) -> np.ndarray:
                suffix = getattr(model, sname, None)
                # a variable without that bound has a zero multiplier by definition; anything else unreported is NaN
                vals = np.where(bounded, np.nan, 0.0)
                if suffix is None or len(suffix) == 0:
                    if bounded.any():
                        missing.append(sname)
                    return vals
                for i, c in enumerate(items):
                    v = suffix.get(c)
                    if v is not None:
                        vals[i] = factor * float(v)
                if np.isnan(vals).any() and sname not in missing:
                    missing.append(f"{sname} of {int(np.isnan(vals).sum())} entries")
                return vals

            y = read("dual", cons, fd, np.ones(nlp.m, dtype=bool))
            zl = read("ipopt_zL_out", nlp._var_data, fl, np.isfinite(nlp.x_lb))
            zu = read("ipopt_zU_out", nlp._var_data, fu, np.isfinite(nlp.x_ub))
        finally:
            for sname in suffixes:
                model.del_component(sname)
        status = {
            TC.optimal: "optimal",
            TC.locallyOptimal: "optimal",
            TC.globallyOptimal: "optimal",
            TC.infeasible: "infeasible",
            TC.maxIterations: "max_iter",
            TC.maxTimeLimit: "max_time",
        }.get(tc, "error")
        return RawResult(
            x=x,
            y=y,
            z_L=zl,
            z_U=zu,
            status=status,
            iterations=0,
            seconds=seconds,
            objective=nlp.objective_value(x),
            message=str(tc) + (f"; not reported by the solver (NaN): {', '.join(missing)}" if missing else ""),
            solver=f"pyomo:{self.name}",
        )
