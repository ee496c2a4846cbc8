"""The scenario-file schema: pydantic models of a scenario, its network and faults, the semantic checks that go
beyond types (node references, behaviour arguments, the case), and the behaviour objects a scenario builds.

Checks raise :class:`FieldError` with the path of the offending field; :mod:`.model` turns it into a
`poso_sim.errors.ScenarioError` naming the file and line (see :mod:`.yaml_locator`).
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, Iterable, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer

from poso_sim.errors import ConfigError, PosoError, ScenarioError
from poso_sim.protocol import behaviours as B
from poso_sim.protocol.delegate import VerifyCost
from poso_sim.protocol.events import Send
from poso_sim.protocol.messages import Proposal
from poso_sim.sim import Constant, LogNormal, Uniform
from poso_sim.sim import faults as F
from poso_sim.sim.latency import as_latency

__all__ = [
    "Scenario", "NetworkSpec", "FaultSpec", "BEHAVIOUR_KEYS", "REFERENCE_KEYS", "GENERIC_KEYS", "LABELS",
    "TARGET_GROUPS", "FieldError", "check_scenario", "check_case", "known_cases", "generated_name", "legacy_name",
    "EquivocateOmitting", "GenerateSpec", "InstancesSpec", "SolveTimeSpec", "VARIANT_LABELS",
]

FIRST_ID = 8
LABELS = ("optimal", "tampered", "feasible", "forged")
#: the labels of the dishonest plans, each the optimum of a variant of the problem (by default the variant of the
#: same name; a scenario's `variants:` maps them to the names its problem uses); "optimal" and "forged" are plans
#: of the honest variant
VARIANT_LABELS = ("tampered", "feasible")
#: the labels of a market's proposals (a case with priced rows: poso_sim.scenarios.market)
MARKET_LABELS = ("price_up_1", "price_down_1", "price_up_10", "price_down_10", "other_hour", "favour", "interval_end")


def generated_name(index: int) -> str:
    """Name of the index-th generated delegate: A..Z, then D26, D27, ..."""
    return chr(ord("A") + index) if 0 <= index < 26 else f"D{index}"


@functools.lru_cache(maxsize=64)
def _generated_ids(n: int) -> tuple[tuple[str, int], ...]:
    """(name, id) of n generated delegates (a scenario's derived maps are read many times per run)."""
    return tuple((generated_name(i), FIRST_ID + i) for i in range(n))


@functools.lru_cache(maxsize=64)
def _generated_maps(n: int) -> tuple[Mapping[str, int], Mapping[int, str]]:
    """name -> id and id -> name of n generated delegates, made once per size (read only: never handed out)."""
    ids = dict(_generated_ids(n))
    return ids, {i: name for name, i in ids.items()}


def legacy_name(node_id: int) -> str:
    """The reference's naming: id 8 is C, 9 is D, ... 12 is G (and onwards along the same alphabet)."""
    return generated_name(node_id - 6) if node_id >= 6 else f"N{node_id}"


# ------------------------------------------------------------------------------------------------ the schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Strict):
    """One network fault of the kernel (`poso_sim.sim`); `type` selects which, the other fields are its
    arguments (see docs/kernel.md)."""

    type: Literal["loss", "duplicate", "reorder", "delay_spike", "partition", "crash"]
    p: float | None = None
    extra_delay: float | None = None
    extra: float | None = None
    src: Union[str, list[str], None] = None
    dst: Union[str, list[str], None] = None
    window: tuple[float, float] | None = None
    groups: list[list[str]] | None = None
    isolate: list[str] | None = None
    t0: float = 0.0
    t1: float | None = None
    node: str | None = None
    at: float | None = None
    recover_at: float | None = None
    name: str | None = None

    def nodes(self) -> Iterable[tuple[tuple[Any, ...], str]]:
        for fld in ("src", "dst"):
            v = getattr(self, fld)
            if isinstance(v, str):
                yield (fld,), v
            elif v is not None:
                for i, n in enumerate(v):
                    yield (fld, i), n
        for i, g in enumerate(self.groups or ()):
            for j, n in enumerate(g):
                yield ("groups", i, j), n
        for i, n in enumerate(self.isolate or ()):
            yield ("isolate", i), n
        if self.node is not None:
            yield ("node",), self.node

    def build(self) -> Any:
        """The kernel fault object (raises ConfigError for bad arguments)."""
        kw: dict[str, Any] = {"name": self.name}
        chan = {"src": self.src, "dst": self.dst, "window": self.window}
        need = {"loss": ("p",), "duplicate": ("p",), "reorder": ("p", "extra_delay"), "delay_spike": ("extra",),
                "crash": ("node", "at")}
        for fld in need.get(self.type, ()):
            if getattr(self, fld) is None:
                raise ConfigError(f"{fld}: required for a {self.type} fault")
        if self.type == "loss":
            return F.Loss(self.p, **chan, **kw)
        if self.type == "duplicate":
            return F.Duplicate(self.p, **chan, **kw)
        if self.type == "reorder":
            return F.Reorder(self.p, self.extra_delay, **chan, **kw)
        if self.type == "delay_spike":
            return F.DelaySpike(self.extra, window=self.window, p=1.0 if self.p is None else self.p,
                                src=self.src, dst=self.dst, **kw)
        if self.type == "partition":
            if (self.groups is None) == (self.isolate is None):
                raise ConfigError("groups: give exactly one of groups or isolate for a partition")
            t1 = math.inf if self.t1 is None else self.t1
            if self.groups is not None:
                return F.Partition([set(g) for g in self.groups], self.t0, t1, **kw)
            return F.Partition(isolate=set(self.isolate or ()), t0=self.t0, t1=t1, **kw)
        return F.Crash(self.node, self.at, self.recover_at, **kw)


LatencySpec = Union[float, tuple[float, float], dict[Literal["constant", "uniform", "lognormal", "mean_sd"], Any]]


class NetworkSpec(_Strict):
    """Latency model and faults. `latency`: seconds (constant), ``[mean, sd]`` (log-normal with that mean and
    standard deviation), ``{uniform: [lo, hi]}``, ``{lognormal: [median, sigma]}`` or ``{constant: s}``."""

    latency: LatencySpec = 0.0
    faults: list[FaultSpec] = Field(default_factory=list)

    @field_validator("latency", mode="before")
    @classmethod
    def _two_numbers(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)) and len(v) != 2:
            raise ValueError(f"a list means [mean, sd] (log-normal): expected two numbers, got {len(v)} {list(v)}"
                             " (a constant latency is `latency: SECONDS`)")
        return v

    def build_latency(self) -> Any:
        lat = self.latency
        if isinstance(lat, dict):
            if len(lat) != 1:
                raise ConfigError("latency: give exactly one of constant, uniform, lognormal, mean_sd")
            (kind, val), = lat.items()
            two = {"uniform": "[lo, hi]", "lognormal": "[median, sigma]", "mean_sd": "[mean, sd]"}
            if kind in two and (not isinstance(val, (list, tuple)) or len(val) != 2):
                got = f"{len(val)} value{'s' if len(val) != 1 else ''} {list(val)}" if isinstance(val, (list, tuple)) \
                    else repr(val)
                hint = " (a constant latency is `latency: SECONDS`)" if kind == "lognormal" else ""
                raise ConfigError(f"latency.{kind}: expected two numbers {two[kind]}, got {got}{hint}")
            try:
                if kind == "constant":
                    return Constant(float(val))
                if kind == "uniform":
                    lo, hi = val
                    return Uniform(float(lo), float(hi))
                if kind == "lognormal":
                    med, sig = val
                    return LogNormal(float(med), float(sig))
                mean, sd = val
                return LogNormal.from_mean_sd(float(mean), float(sd))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"latency.{kind}: {exc}") from None
        return lat


