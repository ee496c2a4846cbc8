"""The Pyomo model: sizes per IES_MODEL.md §4, naming contract, variants, and the true cost / storage
recursions evaluated at the published dispatch (ies_results.json)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyomo.environ as pyo
import pytest

from poso_sim.cases import CONSTRAINT_FAMILIES, VARIABLE_NAMES, build_model, load_case, model_sizes

def _results_file() -> Path:
    """The published dispatch: $POSO_SIM_REFERENCE_DIR, the project's sibling ``shared/`` or /work/shared."""
    import os

    candidates = [Path(os.environ["POSO_SIM_REFERENCE_DIR"])] if os.environ.get("POSO_SIM_REFERENCE_DIR") else []
    candidates += [Path(__file__).resolve().parents[2] / "shared" / "reference", Path("/work/shared/reference")]
    for folder in candidates:
        if (folder / "ies_results.json").is_file():
            return folder / "ies_results.json"
    return candidates[0] / "ies_results.json"


RESULTS = _results_file()

# IES_MODEL.md §4: family -> (rows, sense, Jacobian nnz, non-linear nnz)
SPEC_FAMILIES = {
    "ENodePLoadeq": (144, "=", 504, 0), "ENodePCHPeq": (192, "=", 1032, 0), "ENodePSlaeq": (24, "=", 72, 0),
    "ENodeQLoadeq": (144, "=", 504, 0), "ENodeQCHPeq": (192, "=", 648, 0), "ENodeQSlaeq": (24, "=", 72, 0),
    "EBranchPeq": (336, "=", 1680, 0), "EBranchPpositive": (336, ">=", 672, 0),
    "EBranchQpositive": (336, ">=", 672, 0), "SOCPeq": (336, "=", 1344, 1344),
    "CHPOutputLimit": (192, "<=", 384, 384), "SlackBusVoltage": (24, "=", 24, 0),
    "EstoragePowereq": (184, "=", 736, 0), "EstorageStarteqEnd": (8, "=", 32, 0), "EstorageInitial": (8, "=", 8, 0),
    "HNodeLoadeq": (504, "=", 1512, 1512), "HNodeCHPeq": (192, "=", 1152, 384),
    "HKCLLoadS": (672, "=", 2160, 0), "HKCLLoadR": (672, "=", 2160, 0),
    "HKCLCHPS": (192, "=", 576, 0), "HKCLCHPR": (192, "=", 576, 0),
    "HBranchTempLossS": (840, "=", 2520, 1680), "HBranchTempLossR": (840, "=", 2520, 1680),
    "HNodeMixLoadS": (672, "=", 3672, 3672), "HNodeMixLoadR": (672, "=", 4152, 4152),
    "HNodeMixCHPS": (192, "=", 192, 0), "HNodeMixCHPR": (192, "=", 1152, 1152),
    "HLoadMassFlowFix": (504, "=", 504, 0), "HnLoadMassFlowFix": (360, "=", 360, 0),
    "HnLoadTempLoadout": (360, "=", 360, 0),
    "HstoragePowereq": (184, "=", 736, 0), "HstorageStarteqEnd": (8, "=", 32, 0), "HstorageInitial": (8, "=", 8, 0),
    "CHPEfficiencyeq2": (192, "=", 384, 0), "GasBoEfficiencyeq1": (192, "=", 384, 0),
    "GasBoEfficiencyeq2": (192, "<=", 192, 0),
    "GNodeLoadeq": (672, "=", 1296, 0), "GNodeCHPeq": (192, "=", 792, 0), "GSlackBuseq": (24, "=", 48, 0),
    "GWeymoutheq": (864, "=", 2592, 864), "GSlackBusPressure": (24, "=", 24, 0),
}  # fmt: skip

# IES_MODEL.md §4 variable table
SPEC_VARIABLES = {
    "P_CHP": 192, "Q_CHP": 192, "H_CHP": 192, "P_grid": 24, "Q_grid": 24, "gas_source": 24,
    "P_line": 336, "Q_line": 336, "I_line": 336, "V": 360, "E_bat": 192, "P_ch": 192, "P_dis": 192,
    "H_boiler": 192, "G_boiler": 192, "E_tank": 192, "H_ch": 192, "H_dis": 192, "m_load": 864,
    "m_sup": 840, "m_ret": 840, "m_hub": 192, "T_sup": 864, "T_ret": 864, "T_load_out": 864,
    "T_end_sup": 840, "T_end_ret": 840, "gas_flow": 864, "gas_p": 888,
}  # fmt: skip


@pytest.fixture(scope="module")
def case():
    return load_case("manchester")


@pytest.fixture(scope="module")
def true_model(case):
    return build_model(case)


@pytest.fixture(scope="module")
def results() -> dict:
    if not RESULTS.is_file():
        pytest.skip(f"published dispatch not available: {RESULTS} is absent")
    return json.loads(RESULTS.read_text())


