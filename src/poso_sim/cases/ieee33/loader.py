"""Loading a feeder case: the packaged IEEE 33-bus file by default, or a user file; every failure is one
``CaseError`` line naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ...errors import CaseError
from ..loader import read_case_json, validate_document
from .schema import FeederCase

#: File name of the packaged case (inside this package).
PACKAGED = "ieee33.json"


def case_from_dict(data: Any, source: str = "<case>") -> FeederCase:
    """Validate a decoded feeder document; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise CaseError(f"{source}: (case): expected a JSON object at the top level")
    return validate_document(FeederCase, data, source)


def load_case(path: str | Path | None = None) -> FeederCase:
    """The packaged IEEE 33-bus case (``path=None``) or the feeder case in the JSON file ``path``."""
    name, data = read_case_json(__package__, PACKAGED, path)
    return case_from_dict(data, name)
