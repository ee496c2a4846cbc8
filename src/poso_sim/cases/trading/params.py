"""The Param data of the trading models by element name, computed without Pyomo (for ``CompiledNLP.with_data``):
a verifier or a market turns a compiled structure into the problem of another hour without building a model."""

from __future__ import annotations

from .schema import CARRIERS, RENEWABLE, TradingCase, _hour_index


def hub_parameters(case: TradingCase, hub: int, hour: int) -> dict[str, float]:
    """The hour's Param data of the hub model by element name (without Pyomo), for ``CompiledNLP.with_data``."""
    h, i = case.hub(hub), _hour_index(hour)
    out = {f"demand[{c}]": getattr(h.loads, c)[i] for c in CARRIERS}
    for d in h.devices_of(*RENEWABLE):
        out[f"renew_max[{d.node}]"] = (h.renewable_max.pv if d.kind == "PV" else h.renewable_max.wt)[i]
    return out


def market_parameters(case: TradingCase, hour: int) -> dict[str, float]:
    """The hour's Param data of the market model by element name (without Pyomo)."""
    gas, elec = case.tariff(hour)
    out = {"tariff_gas": gas, "tariff_elec": elec, "grid_cap": case.grid_cap(hour)}
    for h in case.hubs:
        out.update({f"hub[{h.id}].{k}": v for k, v in hub_parameters(case, h.id, hour).items()})
    return out
