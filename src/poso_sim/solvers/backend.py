"""Solver backend protocol, raw results, Ipopt status mapping and the violation measure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from poso_sim.common import OK_STATUSES

if TYPE_CHECKING:  # pragma: no cover
    from poso_sim.nlp import CompiledNLP

__all__ = [
    "RawResult",
    "SolverBackend",
    "IterInfo",
    "ProgressCallback",
    "IPOPT_STATUS",
    "ipopt_status",
    "violation",
]


@dataclass(frozen=True)
class IterInfo:
    """One solver iteration, passed to progress callbacks (Ipopt's ``intermediate`` arguments)."""

    iteration: int
    objective: float
    inf_pr: float
    inf_du: float
    mu: float
    alpha_pr: float = float("nan")
    alpha_du: float = float("nan")
    restoration: bool = False


#: A progress callback: return False to request cancellation (the solve stops with status "cancelled").
ProgressCallback = Callable[[IterInfo], "bool | None"]


@dataclass(frozen=True, eq=False)
class RawResult:
    """What a backend or a recipe returns: a primal-dual point (Ipopt sign convention:
    ``grad f + J^T y - z_L + z_U = 0``) and how it was reached.

    A recipe of several stages lists them in ``stages`` (dicts, as :class:`poso_sim.nlp.Solution` keeps them) and
    reports a failure as ``status = "<stage>:<solver status>"`` (:attr:`failed_stage`).
    """

    x: np.ndarray
    y: np.ndarray
    z_L: np.ndarray
    z_U: np.ndarray
    status: str
    iterations: int
    seconds: float
    objective: float
    message: str = ""
    return_code: int | None = None
    solver: str = ""
    stages: tuple = ()

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    @property
    def failed_stage(self) -> str:
        """The stage a ``"<stage>:<status>"`` status names ("" when the status names none)."""
        stage, sep, _ = self.status.partition(":")
        return stage if sep else ""


@runtime_checkable
class SolverBackend(Protocol):
    """Anything that can solve a :class:`~poso_sim.nlp.CompiledNLP`."""

    name: str

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
    ) -> RawResult: ...


#: Ipopt ApplicationReturnStatus -> our status string.
IPOPT_STATUS: dict[int, str] = {
    0: "optimal",  # Solve_Succeeded
    1: "acceptable",  # Solved_To_Acceptable_Level
    2: "infeasible",  # Infeasible_Problem_Detected
    3: "step_too_small",  # Search_Direction_Becomes_Too_Small
    4: "diverging",  # Diverging_Iterates
    5: "cancelled",  # User_Requested_Stop
    6: "feasible_point",  # Feasible_Point_Found (square problems)
    -1: "max_iter",  # Maximum_Iterations_Exceeded
    -2: "restoration_failed",  # Restoration_Failed
    -3: "error",  # Error_In_Step_Computation
    -4: "max_time",  # Maximum_CpuTime_Exceeded
    -5: "max_time",  # Maximum_WallTime_Exceeded
    -10: "error",  # Not_Enough_Degrees_Of_Freedom
    -11: "error",  # Invalid_Problem_Definition
    -12: "error",  # Invalid_Option
    -13: "error",  # Invalid_Number_Detected
    -100: "error",  # Unrecoverable_Exception
    -101: "error",  # NonIpopt_Exception_Thrown
    -102: "error",  # Insufficient_Memory
    -199: "error",  # Internal_Error
}


def ipopt_status(code: int) -> str:
    return IPOPT_STATUS.get(int(code), "error")


def violation(nlp: "CompiledNLP", x: Any) -> float:
    """Max absolute unscaled violation of ``g_lb <= g(x) <= g_ub`` and ``x_lb <= x <= x_ub`` (0 if feasible)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    worst = 0.0
    if x.size:
        vb = np.maximum(np.maximum(nlp.x_lb - x, x - nlp.x_ub), 0.0)
        if np.isnan(x).any():
            return float("inf")
        worst = float(vb.max())
    if nlp.m:
        g = nlp.g(x)
        if not np.all(np.isfinite(g)):
            return float("inf")
        vg = np.maximum(np.maximum(nlp.g_lb - g, g - nlp.g_ub), 0.0)
        worst = max(worst, float(vg.max()))
    return worst


#: Options that are arrays or scalings, left out of a backend's one-line description.
SCALING_KEYS = ("obj_scaling", "x_scaling", "g_scaling")


def describe_options(opts: Mapping[str, Any]) -> str:
    """``k=v,...`` of the options that shape a solve (not output or scaling arrays), sorted: part of a
    backend's description and so of the solution cache's provenance."""
    return ",".join(
        f"{k}={v}" for k, v in sorted(opts.items()) if k not in ("print_level", "sb") and k not in SCALING_KEYS
    )


def symbolic(problem: Any, attr: str, x: Any) -> Any:
    """Call a compiled function of ``problem`` (``"_f"``, ``"_g"``, ``"_grad"``, ``"_jac"``) on symbolic ``x``.

    A :class:`~poso_sim.nlp.CompiledNLP` takes its instance data as a second input (``p``); that data enters the
    expression as constants here. A reduced problem's functions take ``x`` alone.
    """
    fn = getattr(problem, attr).fn
    return fn(x, problem.p) if fn.n_in() > 1 else fn(x)
