"""Converter: the reference's trading workbooks -> the packaged ``trading.json``.

Run at conversion time only (openpyxl is not a runtime dependency)::

    python -m poso_sim.cases.trading.convert [WORKBOOK_DIR] [--out PATH] [--check]

``WORKBOOK_DIR`` defaults to ``../shared/reference/trading`` (from the repository) or /work/shared/reference/trading.
``--check`` compares the conversion with the packaged file instead of writing it (exit status 1 if they differ).
Every quirk of the workbooks (sheet order, where the device name sits, trailing empty rows, missing devices, the
plant rows without coefficients) is handled or rejected here: an error is one ``CaseError`` line naming the file,
the hub and the field.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...errors import CaseError
from ..loader import describe_error
from .loader import PACKAGED
from .schema import (
    BUS_NODE, HOURS, INPUT_NODE, KIND_OF_TYPE, ONE_OUTPUT, OUTSIDE, PLANT, RENEWABLE, STORAGE, TWO_OUTPUT,
    TradingCase,
)

N_HUBS = 12
HUB_SHEETS = ("node", "branch", "NodeInOut", "summer", "Renewable_Energy", "S")
CARRIER_CODE = {1: "elec", 2: "cool", 3: "heat", 4: "gas"}
NAME_ALIASES = {"自备电厂": "plant"}
#: constants of the reference's code (delegateUpdate.py), not in any workbook
HEAT_PRICE, HEAT_CAPACITY, GRID_MARGIN = 206.1, [100.0, 0.0, 160.0], 500.0
#: rows the conversion ignored (trailing rows without a label), reported in the case's notes
IGNORED: list[str] = []
DEFAULT_DIRS = (Path("../shared/reference/trading"), Path("/work/shared/reference/trading"))


class Sheet:
    """One worksheet as rows of a header -> value mapping; errors name the file, hub and sheet."""

    def __init__(self, file: str, hub: int | None, name: str, rows: list[tuple]):
        self.file, self.hub, self.name = file, hub, name
        header = rows[0] if rows else ()
        self.columns = [str(c).strip() if c is not None else f"#{i}" for i, c in enumerate(header)]
        self.rows = [dict(zip(self.columns, r)) for r in rows[1:]]

    def where(self, row: int | None = None, field: str | None = None) -> str:
        hub = f" hub {self.hub}:" if self.hub is not None else ""
        at = f"[{row}]" if row is not None else ""
        return f"{self.file}:{hub} {self.name}{at}{'.' + field if field else ''}"

    def fail(self, row: int | None, field: str | None, reason: str) -> CaseError:
        return CaseError(f"{self.where(row, field)}: {reason}")

    def number(self, i: int, field: str, *, default: float | None = None) -> float:
        if field not in self.columns:
            raise self.fail(None, field, "column missing")
        v = self.rows[i].get(field)
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan")):  # some files write 'NaN'
            if default is not None:
                return default
            raise self.fail(i, field, "empty cell")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                v = float(str(v).strip())
            except ValueError:
                raise self.fail(i, field, f"expected a number, got {v!r}") from None
        if not math.isfinite(v):
            raise self.fail(i, field, f"expected a finite number, got {v!r}")
        return float(v)

    def integer(self, i: int, field: str) -> int:
        v = self.number(i, field)
        if v != int(v):
            raise self.fail(i, field, f"expected an integer, got {v!r}")
        return int(v)

    def nonempty_rows(self, key: str, *, trailing: bool = False) -> list[int]:
        """Indices of the rows with a value in ``key``; rows without one must be empty of numbers, except, with
        ``trailing``, rows after the last labelled one (ignored, and listed in :data:`IGNORED`)."""
        if key not in self.columns:
            raise self.fail(None, key, "column missing")
        out = []
        for i, r in enumerate(self.rows):
            if r.get(key) not in (None, ""):
                if out and out[-1] != i - 1:
                    raise self.fail(i, key, "a row after an empty row")
                out.append(i)
            elif any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r.values()):
                if not (trailing and out and all(self.rows[j].get(key) in (None, "") for j in range(i, len(self.rows)))):
                    raise self.fail(i, key, "empty cell in a row that has numbers")
                IGNORED.append(f"{self.where(i)} has numbers but no {key}: ignored")
        return out


def _open(path: Path, hub: int | None = None) -> dict[str, Sheet]:
    import openpyxl  # conversion-time only dependency (the `test` extra), never imported at run time

    if not path.is_file():
        raise CaseError(f"{path.name}: file not found ({path})")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged or foreign file
        raise CaseError(f"{path.name}: cannot read workbook ({type(exc).__name__}: {exc})") from None
    try:
        return {ws.title: Sheet(path.name, hub, ws.title, [tuple(r) for r in ws.iter_rows(values_only=True)])
                for ws in book.worksheets}
    finally:
        book.close()


def _need(book: dict[str, Sheet], file: str, hub: int | None, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in book:
            where = f" hub {hub}:" if hub is not None else ""
            raise CaseError(f"{file}:{where} sheet {name!r} missing (sheets: {', '.join(book)})")


# ------------------------------------------------------------------------------------------------ hub sheets
def _device_name(sheet: Sheet, i: int) -> str | None:
    """The device's name where the file has one: in 节点名称 or in the unnamed last column (files differ)."""
    columns = sheet.columns[sheet.columns.index("节点名称"):] if "节点名称" in sheet.columns else []
    for v in (sheet.rows[i].get(c) for c in columns):
        if isinstance(v, str) and v.strip() and not v.strip().lstrip("-").isdigit():
            text = v.strip()
            if text.endswith(("输入", "负荷")):
                return None
            return NAME_ALIASES.get(text, text)
    return None


