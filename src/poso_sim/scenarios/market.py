"""The one-height market: PoSo on a problem with priced rows (the trading case's centralised clearing).

A market proposal is a plan with priced rows, not a second protocol: the leader solves the centralised problem
once and proposes the allocation *and* the prices (the balance rows' multipliers, at the settlement rule's values:
:func:`poso_sim.kkt.proposal.settle`); the delegates verify with the certificate, whose stage ``price`` checks the
prices; they relay and decide exactly as for a dispatch, and the normal nodes (the hubs) execute the decided
block. :class:`MarketPayloads` is the runner's payload source for such a problem (chosen by
:func:`payload_source` when the case's definition declares priced rows), with the honest proposal and the
dishonest leaders' proposals under these labels:

``optimal``
    the centralised optimum with the settlement prices;
``price_up_1`` / ``price_down_1`` / ``price_up_10`` / ``price_down_10``
    the optimal allocation with every price shifted by +-1 % or +-10 % (the other multipliers as solved);
``other_hour``
    the optimal allocation with the settlement prices of the next hour's clearing;
``favour``
    an allocation that favours one hub (:data:`FAVOURED_HUB`: the leader counts its plant's cost at
    :data:`FAVOUR` of the truth, so it sells more) at a higher total cost, with that problem's own prices;
``interval_end``
    the optimal allocation with the first degenerate price at the top of its valid interval and valid other
    multipliers (the plain certificate accepts it; the settlement rule does not).

:func:`market_summary` turns a run into the market's outcome: the decided prices against the centralised
problem's multipliers, every hub's purchases and payment, and each hub's own check of its best response at the
decided prices on its own model (:func:`poso_sim.kkt.proposal.own_check`).
"""

from __future__ import annotations

import math
import threading
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from poso_sim.common import OK_STATUSES
from poso_sim.errors import PosoError
from poso_sim.protocol import Payload

from .payloads import RealPayloads, solve_variants

__all__ = ["MARKET_LABELS", "MarketPayloads", "payload_source", "is_market", "market_summary", "FAVOURED_HUB"]

MARKET_LABELS = ("optimal", "price_up_1", "price_down_1", "price_up_10", "price_down_10", "other_hour", "favour",
                 "interval_end")
SHIFTS = {"price_up_1": 1.01, "price_down_1": 0.99, "price_up_10": 1.1, "price_down_10": 0.9}
#: the hub a ``favour`` leader favours, and the share of its plant's cost that leader counts
FAVOURED_HUB = 5
FAVOUR = 0.8


def is_market(case: str) -> bool:
    """Whether ``case`` names a problem with priced rows."""
    from poso_sim.nlp.problems import problem_definition  # the registry (light: no Pyomo, no CasADi)

    return bool(problem_definition(case).priced_rows)


def payload_source(case: str, session: Any = None, variants: Mapping[str, str] | None = None) -> Any:
    """The real payload source of ``case``: :class:`MarketPayloads` for a market, else :class:`RealPayloads`
    (``variants``: a scenario's map from dishonest labels to problem variants; a market's labels need none)."""
    if is_market(case):
        return MarketPayloads(case, session=session)
    return RealPayloads(case, session=session, variants=variants)


class _Plans(Mapping[str, Payload]):
    def __init__(self, source: "MarketPayloads") -> None:
        self._source = source

    def __getitem__(self, label: str) -> Payload:
        if label not in MARKET_LABELS:
            raise KeyError(label)
        return self._source.prepare([label])[label]

    def __iter__(self) -> Iterator[str]:
        return iter(MARKET_LABELS)

    def __len__(self) -> int:
        return len(MARKET_LABELS)


