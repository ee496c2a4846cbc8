"""Problem instances per height: a chain of real dispatch problems.

A scenario with ``instances:`` decides a new problem at every height: height ``h`` is instance ``h`` (the list
must have at least as many instances as the scenario has heights). The instances are

* a list of case files (paths relative to the scenario file), each a case of the scenario's ``case:`` problem;
* or ``generate: {base, seed, n, ranges}``: ``n`` seeded day-ahead instances of the base case
  (:func:`poso_sim.cases.generate_instances`; same seed, same instances byte for byte). They are written once to
  ``<cache dir>/instances/<name>-<digest>.json`` so that the solver and its solution cache see ordinary case
  files.

:class:`InstancePayloads` is the runner's payload source for such a run. The leader of height ``h`` gets the plans
of instance ``h`` (solved for real through the solver API, cached per instance: the solution cache key covers the
instance data); a delegate verifies a plan against its own copy of instance ``h``: the problem registry compiles
the honest problem once per structure and each instance is those functions with the instance's data as
parameters (``CompiledNLP.with_data``, milliseconds, no recompilation). Every instance has a
fingerprint (the compiled problem's, ``CompiledNLP.fingerprint``); proposals carry it and delegates reject a plan
signed for another instance before any verification (docs/protocol.md).

A bad instance (a file that fails the case schema, a generator range that makes an invalid or unservable instance,
a solve that ends infeasible) is one :class:`~poso_sim.errors.PosoError` line naming the instance and the field;
nothing is cached for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from poso_sim.common import OK_STATUSES
from poso_sim.errors import PosoError
from poso_sim.protocol import Payload, Verdict

from .payloads import LABELS, RealPayloads
from .session import default_session

__all__ = ["Instance", "InstanceError", "resolve_instances", "check_instances", "generate_cases", "InstancePayloads", "SolveTimes"]

log = logging.getLogger("poso_sim.scenarios.instances")


class InstanceError(PosoError):
    """A bad instance of a scenario's chain (the message names the instance and the field). `field` is the
    scenario field at fault (e.g. ``("instances", "generate", "ranges")``), `detail` the message without it."""

    def __init__(self, message: str, field: tuple[Any, ...] = (), detail: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.detail = detail or message


def _fail(field: tuple[Any, ...], detail: str) -> InstanceError:
    return InstanceError(f"{'.'.join(map(str, field))}: {detail}", field, detail)


@dataclass(frozen=True)
class Instance:
    """Instance ``index`` (1-based: the height that decides it) of a chain: its name and the case string the
    problem registry resolves (a case file)."""

    index: int
    name: str
    case: str


# ------------------------------------------------------------------------------------------------ resolving
def generate_cases(base: str, seed: int, n: int, ranges: Mapping[str, Any] | None) -> list[Any]:
    """The generated cases of an ``instances: {generate: ...}`` spec (validated; nothing written)."""
    from poso_sim.cases import generate_instances, load_case  # loaded only for a chain of instances (0.3 s)
    from poso_sim.cases.ies.problem import manchester_problem  # loaded only for a chain of instances (0.3 s)
    from poso_sim.nlp.problems import problem_definition  # loaded only for a chain of instances (0.3 s)

    where = ("instances", "generate")
    try:
        if problem_definition(base).build is not manchester_problem().build:
            raise _fail(where + ("base",), f"{base!r}: the generator varies cases of the integrated-energy model; "
                        "give this problem's instances as a list of case files")
        base_case = load_case(base)
    except InstanceError:
        raise
    except PosoError as exc:
        raise _fail(where + ("base",), str(exc)) from None
    try:
        return generate_instances(base_case, n, seed, dict(ranges or {}))
    except PosoError as exc:
        msg = str(exc)
        head, _, rest = msg.partition(": ")
        if head.startswith("ranges.") and rest:  # the generator names the range field: make it the scenario's
            raise _fail(where + tuple(head.split(".")), rest) from None
        raise _fail(where, msg) from None


def _generated(base: str, seed: int, n: int, ranges: Mapping[str, Any] | None, cache_dir: Path | None) -> list[Instance]:
    from poso_sim.cases import case_digest, save_case  # loaded only for a chain of instances (0.3 s)
    from poso_sim.common import default_cache_dir  # loaded only for a chain of instances (0.3 s)

    cases = generate_cases(base, seed, n, ranges)
    root = (cache_dir or default_cache_dir()) / "instances"
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, c in enumerate(cases, start=1):
        path = root / f"{c.name}-{case_digest(c)[:16]}.json"
        if not path.is_file():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            save_case(c, tmp)
            tmp.replace(path)
        out.append(Instance(i, c.name, str(path)))
    return out


def _listed(case: str, files: Iterable[str], where: str | None, *, register: bool = False) -> list[Instance]:
    from poso_sim.nlp.problems import problem_definition  # loaded only for a chain of instances (0.3 s)

    root = Path(where).resolve().parent if where and not where.startswith("<") else Path.cwd()
    definition = problem_definition(case)
    out = []
    for i, f in enumerate(files, start=1):
        p = Path(f)
        if not p.is_absolute():
            p = root / p
        if not p.is_file():
            raise _fail(("instances", i - 1), f"{f}: no such case file")
        if definition.load is None:
            raise _fail(("instances", i - 1), f"{f}: the problem {case!r} takes no case data")
        try:
            definition.load(str(p))
        except PosoError as exc:
            raise _fail(("instances", i - 1), str(exc)) from None
        name = str(p)
        if problem_definition(name) is not definition:
            # a case file of another registered problem (the registry reads a bare file as the integrated-energy
            # model's): registered under a name of its own whose loader reads that file
            name = f"{case}-instance-{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}".replace(":", "-")
            if register:
                _register_file(name, definition, str(p))
        out.append(Instance(i, p.stem, name))
    return out


def _register_file(name: str, definition: Any, path: str) -> None:
    from poso_sim.nlp.problems import register_problem  # loaded only for a chain of instances (0.3 s)

    register_problem(name, dataclasses.replace(definition, load=_FileLoader(definition.load, path)), replace=True)


@dataclass(frozen=True)
class _FileLoader:
    """``load(case)`` of a definition bound to one case file."""

    load: Any
    path: str

    def __call__(self, case: str) -> Any:
        return self.load(self.path)


def resolve_instances(scenario: Any, *, cache_dir: str | Path | None = None) -> list[Instance] | None:
    """The instances of ``scenario`` (None when it has none), validated and materialised as case files."""
    spec = getattr(scenario, "instances", None)
    if spec is None:
        return None
    if isinstance(spec, list):
        return _listed(scenario.case, spec, scenario.source, register=True)
    g = spec.generate
    base = g.base or scenario.case
    return _generated(base, g.seed, g.n, g.ranges, None if cache_dir is None else Path(cache_dir))


# ------------------------------------------------------------------------------------------------ solve times
class SolveTimes:
    """The virtual seconds a leader's solve of height ``h`` takes (``solve_time:`` of a scenario).

    * a number: that many seconds for every solve (the default 0: solving is outside the simulated time);
    * ``{model: constant, seconds: s}``;
    * ``{model: linear, base: a, per_variable: b}``: ``a + b x n`` with ``n`` the instance's number of variables;
    * ``{model: measured}``: the solve time measured when the instance's optimal plan was solved
      (``Solution.solve_seconds``, stored with the plan in the solution cache, so later runs replay it);
      ``record: file.json`` reads the times from that file when it exists (instance fingerprint -> seconds)
      and writes the times used otherwise, so a run can be replayed exactly elsewhere.

    ``speed: {node: factor}`` divides a node's times (a slow leader has a factor below 1).
    """

    def __init__(self, spec: Any, source: Any = None) -> None:
        self.spec = spec
        self.source = source
        self.recorded: dict[str, float] = {}

    @property
    def modelled(self) -> bool:
        return not isinstance(self.spec, (int, float))

    def _record_path(self) -> Path | None:
        rec = getattr(self.spec, "record", None)
        return None if rec is None else Path(rec)

    def load(self) -> None:
        path = self._record_path()
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.recorded = {str(k): float(v) for k, v in data.items()}
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                raise InstanceError(f"solve_time.record: {path}: not a JSON object of seconds ({exc})") from None

    def save(self) -> None:
        path = self._record_path()
        if path is not None and not path.is_file() and self.recorded:
            path.write_text(json.dumps(self.recorded, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def seconds(self, height: int, node: str | None = None) -> float:
        spec = self.spec
        if not self.modelled:
            return float(spec)
        if spec.model == "constant":
            s = float(spec.seconds)
        elif spec.model == "linear":
            s = float(spec.base) + float(spec.per_variable) * float(self._size(height))
        else:
            s = self._measured(height)
        f = float((spec.speed or {}).get(node, 1.0)) if node is not None else 1.0
        return s / f

    def _size(self, height: int) -> int:
        src = self.source
        if src is not None and hasattr(src, "problem_size"):
            return int(src.problem_size(height))
        raise InstanceError("solve_time: the linear model needs real payloads (the problem's size)")

    def _measured(self, height: int) -> float:
        src = self.source
        fp = src.instance_fingerprints.get(height, "") if src is not None and hasattr(src, "instance_fingerprints") else ""
        key = fp or f"height-{height}"
        if key in self.recorded:
            return self.recorded[key]
        if src is None or not hasattr(src, "measured_solve_seconds"):
            raise InstanceError("solve_time: the measured model needs real payloads (or a record file)")
        s = float(src.measured_solve_seconds(height))
        self.recorded[key] = s
        return s


# ------------------------------------------------------------------------------------------------ the source
class _OneInstance(RealPayloads):
    """The plans of one instance; verification against a compiled problem given by the chain."""

    def __init__(self, chain: "InstancePayloads", instance: Instance) -> None:
        super().__init__(instance.case, forge_scale=chain.forge_scale, cache_dir=chain.cache_dir, session=chain.session,
                         variants=chain.variants)
        self.chain = chain
        self.instance = instance

    def _problem(self) -> tuple[Any, Any]:
        return None, self.chain.compiled(self.instance.index)

    def _solve(self, variants: Iterable[str]) -> dict[str, Any]:
        inst = self.instance
        variants = list(dict.fromkeys(variants))
        log.info("instance %d (%s): solving %s", inst.index, inst.name, ", ".join(variants))
        try:
            sols = super()._solve(variants)
        except PosoError as exc:
            raise InstanceError(f"instance {inst.index} ({inst.name}): {exc}") from None
        for v, sol in sols.items():
            status = getattr(sol, "status", "optimal")
            if status not in OK_STATUSES:
                raise InstanceError(
                    f"instance {inst.index} ({inst.name}): variant {v!r}: the solve ended {status!r} "
                    f"({getattr(sol, 'message', '')}); the instance's data make no feasible dispatch (not cached)"
                )
            log.info("instance %d (%s): %s solved, cost %.2f, %.1f s", inst.index, inst.name, v,
                     float(getattr(sol, "cost", float("nan"))), float(getattr(sol, "solve_seconds", 0.0)))
        return sols


class InstancePayloads:
    """Real plans and the real certificate, one problem instance per height (see the module text)."""

    def __init__(
        self,
        case: str,
        instances: list[Instance],
        *,
        forge_scale: float = 0.5,
        cache_dir: str | None = None,
        session: Any = None,
        variants: Mapping[str, str] | None = None,
    ) -> None:
        if not instances:
            raise InstanceError("instances: none given")
        self.case = case
        self.variants = dict(variants or {})
        self.instances = list(instances)
        self.forge_scale = float(forge_scale)
        self.cache_dir = cache_dir
        self.session = session if session is not None else default_session()
        self.key = "instances:" + case
        self._lock = threading.RLock()
        self._compiled: dict[int, Any] = {}
        self._sources = {inst.index: _OneInstance(self, inst) for inst in self.instances}
        self.instance_fingerprints: dict[int, str] = {}

    # ---- instances
    def instance(self, height: int) -> Instance:
        try:
            return self.instances[height - 1]
        except IndexError:
            raise InstanceError(f"height {height}: the chain has {len(self.instances)} instances") from None

    def _source(self, height: int) -> _OneInstance:
        return self._sources[self.instance(height).index]

    def compiled(self, height: int) -> Any:
        """The honest compiled problem of instance ``height``: compiled once per structure, then ``with_data``."""
        with self._lock:
            hit = self._compiled.get(height)
            if hit is not None:
                return hit
            from poso_sim.nlp.problems import get_compiled  # loaded only for a chain of instances (0.3 s)

            # the registry compiles once per structure: instance h is the structure's functions with its data
            nlp = get_compiled(self.instance(height).case, None)
            self._compiled[height] = nlp
            self.instance_fingerprints[height] = nlp.fingerprint
            return nlp

    def fingerprints(self) -> list[str]:
        """The fingerprint of every instance, in height order (compiles the structure once)."""
        return [self.compiled(i.index).fingerprint for i in self.instances]

    def problem_size(self, height: int) -> int:
        return int(self.compiled(height).n)

    def measured_solve_seconds(self, height: int) -> float:
        sol = self.payloads(height)["optimal"].solution
        return float(getattr(sol, "solve_seconds", 0.0) or 0.0)

    # ---- the PayloadSource port
    def prepare(self, labels: Iterable[str] = LABELS, heights: Iterable[int] | None = None) -> None:
        """Solve (or load) the plans of ``labels`` for every instance (or those of ``heights``), fix every
        fingerprint and load the certificate, before the virtual clock starts."""
        labels = list(labels)
        hs = list(heights) if heights is not None else [i.index for i in self.instances]
        self.fingerprints()
        for h in hs:
            self._source(h).prepare(labels)

    def payloads(self, height: int) -> Mapping[str, Payload]:
        return self._source(height).payloads(height)

    def verify(self, payload: Payload, height: int | None = None) -> Verdict:
        if height is None:
            return Verdict(False, None, ("no height: cannot tell which instance to verify against",))
        want = self.compiled(height).fingerprint
        got = getattr(payload.solution, "fingerprint", None)
        if got != want:
            return Verdict(False, None, (f"plan is for another instance (fingerprint {str(got)[:12]}, "
                                         f"instance {height} is {want[:12]})",))
        return self._source(height).verify(payload, height)

    def solved(self) -> dict[str, Payload]:
        out: dict[str, Payload] = {}
        for inst in self.instances:
            for lbl, p in self._sources[inst.index].solved().items():
                out[f"{lbl}@{inst.index}"] = p
        return out

    def _find(self, digest: str) -> tuple[int, Payload] | None:
        for inst in self.instances:
            p = self._sources[inst.index]._by_digest(digest)
            if p is not None:
                return inst.index, p
        return None

    def cost_of(self, digest: str) -> float | None:
        hit = self._find(digest)
        c = None if hit is None else hit[1].claimed_cost
        return None if c is None or math.isnan(c) else float(c)

    def label_of(self, digest: str) -> str | None:
        hit = self._find(digest)
        return None if hit is None else hit[1].label


def check_instances(scenario: Any) -> None:
    """Validate a scenario's instances without writing or compiling anything (raises :class:`InstanceError`)."""
    spec = getattr(scenario, "instances", None)
    if spec is None:
        return
    if isinstance(spec, list):
        _listed(scenario.case, spec, scenario.source)
    else:
        g = spec.generate
        generate_cases(g.base or scenario.case, g.seed, g.n, g.ranges)
