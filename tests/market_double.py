"""A stand-in for the trading case and its hub responder (the contract of poso_sim.cases.trading and
poso_sim.solvers.trading), until the real ones land."""

from __future__ import annotations


class FakeTradingCase:
    name = "trading"
    hubs = list(range(1, 13))
    heat_sources = (206.1, (100.0, 0.0, 160.0))

    def zone_of(self, hub: int) -> int:
        return (hub - 1) // 4 + 1

    def tariff(self, hour: int) -> tuple[float, float]:
        return (318.0, 994.7)

    def grid_cap(self, hour: int) -> float:
        return 3353.883093

    first_demand = {h: (19.0 - h * 0.5, 230.0 + 7.0 * h, 80.0 + 3.0 * (h % 5)) for h in range(1, 13)}

    def initial_prices(self, hour: int) -> tuple[float, float, float]:
        return (0.9 * 318.0, 0.5 * 994.7, 200.0)