class MarketPayloads(RealPayloads):
    """Real proposals of a market (labels :data:`MARKET_LABELS`) and the real certificate with priced rows."""

    def __init__(self, case: str = "trading", *, cache_dir: str | None = None, session: Any = None) -> None:
        super().__init__(case, cache_dir=cache_dir, session=session)
        self.key = f"market:{case}"
        self._view = _Plans(self)
        self._mlock = threading.RLock()

    @property
    def _store(self) -> dict[str, Payload]:
        return self.session.plans.setdefault(("market", self.case, self.cache_dir), {})

    def payloads(self, height: int) -> Mapping[str, Payload]:
        return self._view

    def prepare(self, labels: Iterable[str] = MARKET_LABELS) -> dict[str, Payload]:
        labels = list(dict.fromkeys(labels))
        for lbl in labels:
            if lbl not in MARKET_LABELS:
                raise PosoError(f"unknown market plan label {lbl!r} (known: {', '.join(MARKET_LABELS)})")
        with self._mlock:
            store = self._store
            for lbl in labels:
                if lbl not in store:
                    store[lbl] = self._payload(lbl, self._make_market(lbl))
            self._ready_to_verify()
            return {lbl: store[lbl] for lbl in labels}

    def plans(self) -> dict[str, Payload]:
        return self.prepare(MARKET_LABELS)

    # ---- the proposals
    def raw(self) -> Any:
        """The centralised problem's solution as the solver returned it (its own multipliers)."""
        return self._solve(["true"])["true"]

    def _make_market(self, label: str) -> Any:
        from poso_sim.kkt.proposal import interval_end, settle  # scipy and HiGHS: only for real markets

        nlp = self._problem()[1]
        if label == "optimal":
            return settle(nlp, self.raw())
        if label == "favour":
            return self._favour(nlp)
        honest = self.prepare(["optimal"])["optimal"].solution
        idx = _priced(nlp)
        if label in SHIFTS:
            y = np.array(honest.y)
            y[idx] *= SHIFTS[label]
            return honest.with_multipliers(y=y)
        if label == "other_hour":
            y = np.array(honest.y)
            y[idx] = self._other_hour_prices()
            return honest.with_multipliers(y=y)
        # interval_end: the widest price interval's top, with valid multipliers around it
        ana = self._analysis(honest)
        widest = max(ana.rows, key=lambda r: r.high - r.low)
        return interval_end(nlp, honest, widest.name, "high")

    def _analysis(self, sol: Any) -> Any:
        # heavy (scipy, HiGHS, CasADi, the registry): loaded only when a real market is run
        from poso_sim.kkt import DEFAULT_TOLERANCES, checker_for
        from poso_sim.kkt.prices import analyse

        chk = checker_for(self._problem()[1])
        x = np.asarray(sol.x, dtype=float)
        return analyse(chk, x, chk.evaluate(x), DEFAULT_TOLERANCES)

    def _other_hour_prices(self) -> np.ndarray:
        """The settlement prices of the next hour's clearing (same case, hour + 1)."""
        # heavy (scipy, HiGHS, CasADi, the registry): loaded only when a real market is run
        from poso_sim.kkt.proposal import settle
        from poso_sim.nlp.problems import load_instance, problem_definition

        data = problem_definition(self.case).load(self.case)
        other = type(data)(data.case, data.hour % 24 + 1)
        nlp = load_instance(self.case, other).nlp
        sol = settle(nlp, _solve_nlp(nlp, self.case, f"hour {other.hour}"))
        return np.asarray(sol.y, dtype=float)[_priced(nlp)]

    def _favour(self, nlp: Any) -> Any:
        """The optimum of the leader's doctored objective (hub FAVOURED_HUB's plant counted at FAVOUR of its cost),
        sent on the true problem with that optimum's own multipliers."""
        import pyomo.environ as pyo  # the doctored objective is built on the model: Pyomo only for this label

        # heavy (scipy, HiGHS, CasADi, the registry): loaded only when a real market is run
        from poso_sim.nlp import compile_nlp
        from poso_sim.nlp.problems import load_problem

        problem = load_problem(self.case)
        m = problem.model.clone()
        m.obj.deactivate()
        m.obj_favour = pyo.Objective(expr=m.total_cost - (1 - FAVOUR) * m.hub[FAVOURED_HUB].own_cost)
        doctored = compile_nlp(m, objective="obj_favour")
        if list(doctored.x_names) != list(nlp.x_names) or list(doctored.row_names) != list(nlp.row_names):
            raise PosoError(f"{self.case}: the favouring leader's problem does not match the true problem")
        sol = _solve_nlp(doctored, self.case, "favour")
        return sol.replace(fingerprint=nlp.fingerprint, variant="true", cost=float(nlp.cost(sol.x)))

    @staticmethod
    def _payload(label: str, sol: Any) -> Payload:
        cost = getattr(sol, "cost", None)
        return Payload(sol.digest, label, None if cost is None or math.isnan(cost) else float(cost), sol)


