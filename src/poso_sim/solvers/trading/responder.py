"""A hub's best response: its problem compiled once, solved at any prices.

``HubResponder(case, hour=12)`` builds and compiles each hub's model once (:func:`poso_sim.cases.trading.
build_hub_model`, the prices and the hour's data are parameters of the compiled NLP) and wraps its compiled
functions in two CasADi solvers per hub: an SQP method (``sqpmethod`` with the active-set QP solver ``qrqp``,
exact Hessian) that a warm start makes converge in a few iterations, and Ipopt, the fallback when the SQP step
fails. ``respond(hub, prices)`` solves at ``prices = (gas, elec, heat)`` and returns the hub's purchases (gas, elec,
heat; electricity or heat negative = selling).

Where a solve starts (``warm_start``):

* ``"anchor"`` (the default): from the hub's best response at the round-1 prices (primal and dual), solved once
  when the responder is made. Every answer is then a function of the hub and the prices alone, bit for bit, so a
  caller may memoise answers by prices and runs do not depend on what was solved before them.
* ``"previous"``: from the hub's previous answer (the fastest along a slowly moving price path); the same sequence
  of calls gives the same answers, but an answer depends on the calls before it.
* ``"none"``: from the case's start point (``initialValue.xlsx``).

Twelve best responses take 5-6 ms of CPU per round of the reference's price path (benchmarks/bench_trading.py).

Several threads may share one responder (the process's responder of a case and hour serves every trading run,
docs/kernel.md "What may run concurrently"): each hub's solves run one at a time under the hub's lock (its CasADi
solvers keep their work memory and statistics in the solver object, so two calls at once crash the interpreter
or read each other's status), while different hubs solve at once. With the ``"anchor"`` warm start an answer is
the same whoever else is solving; with ``"previous"`` it depends on the calls before it, so such a responder
serves one run at a time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import casadi as ca
import numpy as np

from poso_sim.cases.trading import TradingCase, build_hub_model, hub_parameters
from poso_sim.cases.trading.model import PRICE_PARAMS, TRADED
from poso_sim.common import OK_STATUSES
from poso_sim.errors import ConfigError
from poso_sim.nlp import compile_nlp
from poso_sim.solvers.casadi_ipopt import CasadiIpoptBackend

log = logging.getLogger(__name__)

Triple = tuple[float, float, float]

#: Ipopt options of the best responses: tight tolerance (the market sums twelve answers), quiet
IPOPT_OPTIONS = {"print_level": 0, "sb": "yes", "tol": 1e-9, "acceptable_tol": 1e-7, "mu_strategy": "adaptive",
                 "max_iter": 200}
#: SQP options: active-set QP steps on the exact Hessian (regularised where it is not convex), quiet
SQP_OPTIONS = {"print_time": False, "print_header": False, "print_iteration": False, "print_status": False,
               "qpsol": "qrqp", "qpsol_options": {"print_iter": False, "print_header": False, "error_on_fail": False},
               "convexify_strategy": "regularize", "tol_pr": 1e-9, "tol_du": 1e-9, "max_iter": 100,
               "error_on_fail": False}
#: SQP statuses that end at a solution: converged, or a step too small to move (the warm start was optimal); the
#: point's feasibility is checked besides
SQP_DONE = ("Solve_Succeeded", "Search_Direction_Becomes_Too_Small")
FEASIBILITY = 1e-7
WARM_STARTS = ("anchor", "previous", "none")


class BestResponseError(RuntimeError):
    """A hub's problem failed to solve at the given prices (the message names the hub and the prices)."""


