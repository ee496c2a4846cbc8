"""Scenario files: parsing and loading (poso_sim's format and the reference's legacy one) and the scenarios
shipped in the package. The pieces live in :mod:`.schema` (the pydantic models and semantic checks),
:mod:`.yaml_locator` (YAML with line numbers, duplicate keys) and :mod:`.legacy` (the reference's format);
this module re-exports their public names.

Every problem with a scenario file ends as one `poso_sim.errors.ScenarioError` whose message names the file,
the line and the field, e.g. ``bad.yaml, line 7: behaviours.C.follower_ignore[1]: unknown node 'X'``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from poso_sim.errors import ScenarioError

from .legacy import legacy_fields
from .schema import (
    BEHAVIOUR_KEYS,
    FIRST_ID,
    GENERIC_KEYS,
    LABELS,
    REFERENCE_KEYS,
    TARGET_GROUPS,
    FaultSpec,
    FieldError,
    NetworkSpec,
    Scenario,
    check_case,
    check_scenario,
    generated_name,
    known_cases,
    legacy_name,
)
from .trading_schema import TradingScenario, is_trading_data, validate_trading
from .yaml_locator import fail, load_yaml, locate

__all__ = [
    "Scenario",
    "NetworkSpec",
    "FaultSpec",
    "load_scenario",
    "parse_scenario",
    "import_legacy",
    "packaged_scenarios",
    "resolve_scenario",
    "generated_name",
    "legacy_name",
    "check_case",
    "known_cases",
    "BEHAVIOUR_KEYS",
    "REFERENCE_KEYS",
    "GENERIC_KEYS",
    "LABELS",
    "TARGET_GROUPS",
    "FIRST_ID",
]


def parse_scenario(text: str, where: str = "<string>", *, defaults: Mapping[str, Any] | None = None) -> Scenario:
    """Parse and validate a scenario (poso_sim format, or the reference's legacy format if it has `nodes:`)."""
    data, marks = load_yaml(text, where)
    if data is None:
        raise fail(where, 1, "(top level)", "empty scenario file")
    if not isinstance(data, dict):
        raise fail(where, 1, "(top level)", "expected a mapping of scenario fields")
    if "nodes" in data and "delegates" not in data:
        return import_legacy(data, where, marks=marks, defaults=defaults)
    if is_trading_data(data):  # the iterative market (docs/trading.md)
        return validate_trading({**(defaults or {}), **data}, where, marks)  # type: ignore[return-value]
    merged = {**(defaults or {}), **data}
    return _validate(merged, where, marks)


def _validate(data: Mapping[str, Any], where: str, marks: Mapping[tuple[str, ...], int]) -> Scenario:
    # YAML keys like `8:` load as ints: pydantic wants str keys for `behaviours`/`delegates`
    data = dict(data)
    if isinstance(data.get("behaviours"), dict):
        data["behaviours"] = {str(k): v for k, v in data["behaviours"].items()}
    try:
        scn = Scenario.model_validate({**data, "source": where})
    except ValidationError as exc:
        errs = exc.errors()
        # prefer the most specific error (pydantic reports one per union branch)
        err = max(errs, key=lambda e: sum(1 for el in e["loc"] if not str(el).startswith(("function", "list[", "dict[")))) \
            if len(errs) > 1 and all(e["loc"][:1] == errs[0]["loc"][:1] for e in errs) else errs[0]
        line, field = locate(err["loc"], marks)
        msg = err["msg"]
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif err.get("type") == "value_error":
            msg = msg.removeprefix("Value error, ")
        more = len({e["loc"][:1] for e in errs}) - 1
        raise fail(where, line, field, msg + (f" (and {more} more)" if more > 0 else "")) from None
    try:
        check_scenario(scn)
    except FieldError as exc:
        line, field = locate(exc.path, marks)
        raise fail(where, line, field, exc.msg) from None
    return scn


def load_scenario(path: str | os.PathLike[str], **defaults: Any) -> Scenario:
    """Load a scenario file (poso_sim format or the reference's legacy format)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc.strerror or exc}") from None
    scn = parse_scenario(text, str(p), defaults=defaults or None)
    if "name" not in (load_yaml(text, str(p))[0] or {}):
        scn = scn.with_(name=p.stem)
    return scn


def import_legacy(
    data: Mapping[str, Any],
    where: str = "<legacy>",
    *,
    marks: Mapping[tuple[str, ...], int] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Scenario:
    """The reference's configuration as a validated Scenario (see :func:`poso_sim.scenarios.legacy.legacy_fields`)."""
    fields, bmarks = legacy_fields(data, where, marks=marks, defaults=defaults)
    return _validate(fields, where, bmarks)


# -------------------------------------------------------------------------------------- packaged scenarios
def _data_dir() -> Any:
    return resources.files("poso_sim.scenarios") / "data"


def packaged_scenarios() -> dict[str, str]:
    """name -> one-line description of the scenarios shipped in the package (sorted by name)."""
    out = {}
    for entry in sorted(_data_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            scn = parse_scenario(entry.read_text(encoding="utf-8"), f"<package>/{entry.name}")
            out[entry.name[:-5]] = " ".join(scn.description.split())
    return out


def resolve_scenario(spec: str | os.PathLike[str] | Scenario, **defaults: Any) -> Scenario:
    """A Scenario, a packaged name (``scenario-1``...) or a file path -> Scenario. A trading scenario
    (docs/trading.md) comes back as a `TradingScenario`; ``trading-12:<variant>`` names one of its variants."""
    if isinstance(spec, (Scenario, TradingScenario)):
        return spec  # type: ignore[return-value]
    s = str(spec)
    base, sep, variant = s.rpartition(":") if ":" in s and not Path(s).exists() else (s, "", "")
    if sep:
        scn = resolve_scenario(base, **defaults)
        if not isinstance(scn, TradingScenario):
            raise ScenarioError(f"{s}: only trading scenarios have variants")
        return scn.with_variant(variant)  # type: ignore[return-value]
    entry = _data_dir() / f"{s}.yaml"
    if "/" not in s and not s.endswith((".yaml", ".yml")) and entry.is_file():
        return parse_scenario(entry.read_text(encoding="utf-8"), f"<package>/{s}.yaml", defaults=defaults or None)
    if not Path(s).exists():
        known = ", ".join(packaged_scenarios())
        raise ScenarioError(f"{s}: no such scenario file or packaged scenario (packaged: {known})")
    return load_scenario(s, **defaults)