def _set_dispatch(m: pyo.ConcreteModel, r: dict) -> None:
    """Load the published arrays (lists over t of lists over hubs) into the model's variables."""
    for t in m.T:
        m.P_grid[t].set_value(r["mainGridP_kW"][t - 1], skip_validation=True)
        for c in m.CHP:
            for var, key in (
                (m.P_CHP, "CHP_P_kW"), (m.H_CHP, "CHP_H_kW"), (m.H_boiler, "GasBoiler_H_kW"),
                (m.E_bat, "Battery_E_kWh"), (m.P_ch, "Battery_Pin_kW"), (m.P_dis, "Battery_Pout_kW"),
                (m.E_tank, "HeatTank_E_kWh"), (m.H_ch, "HeatTank_Hin_kW"), (m.H_dis, "HeatTank_Hout_kW"),
            ):  # fmt: skip
                var[c, t].set_value(r[key][t - 1][c - 1], skip_validation=True)


def _max_residual(con) -> float:
    return max(abs(pyo.value(row.body)) for row in con.values())


# ---------------------------------------------------------------- sizes -------------------------------------------


def test_sizes_match_spec(true_model):
    s = model_sizes(true_model)
    assert s["variables"] == 12312
    assert s["equalities"] == 11032
    assert s["inequalities"] == 1056
    assert s["jacobian_nnz"] == 38440
    assert s["nonlinear_nnz"] == 16824
    got = {name: (f["rows"], f["sense"], f["nnz"], f["nonlinear_nnz"]) for name, f in s["families"].items()}
    assert got == SPEC_FAMILIES
    assert list(s["families"]) == list(CONSTRAINT_FAMILIES)


def test_variables_order_and_counts(true_model):
    vars_ = list(true_model.component_objects(pyo.Var, descend_into=False))
    assert [v.local_name for v in vars_] == list(VARIABLE_NAMES)
    assert {v.local_name: len(v) for v in vars_} == SPEC_VARIABLES
    m = true_model
    assert list(m.T) == list(range(1, 25)) and list(m.CHP) == list(range(1, 9))
    assert (len(m.EBus), len(m.EBranch), len(m.HBus), len(m.HPipe), len(m.GBus), len(m.GPipe)) == (15, 14, 36, 35, 37, 36)
    # indexed (element, t), element-major
    assert list(m.P_CHP.keys())[:3] == [(1, 1), (1, 2), (1, 3)]
    assert m.P_CHP[3, 7].index() == (3, 7)


def test_bounds(true_model):
    m = true_model
    assert m.I_line[1, 1].bounds == (0, 9000)
    assert m.V[15, 5].bounds == (35.2836, 52.7076)
    assert m.E_bat[2, 3].bounds == (30, 300) and m.E_tank[8, 24].bounds == (30, 300)
    assert m.P_ch[1, 1].bounds == (0, 60) and m.P_dis[1, 1].bounds == (0, 60)
    assert m.H_ch[1, 1].bounds == (0, 50) and m.H_dis[1, 1].bounds == (0, 50)
    assert m.m_sup[4, 4].lb == 1e-5 and m.m_ret[4, 4].lb == 1e-5 and m.m_sup[4, 4].ub is None
    assert m.P_CHP[1, 1].bounds == (0, None) and m.gas_p[37, 1].bounds == (0, None)
    n_finite = sum(1 for v in m.component_data_objects(pyo.Var) if v.lb is not None and v.ub is not None)
    assert n_finite == 1848


def test_orientation_body_is_lhs_minus_rhs(true_model):
    m = true_model
    # HLoadMassFlowFix: m_load = 20  ->  body m_load - 20
    m.m_load[1, 1].set_value(20.0)
    assert pyo.value(m.HLoadMassFlowFix[1, 1].body) == pytest.approx(0.0)
    m.m_load[1, 1].set_value(0.0)
    assert pyo.value(m.HLoadMassFlowFix[1, 1].body) == pytest.approx(-20.0)
    # HNodeLoadeq: lhs H^d lambda_t (constant) - rhs Cp m (T_s - T_lo); at m = 0 the body is +520*0.78
    m.T_sup[1, 1].set_value(70.0)
    m.T_load_out[1, 1].set_value(40.0)
    assert pyo.value(m.HNodeLoadeq[1, 1].body) == pytest.approx(520 * 0.78)
    # senses
    assert m.EBranchPpositive[1, 1].lower == 0 and m.EBranchPpositive[1, 1].upper is None
    assert m.CHPOutputLimit[1, 1].upper == 0 and m.CHPOutputLimit[1, 1].lower is None
    assert m.GasBoEfficiencyeq2[1, 1].upper == 0
    # indexing conventions of the families
    assert (1, 2) in m.EstoragePowereq and (1, 1) not in m.EstoragePowereq and (8, 24) in m.EstoragePowereq
    assert list(m.EstorageInitial.keys()) == list(range(1, 9))
    assert list(m.SlackBusVoltage.keys()) == list(range(1, 25))
    assert (13, 5) in m.ENodePCHPeq and (36, 5) in m.HKCLCHPS and (1, 5) in m.GNodeCHPeq