def _nodes(sheet: Sheet, hub: int) -> tuple[list[dict], int]:
    rows = sheet.nonempty_rows("节点序号", trailing=True)
    devices, zones = [], set()
    for i in rows:
        node = sheet.integer(i, "节点序号")
        if node != i + 1:
            raise sheet.fail(i, "节点序号", f"node {node} out of order (expected {i + 1})")
        ntype = sheet.integer(i, "节点类型")
        zones.add(sheet.integer(i, "分区编号"))
        expected = -1 if node <= 4 else 0 if node <= 8 else None
        if expected is not None:
            if ntype != expected:
                raise sheet.fail(i, "节点类型", f"node {node} must be of type {expected}, got {ntype}")
            continue
        if ntype not in KIND_OF_TYPE:
            raise sheet.fail(i, "节点类型", f"unknown node type {ntype}")
        kind = KIND_OF_TYPE[ntype]
        name = _device_name(sheet, i)
        if name is not None and name != kind:
            raise sheet.fail(i, "节点名称", f"node {node} is named {name!r} but its type {ntype} is a {kind}")
        devices.append({"node": node, "kind": kind, "type": ntype, "row": i})
    if len(zones) != 1:
        raise sheet.fail(None, "分区编号", f"one zone per hub expected, got {sorted(zones)}")
    return devices, zones.pop()


def _curve_and_limits(sheet: Sheet, dev: dict) -> dict:
    i, ntype = dev.pop("row"), dev["type"]
    num = lambda f: sheet.number(i, f)  # noqa: E731
    limits = {"in_max": num("In_max"), "out1_max": num("Out1_max"), "out2_max": num("Out2_max")}
    if ntype == PLANT:
        b, c = (sheet.number(i, f, default=math.nan) for f in ("b", "c"))
        if math.isnan(b) or math.isnan(c):
            if limits["in_max"] or limits["out1_max"]:
                raise sheet.fail(i, "b", "the plant has limits but no cost coefficients")
            # a plant row without data: a plant of zero limits, fixed at 0 as the reference does
            return {**dev, "curve": {"b": 0.0, "c": 0.0}, **limits}
        return {**dev, "curve": {"b": b, "c": c}, **limits}
    if ntype in RENEWABLE:
        return dev
    return {**dev, "curve": {k: num(k) for k in "abcdef"}, **limits}


def _branches(sheet: Sheet) -> list[dict]:
    out = []
    for i in sheet.nonempty_rows("支路编号"):
        bid = sheet.integer(i, "支路编号")
        if bid != len(out) + 1:
            raise sheet.fail(i, "支路编号", f"branch {bid} out of order (expected {len(out) + 1})")
        code = sheet.integer(i, "支路类型")
        if code not in CARRIER_CODE:
            raise sheet.fail(i, "支路类型", f"unknown carrier code {code} (1 elec, 2 cool, 3 heat, 4 gas)")
        out.append({"id": bid, "carrier": CARRIER_CODE[code], "src": sheet.integer(i, "起始节点"),
                    "dst": sheet.integer(i, "终止节点1")})
    return out


