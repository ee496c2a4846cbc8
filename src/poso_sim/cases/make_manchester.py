"""One-off converter: reference ``ies_case.json`` -> packaged ``data/manchester.json``.

Kept for provenance only; the packaged file is the source of truth for the library.
Usage::

    python -m poso_sim.cases.make_manchester /path/to/ies_case.json src/poso_sim/cases/data/manchester.json

The reference file mixes GAMS-oriented names, derived values and notes; this writes the case in
poso_sim's own schema (see docs/model.md).  All numbers are the GAMS-text values of the reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _storage(s: dict) -> dict:
    cap = float(s["Emax_kWh"])
    return {
        "power_max_kw": float(s["ramp_kW"]),
        "capacity_kwh": cap,
        "min_energy_kwh": cap / 10.0,
        "initial_energy_kwh": cap / 2.0,
        "efficiency": float(s["conv_eff"]),
        "retention": float(s["retention"]),
    }


def convert(ref: dict) -> dict:
    sc = ref["scalars"]
    prof = ref["profiles"]
    lf = prof["ELoadCurve"]
    if not (lf == prof["HLoadCurve"] == prof["GLoadCurve"]):
        raise ValueError("the reference uses one load factor for all carriers; these differ")
    hubs = []
    for key in sorted(ref["hubs"], key=int):
        h = ref["hubs"][key]
        c = h["cost"]
        hubs.append(
            {
                "id": int(key),
                "e_bus": h["ebus"],
                "h_node": h["hbus"],
                "g_node": h["gbus"],
                "s_max_kva": h["CHPMax_kVA"],
                "boiler_max_kw": h["GasBoMax_kW"],
                "cost": {
                    "a": c["a_usd_per_MW2h"],
                    "b": c["b_usd_per_MWh"],
                    "c": c["c_usd_per_MW2h"],
                    "d": c["d_usd_per_MWh"],
                    "e": c["e_usd_per_MW2h"],
                    "f": c["f_usd_per_kWh_gasboiler_heat"],
                },
                "battery": _storage(h["estorage"]),
                "tank": _storage(h["hstorage"]),
            }
        )
    v_nom = sc["V_nom_kV"]
    return {
        "name": "manchester",
        "description": (
            "University of Manchester campus integrated energy system: 15-bus radial electric grid, "
            "36-node district-heating network, 37-node gas network, 8 energy hubs (CHP, gas boiler, "
            "battery, heat tank), 24 hourly periods. Figures are those of the PoSo reference GAMS model."
        ),
        "units": {
            "power": "kW (reactive kVar)",
            "energy": "kWh",
            "voltage": "kV^2 (squared magnitude)",
            "current": "A^2 (squared magnitude)",
            "resistance": "ohm",
            "mass_flow": "kg/s",
            "temperature": "degC",
            "gas_flow": "m3/h",
            "gas_pressure": "bar",
            "price": "$/kWh",
            "chp_cost": "$/h with P, H in MW (a, c, e: $/MW^2h; b, d: $/MWh)",
            "boiler_cost": "$/kWh of boiler heat (H in kW)",
            "length": "m",
            "diameter": "mm",
            "heat_loss_coeff": "W/(m K), used as exp(-coeff*length/(cp*1000*mass_flow))",
        },
        "horizon": len(lf),
        "profiles": {"price": list(prof["mainGridPrice_usd_per_kWh"]), "load_factor": list(lf)},
        "scalars": {
            "cp": sc["Cp_kJ_per_kgK"],
            "t_supply": sc["T_CHP_out_C"],
            "t_ambient": sc["T_outside_C"],
            "load_mass_flow": sc["MassFlowC_kg_per_s"],
            "gas_heating_value": sc["GasHV_kWh_per_m3"],
            "chp_power_eff": sc["CHP_Peff"],
            "chp_heat_to_power": sc["CHP_heat_to_power"],
            "boiler_eff": sc["GasBoiler_eff"],
            "v_nominal_kv": v_nom,
            "v2_min": round((sc["V_min_pu"] * v_nom) ** 2, 10),
            "v2_max": round((sc["V_max_pu"] * v_nom) ** 2, 10),
            "v2_slack": round(v_nom**2, 10),
            "i2_max": sc["Isq_max_A2"],
            "gas_source_pressure": sc["slack_gas_pressure_bar"],
            "min_pipe_mass_flow": sc["MassFlow_branch_min_kg_per_s"],
        },
        "hubs": hubs,
        "electric": {
            "buses": [
                {"id": b["id"], "type": b["type"], "p_load": b["Pload_kW"], "q_load": b["Qload_kVar"]}
                for b in ref["ebus"]
            ],
            "branches": [
                {"id": b["id"], "from": b["from"], "to": b["to"], "r": b["r_ohm"], "x": b["x_ohm"], "z2": b["z2_ohm2"]}
                for b in ref["ebranch"]
            ],
        },
        "heat": {
            "nodes": [{"id": b["id"], "type": b["type"], "load_kw": b["Hload_kW"]} for b in ref["hbus"]],
            "pipes": [
                {
                    "id": b["id"],
                    "from": b["from"],
                    "to": b["to"],
                    "length_m": b["length_m"],
                    "loss_coeff": b["heat_loss_coeff"],
                }
                for b in ref["hbranch"]
            ],
        },
        "gas": {
            "nodes": [{"id": b["id"], "type": b["type"], "load_kw": b["Gload_kW"]} for b in ref["gbus"]],
            "pipes": [
                {
                    "id": b["id"],
                    "from": b["from"],
                    "to": b["to"],
                    "length_m": b["length_m"],
                    "diameter_mm": b["diameter_mm"],
                    "K": b["K_g"],
                }
                for b in ref["gbranch"]
            ],
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    src, dst = Path(args[0]), Path(args[1])
    case = convert(json.loads(src.read_text()))
    dst.write_text(json.dumps(case, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