def _priced(nlp: Any) -> np.ndarray:
    # heavy (scipy, HiGHS, CasADi, the registry): loaded only when a real market is run
    from poso_sim.kkt.prices import priced_row_indices

    return priced_row_indices(nlp)


def _solve_nlp(nlp: Any, case: str, what: str) -> Any:
    """Ipopt (the default backend) from the problem's start point, as the generic solve does."""
    # heavy (scipy, HiGHS, CasADi, the registry): loaded only when a real market is run
    from poso_sim.nlp.solution import Solution
    from poso_sim.solvers.pipeline import make_backend  # the solver only where a plan is made

    r = make_backend().solve(nlp, nlp.clip(nlp.x0), options={"tol": 1e-9, "constr_viol_tol": 1e-10})
    if r.status not in OK_STATUSES:
        raise PosoError(f"{case}: the {what} clearing did not solve ({r.status})")
    return Solution(x=r.x, y=r.y, z_L=r.z_L, z_U=r.z_U, x_names=nlp.x_names, row_names=nlp.row_names,
                    variant="true", case=case, cost=float(nlp.cost(r.x)), status=r.status,
                    fingerprint=nlp.fingerprint)


# ------------------------------------------------------------------------------------------------ the outcome
def market_summary(source: MarketPayloads, digest: str | None) -> dict[str, Any]:
    """The market's outcome for the decided plan ``digest``: its prices and the centralised problem's
    multipliers (and the largest gap), each hub's purchases and payment at the decided prices (gas at the tariff,
    electricity and heat at the balance rows' prices), and each hub's own check of its allocation."""
    plan = next((p.solution for p in source.solved().values() if p.digest == digest), None)
    if plan is None:
        return {"decided": None}
    nlp = source._problem()[1]
    idx = _priced(nlp)
    raw = source.raw()
    prices = {nlp.row_names[i]: float(plan.y[i]) for i in idx}
    central = {nlp.row_names[i]: float(raw.y[i]) for i in idx}
    out: dict[str, Any] = {
        "decided": digest, "prices": prices, "centralised_multipliers": central,
        "price_gap": max(abs(prices[k] - central[k]) for k in prices),
        "total_cost": float(nlp.cost(plan.x)), "centralised_cost": float(nlp.cost(raw.x)),
    }
    out.update(_hubs(source.case, nlp, plan, prices))
    return out


def _day_hubs(tc: Any, nlp: Any, plan: Any, prices: Mapping[str, float]) -> dict[str, Any]:
    """Per hub over the day (``hub[h, t]``, prices ``elec_balance[t]``, ``heat_balance[z, t]``): purchases and
    payment summed over the hours, and its own check on its own day model (storage active)."""
    x = {n: float(v) for n, v in zip(nlp.x_names, plan.x)}
    payments, buys = {}, {}
    checks = {str(h): _own_day_check(tc, h, x, prices) for h in tc.hub_ids}
    for h in tc.hub_ids:
        hub, z = tc.hub(h), tc.zone_of(h)
        total = {"gas": 0.0, "elec": 0.0, "heat": 0.0}
        pay = 0.0
        for t in range(1, 25):
            buy = {c: x.get(f"hub[{h},{t}].flow[{hub.purchase_branch(c)}]", 0.0) for c in total}
            pay += (tc.tariff(t)[0] * buy["gas"] + prices[f"elec_balance[{t}]"] * buy["elec"]
                    + prices[f"heat_balance[{z},{t}]"] * buy["heat"])
            for c in total:
                total[c] += buy[c]
        buys[str(h)], payments[str(h)] = total, pay
    return {"purchases": buys, "payments": payments, "hub_checks": checks}


