"""The trading case's best responses: CPU of the twelve hubs' answers per round, along a real price path.

Run from the repository root: ``python -m benchmarks.bench_trading [--quick] [--write]``. ``--write`` replaces the
"Trading: best responses" section of docs/benchmarks.md.

One process, OMP_NUM_THREADS=1, CPU time (``time.process_time``). The price path is the one the reference's rule
makes at hour 12 (TRADING.md: the bands against the grid and the zone heat sources, the step 1/(20 + 0.1 n), the
end flag at a price change below 1e-3): a small driver here updates the prices from the twelve answers, round after
round, so each round's prices are those an honest market would publish. Measured per method:

* **sqp, anchor**: the default: CasADi ``sqpmethod`` + ``qrqp`` from the hub's best response at the round-1
  prices (an answer is a function of the prices alone), Ipopt fallback;
* **sqp, previous**: the SQP method from the hub's previous answer;
* **sqp, none**: the SQP method from the case's start point;
* **ipopt**: ``method="ipopt"``, Ipopt from the case's start point every time (what the SQP falls back to).

Every method must follow the same price path (the rounds and the final prices agree to 1e-6), which the benchmark
checks. The centralised clearing's prices (its balance-row multipliers) are given for comparison.
"""

from __future__ import annotations

import os
import statistics
import time

from benchmarks.common import machine, quick_main

SECTION = "## Trading: best responses"
HOUR = 12


def _band(price: float, ref: float, cap: float, net: float) -> float:
    """The reference's excess demand against an outside supplier of price ``ref`` and capacity ``cap``."""
    if price > ref + 0.01:
        return net - cap
    if price < ref - 0.01:
        return net
    return net if net < 0 else 0.0


def price_path(responder, case, max_rounds: int) -> dict:
    """Run the reference's price rule with ``responder``; CPU of each round's twelve answers."""
    tariff = case.tariff(HOUR)
    gas, elec, heat0 = case.initial_prices(HOUR)
    heat = [heat0] * 3
    src = case.heat_sources
    per_round, rounds = [], 0
    for n in range(1, max_rounds + 1):
        prices = {h: (gas, elec, heat[case.zone_of(h) - 1]) for h in case.hub_ids}
        t = time.process_time()
        demand = responder.respond_all(prices)
        per_round.append(time.process_time() - t)
        net_e = sum(d[1] for d in demand.values())
        net_h = [sum(demand[h][2] for h in case.hubs_in_zone(z)) for z in (1, 2, 3)]
        old = (gas, elec, *heat)
        step = 1.0 / (20 + 0.1 * n)
        gas = tariff[0]
        elec += step * _band(elec, tariff[1], case.grid_cap(HOUR), net_e)
        heat = [heat[z] + step * _band(heat[z], src.price, src.capacity[z], net_h[z]) for z in range(3)]
        rounds = n
        if sum((a - b) ** 2 for a, b in zip((gas, elec, *heat), old)) ** 0.5 < 1e-3:
            break
    return {"rounds": rounds, "per_round": per_round, "final": (gas, elec, *heat)}


def _measure(case, method: str, warm: str, max_rounds: int) -> dict:
    from poso_sim.solvers.trading import HubResponder

    t = time.process_time()
    responder = HubResponder(case, HOUR, method=method, warm_start=warm)
    setup = time.process_time() - t
    out = price_path(responder, case, max_rounds)
    out.update(setup=setup, fallbacks=getattr(responder, "fallbacks", 0))
    return out


def _clearing_prices() -> tuple[float, ...]:
    from poso_sim.solvers.trading import clear_market

    return clear_market(hour=HOUR).prices.vector()[1:]


def report(quick: bool) -> str:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from poso_sim.cases.trading import load_trading_case

    case = load_trading_case()
    max_rounds = 40 if quick else 2000
    modes = [("sqp", "anchor"), ("sqp", "previous"), ("sqp", "none"), ("ipopt", "none")]
    rows, results = [], {}
    for method, warm in modes:
        r = results[(method, warm)] = _measure(case, method, warm, max_rounds)
        pr = sorted(r["per_round"])
        rows.append(
            f"| {method if method == 'ipopt' else f'{method}, {warm}'} | {r['setup'] * 1e3:.0f} | {r['rounds']} | "
            f"{statistics.median(pr) * 1e3:.1f} | {pr[int(0.95 * (len(pr) - 1))] * 1e3:.1f} | {pr[-1] * 1e3:.1f} | "
            f"{sum(pr):.2f} | {r['fallbacks']} |"
        )
    base = results[("sqp", "anchor")]
    for key, r in results.items():
        if r["rounds"] != base["rounds"] or max(abs(a - b) for a, b in zip(r["final"], base["final"])) > 1e-6:
            raise SystemExit(f"{key}: a different price path ({r['rounds']} rounds, {r['final']})")
    final = ", ".join(f"{v:.3f}" for v in base["final"][1:])
    clear = ", ".join(f"{v:.3f}" for v in _clearing_prices())
    lines = [
        SECTION,
        "",
        "`python -m benchmarks.bench_trading`: the twelve hubs' best responses per round of the reference's price "
        f"rule at hour {HOUR}, CPU in one process (OMP_NUM_THREADS=1); setup = build and compile the twelve hub "
        "models and their solvers. Every method follows the same price path (checked)."
        + (" Quick run: at most 40 rounds." if quick else ""),
        "",
        *machine(),
        "",
        "| method | setup ms | rounds | median ms/round | p95 ms/round | max ms/round | total s | SQP fallbacks |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Final prices (electricity, heat zones 1-3) after {base['rounds']} rounds: {final}; the centralised "
        f"clearing's balance-row multipliers: {clear}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    quick_main(__doc__, SECTION, report, argv)


if __name__ == "__main__":
    main()