def _wire(sheet: Sheet, devices: list[dict]) -> None:
    """The device's branches from NodeInOut (one row per node, in node order)."""
    rows = {sheet.integer(i, "节点编号"): i for i in sheet.nonempty_rows("节点编号")}
    for dev in devices:
        i = rows.get(dev["node"])
        if i is None:
            raise sheet.fail(None, "节点编号", f"no row for device node {dev['node']} ({dev['kind']})")
        dev["in"], dev["out1"], dev["out2"] = (sheet.integer(i, f) for f in ("in", "out1", "out2"))


def _hourly(sheet: Sheet, column: str) -> list[float]:
    rows = sheet.nonempty_rows("Hour", trailing=True)
    if len(rows) != HOURS:
        raise sheet.fail(None, "Hour", f"{len(rows)} hours, expected {HOURS}")
    for k, i in enumerate(rows):
        if sheet.integer(i, "Hour") != k:
            raise sheet.fail(i, "Hour", f"expected hour {k} (the sheet counts hours from 0)")
    return [sheet.number(i, column) for i in rows]


def _storage_limits(sheet: Sheet, devices: list[dict]) -> None:
    name_col = sheet.columns[0]
    limits = {}
    for i, r in enumerate(sheet.rows):
        if r.get(name_col) not in (None, ""):
            limits[str(r[name_col]).strip()] = (sheet.number(i, "SOC上限"), sheet.number(i, "SOC下限"))
    stores = [d for d in devices if d["type"] in STORAGE]
    for dev in stores:
        if dev["kind"] not in limits:
            raise sheet.fail(None, dev["kind"], f"no SOC limits for the {dev['kind']} of node {dev['node']}")
        dev["soc_max"], dev["soc_min"] = limits[dev["kind"]]
    extra = set(limits) - {d["kind"] for d in stores}
    if extra:
        raise sheet.fail(None, sorted(extra)[0], "SOC limits for a storage the hub does not have")


def _purchase_bounds(hub: dict) -> dict:
    """Loose bounds on the purchases, from the device limits and the largest load (the bus balances imply them)."""
    by_id = {b["id"]: b for b in hub["branches"]}
    take = {c: 0.0 for c in ("gas", "elec", "heat")}
    give = {c: 0.0 for c in ("gas", "elec", "heat")}
    for d in hub["devices"]:
        if d["type"] in STORAGE:
            continue
        if d["type"] in RENEWABLE:
            give["elec"] += max(hub["renewable_max"]["pv" if d["kind"] == "PV" else "wt"])
            continue
        if d["type"] == PLANT:
            give["elec"] += d["in_max"]
            continue
        src = by_id.get(d["in"], {}).get("carrier")  # an unknown branch: the schema names it below
        if src in take:
            take[src] += d["in_max"]
        for end, cap in (("out1", "out1_max"), ("out2", "out2_max")):
            if d.get(end):
                carrier = by_id.get(d[end], {}).get("carrier")
                if carrier in give:
                    give[carrier] += d[cap]
    bounds = {}
    for c in ("gas", "elec", "heat"):
        lo = 0.0 if c == "gas" else -round(give[c] + 1.0, 6)
        bounds[c] = [lo, round(max(hub["loads"][c]) + take[c] + 1.0, 6)]
    return bounds


def convert_hub(path: Path, hub: int) -> dict:
    book = _open(path, hub)
    _need(book, path.name, hub, HUB_SHEETS)
    devices, zone = _nodes(book["node"], hub)
    _wire(book["NodeInOut"], devices)
    devices = [_curve_and_limits(book["node"], d) for d in devices]
    for d in devices:
        if d["type"] in ONE_OUTPUT + STORAGE + RENEWABLE + (PLANT,) and d["out2"]:
            raise book["NodeInOut"].fail(None, "out2", f"node {d['node']} ({d['kind']}) has one output")
    _storage_limits(book["S"], devices)
    branches = _branches(book["branch"])
    renew = {"pv": _hourly(book["Renewable_Energy"], "PV_max(MW)"),
             "wt": _hourly(book["Renewable_Energy"], "WT_max(MW)")}
    return {"id": hub, "zone": zone, "branches": branches, "devices": devices, "renewable_max": renew,
            "summer": book["summer"]}