def _own_day_check(tc: Any, h: int, x: Mapping[str, float], prices: Mapping[str, float]) -> dict[str, Any]:
    """Hub ``h``'s own check of its day: its allocation (flows and states of charge) a KKT point of its own day
    model at the hours' prices (gas at the tariff)."""
    # heavy (Pyomo, CasADi, scipy): loaded only when a real market is run
    from poso_sim.cases.trading.day import build_hub_day_model
    from poso_sim.kkt.proposal import own_check
    from poso_sim.nlp import compile_nlp

    own = compile_nlp(build_hub_day_model(tc, h))
    z = tc.zone_of(h)
    values = {}
    for t in range(1, 25):
        values.update({f"price[gas,{t}]": tc.tariff(t)[0], f"price[elec,{t}]": prices[f"elec_balance[{t}]"],
                       f"price[heat,{t}]": prices[f"heat_balance[{z},{t}]"]})
    own = own.with_data(values)

    def market_name(n: str) -> str:
        if n.startswith("hub["):
            t, rest = n[4:].split("]", 1)
            return f"hub[{h},{t}]{rest}"
        return f"soc[{h},{n[4:]}"  # soc[node,t] -> soc[h,node,t]

    cert = own_check(own, [x[market_name(n)] for n in own.x_names])
    return {"accepted": cert.accepted, "reasons": list(cert.reasons[:2])}


def _hubs(case: str, nlp: Any, plan: Any, prices: Mapping[str, float]) -> dict[str, Any]:
    """Per hub: purchases, payment and its own check (trading case: hubs ``hub[h]``, zones' heat balances)."""
    # heavy (scipy, HiGHS, CasADi, the registry): loaded only when a real market is run
    from poso_sim.cases.trading import build_hub_model, hub_parameters
    from poso_sim.kkt.proposal import own_check
    from poso_sim.nlp import compile_nlp
    from poso_sim.nlp.problems import problem_definition

    data = problem_definition(case).load(case)
    if not hasattr(data, "hour"):  # the whole day (poso_sim.cases.trading.day)
        return _day_hubs(data, nlp, plan, prices)
    tc, hour = data.case, data.hour
    gas_price = tc.tariff(hour)[0]
    x = {n: float(v) for n, v in zip(nlp.x_names, plan.x)}
    payments, buys, checks = {}, {}, {}
    for h in tc.hub_ids:
        hub = tc.hub(h)
        buy = {c: x.get(f"hub[{h}].flow[{hub.purchase_branch(c)}]", 0.0) for c in ("gas", "elec", "heat")}
        p = (gas_price, prices["elec_balance"], prices[f"heat_balance[{tc.zone_of(h)}]"])
        buys[str(h)] = buy
        payments[str(h)] = p[0] * buy["gas"] + p[1] * buy["elec"] + p[2] * buy["heat"]
        own = compile_nlp(build_hub_model(tc, h, hour)).with_data(
            {**hub_parameters(tc, h, hour), "price[gas]": p[0], "price[elec]": p[1], "price[heat]": p[2]})
        cert = own_check(own, [x[f"hub[{h}].{n}"] for n in own.x_names])
        checks[str(h)] = {"accepted": cert.accepted, "reasons": list(cert.reasons[:2])}
    return {"purchases": buys, "payments": payments, "hub_checks": checks}
