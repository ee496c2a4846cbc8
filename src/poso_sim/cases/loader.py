"""Loading cases: packaged ones by name, user files by path; every failure is one ``CaseError`` line."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import CaseError
from .schema import Case, CaseConsistencyError

_PACKAGE = "poso_sim.cases"


def list_cases() -> list[str]:
    """Names of the cases shipped with the package."""
    root = resources.files(_PACKAGE).joinpath("data")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def loc_to_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a dotted path with list indices: ``lines[20].to``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def describe_error(err: dict[str, Any]) -> str:
    """One pydantic error dict -> 'dotted.path: reason' (every case format's loader reports through this)."""
    ctx = err.get("ctx") or {}
    original = ctx.get("error")
    path = loc_to_path(tuple(err.get("loc", ())))
    if isinstance(original, CaseConsistencyError):
        full = f"{path}.{original.path}" if path else original.path
        return f"{full}: {original.reason}"
    msg = str(err.get("msg", "invalid value"))
    if isinstance(original, ValueError):
        text = str(original)
        # validators of nested models phrase their message as "field: reason"
        head, sep, rest = text.partition(": ")
        if sep and " " not in head:
            return f"{path + '.' if path else ''}{head}: {rest}"
        return f"{path or '(case)'}: {text}"
    if err.get("type") == "missing":
        return f"{path}: field required"
    if err.get("type") == "extra_forbidden":
        return f"{path}: unknown field"
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
    return f"{path or '(case)'}: {msg[:1].lower() + msg[1:]}{shown}"


def read_case_json(package: str, packaged: str, path: str | Path | None) -> tuple[str, Any]:
    """The decoded JSON of a case format's packaged file (``path`` None) or of the file ``path``, with the name its
    errors use; an unreadable file or invalid JSON is one `CaseError` naming the file (and the line)."""
    if path is None:
        text = resources.files(package).joinpath(packaged).read_text(encoding="utf-8")
        name = packaged
    else:
        p = Path(path)
        name = p.name
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CaseError(f"{name}: file not found ({p})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CaseError(f"{name}: cannot read file: {exc}") from None
    try:
        return name, json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaseError(f"{name}: line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})") from None


def validate_document(model: Any, data: Any, source: str, where: Any = None) -> Any:
    """``model.model_validate(data)``, its first error as one `CaseError` line ``source: [where]path: reason (and
    N more problems)``; ``where(loc)`` may name the element at fault (the trading case names the hub)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        first = describe_error(errs[0])
        more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
        prefix = where(tuple(errs[0].get("loc", ()))) if where is not None else ""
        raise CaseError(f"{source}: {prefix}{first}{more}") from None
    except CaseConsistencyError as exc:  # raised outside pydantic's wrapping (defensive)
        raise CaseError(f"{source}: {exc}") from None


def case_from_dict(data: Any, source: str = "<case>") -> Case:
    """Validate a decoded case document; ``source`` names it in error messages."""
    return validate_document(Case, data, source)


def load_case(name_or_path: str | Path) -> Case:
    """Load a packaged case by name (``"manchester"``) or a case file by path."""
    s = str(name_or_path)
    p = Path(s)
    looks_like_path = isinstance(name_or_path, Path) or s.endswith(".json") or "/" in s or "\\" in s
    if not looks_like_path:
        known = list_cases()
        if s not in known:
            raise CaseError(f"unknown case {s!r}; known cases: {', '.join(known)} (or give a path to a .json file)")
        _, data = read_case_json(_PACKAGE, f"data/{s}.json", None)
        name = f"{s}.json"
    else:
        name, data = read_case_json(_PACKAGE, "", p)
    if not isinstance(data, dict):
        raise CaseError(f"{name}: (case): expected a JSON object at the top level")
    return case_from_dict(data, name)


def save_case(case: Case, path: str | Path) -> Path:
    """Write ``case`` as a case file (the JSON document ``load_case`` reads back to an equal case)."""
    p = Path(path)
    doc = case.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        p.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CaseError(f"{p.name}: cannot write file: {exc}") from None
    return p