def test_metadata(true_model, case):
    assert true_model.variant == "true"
    assert true_model.case_name == "manchester"
    assert true_model._case is case


def test_build_time(case):
    best = min(_timed_build(case) for _ in range(2))
    assert best < 1.5, f"build took {best:.2f} s"


def _timed_build(case) -> float:
    t0 = time.perf_counter()
    build_model(case)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- variants ----------------------------------------


def test_unknown_variant(case):
    with pytest.raises(ValueError, match="allowed: true, tampered, feasible"):
        build_model(case, "honest")


def test_feasible_variant(case):
    m = build_model(case, "feasible", feasible_unit=5, feasible_min_kw=250.0)
    assert m.variant == "feasible"
    assert len(m.ForceCHPOn) == 24 and m.ForceCHPOn[7].lower == 0 and m.ForceCHPOn[7].upper is None
    m.P_CHP[5, 7].set_value(100.0)
    assert pyo.value(m.ForceCHPOn[7].body) == pytest.approx(-150.0)
    assert m.obj.expr is m.true_cost or str(m.obj.expr) == "true_cost"
    s = model_sizes(m, nonlinear=False)
    assert (s["equalities"], s["inequalities"], s["jacobian_nnz"]) == (11032, 1056 + 24, 38440 + 24)
    with pytest.raises(ValueError, match="feasible_unit 9"):
        build_model(case, "feasible", feasible_unit=9)


# ---------------------------------------------------------------- published dispatch -----------------------------


@pytest.mark.parametrize(
    "variant, total, grid, chp, boiler",
    [
        ("optimal", 744.093, 241.731, 401.743, 100.619),
        ("non-optimal", 904.174, 99.039, 718.234, 86.902),
    ],
)
def test_true_cost_at_published_dispatch(true_model, results, variant, total, grid, chp, boiler):
    _set_dispatch(true_model, results[variant])
    assert pyo.value(true_model.true_cost) == pytest.approx(total, abs=0.01)
    assert pyo.value(true_model.cost_grid) == pytest.approx(grid, abs=0.01)
    assert pyo.value(true_model.cost_chp) == pytest.approx(chp, abs=0.01)
    assert pyo.value(true_model.cost_boiler) == pytest.approx(boiler, abs=0.01)
    assert pyo.value(true_model.obj) == pytest.approx(total, abs=0.01)


@pytest.mark.parametrize("variant", ["optimal", "non-optimal"])
def test_published_dispatch_satisfies_storage_and_chp_rows(true_model, results, variant):
    _set_dispatch(true_model, results[variant])
    for fam in (
        "EstoragePowereq", "EstorageStarteqEnd", "EstorageInitial",
        "HstoragePowereq", "HstorageStarteqEnd", "HstorageInitial", "CHPEfficiencyeq2",
    ):  # fmt: skip
        assert _max_residual(getattr(true_model, fam)) < 1e-6, fam


def test_storage_timing_oddity_is_kept(true_model, results):
    """Tank uses same-period flows, battery previous-period flows: the swapped timings do not fit the dispatch."""
    r = results["optimal"]
    _set_dispatch(true_model, r)
    rho = 0.999

    def worst(e, fin, fout, lag):
        return max(
            abs(e[t][c] - (rho * e[t - 1][c] + fin[t - lag][c] - fout[t - lag][c])) for t in range(1, 24) for c in range(8)
        )

    tank = (r["HeatTank_E_kWh"], r["HeatTank_Hin_kW"], r["HeatTank_Hout_kW"])
    bat = (r["Battery_E_kWh"], r["Battery_Pin_kW"], r["Battery_Pout_kW"])
    assert worst(*tank, lag=0) < 1e-9 and worst(*tank, lag=1) > 1.0
    assert worst(*bat, lag=1) < 1e-9 and worst(*bat, lag=0) > 1.0
    assert _max_residual(true_model.HstoragePowereq) < 1e-9
    assert _max_residual(true_model.EstoragePowereq) < 1e-9


def test_tampered_objective_at_published_non_optimal(case, results):
    m = build_model(case, "tampered")
    assert m.variant == "tampered"
    _set_dispatch(m, results["non-optimal"])
    assert pyo.value(m.obj) == pytest.approx(-11756.49, abs=1.0)
    assert pyo.value(m.true_cost) == pytest.approx(904.174, abs=0.01)
    _set_dispatch(m, results["optimal"])
    assert pyo.value(m.obj) == pytest.approx(-541.374, abs=0.01)