# ------------------------------------------------------------------------------------------------ shared sheets
def _by_hour_rows(sheet: Sheet) -> dict[str, list[float]]:
    """demand.xlsx: rows M1..M12 and SUM, columns T1..T24."""
    key = sheet.columns[0]
    out = {}
    for i, r in enumerate(sheet.rows):
        label = r.get(key)
        if label in (None, ""):
            continue
        out[str(label).strip()] = [sheet.number(i, f"T{t}") for t in range(1, HOURS + 1)]
    for h in range(1, N_HUBS + 1):
        if f"M{h}" not in out:
            raise sheet.fail(None, f"M{h}", "row missing")
    if "SUM" in out:
        for t in range(HOURS):
            total = sum(out[f"M{h}"][t] for h in range(1, N_HUBS + 1))
            if abs(total - out["SUM"][t]) > 1e-6 * max(1.0, abs(total)):
                raise sheet.fail(None, f"SUM.T{t + 1}", f"{out['SUM'][t]} is not the sum of the hubs' rows ({total})")
    return out


def _loads(folder: Path) -> dict[str, dict[str, list[float]]]:
    book = _open(folder / "demand.xlsx")
    sheets = {"gas": "GasDemand", "elec": "ElecDemand", "heat": "HeatDemand", "cool": "CoolDemand"}
    _need(book, "demand.xlsx", None, tuple(sheets.values()))
    return {c: _by_hour_rows(book[s]) for c, s in sheets.items()}


def _tariffs(folder: Path) -> tuple[list[float], list[float]]:
    book = _open(folder / "price_ge.xlsx")
    _need(book, "price_ge.xlsx", None, ("Sheet1",))
    s = book["Sheet1"]
    rows = s.nonempty_rows("时段")
    if [s.integer(i, "时段") for i in rows] != list(range(1, HOURS + 1)):
        raise s.fail(None, "时段", f"periods must be 1..{HOURS} in order")
    return [s.number(i, "gas") for i in rows], [s.number(i, "elec") for i in rows]


def _first_demand(folder: Path) -> list[dict]:
    book = _open(folder / "first_demand.xlsx")
    _need(book, "first_demand.xlsx", None, ("Sheet1",))
    s = book["Sheet1"]
    label = {str(r.get(s.columns[0])).strip(): i for i, r in enumerate(s.rows)}
    out = []
    for h in range(1, N_HUBS + 1):
        col = next((c for c in s.columns if c.split(".")[0] == str(h)), None)
        if col is None:
            raise s.fail(None, str(h), "column of hub missing")
        vals = {}
        for carrier, text in (("gas", "气需求"), ("elec", "电需求"), ("heat", "热需求")):
            if text not in label:
                raise s.fail(None, text, "row missing")
            vals[carrier] = s.number(label[text], col)
        out.append({"hub": h, **vals})
    return out


def _starts(folder: Path, hubs: list[dict]) -> None:
    book = _open(folder / "initialValue.xlsx")
    _need(book, "initialValue.xlsx", None, ("Sheet1",))
    s = book["Sheet1"]
    for hub in hubs:
        col = next((c for c in s.columns if c.split(".")[0] == str(hub["id"])), None)
        if col is None:
            raise s.fail(None, str(hub["id"]), "column of hub missing")
        n = len(hub["branches"])
        values = [s.rows[i].get(col) for i in range(len(s.rows))]
        filled = [i for i, v in enumerate(values) if v not in (None, "")]
        if len(filled) != n or filled != list(range(n)):
            raise s.fail(None, col, f"hub {hub['id']}: {len(filled)} start values for {n} branches")
        hub["start"] = [s.number(i, col) for i in range(n)]


def _check_summer(hub: dict, summer: Sheet, loads: dict, tariffs: tuple[list[float], list[float]]) -> None:
    """The hub's own `summer` sheet must agree with demand.xlsx and price_ge.xlsx (the README says so)."""
    columns = {"elec": "电负荷(MW)", "gas": "GL (MW)", "heat": "热负荷(MW)", "cool": "冷负荷(MW)"}
    for carrier, col in columns.items():
        mine = _hourly(summer, col)
        for t, (a, b) in enumerate(zip(mine, loads[carrier][f"M{hub['id']}"])):
            if abs(a - b) > 1e-6 * max(1.0, abs(b)):
                raise summer.fail(t, col, f"{a} differs from demand.xlsx's M{hub['id']} T{t + 1} ({b})")
    for col, ref in (("Ep (RMB/MWh)", tariffs[1]), ("Gp (RMB/MWh)", tariffs[0])):
        for t, (a, b) in enumerate(zip(_hourly(summer, col), ref)):
            if abs(a - b) > 1e-9 * max(1.0, abs(b)):
                raise summer.fail(t, col, f"{a} differs from price_ge.xlsx's period {t + 1} ({b})")


