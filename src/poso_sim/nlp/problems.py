"""The problem registry: which NLPs PoSo runs on, and their compiled form for this process.

A **problem definition** (:class:`ProblemDefinition`) says how to get from case data to a Pyomo
``ConcreteModel``: the builder, the variants a leader may solve (the first is the honest problem every delegate
verifies against), the named expression that reports show as the cost, optionally a solve recipe
(``"module:function"``, resolved by :mod:`poso_sim.solvers`; this layer never imports it) and how the case data is
loaded and validated. ``register_problem(name, definition)`` makes it available under ``name``; a ``case:``
string of a scenario, a sweep or the command line is then resolved by :func:`problem_definition`:

1. a registered name (``"manchester"``);
2. ``"module:function"``, a function returning a :class:`ProblemDefinition` (imported on first use);
3. a path to a case file, or a name the ``named_cases`` of the definition :data:`CASE_FILE_PROBLEM` lists: data
   of that definition (the package's integrated-energy model, ``manchester``).

The packaged problems are registered by ``"module:function"`` strings (:data:`PACKAGED_PROBLEMS`): their
definitions live with their cases, and this layer imports no case.

anything else is a :class:`~poso_sim.errors.ProblemError` naming the string.

:func:`load_problem` returns the :class:`Problem` of a case variant, compiled once per process. Its compiled
functions are also kept on disk (``<cache dir>/compiled/``), keyed by the identity of what produced them
(:func:`compiled_key`): the definition (where it came from, its fields, its source), the case data, the variant,
the compiled expression names, the source of the compiler and the CasADi version. A later process loads
them with their names, bounds and structure without importing Pyomo or building the model; the Pyomo model is
built only when something needs it (:attr:`Problem.model`, ``nlp.load_into_model``, ``nlp.x_from_model``).
See docs/nlp.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import importlib.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from poso_sim.common import atomic_write, canonical_json, default_cache_dir
from poso_sim.errors import PosoError, ProblemError

__all__ = [
    "ProblemDefinition",
    "Problem",
    "register_problem",
    "registered_problems",
    "problem_definition",
    "resolve_reference",
    "check_case",
    "cost_unit",
    "load_problem",
    "load_problems",
    "load_instance",
    "get_problem",
    "get_compiled",
    "clear_problems",
    "PACKAGED_PROBLEMS",
    "CASE_FILE_PROBLEM",
    "COMPILED_FORMAT",
    "compiled_key",
    "definition_identity",
]

#: Version of the disk-cache key of compiled problems (bump when the key recipe changes).
COMPILED_FORMAT = "poso-sim/compiled-problem/v3"

_REFERENCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ProblemDefinition:
    """How a family of NLPs is built from case data.

    Attributes:
        build: ``build(data, variant) -> pyomo ConcreteModel``; ``data`` is what :attr:`load` returned.
        variants: the objectives a leader may solve; the first is the honest problem (every delegate verifies a
            plan against it; the other variants must have the same variables and its rows first).
        cost_expression: name of the scalar Pyomo ``Expression`` reports show as the plan's cost (``None``: the
            honest objective).
        expressions: further scalar expressions compiled with the problem (e.g. the cost's parts).
        load: ``load(case) -> data``, given the ``case:`` string; validates and raises a ``PosoError`` naming the
            file and field at fault. ``None``: the problem has no data (``build`` gets ``None``).
        data_key: canonical bytes of the data for cache keys; default: pydantic's JSON if the data has
            ``model_dump_json``, else :func:`poso_sim.common.canonical_json`.
        solve_recipe: ``"module:function"`` resolved by the solvers layer, called as
            ``recipe(model, nlp, x0, progress=None)``; ``None``: Ipopt from the model's initial values.
        source_files: files whose content keys the compiled cache (default: the builder's module file).
        description: one line for listings.
        structure_key: ``structure_key(data) -> bytes``: what of the data shapes the compiled structure (sets,
            topology, fixed values), leaving out what the builder puts into mutable Params. With
            :attr:`parameters`, instances that differ only in Param data share one compiled structure: a new
            instance is a parameter update (``CompiledNLP.with_data``), not a new compile.
        parameters: ``parameters(data) -> {Param element name: value}`` without Pyomo (the instance's Param data).
        named_cases: ``named_cases() -> names`` of the case data shipped with the problem, which a ``case:`` string
            may name (``load`` reads them); ``None``: none.
        origin: the ``"module:attribute"`` the definition came from; set by the registry when it resolves a
            reference, and part of the definition's identity (two definitions of one module never share a
            compiled-cache entry).
        priced_rows: rows whose multipliers are part of a proposal (a market's prices): row names
            (``"heat_balance[2]"``) or component names (``"heat_balance"``: all its rows). Copied onto the compiled
            problem (``nlp.priced_rows``), where the certificate reads them (:mod:`poso_sim.kkt.prices`).
        cost_unit: the unit reports write after the plan's cost (``"$"``, ``"RMB"``, ...); display only.
    """

    build: Callable[[Any, str], Any]
    variants: tuple[str, ...] = ("true",)
    cost_expression: str | None = None
    expressions: tuple[str, ...] = ()
    load: Callable[[str], Any] | None = None
    data_key: Callable[[Any], bytes] | None = None
    solve_recipe: str | None = None
    source_files: tuple[str, ...] = ()
    description: str = ""
    priced_rows: tuple[str, ...] = ()
    structure_key: Callable[[Any], bytes] | None = None
    parameters: Callable[[Any], Any] | None = None
    named_cases: Callable[[], Any] | None = None
    origin: str = ""
    cost_unit: str = "$"

    def __post_init__(self) -> None:
        if not callable(self.build):
            raise ProblemError(f"problem definition: build must be callable, got {type(self.build).__name__}")
        variants = (self.variants,) if isinstance(self.variants, str) else tuple(self.variants)
        if not variants or not all(isinstance(v, str) and v for v in variants) or len(set(variants)) != len(variants):
            raise ProblemError(f"problem definition: variants must be distinct non-empty names, got {self.variants!r}")
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "expressions", tuple(self.expressions))
        object.__setattr__(self, "source_files", tuple(str(f) for f in self.source_files))
        priced = (self.priced_rows,) if isinstance(self.priced_rows, str) else tuple(self.priced_rows)
        if not all(isinstance(r, str) and r for r in priced):
            raise ProblemError(f"problem definition: priced_rows must be row or component names, got {self.priced_rows!r}")
        object.__setattr__(self, "priced_rows", priced)
        if self.load is not None and not callable(self.load):
            raise ProblemError("problem definition: load must be callable or None")
        if not isinstance(self.cost_unit, str) or not self.cost_unit.strip():
            raise ProblemError(f"problem definition: cost_unit must be a non-empty string, got {self.cost_unit!r}")
        if (self.structure_key is None) != (self.parameters is None):
            raise ProblemError("problem definition: structure_key and parameters go together (both or neither)")
        if self.solve_recipe is not None and not _REFERENCE.match(self.solve_recipe):
            raise ProblemError(f"problem definition: solve_recipe {self.solve_recipe!r} is not 'module:function'")

    def case_names(self) -> list[str]:
        """The names of the case data shipped with the problem (``named_cases``)."""
        return [] if self.named_cases is None else [str(n) for n in self.named_cases()]

    @property
    def parametric(self) -> bool:
        """Whether instances of one structure share compiled functions (see :attr:`structure_key`)."""
        return self.structure_key is not None

    @property
    def honest_variant(self) -> str:
        """The variant every delegate verifies against (the first)."""
        return self.variants[0]

    @property
    def compiled_expressions(self) -> tuple[str, ...]:
        """The named expressions compiled with each variant: the cost expression, then the others."""
        names = ((self.cost_expression,) if self.cost_expression else ()) + self.expressions
        return tuple(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------------ registry
_LOCK = threading.RLock()
#: The problems shipped with poso_sim: name -> "module:function" of the factory returning the definition (one line
#: each). The definitions live with their cases (poso_sim.cases.*.problem); this layer imports none of them.
PACKAGED_PROBLEMS: dict[str, str] = {
    "manchester": "poso_sim.cases.ies.problem:manchester_problem",
    "ieee33": "poso_sim.cases.ieee33.problem:ieee33_problem",
    "trading": "poso_sim.cases.trading.problem:trading_problem",
    "trading-night": "poso_sim.cases.trading.problem:trading_night_problem",
    "trading-day": "poso_sim.cases.trading.problem:trading_day_problem",
}
#: The problem whose data a bare case file (a path, or a name its definition's ``named_cases`` lists) is.
CASE_FILE_PROBLEM = "manchester"
#: name -> definition, or "module:function" of a factory not imported yet (the packaged problems)
_REGISTRY: dict[str, ProblemDefinition | str] = dict(PACKAGED_PROBLEMS)
_BY_REFERENCE: dict[str, ProblemDefinition] = {}
_PROBLEMS: dict[tuple[str, str], "Problem"] = {}
#: compiled functions per (definition, variant, structure) of parametric definitions, shared by their instances
_COMPILED_BY_STRUCTURE: dict[tuple, Any] = {}


def register_problem(name: str, definition: ProblemDefinition | str, *, replace: bool = False) -> None:
    """Make ``definition`` (or the ``"module:function"`` of a factory returning one) the problem ``name``."""
    if not isinstance(name, str) or not _NAME.match(name) or ":" in name:
        raise ProblemError(f"problem name {name!r}: use letters, digits, '_', '.', '-' (no ':' or '/')")
    if isinstance(definition, str):
        if not _REFERENCE.match(definition):
            raise ProblemError(f"problem {name!r}: {definition!r} is not 'module:function'")
    elif not isinstance(definition, ProblemDefinition):
        raise ProblemError(f"problem {name!r}: expected a ProblemDefinition, got {type(definition).__name__}")
    with _LOCK:
        if name in _REGISTRY and not replace:
            raise ProblemError(f"problem {name!r} is already registered (pass replace=True to redefine it)")
        _REGISTRY[name] = definition
        for key in [k for k in _PROBLEMS if k[0] == name]:
            del _PROBLEMS[key]


def registered_problems() -> list[str]:
    """Names of the registered problems."""
    with _LOCK:
        return sorted(_REGISTRY)


def resolve_reference(reference: str, what: str = "reference") -> Any:
    """The object named by ``"module:function"`` (imported on first use); a ``ProblemError`` names what failed."""
    if not isinstance(reference, str) or not _REFERENCE.match(reference):
        raise ProblemError(f"{what} {reference!r} is not 'module:function'")
    module, _, attr = reference.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ProblemError(f"{what} {reference!r}: cannot import {module} ({exc})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ProblemError(f"{what} {reference!r}: {module} has no attribute {attr!r}") from None


def _definition_from_factory(reference: str) -> ProblemDefinition:
    factory = resolve_reference(reference, "case")
    try:
        definition = factory() if callable(factory) and not isinstance(factory, ProblemDefinition) else factory
    except PosoError:
        raise
    except Exception as exc:  # a user's factory: report it as one line naming the reference
        raise ProblemError(f"case {reference!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(definition, ProblemDefinition):
        raise ProblemError(f"case {reference!r} returned {type(definition).__name__}, not a ProblemDefinition")
    # a copy that knows where it came from: the same object may be reachable under several attributes
    return dataclasses.replace(definition, origin=reference)


def _is_case_file(case: str) -> bool:
    return case.endswith(".json") or "/" in case or "\\" in case or os.path.isfile(case)  # (Path.is_file's answer)


def problem_definition(case: str) -> ProblemDefinition:
    """The definition a ``case:`` string names (see the module's documentation for the rules)."""
    if not isinstance(case, str) or not case:
        raise ProblemError(f"case {case!r}: expected a problem name, 'module:function' or a case file")
    with _LOCK:
        entry = _REGISTRY.get(case)
        if isinstance(entry, str):
            entry = _REGISTRY[case] = _definition_from_factory(entry)
        if entry is not None:
            return entry
        if _REFERENCE.match(case):
            if case not in _BY_REFERENCE:
                _BY_REFERENCE[case] = _definition_from_factory(case)
            return _BY_REFERENCE[case]
    if case != CASE_FILE_PROBLEM and CASE_FILE_PROBLEM in _REGISTRY:
        file_problem = problem_definition(CASE_FILE_PROBLEM)
        if _is_case_file(case) or case in file_problem.case_names():
            return file_problem
    raise ProblemError(
        f"unknown case {case!r}: not a registered problem ({', '.join(registered_problems())}), "
        "a case file, or 'module:function'"
    )


def cost_unit(case: Any) -> str:
    """The unit reports write after a cost of the problem ``case`` names; ``"$"`` when it names none (a run
    log read in a process where its problem is not registered)."""
    try:
        return problem_definition(case).cost_unit
    except PosoError:
        return "$"


def check_case(case: str, variant: str | None = None) -> ProblemDefinition:
    """Raise a one-line ``PosoError`` unless ``case`` (and ``variant``) names a problem; cheap: builds nothing.

    A case file is loaded and validated, so a bad file is reported here (with its field) rather than at the first
    solve.
    """
    definition = problem_definition(case)
    if variant is not None and variant not in definition.variants:
        raise ProblemError(f"case {case!r} has no variant {variant!r} (variants: {', '.join(definition.variants)})")
    if definition.load is not None and _is_case_file(case):
        definition.load(case)
    return definition


# ------------------------------------------------------------------------------------------------ problems
class Problem:
    """One variant of one case: its definition, data, compiled NLP and (built on demand) its Pyomo model."""

    def __init__(self, case: str, variant: str, definition: ProblemDefinition, data: Any, nlp: Any,
                 model: Any = None) -> None:
        self.case = case
        self.variant = variant
        self.definition = definition
        self.data = data
        self.nlp = nlp
        self._model = model
        self._lock = threading.Lock()
        self.from_disk = model is None

    @property
    def model(self) -> Any:
        """The Pyomo model (built on first use when the compiled functions came from disk, then linked to
        :attr:`nlp` so that ``load_into_model``/``x_from_model`` work)."""
        with self._lock:
            if self._model is None:
                model = _build(self.definition, self.data, self.case, self.variant)
                _link(self.nlp, model, self.case, self.variant)
                self._model = model
            return self._model

    @property
    def model_built(self) -> bool:
        return self._model is not None

    def cost(self, x: Any) -> float:
        """The value of the definition's cost expression at ``x`` (the honest objective if it names none)."""
        name = self.definition.cost_expression
        if name:
            return self.nlp.expr(name, x)
        return self.nlp.objective_value(x)

    def __iter__(self) -> Iterator[Any]:
        """``model, nlp = problem`` (builds the model: prefer :attr:`nlp` alone where it suffices)."""
        yield self.model
        yield self.nlp

    def __repr__(self) -> str:
        state = "built" if self.model_built else "not built"
        return f"Problem(case={self.case!r}, variant={self.variant!r}, nlp={self.nlp!r}, model {state})"


def load_problem(case: str = "manchester", variant: str | None = None, *, disk_cache: bool | str = True) -> Problem:
    """The :class:`Problem` of ``case``'s ``variant`` (default: the honest one), compiled once per process.

    ``disk_cache``: ``True`` reads the compiled functions from the disk cache and writes them there after a
    compile; ``"read"`` only reads (a process that must leave no cache behind, e.g. ``poso-sim solve
    --no-cache``); ``False`` neither reads nor writes."""
    definition = problem_definition(case)
    with _LOCK:
        hit = _PROBLEMS.get((str(case), _variant(definition, case, variant)))
        if hit is not None:
            return hit
        data = definition.load(case) if definition.load is not None else None
        return _problem(definition, str(case), variant, data, disk_cache, memo_key=str(case))


def load_problems(case: str = "manchester", variant: str | None = None, *,
                  disk_cache: bool | str = True) -> tuple[Problem, Problem]:
    """``(problem, shared)``: the :class:`Problem` of ``case``'s ``variant`` and the shared problem (the honest
    variant's), each as :func:`load_problem` returns it.

    When the variant is compiled here (not memoised, not on disk) while the shared problem is not at hand either,
    and the variant's model declares how the shared problem sits in it (``nlp_shared``, see
    :func:`poso_sim.nlp.compiler.compile_with_shared`), both come from one build and one walk of the variant's
    model: the shared problem's own model is not built, and only its objective is walked."""
    definition = problem_definition(case)
    with _LOCK:
        variant = _variant(definition, case, variant)
        honest = definition.honest_variant
        problem = _PROBLEMS.get((str(case), variant))
        if problem is None and variant != honest and (str(case), honest) not in _PROBLEMS:
            data = definition.load(case) if definition.load is not None else None
            derive = not _at_hand(definition, data, honest, disk_cache)
            problem = _problem(definition, str(case), variant, data, disk_cache, memo_key=str(case),
                               derive_shared=derive)
        if problem is None:
            problem = load_problem(case, variant, disk_cache=disk_cache)
        return problem, load_problem(case, honest, disk_cache=disk_cache)


def _at_hand(definition: ProblemDefinition, data: Any, variant: str, disk_cache: bool | str) -> bool:
    """Whether ``variant``'s compiled functions can be had without compiling (this process, or the disk cache)."""
    structure = _structure_hash(definition, data, variant)
    if structure is not None and structure in _COMPILED_BY_STRUCTURE:
        return True
    path = _compiled_path(definition, data, variant) if disk_cache else None
    return path is not None and path.is_file()


def load_instance(case: str, data: Any, variant: str | None = None, *, disk_cache: bool = True) -> Problem:
    """The :class:`Problem` of one instance: ``case`` names the definition, ``data`` is the instance's (already
    loaded, validated) data, e.g. one day made by :func:`poso_sim.cases.generator.generate_instances`.

    For a parametric definition the compiled functions of the instance's structure are reused (compiled once per
    structure, in this process or on disk) and the instance's data enters as parameters.
    """
    definition = problem_definition(case)
    with _LOCK:
        return _problem(definition, str(case), variant, data, disk_cache, memo_key=None)


def _variant(definition: ProblemDefinition, case: str, variant: str | None) -> str:
    variant = definition.honest_variant if variant is None else variant
    if variant not in definition.variants:
        raise ProblemError(f"case {case!r} has no variant {variant!r} (variants: {', '.join(definition.variants)})")
    return variant


def _problem(definition: ProblemDefinition, case: str, variant: str | None, data: Any, disk_cache: bool | str,
             memo_key: str | None, derive_shared: bool = False) -> Problem:
    """``derive_shared``: when the variant is compiled here, also adopt the shared problem its model declares
    (:func:`load_problems`)."""
    variant = _variant(definition, case, variant)
    structure = _structure_hash(definition, data, variant)
    nlp = None
    model = None
    if structure is not None and structure in _COMPILED_BY_STRUCTURE:
        nlp = _with_instance_data(definition, _COMPILED_BY_STRUCTURE[structure], data, case)
    path = _compiled_path(definition, data, variant) if disk_cache and nlp is None else None
    if path is not None:
        nlp = _load_compiled(path)
        if nlp is not None and structure is not None:
            nlp = _with_instance_data(definition, nlp, data, case)
    if nlp is None:
        model = _build(definition, data, case, variant)
        nlp, shared = _compile(definition, model, case, variant, shared=derive_shared)
        written: dict = {}  # the functions the two problems share are serialised once
        if path is not None and disk_cache != "read":
            _save_compiled(path, nlp, written)
        if shared is not None:
            _adopt_shared(definition, case, data, shared, disk_cache, memo_key, written)
    return _adopt(definition, case, variant, data, nlp, model, structure, memo_key)


def _adopt_shared(definition: ProblemDefinition, case: str, data: Any, nlp: Any, disk_cache: bool | str,
                  memo_key: str | None, written: dict | None = None) -> None:
    """Keep the shared problem compiled beside a variant as if it had been compiled alone (memo, disk cache)."""
    honest = definition.honest_variant
    structure = _structure_hash(definition, data, honest)
    path = _compiled_path(definition, data, honest) if disk_cache and disk_cache != "read" else None
    if path is not None:
        _save_compiled(path, nlp, written)
    _adopt(definition, case, honest, data, nlp, None, structure, memo_key)


def _adopt(definition: ProblemDefinition, case: str, variant: str, data: Any, nlp: Any, model: Any,
           structure: tuple | None, memo_key: str | None) -> Problem:
    """The :class:`Problem` of a compiled (or loaded) ``nlp``, remembered per structure and per ``memo_key``."""
    if nlp.objective_name is None:  # compile_nlp takes f = 0 for a feasibility model; a problem must optimise
        raise ProblemError(f"case {case!r}, variant {variant!r}: the model has no active Objective")
    if structure is not None:
        _COMPILED_BY_STRUCTURE.setdefault(structure, nlp)
        while len(_COMPILED_BY_STRUCTURE) > 8:  # a long sweep over many structures: keep the newest
            _COMPILED_BY_STRUCTURE.pop(next(iter(_COMPILED_BY_STRUCTURE)))
    # the name of the cost reports show, for layers that get the compiled problem alone (the certificate)
    nlp.cost_expression = definition.cost_expression
    nlp.priced_rows = definition.priced_rows  # the rows whose multipliers are prices (the certificate checks them)
    problem = Problem(case, variant, definition, data, nlp, model)
    if model is None:
        nlp._var_data = _LazyModelVariables(problem)
    if memo_key is not None:
        _PROBLEMS[(memo_key, variant)] = problem
    return problem


def _structure_hash(definition: ProblemDefinition, data: Any, variant: str) -> tuple | None:
    if definition.structure_key is None:
        return None
    return (id(definition), variant, hashlib.sha256(bytes(definition.structure_key(data))).hexdigest())


def _with_instance_data(definition: ProblemDefinition, nlp: Any, data: Any, case: str) -> Any:
    """``nlp``'s compiled functions with ``data``'s parameters (a new object: checkers cache per object)."""
    assert definition.parameters is not None
    try:
        return nlp.with_data(definition.parameters(data))
    except PosoError as exc:
        raise ProblemError(f"case {case!r}: the instance's data do not fit the compiled structure: {exc}") from None


def get_compiled(case: str = "manchester", variant: str | None = None, *, disk_cache: bool = True) -> Any:
    """The compiled NLP of a case variant (no Pyomo when it is on disk)."""
    return load_problem(case, variant, disk_cache=disk_cache).nlp


def get_problem(case: str = "manchester", variant: str | None = "true", *, disk_cache: bool = True) -> tuple[Any, Any]:
    """``(model, nlp)`` of a case variant (``None``: the honest one), built and compiled once per process (the
    model is built here; use :func:`load_problem` or :func:`get_compiled` when the compiled functions suffice)."""
    problem = load_problem(case, variant, disk_cache=disk_cache)
    return problem.model, problem.nlp


def clear_problems() -> None:
    """Forget the problems of this process (the disk cache stays)."""
    with _LOCK:
        _PROBLEMS.clear()
        _COMPILED_BY_STRUCTURE.clear()


# ------------------------------------------------------------------------------------------------ internals
def _build(definition: ProblemDefinition, data: Any, case: str, variant: str) -> Any:
    _pyomo_without_scipy_stats()
    try:
        return definition.build(data, variant)
    except PosoError:
        raise
    except Exception as exc:  # a user's builder: one line naming the case and variant
        raise ProblemError(
            f"case {case!r}, variant {variant!r}: the builder failed: {type(exc).__name__}: {exc}"
        ) from None


def _pyomo_without_scipy_stats() -> None:
    """Keep Pyomo from importing ``scipy.stats`` (0.5-0.8 s of CPU) when SciPy is imported after it.

    Pyomo defers its SciPy import, but hooks the import system so that the first ``import scipy`` anywhere runs its
    finaliser, which imports ``scipy.stats``, ``integrate`` and ``spatial``; building and compiling a model uses
    none of them. Before a builder first imports Pyomo (SciPy not loaded yet), the hook for SciPy is removed: Pyomo
    still imports and finalises SciPy on its own first use of it. Once SciPy is loaded, Pyomo finalises it at its
    import whatever is done here, so nothing is done."""
    import sys

    if "scipy" in sys.modules:
        return
    try:  # Pyomo's import hook (pyomo.common.dependencies): imported by any Pyomo import, which a build makes anyway
        from pyomo.common.dependencies import DeferredImportCallbackFinder
    except ImportError:
        return
    callbacks = getattr(DeferredImportCallbackFinder, "_callbacks", None)
    if isinstance(callbacks, dict):
        callbacks.pop("scipy", None)


def _compile(definition: ProblemDefinition, model: Any, case: str, variant: str,
             shared: bool = False) -> tuple[Any, Any]:
    """``(nlp, shared nlp or None)``; the second only with ``shared`` and a model that declares it."""
    # the compiler imports CasADi (0.1 s) and Pyomo (0.7 s): only when something is compiled
    from poso_sim.nlp.compiled import NLPCompileError
    from poso_sim.nlp.compiler import compile_nlp, compile_with_shared

    try:
        if shared:
            return compile_with_shared(model, expressions=definition.compiled_expressions)
        return compile_nlp(model, expressions=definition.compiled_expressions), None
    except NLPCompileError as exc:
        raise type(exc)(f"case {case!r}, variant {variant!r}: {exc}") from None


def _link(nlp: Any, model: Any, case: str, variant: str) -> None:
    """Attach ``model``'s variables, constraints and Params to ``nlp`` (same names, same order)."""
    from poso_sim.nlp.compiled import NLPCompileError
    from poso_sim.nlp.compiler import link_model  # Pyomo (0.7 s): the model is being built anyway

    try:
        link_model(nlp, model)
    except NLPCompileError as exc:
        raise ProblemError(f"case {case!r}, variant {variant!r}: {exc}") from None


class _LazyModelVariables(Sequence):
    """Stands for a disk-loaded NLP's list of Pyomo variables: the first use builds and links the model."""

    def __init__(self, problem: Problem) -> None:
        self._problem = problem

    def _real(self) -> Sequence:
        self._problem.model  # noqa: B018 - builds and links: replaces this object in nlp._var_data
        return self._problem.nlp._var_data

    def __len__(self) -> int:
        return len(self._real())

    def __getitem__(self, i: Any) -> Any:
        return self._real()[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._real())


def _data_bytes(definition: ProblemDefinition, data: Any) -> bytes | None:
    if definition.data_key is not None:
        return bytes(definition.data_key(data))
    if data is None:
        return b"null"
    if hasattr(data, "model_dump_json"):
        return data.model_dump_json(by_alias=True).encode()
    try:
        return canonical_json(data).encode()
    except (TypeError, ValueError):
        return None  # data without a canonical form: no disk cache


def _source_files(definition: ProblemDefinition) -> list[Path]:
    """The files whose content shapes what ``definition`` builds: its ``source_files``, else the modules of its
    builder and of the factory it came from."""
    if definition.source_files:
        return [Path(f) for f in definition.source_files]
    modules = [getattr(definition.build, "__module__", None)]
    if definition.origin:
        modules.append(definition.origin.partition(":")[0])
    files = []
    for name in dict.fromkeys(m for m in modules if m):
        module = importlib.import_module(name)
        if getattr(module, "__file__", None):
            files.append(Path(module.__file__))
    return files


def _compiler_files() -> list[Path]:
    """The compiler's sources: every module of poso_sim.nlp but this registry and the Solution type, which do not
    shape the compiled functions (so editing them keeps the cache)."""
    here = Path(__file__).resolve()
    return [p for p in sorted(here.parent.glob("*.py")) if p.name not in (here.name, "solution.py")]


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data for an identity: plain values as they are, anything else by its type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return _callable_identity(value) if callable(value) else f"<{type(value).__module__}.{type(value).__qualname__}>"


def _callable_identity(fn: Any) -> Any:
    """What a callable of a definition is: its module and qualified name, the source of its code (the module's
    file is hashed besides: this covers functions defined where no file is), its bound arguments and closure."""
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        return ["partial", _callable_identity(fn.func), _plain(fn.args), _plain(fn.keywords)]
    if dataclasses.is_dataclass(fn) and not isinstance(fn, type):  # a callable record (e.g. a loader bound to a file)
        fields = {f.name: _plain(getattr(fn, f.name)) for f in dataclasses.fields(fn)}
        return [f"{type(fn).__module__}.{type(fn).__qualname__}", fields]
    code = getattr(fn, "__code__", None)
    ident: list[Any] = [getattr(fn, "__module__", None), getattr(fn, "__qualname__", type(fn).__qualname__)]
    if code is not None:
        try:
            ident.append(hashlib.sha256(inspect.getsource(fn).encode()).hexdigest())
        except (OSError, TypeError):  # no source file (an interactive session): the bytecode and its names
            ident.append(hashlib.sha256(code.co_code + "\n".join(code.co_names).encode()).hexdigest())
        cells = [c.cell_contents for c in getattr(fn, "__closure__", None) or ()]
        # a closed-over function by its name (its module's source is hashed), so recursion ends
        ident.append([[getattr(v, "__module__", None), getattr(v, "__qualname__", None)] if callable(v) else _plain(v)
                      for v in cells])
    return ident


def definition_identity(definition: ProblemDefinition) -> bytes:
    """The identity of a definition, for cache keys: where it came from (``origin``), every field (callables by
    :func:`_callable_identity`) and the content of its source files. Two definitions of one module differ in it;
    an edit of the builder's module changes it."""
    fields = {}
    for f in dataclasses.fields(definition):
        if f.name in ("description", "source_files", "cost_unit"):  # display only: not what produces an entry
            continue
        value = getattr(definition, f.name)
        fields[f.name] = _callable_identity(value) if callable(value) else _plain(value)
    h = hashlib.sha256(canonical_json(fields).encode())
    for path in _source_files(definition):
        h.update(str(path.name).encode() + b"\0" + path.read_bytes())  # OSError: the caller keeps no disk entry
    return h.digest()


def compiled_key(definition: ProblemDefinition, data: Any, variant: str) -> str | None:
    """The key of the compiled-problem cache entry of ``definition``'s ``variant`` on ``data``: the identity of
    everything that produces the entry - the definition (:func:`definition_identity`), the instance data (its
    structure key for a parametric definition), the variant, the compiled expression names and the compiler
    (its sources and the CasADi version). ``None``: no disk entry (data without a canonical form, an unreadable
    source file)."""
    import casadi  # the compiled functions are CasADi's serialisation: its version is part of the key

    raw = bytes(definition.structure_key(data)) if definition.structure_key is not None else _data_bytes(definition, data)
    if raw is None:
        return None
    h = hashlib.sha256(COMPILED_FORMAT.encode() + b"\n")
    h.update(canonical_json([variant, list(definition.compiled_expressions), casadi.__version__]).encode())
    h.update(hashlib.sha256(raw).digest())
    try:
        h.update(definition_identity(definition))
        for f in _compiler_files():
            h.update(f.read_bytes())
    except OSError:
        return None
    return h.hexdigest()


def _compiled_path(definition: ProblemDefinition, data: Any, variant: str) -> Path | None:
    key = compiled_key(definition, data, variant)
    return None if key is None else default_cache_dir() / "compiled" / f"{key}.nlp"


#: Compiled problems kept on disk (about 30 MB each for Manchester); the least recently used go first.
MAX_COMPILED_ENTRIES = 24


def _load_compiled(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError:  # no entry (the usual miss): nothing imported, so a build that follows imports Pyomo first
        return None
    from poso_sim.nlp.compiled import CompiledNLP  # CasADi and SciPy (0.1-0.2 s): only once a problem is read

    try:
        nlp = CompiledNLP.from_bytes(raw)
    except Exception:  # noqa: BLE001 - a damaged or stale entry is only a miss: compile again
        return None
    try:
        os.utime(path)  # marks the entry as used, for the pruning in _save_compiled
    except OSError:
        pass
    return nlp


def _save_compiled(path: Path, nlp: Any, written: dict | None = None) -> None:
    """``written``: serialised functions of problems saved before (``CompiledNLP.to_bytes``'s ``memo``)."""
    _write_shortcut(path, nlp.to_bytes(written))
    _prune(path.parent, keep=MAX_COMPILED_ENTRIES)


def _prune(directory: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used ``*.nlp`` entries (another process that loses one while it
    reads it still has its open file; one that looks for it later compiles again)."""
    try:
        entries = sorted(directory.glob("*.nlp"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for p in entries[keep:]:
        try:
            p.unlink()
        except OSError:
            pass


def _write_shortcut(path: Path, data: bytes) -> None:
    """Atomic write of a cache shortcut (compiled problem, alias); a failure only costs the shortcut."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError:
        pass