class GenerateSpec(_Strict):
    """``instances: {generate: ...}``: seeded day-ahead instances of a base case (poso_sim.cases.generator)."""

    base: str | None = None  # default: the scenario's case
    seed: int = Field(0, ge=0)
    n: int = Field(..., ge=1, le=10_000)
    ranges: dict[str, Any] = Field(default_factory=dict)


class InstancesSpec(_Strict):
    generate: GenerateSpec


class SolveTimeSpec(_Strict):
    """``solve_time: {model: ...}``: how long a leader's solve takes in virtual time
    (poso_sim.scenarios.instances.SolveTimes)."""

    model: Literal["constant", "linear", "measured"]
    seconds: float = Field(0.0, ge=0)
    base: float = Field(0.0, ge=0)
    per_variable: float = Field(0.0, ge=0)
    record: str | None = None
    speed: dict[str, float] = Field(default_factory=dict)

    def __float__(self) -> float:
        """The nominal seconds (constant: `seconds`, linear: `base`, measured: 0) for code that wants one number."""
        return float(self.seconds if self.model == "constant" else self.base if self.model == "linear" else 0.0)


# Behaviour keys: the reference's six (lists of node names or ids) and poso_sim's generic attackers.
REFERENCE_KEYS = tuple(B.REFERENCE_KEYS)
GENERIC_KEYS = ("equivocate", "forged_multipliers", "leader_sends", "trick_error", "delay", "crash", "silence",
                "replay")
