"""The two sides of a market proposal that stand outside the certificate: the leader's (`settle`: the proposal to
send, its multipliers completed around the settlement prices; `interval_end`: a dishonest leader's choice of a
valid price at one end of its interval) and a hub's (`own_check`: its allocation checked on its own model).
They call the certificate (:mod:`poso_sim.kkt.check`), which runs the price stage (:mod:`poso_sim.kkt.prices`);
kept apart from both so that neither imports the other back."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from poso_sim.kkt.certificate import DEFAULT_TOLERANCES
from poso_sim.kkt.check import checker_for, verify
from poso_sim.kkt.decide import _Box
from poso_sim.kkt.prices import PRICE_SHARE, _PriceLP, analyse, fixed_price_multipliers
from poso_sim.nlp.solution import Solution

if TYPE_CHECKING:
    from poso_sim.kkt.certificate import Certificate, Tolerances

__all__ = ["settle", "own_check", "interval_end"]


def settle(problem: Any, solution: Any, tolerances: "Tolerances | None" = None) -> Any:
    """The proposal a leader sends for ``solution`` of a problem with priced rows: the same ``x``, the
    settlement prices on the priced rows and the other multipliers completed around them (the received ones kept
    where they still fit). A problem without priced rows: ``solution`` unchanged. Raises ``ValueError`` when the
    point has no price intervals or the settlement prices admit no multipliers (the point is not a KKT point)."""
    tol = tolerances or DEFAULT_TOLERANCES
    chk = checker_for(problem)
    if not chk.priced.size:
        return solution
    x = np.asarray(solution.x, dtype=float)
    ev = chk.evaluate(x)
    ana = analyse(chk, x, ev, tol)
    if ana.status != "optimal":
        raise ValueError(f"no price intervals at this point (price LPs ended {ana.status})")
    y = np.array(solution.y, dtype=float)
    y[chk.priced] = ana.settlement
    # the leader's side, offline: no iteration budget (a large market with every price fixed may need the whole
    # LP); the proposal's own multipliers then pass the verifiers' check as received
    dec = fixed_price_multipliers(chk, x, y, ev, dataclasses.replace(tol, lp_iterations=None))
    if not dec.found:
        raise ValueError(f"the settlement prices admit no valid multipliers (search ended at stage {dec.stage})")
    return solution.with_multipliers(y=dec.y, z_L=dec.z_L, z_U=dec.z_U)


def own_check(problem: Any, x: Sequence[float], tolerances: "Tolerances | None" = None) -> "Certificate":
    """A hub's own check: is ``x`` (the hub's allocation, in the order of its own problem's variables) a KKT point
    of the hub's own ``problem`` - its best-response problem compiled with the proposed prices as its parameter
    values? The hub needs no multipliers from anyone: the certificate finds its own (the multipliers of the hub's
    rows), so the hub's model and multipliers stay private and the leader's other multipliers are not needed."""
    x = np.asarray(x, dtype=float)
    sol = Solution(x=x, y=np.zeros(int(problem.m)), z_L=np.zeros(x.size), z_U=np.zeros(x.size),
                   fingerprint=str(getattr(problem, "fingerprint", "")), variant="own")
    return verify(problem, sol, tolerances)


def interval_end(problem: Any, solution: Any, row: str, end: str = "high",
                 tolerances: "Tolerances | None" = None) -> Any:
    """``solution``'s point with multipliers at one end of a priced row's interval: a valid multiplier vector (the
    plain certificate, which judges the point, accepts it) whose price for ``row`` is the interval's ``low`` or
    ``high`` end - what a leader who may pick any valid price would send to favour the buyers or the sellers. The
    settlement rule rejects it wherever the interval is wider than the price tolerance."""
    tol = tolerances or DEFAULT_TOLERANCES
    chk = checker_for(problem)
    x = np.asarray(solution.x, dtype=float)
    ev = chk.evaluate(x)
    tau = PRICE_SHARE * tol.dual
    box = _Box(chk, x, ev, tau, PRICE_SHARE * tol.complementarity)
    lp = _PriceLP(chk.search._jt(ev["jv"]), box, tau, getattr(tol, "price_lp_iterations", None))
    status, _v = lp.extreme(chk.row_names.index(row), -1.0 if end == "high" else 1.0)
    if status != "optimal":
        raise ValueError(f"no interval for {row} at this point (price LP ended {status})")
    y = lp.full(chk.m)
    zl, zu = box.bound_multipliers(ev["grad"] + chk.search._jt(ev["jv"]) @ y)
    return solution.with_multipliers(y=y, z_L=zl, z_U=zu)
