"""Which problem a plan is checked against: the case and instance its file names, unless the caller names one.

A solution records the ``case:`` string it was solved for (a registered name, ``module:function`` or the path of a
case file, e.g. one generated day of a chain) and the fingerprint of the honest problem of that instance. The
verifier compiles (or loads from the disk cache) that case's honest problem and checks that the fingerprints
agree: a plan for another problem is a :class:`~poso_sim.errors.ProblemMismatchError`, not a rejected plan.

A ``module:function`` named by a file (not by the caller) runs code, so it is followed only when it is already
registered or resolved in this process, or when the function is declared to return a ``ProblemDefinition`` and
its module is not part of the standard library; otherwise the caller must name it (``case=``, ``--case``).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Any

from poso_sim.errors import ProblemMismatchError, SolutionFileError

__all__ = ["problem_of", "case_to_check", "check_same_problem"]


def check_same_problem(solution: Any, nlp: Any, case: str) -> None:
    """Raise :class:`ProblemMismatchError` unless ``solution`` is a plan of ``nlp`` (the problem of ``case``)."""
    mine = str(getattr(nlp, "fingerprint", "") or "")
    theirs = getattr(solution, "fingerprint", "")
    if not isinstance(theirs, str) or theirs != mine:
        named = getattr(solution, "case", "") or "?"
        raise ProblemMismatchError(
            f"a plan for another problem: its fingerprint {str(theirs)[:12] or '(none)'} (case {named!r}) is not "
            f"that of case {case!r} ({mine[:12]})"
        )


_REFERENCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _trusted(case: str, problems: Any) -> bool:
    """Whether a ``case:`` string read from a file may be followed (see the module's documentation)."""
    if not _REFERENCE.match(case) or case in problems.registered_problems() or case in problems._BY_REFERENCE:
        return True
    module, _, attr = case.partition(":")
    if module.split(".")[0] in sys.stdlib_module_names:
        return False
    try:
        factory = getattr(importlib.import_module(module), attr)
        returns = inspect.signature(factory).return_annotation
    except Exception:  # noqa: BLE001 - not importable or not a function: the registry reports it as one line
        return True
    name = returns if isinstance(returns, str) else getattr(returns, "__name__", "")
    return name.rsplit(".", 1)[-1] == "ProblemDefinition"


def case_to_check(named: Any, case: str | None = None) -> str:
    """The ``case:`` string to check a plan against: ``case`` when the caller gives one, else ``named`` (the one the
    solution records) if it may be followed; otherwise a one-line :class:`SolutionFileError`."""
    from poso_sim.nlp import problems  # CasADi (about 0.2 s): only when a problem is looked up

    if case:
        return case
    if not isinstance(named, str) or not named:
        raise SolutionFileError("the solution names no case; name the problem to check it against (--case)")
    if not _trusted(named, problems):
        raise SolutionFileError(
            f"the solution names case {named!r}, which is not a registered problem nor a factory declared to return "
            "a ProblemDefinition; name it yourself to check the plan against it (--case)")
    return named


def problem_of(solution: Any, case: str | None = None, variant: str | None = None) -> Any:
    """The compiled problem ``solution`` is checked against: ``case`` (and ``variant``) when given, else the case
    the solution names; its fingerprint must be the solution's (else :class:`ProblemMismatchError`)."""
    from poso_sim.nlp import problems  # CasADi (about 0.2 s): only when a problem is looked up

    named = case_to_check(getattr(solution, "case", ""), case)
    nlp = problems.get_compiled(named, variant)
    check_same_problem(solution, nlp, named)
    return nlp