NOTES = [
    "Converted from the reference's workbooks (HUB1-12, demand, price_ge, first_demand, initialValue) by "
    "python -m poso_sim.cases.trading.convert; hours are 1..24 (demand.xlsx's T1..T24, the hub sheets' Hour 0..23).",
    "heat_sources and grid.margin are constants of the reference's code (delegateUpdate.py: CH = 206.1, "
    "Qmax = [100, 0, 160], Emax = SUM of ElecDemand + 500); no workbook holds them.",
    "A plant row without cost coefficients and with zero limits (hubs 2-4, 7-12) is a plant of zero cost and "
    "limits: its output is fixed at 0, as in the reference.",
    "purchase_bounds are declared by the project (the reference leaves the purchase flows unbounded): the device "
    "limits plus the largest load, plus 1; the bus balances never let a purchase reach them.",
    "The flows from node 1000 (renewable resource, the plant's fuel) are not variables of the hub's problem: the "
    "reference bounds them nowhere and uses them nowhere.",
]


def convert(folder: str | Path) -> dict:
    """The case document (a dict ready for JSON) converted from the workbooks in ``folder``."""
    folder = Path(folder)
    IGNORED.clear()
    if not folder.is_dir():
        raise CaseError(f"{folder}: not a directory of trading workbooks")
    loads = _loads(folder)
    tariffs = _tariffs(folder)
    hubs = []
    for h in range(1, N_HUBS + 1):
        hub = convert_hub(folder / f"HUB{h}.xlsx", h)
        _check_summer(hub, hub.pop("summer"), loads, tariffs)
        hub["loads"] = {c: loads[c][f"M{h}"] for c in ("gas", "elec", "heat", "cool")}
        hub["purchase_bounds"] = _purchase_bounds(hub)
        hubs.append(hub)
    _starts(folder, hubs)
    doc = {
        "name": "trading",
        "description": "Twelve multi-energy hubs trading gas, electricity and heat (the PoSo reference's scene III), "
                       "24 hours; three heat zones; the grid and one heat source per zone outside.",
        "units": {"power": "MW (loads, limits, flows)", "price": "RMB/MWh", "plant_cost": "RMB/h with P in MW"},
        "notes": NOTES + sorted(set(IGNORED)),
        "tariff_gas": tariffs[0],
        "tariff_elec": tariffs[1],
        "grid": {"margin": GRID_MARGIN, "note": "Emax(hour) = the hubs' electricity load + margin"},
        "heat_sources": {"price": HEAT_PRICE, "capacity": HEAT_CAPACITY,
                         "note": "one external source per zone (hubs 1-4, 5-8, 9-12)"},
        "initial": {"gas_factor": 0.9, "elec_factor": 0.5, "heat": 200.0},
        "first_demand_round1": _first_demand(folder),
        "hubs": [{k: hub[k] for k in ("id", "zone", "branches", "devices", "loads", "renewable_max",
                                      "purchase_bounds", "start")} for hub in hubs],
    }
    _validate(doc)
    return doc


def _validate(doc: dict) -> TradingCase:
    """The converted document through the case schema: a failure names the hub's workbook and the field."""
    try:
        return TradingCase.model_validate(doc)
    except ValidationError as exc:
        err = dict(exc.errors()[0])
        loc = tuple(err.get("loc", ()))
        where = ""
        if len(loc) >= 2 and loc[0] == "hubs" and isinstance(loc[1], int):
            hub = doc["hubs"][loc[1]]["id"]
            where, err["loc"] = f"HUB{hub}.xlsx: hub {hub}: ", loc[2:]
        raise CaseError(f"{where}{describe_error(err)}") from None


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _default_dir() -> Path:
    repo = Path(__file__).resolve().parents[4]
    for d in (repo / DEFAULT_DIRS[0], DEFAULT_DIRS[1]):
        if d.is_dir():
            return d
    return repo / DEFAULT_DIRS[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poso_sim.cases.trading.convert", description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path, default=None, help="the workbooks' directory")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name(PACKAGED), help="the JSON file to write")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = ap.parse_args(argv)
    try:
        text = dumps(convert(args.folder or _default_dir()))
    except CaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'reproduced' if same else 'DIFFERS from the conversion'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
