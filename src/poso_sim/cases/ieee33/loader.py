"""Loading a feeder case: the packaged IEEE 33-bus file by default, or a user file; every failure is one
``CaseError`` line naming the file and the field."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...errors import CaseError
from ..loader import describe_error
from .schema import FeederCase

#: File name of the packaged case (inside this package).
PACKAGED = "ieee33.json"


def case_from_dict(data: Any, source: str = "<case>") -> FeederCase:
    """Validate a decoded feeder document; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise CaseError(f"{source}: (case): expected a JSON object at the top level")
    try:
        return FeederCase.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
        raise CaseError(f"{source}: {describe_error(errs[0])}{more}") from None


def load_case(path: str | Path | None = None) -> FeederCase:
    """The packaged IEEE 33-bus case (``path=None``) or the feeder case in the JSON file ``path``."""
    if path is None:
        text = resources.files(__package__).joinpath(PACKAGED).read_text(encoding="utf-8")
        name = PACKAGED
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
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaseError(f"{name}: line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})") from None
    return case_from_dict(data, name)