BEHAVIOUR_KEYS = REFERENCE_KEYS + GENERIC_KEYS


class Scenario(_Strict):
    """A scenario: who the delegates are, how they behave, the network, the window, heights, seed, case and
    whether messages are signed."""

    name: str = "scenario"
    description: str = ""
    case: str = "manchester"
    delegates: Union[int, list[str], dict[str, int]] = 5
    normal_nodes: Union[int, list[str]] = 3
    window: float = Field(5.3, gt=0)
    heights: int = Field(1, ge=1, le=10_000)
    seed: int = 0
    signatures: bool = True
    verify_cost: VerifyCost = 0.0
    solve_time: Union[Annotated[float, Field(ge=0)], SolveTimeSpec] = 0.0
    instances: Union[list[str], InstancesSpec, None] = None
    rotate_heights: bool = False
    max_rounds: int | None = Field(None, ge=1)
    normal_timeout: float | None = Field(None, gt=0)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    behaviours: dict[str, dict[str, Any]] = Field(default_factory=dict)
    variants: dict[str, str] = Field(default_factory=dict)
    source: str | None = Field(None, exclude=True)  # the file it came from (for messages)

    @model_serializer(mode="wrap")
    def _drop_absent_chain(self, handler: Any) -> Any:
        # a scenario without instances (or variant names) dumps exactly as before the field existed (sweep case
        # files, digests)
        data = handler(self)
        if isinstance(data, dict) and data.get("instances", 0) is None:
            data.pop("instances")
        if isinstance(data, dict) and data.get("variants", 0) == {}:
            data.pop("variants")
        return data

    def variant_of(self, label: str, honest: str = "true") -> str:
        """The problem variant whose optimum is the plan ``label`` (``honest``: the problem's honest variant)."""
        if label in VARIANT_LABELS:
            return self.variants.get(label, label)
        return honest

    # ---- derived
    @property
    def delegate_ids(self) -> dict[str, int]:
        d = self.delegates
        if isinstance(d, int):
            return dict(_generated_ids(d))
        if isinstance(d, list):
            return {n: FIRST_ID + i for i, n in enumerate(d)}
        return dict(d)

    @property
    def delegate_names(self) -> list[str]:
        return list(self.delegate_ids)

    @property
    def normal_names(self) -> list[str]:
        n = self.normal_nodes
        return [f"N{i + 1}" for i in range(n)] if isinstance(n, int) else list(n)

    @property
    def id_to_name(self) -> dict[int, str]:
        return {i: n for n, i in self.delegate_ids.items()}

    def node_ref(self, ref: Any) -> str:
        """A node given by name or numeric id -> its name (ValueError if unknown)."""
        d = self.delegates
        if type(ref) is str and type(d) is int and ref in _generated_maps(d)[0] and not ref.isdigit():
            return ref  # a generated delegate's name (the sweep's behaviours and targets): what the rest returns
        if isinstance(ref, bool):
            raise ValueError(f"expected a node name or id, got {ref!r}")
        if isinstance(d, int):  # the generated committee's maps, made once per size
            ids, by_id = _generated_maps(d)
        else:
            ids = self.delegate_ids  # (made afresh by each call of the property: once here)
            by_id = None
        if isinstance(ref, int):
            name = (by_id if by_id is not None else {i: n for n, i in ids.items()}).get(ref)
            if name is None:
                raise ValueError(f"unknown node id {ref}")
            return name
        if isinstance(ref, str):
            if ref.isdigit():
                id_to_name = by_id if by_id is not None else {i: n for n, i in ids.items()}
                if int(ref) in id_to_name:
                    return id_to_name[int(ref)]
            if ref in ids or ref in self.normal_names:
                return ref
        raise ValueError(f"unknown node {ref!r}")

    @property
    def dishonest(self) -> list[str]:
        named = {self.node_ref(k) for k, v in self.behaviours.items() if v}
        return [n for n in self.delegate_names if n in named]

    def with_(self, **changes: Any) -> "Scenario":
        """A validated copy with some fields changed (e.g. ``with_(seed=3, network={"latency": 0.1})``)."""
        data = {**self.model_dump(), "source": self.source, **changes}
        try:
            scn = Scenario.model_validate(data)
            check_scenario(scn)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ScenarioError(f"{self.source or self.name}: {'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        except FieldError as exc:
            raise ScenarioError(f"{self.source or self.name}: {'.'.join(map(str, exc.path))}: {exc.msg}") from None
        return scn

    # ---- behaviours
    def behaviour_objects(self) -> dict[str, list[Any]]:
        """Fresh behaviour objects per dishonest delegate (they are stateful: build them once per run)."""
        out: dict[str, list[Any]] = {}
        for key, opts in self.behaviours.items():
            name = self.node_ref(key)
            out.setdefault(name, []).extend(_build_behaviours(self, opts, name))
        return {k: v for k, v in out.items() if v}

    def build_faults(self) -> list[Any]:
        return [f.build() for f in self.network.faults]


#: target groups a behaviour may name instead of a list: every delegate, or every delegate but the behaving one
TARGET_GROUPS = ("all", "others")
#: the label that makes `equivocate` leave a member out (no proposal at all)
OMIT = "none"


def _names(scn: Scenario, refs: Any, owner: str | None = None) -> list[str]:
    if refs is None:
        return []
    if refs == "all":
        return scn.delegate_names
    if refs == "others":
        return [n for n in scn.delegate_names if n != owner]
    if not isinstance(refs, (list, tuple)):
        refs = [refs]
    return [scn.node_ref(r) for r in refs]


class EquivocateOmitting(B.Equivocate):
    """`Equivocate` whose labels may include ``None``: the members that fall on it get no proposal at all."""

    passes_notes = True

    def __init__(self, labels: Iterable[str | None]) -> None:
        self.labels = tuple(labels)

    def outgoing(self, action: Any, ctx: B.BehavingDelegate) -> list[Any]:
        if isinstance(action, Send) and isinstance(action.msg, Proposal) and action.msg.leader == ctx.name:
            others = [m for m in ctx.delegate.members if m != ctx.name]
            i = others.index(action.dst) if action.dst in others else 0
            if self.labels[i % len(self.labels)] is None:
                return []
            return B.Equivocate.outgoing(self, action, ctx)
        return [action]


def _equivocate(scn: Scenario, owner: str, val: Any) -> list[Any]:
    """`equivocate: true | [labels...] | {label: targets, ...}`; the label `none` leaves members out."""
    if isinstance(val, Mapping):  # label -> targets; members not named get the honest proposal
        out: list[Any] = []
        for lbl, refs in val.items():
            names = _names(scn, refs, owner)
            if not names or lbl == "optimal":
                continue
            out.append(B.FollowerIgnore(names) if lbl == OMIT else B.LeaderSends(lbl, names))
        return out
    labels = list(val) if isinstance(val, (list, tuple)) else ["optimal", "tampered"]
    if OMIT in labels:
        return [EquivocateOmitting([None if lb == OMIT else lb for lb in labels])]
    return [B.Equivocate(labels)]


def _build_behaviours(scn: Scenario, opts: Mapping[str, Any], owner: str | None = None) -> list[Any]:
    out: list[Any] = []
    for key, val in opts.items():
        if key in B.REFERENCE_KEYS:
            names = _names(scn, val, owner)
            if names:
                out.append(B.REFERENCE_KEYS[key](names))
        elif key == "equivocate":
            out.extend(_equivocate(scn, owner or "", val))
        elif key == "forged_multipliers":
            out.append(B.ForgedMultipliers(None if val in (None, True, "all") else _names(scn, val, owner)))
        elif key == "leader_sends":
            tg = val.get("targets")
            out.append(B.LeaderSends(val["label"], None if tg is None else _names(scn, tg, owner)))
        elif key == "trick_error":
            out.append(B.TrickError(_names(scn, val.get("targets"), owner), label=val.get("label", "tampered")))
        elif key == "delay":
            if isinstance(val, Mapping):
                tg = val.get("targets")
                out.append(B.Delay(float(val["seconds"]), None if tg is None else _names(scn, tg, owner)))
            else:
                out.append(B.Delay(float(val)))
        elif key == "crash":
            if isinstance(val, Mapping):
                out.append(B.Crash(at_time=val.get("at_time"), after_events=val.get("after_events")))
            else:
                out.append(B.Crash(at_time=float(val)))
        elif key == "silence":
            if val:
                out.append(B.Silence())
        elif key == "replay":
            if val is True:
                out.append(B.Replay())
            elif isinstance(val, Mapping):
                tg = val.get("targets")
                out.append(B.Replay(None if tg is None else _names(scn, tg, owner),
                                    from_height=int(val.get("from_height", 2)), claim=str(val.get("claim", "own"))))
    return out


# ------------------------------------------------------------------------------------------ semantic checks
class FieldError(Exception):
    def __init__(self, path: tuple[Any, ...], msg: str) -> None:
        super().__init__(msg)
        self.path = path
        self.msg = msg


#: the largest generated committee (`delegates: N`): a height costs about 2 N^2 messages (docs/benchmarks.md,
#: "Committee size"); above `poso_sim.scenarios.log.COMPACT_ABOVE` the run log is compact by default
MAX_DELEGATES = 10_000


def check_scenario(scn: Scenario) -> None:
    """Checks beyond the schema; raises FieldError(path, message)."""
    d = scn.delegates
    if isinstance(d, int):
        if not 1 <= d <= MAX_DELEGATES:
            raise FieldError(("delegates",), f"need 1..{MAX_DELEGATES} delegates, got {d}")
    else:
        names = list(d)
        if not names:
            raise FieldError(("delegates",), "at least one delegate is needed")
        for i, n in enumerate(names):
            key = ("delegates", i) if isinstance(d, list) else ("delegates", n)
            if not n or len(n) > 64:
                raise FieldError(key, f"bad delegate name {n!r}")
            if names.index(n) != i:
                raise FieldError(key, f"duplicate delegate {n!r}")
        if isinstance(d, dict):
            seen: dict[int, str] = {}
            for n, i in d.items():
                if i in seen:
                    raise FieldError(("delegates", n), f"id {i} is already used by {seen[i]!r}")
                seen[i] = n
    try:
        check_case(scn.case)
    except ValueError as exc:
        raise FieldError(("case",), str(exc)) from None
    nn = scn.normal_nodes
    if isinstance(nn, int) and not 0 <= nn <= 1000:
        raise FieldError(("normal_nodes",), f"need 0..1000 normal nodes, got {nn}")
    normals = scn.normal_names
    clash = set(normals) & set(scn.delegate_names)
    if clash or len(set(normals)) != len(normals):
        raise FieldError(("normal_nodes",), f"normal node names must be unique and differ from delegates: {sorted(clash)}")
    if isinstance(scn.verify_cost, float) and not (scn.verify_cost >= 0 and math.isfinite(scn.verify_cost)):
        raise FieldError(("verify_cost",), "must be >= 0 seconds or 'measured'")
    ids = scn.delegate_ids
    for key, opts in scn.behaviours.items():
        try:
            who = scn.node_ref(int(key) if str(key).isdigit() else key)
        except ValueError as exc:
            raise FieldError(("behaviours", key), str(exc)) from None
        if who not in ids:
            raise FieldError(("behaviours", key), f"{who!r} is a normal node; only delegates have behaviours")
        if not isinstance(opts, dict):
            raise FieldError(("behaviours", key), "expected a mapping of behaviour keys")
        for bkey, val in opts.items():
            where = ("behaviours", key, bkey)
            if bkey not in BEHAVIOUR_KEYS:
                raise FieldError(where, f"unknown behaviour {bkey!r} (known: {', '.join(BEHAVIOUR_KEYS)})")
            _check_behaviour(scn, where, bkey, val)
    _check_variants(scn)
    _check_chain(scn)
    names = set(scn.delegate_names) | set(normals)
    for i, f in enumerate(scn.network.faults):
        for sub, n in f.nodes():
            if n not in names:
                raise FieldError(("network", "faults", i) + sub, f"unknown node {n!r}")
        try:
            f.build()
        except ConfigError as exc:
            msg = str(exc)
            fld = msg.split(":", 1)[0].split(".")[-1] if ":" in msg else ""
            path = ("network", "faults", i) + ((fld,) if fld in FaultSpec.model_fields else ())
            raise FieldError(path, msg) from None
    try:
        as_latency(scn.network.build_latency(), "latency")
    except ConfigError as exc:
        msg = str(exc)
        head, sep, rest = msg.partition(": ")
        if sep and head.startswith("latency.") and head.count(".") == 1:
            raise FieldError(("network", "latency", head.split(".")[1]), rest) from None
        raise FieldError(("network", "latency"), msg) from None


def _check_chain(scn: Scenario) -> None:
    """`solve_time` speeds name delegates; `instances` give one valid instance per height."""
    st = scn.solve_time
    if isinstance(st, SolveTimeSpec):
        for n, f in st.speed.items():
            if n not in scn.delegate_ids:
                raise FieldError(("solve_time", "speed", n), f"unknown delegate {n!r}")
            if not (f > 0 and math.isfinite(f)):
                raise FieldError(("solve_time", "speed", n), f"speed must be a positive factor, got {f!r}")
    inst = scn.instances
    if inst is None:
        return
    count = len(inst) if isinstance(inst, list) else inst.generate.n
    if count < scn.heights:
        raise FieldError(("instances",), f"{count} instance(s) for {scn.heights} heights: one instance per height")
    # the instances module (the case schema, the generator) is imported only for a scenario that has instances
    from .instances import InstanceError, check_instances

    try:
        check_instances(scn)
    except InstanceError as exc:
        raise FieldError(exc.field or ("instances",), exc.detail) from None


def _check_variants(scn: Scenario) -> None:
    """`variants:` maps dishonest plan labels to variants of the case's problem, and every label a behaviour uses
    has a variant there (checked now, with the file and line, rather than at the first solve)."""
    from poso_sim.nlp.problems import problem_definition  # the registry: see known_cases

    try:
        variants = problem_definition(scn.case).variants
    except PosoError:  # the case itself is check_case's to report
        return
    for lbl, name in scn.variants.items():
        if lbl not in VARIANT_LABELS:
            raise FieldError(("variants", lbl), f"unknown plan label {lbl!r}: the plans made from a variant are "
                                                f"{', '.join(VARIANT_LABELS)}")
        if name not in variants:
            raise FieldError(("variants", lbl), f"case {scn.case!r} has no variant {name!r} "
                                                f"(variants: {', '.join(variants)})")
    if all(scn.variant_of(lbl) in variants for lbl in VARIANT_LABELS):
        return  # every plan label has its variant: no behaviour can send one the case lacks
    for key, opts in scn.behaviours.items():
        owner = scn.node_ref(int(key) if str(key).isdigit() else key)
        for bkey, val in opts.items():
            for b in _build_behaviours(scn, {bkey: val}, owner):
                for lbl in b.payload_labels():
                    if lbl in VARIANT_LABELS and scn.variant_of(lbl) not in variants:
                        raise FieldError(
                            ("behaviours", key, bkey),
                            f"sends the {lbl!r} plan, the optimum of variant {scn.variant_of(lbl)!r}, which case "
                            f"{scn.case!r} does not have (variants: {', '.join(variants)}); name the variant that "
                            f"makes it with `variants: {{{lbl}: VARIANT}}`")


def known_cases() -> list[str]:
    """Names of the problems a scenario may name by name (the problem registry's)."""
    # the registry (0.3 s: the case schema, numpy) is imported when a scenario is checked, not with this module
    from poso_sim.nlp.problems import registered_problems

    return list(registered_problems())


def check_case(case: str) -> None:
    """Raise ValueError unless ``case`` names a problem of the registry, a case file or a ``module:function``.
    The one place a scenario's `case:` is checked: at load time, before any payload is made. It defers to
    ``poso_sim.nlp.problems.check_case``, which builds nothing (no CasADi, no Pyomo) and validates a case
    file's contents."""
    if not isinstance(case, str) or not case:
        raise ValueError(f"expected a case name, got {case!r}")
    # the registry (0.3 s: the case schema, numpy) is imported when a scenario is checked, not with this module
    from poso_sim.nlp.problems import check_case as registry_check

    try:
        registry_check(case)
    except PosoError as exc:
        raise ValueError(str(exc)) from None


def _check_refs(scn: Scenario, where: tuple[Any, ...], refs: Any) -> None:
    if refs is None or refs in TARGET_GROUPS:
        return
    if not isinstance(refs, list):
        raise FieldError(where, f"expected a list of node names or ids, 'all' or 'others', got {refs!r}")
    ids = scn.delegate_ids
    for i, r in enumerate(refs):
        try:
            n = scn.node_ref(r)
        except ValueError as exc:
            raise FieldError(where + (i,), str(exc)) from None
        if n not in ids:
            raise FieldError(where + (i,), f"{n!r} is not a delegate")


def _check_behaviour(scn: Scenario, where: tuple[Any, ...], key: str, val: Any) -> None:
    def label(v: Any, w: tuple[Any, ...]) -> None:
        if v not in LABELS + MARKET_LABELS:
            raise FieldError(w, f"unknown payload label {v!r} (known: {', '.join(LABELS + MARKET_LABELS)}"
                                f"{', ' + OMIT if key == 'equivocate' else ''})")

    if key in REFERENCE_KEYS:
        _check_refs(scn, where, val)
    elif key == "equivocate":
        if val is True:
            return
        if isinstance(val, dict):
            if not val:
                raise FieldError(where, "expected {label: targets, ...} with at least one label")
            for lbl, refs in val.items():
                if lbl != OMIT:
                    label(lbl, where + (lbl,))
                _check_refs(scn, where + (lbl,), refs)
            return
        if not isinstance(val, list) or not val:
            raise FieldError(where, f"expected true, a list of payload labels (or '{OMIT}') or {{label: targets}}")
        for i, v in enumerate(val):
            if v != OMIT:
                label(v, where + (i,))
        if all(v == OMIT for v in val):
            raise FieldError(where, f"every label is '{OMIT}': use `silence: true` to send nothing")
    elif key == "forged_multipliers":
        if val not in (None, True, "all"):
            _check_refs(scn, where, val)
    elif key in ("leader_sends", "trick_error"):
        if not isinstance(val, dict):
            raise FieldError(where, "expected a mapping with 'label' and 'targets'")
        extra = set(val) - {"label", "targets"}
        if extra:
            raise FieldError(where + (sorted(extra)[0],), "unexpected field")
        if key == "leader_sends" and "label" not in val:
            raise FieldError(where, "'label' is required")
        if "label" in val:
            label(val["label"], where + ("label",))
        _check_refs(scn, where + ("targets",), val.get("targets"))
    elif key == "delay":
        secs = val.get("seconds") if isinstance(val, dict) else val
        if isinstance(val, dict):
            extra = set(val) - {"seconds", "targets"}
            if extra:
                raise FieldError(where + (sorted(extra)[0],), "unexpected field")
            _check_refs(scn, where + ("targets",), val.get("targets"))
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not (0 <= secs < math.inf):
            raise FieldError(where, f"expected seconds >= 0, got {secs!r}")
    elif key == "crash":
        if isinstance(val, dict):
            extra = set(val) - {"at_time", "after_events"}
            if extra:
                raise FieldError(where + (sorted(extra)[0],), "unexpected field")
        elif isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
            raise FieldError(where, f"expected a time >= 0 or {{at_time, after_events}}, got {val!r}")
    elif key == "silence":
        if not isinstance(val, bool):
            raise FieldError(where, "expected true or false")
    elif key == "replay":
        if isinstance(val, bool):
            return
        if not isinstance(val, dict):
            raise FieldError(where, "expected true or a mapping with 'from_height', 'claim', 'targets'")
        extra = set(val) - {"from_height", "claim", "targets"}
        if extra:
            raise FieldError(where + (sorted(extra)[0],), "unexpected field")
        fh = val.get("from_height", 2)
        if isinstance(fh, bool) or not isinstance(fh, int) or fh < 2:
            raise FieldError(where + ("from_height",), f"expected a height >= 2, got {fh!r}")
        if val.get("claim", "own") not in ("own", "current"):
            raise FieldError(where + ("claim",), f"expected 'own' or 'current', got {val.get('claim')!r}")
        _check_refs(scn, where + ("targets",), val.get("targets"))