@dataclass
class _Hub:
    """One hub's compiled problem, its solvers and its last solution (the warm start); `lock` serialises the use
    of the solvers and of the fields below it."""

    hub: int
    nlp: Any
    sqp: Any
    ipopt: Any
    buy_index: np.ndarray
    price_index: np.ndarray
    p: np.ndarray
    last: dict[str, np.ndarray] | None = None
    anchor: dict[str, np.ndarray] | None = None
    relaxed: Any = None  # the convex relaxation's compiled problem, made on first use
    solves: int = 0
    iterations: int = 0  # of the last solve
    fallbacks: int = 0  # SQP solves that ended in the Ipopt fallback
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class HubResponder:
    """Every hub's best response at given prices, for one hour; each hub's problem compiled once."""

    def __init__(self, case: TradingCase, hour: int = 12, *, warm_start: str = "anchor", method: str = "sqp"):
        if method not in ("sqp", "ipopt"):
            raise ConfigError(f"method must be 'sqp' or 'ipopt', got {method!r}")
        if warm_start not in WARM_STARTS:
            raise ConfigError(f"warm_start must be one of {', '.join(WARM_STARTS)}, got {warm_start!r}")
        self.case, self.hour, self.warm_start, self.method = case, hour, warm_start, method
        try:
            case.check_hour(hour)  # an hour number out of 1..24, or an hour a hub cannot serve on its own
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._hubs = {h: self._compile(h) for h in case.hub_ids}
        if warm_start == "anchor":
            first = case.initial_prices(hour)
            for e in self._hubs.values():
                self._solve(e, first, None)
                e.anchor = e.last

    def _compile(self, hub: int) -> _Hub:
        nlp = compile_nlp(build_hub_model(self.case, hub, self.hour))
        nlp = nlp.with_data(hub_parameters(self.case, hub, self.hour))
        x, p = ca.SX.sym("x", nlp.n), ca.SX.sym("p", nlp.n_p)
        problem = {"x": x, "p": p, "f": nlp.function("f")(x, p), "g": nlp.function("g")(x, p)}
        sqp = ca.nlpsol(f"hub{hub}_sqp", "sqpmethod", problem, SQP_OPTIONS)
        ipopt = ca.nlpsol(f"hub{hub}_ipopt", "ipopt", problem, {"print_time": False, "ipopt": dict(IPOPT_OPTIONS)})
        h = self.case.hub(hub)
        buy = np.array([nlp.var_index(f"flow[{h.purchase_branch(c)}]") for c in TRADED])
        prices = np.array([nlp.param_index(n) for n in PRICE_PARAMS])
        return _Hub(hub, nlp, sqp, ipopt, buy, prices, np.array(nlp.p, dtype=float))

    # ---------------------------------------------------------------- the API
    @property
    def fallbacks(self) -> int:
        """SQP solves that failed and were solved again by Ipopt, over every hub."""
        return sum(e.fallbacks for e in self._hubs.values())

    @property
    def hubs(self) -> list[int]:
        return list(self._hubs)

    def nlp(self, hub: int) -> Any:
        """The compiled problem of ``hub`` (prices: ``price[gas]``, ``price[elec]``, ``price[heat]``)."""
        return self._entry(hub).nlp

    def respond(self, hub: int, prices: Triple) -> Triple:
        """The purchases (gas, elec, heat) of ``hub`` minimising its cost at ``prices`` = (gas, elec, heat)."""
        e = self._entry(hub)
        x = self.solve(hub, prices)
        return tuple(float(v) for v in x[e.buy_index])  # type: ignore[return-value]

    def respond_all(self, prices_by_hub: Mapping[int, Triple]) -> dict[int, Triple]:
        """``{hub: purchases}`` for every hub of ``prices_by_hub`` (in the mapping's order)."""
        return {hub: self.respond(hub, prices) for hub, prices in prices_by_hub.items()}

    def solve(self, hub: int, prices: Triple) -> np.ndarray:
        """The whole optimal point (every flow of the hub's problem, in ``nlp(hub).x_names`` order)."""
        e = self._entry(hub)
        with e.lock:
            start = e.anchor if self.warm_start == "anchor" else e.last if self.warm_start == "previous" else None
            return self._solve(e, prices, start)

    def _solve(self, e: _Hub, prices: Triple, warm: dict[str, np.ndarray] | None) -> np.ndarray:
        """Solve hub `e` at `prices` from `warm` (the caller holds `e.lock`, or owns the responder alone)."""
        hub = e.hub
        p = e.p.copy()
        values = np.asarray(prices, dtype=float)
        if values.shape != (3,) or not np.all(np.isfinite(values)):
            raise ConfigError(f"hub {hub}: prices must be three finite numbers (gas, elec, heat), got {prices!r}")
        p[e.price_index] = values
        nlp = e.nlp
        bounds = {"lbx": nlp.x_lb, "ubx": nlp.x_ub, "lbg": nlp.g_lb, "ubg": nlp.g_ub, "p": p}
        start = {"x0": nlp.x0}
        if warm is not None:
            start = {"x0": warm["x"], "lam_x0": warm["lam_x"], "lam_g0": warm["lam_g"]}
        r, stats = None, {}
        if self.method == "sqp":
            r = e.sqp(**start, **bounds)
            stats = e.sqp.stats()
            if stats["return_status"] not in SQP_DONE or self._violation(e, r, p) > FEASIBILITY:
                r = None
                e.fallbacks += 1
        if r is None:  # Ipopt from the case's start point: the method, or the fallback of a failed SQP step
            r = e.ipopt(x0=nlp.x0, **bounds)
            stats = e.ipopt.stats()
            if not stats["success"]:
                raise BestResponseError(f"hub {hub}: best response at prices {tuple(values)} failed "
                                        f"({stats['return_status']})")
        e.last = {k: np.array(r[k]).ravel() for k in ("x", "lam_x", "lam_g")}
        e.solves += 1
        e.iterations = int(stats["iter_count"])
        return e.last["x"].copy()

    @staticmethod
    def _violation(e: _Hub, r: dict, p: np.ndarray) -> float:
        """The largest violation of the rows and bounds at the solver's point (inf if not finite)."""
        x = np.array(r["x"]).ravel()
        g = np.array(r["g"]).ravel()
        nlp = e.nlp
        parts = [nlp.x_lb - x, x - nlp.x_ub, nlp.g_lb - g, g - nlp.g_ub]
        worst = max(float(np.max(v, initial=0.0)) for v in parts)
        return worst if np.all(np.isfinite(x)) and np.all(np.isfinite(g)) else float("inf")

    def cost(self, hub: int, prices: Triple, x: np.ndarray | None = None) -> float:
        """The hub's cost (payment + own plant) at ``prices`` and point ``x`` (default: its best response)."""
        e = self._entry(hub)
        x = self.solve(hub, prices) if x is None else np.asarray(x, dtype=float)
        p = e.p.copy()
        p[e.price_index] = prices
        return float(e.nlp.with_data(p).f(x))

    def lower_bound(self, hub: int, prices: Triple) -> float:
        """The optimum of the hub's convex relaxation at ``prices`` (converter outputs at most their curves): a lower
        bound on its cost that any local solver reaches. A best response whose cost meets it is globally optimal."""
        e = self._entry(hub)
        with e.lock:
            if e.relaxed is None:
                model = build_hub_model(self.case, hub, self.hour, relaxed=True)
                e.relaxed = compile_nlp(model).with_data(hub_parameters(self.case, hub, self.hour))
        nlp = e.relaxed.with_data(dict(zip(PRICE_PARAMS, (float(v) for v in prices))))
        # Ipopt's default relaxes every bound by 1e-8 relative, enough to put a bound 1e-3 below the optimum
        raw = CasadiIpoptBackend().solve(nlp, nlp.x0, options={"tol": 1e-10, "bound_relax_factor": 0.0})
        if raw.status not in OK_STATUSES:
            raise BestResponseError(f"hub {hub}: the relaxation at prices {tuple(prices)} failed ({raw.status})")
        return float(raw.objective)

    def optimality_gap(self, hub: int, prices: Triple) -> float:
        """The best response's cost minus the relaxation's lower bound (about 0: the answer is the global optimum)."""
        return self.cost(hub, prices) - self.lower_bound(hub, prices)

    def reset(self) -> None:
        """Forget the previous answers (``warm_start="previous"``: the next call of each hub starts from the anchor
        or, without one, from the case's start point)."""
        for e in self._hubs.values():
            with e.lock:
                e.last = None

    def _entry(self, hub: int) -> _Hub:
        try:
            return self._hubs[hub]
        except KeyError:
            raise ConfigError(f"no hub {hub!r} (hubs {', '.join(map(str, self._hubs))})") from None
