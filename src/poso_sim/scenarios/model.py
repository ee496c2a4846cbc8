"""Scenario files: the pydantic schema, YAML loading with line numbers, the reference's legacy format and the
scenarios shipped in the package.

Every problem with a scenario file ends as one `poso_sim.errors.ScenarioError` whose message names the file,
the line and the field, e.g. ``bad.yaml, line 7: behaviours.C.follower_ignore[1]: unknown node 'X'``.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poso_sim.errors import ConfigError, ScenarioError
from poso_sim.protocol import behaviours as B

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
    "BEHAVIOUR_KEYS",
]

FIRST_ID = 8
LABELS = ("optimal", "tampered", "feasible", "forged")


def generated_name(index: int) -> str:
    """Name of the index-th generated delegate: A..Z, then D26, D27, ..."""
    return chr(ord("A") + index) if 0 <= index < 26 else f"D{index}"


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
        from poso_sim.sim import faults as F

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

    def build_latency(self) -> Any:
        from poso_sim.sim import Constant, LogNormal, Uniform

        lat = self.latency
        if isinstance(lat, dict):
            if len(lat) != 1:
                raise ConfigError("latency: give exactly one of constant, uniform, lognormal, mean_sd")
            (kind, val), = lat.items()
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
    verify_cost: Union[float, Literal["measured"]] = 0.0
    solve_time: Union[Annotated[float, Field(ge=0)], SolveTimeSpec] = 0.0
    instances: Union[list[str], InstancesSpec, None] = None
    rotate_heights: bool = False
    max_rounds: int | None = Field(None, ge=1)
    normal_timeout: float | None = Field(None, gt=0)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    behaviours: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: str | None = Field(None, exclude=True)  # the file it came from (for messages)

    # ---- derived
    @property
    def delegate_ids(self) -> dict[str, int]:
        d = self.delegates
        if isinstance(d, int):
            return {generated_name(i): FIRST_ID + i for i in range(d)}
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
        if isinstance(ref, bool):
            raise ValueError(f"expected a node name or id, got {ref!r}")
        if isinstance(ref, int):
            name = self.id_to_name.get(ref)
            if name is None:
                raise ValueError(f"unknown node id {ref}")
            return name
        if isinstance(ref, str):
            if ref.isdigit() and int(ref) in self.id_to_name:
                return self.id_to_name[int(ref)]
            if ref in self.delegate_ids or ref in self.normal_names:
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
            _check(scn)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ScenarioError(f"{self.source or self.name}: {'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        except _FieldError as exc:
            raise ScenarioError(f"{self.source or self.name}: {'.'.join(map(str, exc.path))}: {exc.msg}") from None
        return scn

    # ---- behaviours
    def behaviour_objects(self) -> dict[str, list[Any]]:
        """Fresh behaviour objects per dishonest delegate (they are stateful: build them once per run)."""
        out: dict[str, list[Any]] = {}
        for key, opts in self.behaviours.items():
            name = self.node_ref(key)
            out.setdefault(name, []).extend(_build_behaviours(self, opts))
        return {k: v for k, v in out.items() if v}

    def build_faults(self) -> list[Any]:
        return [f.build() for f in self.network.faults]


def _names(scn: Scenario, refs: Any) -> list[str]:
    if refs is None:
        return []
    if not isinstance(refs, (list, tuple)):
        refs = [refs]
    return [scn.node_ref(r) for r in refs]


def _build_behaviours(scn: Scenario, opts: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for key, val in opts.items():
        if key in B.REFERENCE_KEYS:
            names = _names(scn, val)
            if names:
                out.append(B.REFERENCE_KEYS[key](names))
        elif key == "equivocate":
            labels = list(val) if isinstance(val, (list, tuple)) else ["optimal", "tampered"]
            out.append(B.Equivocate(labels))
        elif key == "forged_multipliers":
            out.append(B.ForgedMultipliers(None if val in (None, True, "all") else _names(scn, val)))
        elif key == "leader_sends":
            out.append(B.LeaderSends(val["label"], None if val.get("targets") is None else _names(scn, val["targets"])))
        elif key == "trick_error":
            out.append(B.TrickError(_names(scn, val.get("targets")), label=val.get("label", "tampered")))
        elif key == "delay":
            if isinstance(val, Mapping):
                tg = val.get("targets")
                out.append(B.Delay(float(val["seconds"]), None if tg is None else _names(scn, tg)))
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
                out.append(B.Replay(None if tg is None else _names(scn, tg), from_height=int(val.get("from_height", 2)),
                                    claim=str(val.get("claim", "own"))))
    return out


# ------------------------------------------------------------------------------------------ semantic checks
class _FieldError(Exception):
    def __init__(self, path: tuple[Any, ...], msg: str) -> None:
        super().__init__(msg)
        self.path = path
        self.msg = msg


def _check(scn: Scenario) -> None:
    """Checks beyond the schema; raises _FieldError(path, message)."""
    d = scn.delegates
    if isinstance(d, int):
        if not 1 <= d <= 1000:
            raise _FieldError(("delegates",), f"need 1..1000 delegates, got {d}")
    else:
        names = list(d)
        if not names:
            raise _FieldError(("delegates",), "at least one delegate is needed")
        for i, n in enumerate(names):
            key = ("delegates", i) if isinstance(d, list) else ("delegates", n)
            if not n or len(n) > 64:
                raise _FieldError(key, f"bad delegate name {n!r}")
            if names.index(n) != i:
                raise _FieldError(key, f"duplicate delegate {n!r}")
        if isinstance(d, dict):
            seen: dict[int, str] = {}
            for n, i in d.items():
                if i in seen:
                    raise _FieldError(("delegates", n), f"id {i} is already used by {seen[i]!r}")
                seen[i] = n
    nn = scn.normal_nodes
    if isinstance(nn, int) and not 0 <= nn <= 1000:
        raise _FieldError(("normal_nodes",), f"need 0..1000 normal nodes, got {nn}")
    normals = scn.normal_names
    clash = set(normals) & set(scn.delegate_names)
    if clash or len(set(normals)) != len(normals):
        raise _FieldError(("normal_nodes",), f"normal node names must be unique and differ from delegates: {sorted(clash)}")
    if isinstance(scn.verify_cost, float) and not (scn.verify_cost >= 0 and math.isfinite(scn.verify_cost)):
        raise _FieldError(("verify_cost",), "must be >= 0 seconds or 'measured'")
    for key, opts in scn.behaviours.items():
        try:
            who = scn.node_ref(int(key) if str(key).isdigit() else key)
        except ValueError as exc:
            raise _FieldError(("behaviours", key), str(exc)) from None
        if who not in scn.delegate_ids:
            raise _FieldError(("behaviours", key), f"{who!r} is a normal node; only delegates have behaviours")
        if not isinstance(opts, dict):
            raise _FieldError(("behaviours", key), "expected a mapping of behaviour keys")
        for bkey, val in opts.items():
            where = ("behaviours", key, bkey)
            if bkey not in BEHAVIOUR_KEYS:
                raise _FieldError(where, f"unknown behaviour {bkey!r} (known: {', '.join(BEHAVIOUR_KEYS)})")
            _check_behaviour(scn, where, bkey, val)
    st = scn.solve_time
    if isinstance(st, SolveTimeSpec):
        for n in st.speed:
            if n not in scn.delegate_ids:
                raise _FieldError(("solve_time", "speed", n), f"unknown delegate {n!r}")
            if not (st.speed[n] > 0 and math.isfinite(st.speed[n])):
                raise _FieldError(("solve_time", "speed", n), f"speed must be a positive factor, got {st.speed[n]!r}")
    inst = scn.instances
    if inst is not None:
        count = len(inst) if isinstance(inst, list) else inst.generate.n
        if count < scn.heights:
            raise _FieldError(("instances",), f"{count} instance(s) for {scn.heights} heights: one instance per height")
        if isinstance(inst, list) and not inst:
            raise _FieldError(("instances",), "an empty list: give case files or {generate: ...}")
        from .instances import InstanceError, check_instances

        try:
            check_instances(scn)
        except InstanceError as exc:
            raise _FieldError(exc.field or ("instances",), exc.detail) from None
    names = set(scn.delegate_names) | set(normals)
    for i, f in enumerate(scn.network.faults):
        for sub, n in f.nodes():
            if n not in names:
                raise _FieldError(("network", "faults", i) + sub, f"unknown node {n!r}")
        try:
            f.build()
        except ConfigError as exc:
            msg = str(exc)
            fld = msg.split(":", 1)[0].split(".")[-1] if ":" in msg else ""
            path = ("network", "faults", i) + ((fld,) if fld in FaultSpec.model_fields else ())
            raise _FieldError(path, msg) from None
    try:
        scn.network.build_latency()
        from poso_sim.sim.latency import as_latency

        as_latency(scn.network.build_latency(), "latency")
    except ConfigError as exc:
        raise _FieldError(("network", "latency"), str(exc)) from None


def _check_refs(scn: Scenario, where: tuple[Any, ...], refs: Any) -> None:
    if refs is None:
        return
    if not isinstance(refs, list):
        raise _FieldError(where, f"expected a list of node names or ids, got {refs!r}")
    for i, r in enumerate(refs):
        try:
            n = scn.node_ref(r)
        except ValueError as exc:
            raise _FieldError(where + (i,), str(exc)) from None
        if n not in scn.delegate_ids:
            raise _FieldError(where + (i,), f"{n!r} is not a delegate")


def _check_behaviour(scn: Scenario, where: tuple[Any, ...], key: str, val: Any) -> None:
    def label(v: Any, w: tuple[Any, ...]) -> None:
        if v not in LABELS:
            raise _FieldError(w, f"unknown payload label {v!r} (known: {', '.join(LABELS)})")

    if key in REFERENCE_KEYS:
        _check_refs(scn, where, val)
    elif key == "equivocate":
        if val is True:
            return
        if not isinstance(val, list) or not val:
            raise _FieldError(where, "expected a list of payload labels")
        for i, v in enumerate(val):
            label(v, where + (i,))
    elif key == "forged_multipliers":
        if val not in (None, True, "all"):
            _check_refs(scn, where, val)
    elif key in ("leader_sends", "trick_error"):
        if not isinstance(val, dict):
            raise _FieldError(where, "expected a mapping with 'label' and 'targets'")
        extra = set(val) - {"label", "targets"}
        if extra:
            raise _FieldError(where + (sorted(extra)[0],), "unexpected field")
        if key == "leader_sends" and "label" not in val:
            raise _FieldError(where, "'label' is required")
        if "label" in val:
            label(val["label"], where + ("label",))
        _check_refs(scn, where + ("targets",), val.get("targets"))
    elif key == "delay":
        secs = val.get("seconds") if isinstance(val, dict) else val
        if isinstance(val, dict):
            extra = set(val) - {"seconds", "targets"}
            if extra:
                raise _FieldError(where + (sorted(extra)[0],), "unexpected field")
            _check_refs(scn, where + ("targets",), val.get("targets"))
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not (0 <= secs < math.inf):
            raise _FieldError(where, f"expected seconds >= 0, got {secs!r}")
    elif key == "crash":
        if isinstance(val, dict):
            extra = set(val) - {"at_time", "after_events"}
            if extra:
                raise _FieldError(where + (sorted(extra)[0],), "unexpected field")
        elif isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
            raise _FieldError(where, f"expected a time >= 0 or {{at_time, after_events}}, got {val!r}")
    elif key == "silence":
        if not isinstance(val, bool):
            raise _FieldError(where, "expected true or false")
    elif key == "replay":
        if isinstance(val, bool):
            return
        if not isinstance(val, dict):
            raise _FieldError(where, "expected true or a mapping with 'from_height', 'claim', 'targets'")
        extra = set(val) - {"from_height", "claim", "targets"}
        if extra:
            raise _FieldError(where + (sorted(extra)[0],), "unexpected field")
        fh = val.get("from_height", 2)
        if isinstance(fh, bool) or not isinstance(fh, int) or fh < 2:
            raise _FieldError(where + ("from_height",), f"expected a height >= 2, got {fh!r}")
        if val.get("claim", "own") not in ("own", "current"):
            raise _FieldError(where + ("claim",), f"expected 'own' or 'current', got {val.get('claim')!r}")
        _check_refs(scn, where + ("targets",), val.get("targets"))


# ----------------------------------------------------------------------------------------- YAML + line marks
def _marks(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = path + (str(k.value),)
            out[key] = k.start_mark.line + 1
            _marks(v, key, out)
            out[key] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _marks(v, path + (str(i),), out)


def _locate(loc: Sequence[Any], marks: Mapping[tuple[str, ...], int]) -> tuple[int | None, str]:
    """Line and dotted field name of a pydantic / semantic location (skipping pydantic's union tags)."""
    cur: tuple[str, ...] = ()
    shown: list[Any] = []
    for el in loc:
        cand = cur + (str(el),)
        if cand in marks:
            cur = cand
            shown.append(el)
        elif not shown or isinstance(el, int) or str(el) in Scenario.model_fields or str(el) in FaultSpec.model_fields:
            # a field that is absent from the file (e.g. missing): name it, line of its parent
            if isinstance(el, str) and (el.startswith(("function-", "list[", "dict[", "tuple[")) or "[" in el):
                continue
            if isinstance(el, str) and el in ("int", "str", "float", "bool", "none", "literal", "union", "constant",
                                               "uniform", "lognormal", "mean_sd"):
                continue
            shown.append(el)
            break
    field = ""
    for el in shown:
        field += f"[{el}]" if isinstance(el, int) else (("." if field else "") + str(el))
    return marks.get(cur), field or "(top level)"


def _fail(where: str, line: int | None, field: str, msg: str) -> ScenarioError:
    at = f"{where}, line {line}" if line is not None else where
    return ScenarioError(f"{at}: {field}: {msg}")


def parse_scenario(text: str, where: str = "<string>", *, defaults: Mapping[str, Any] | None = None) -> Scenario:
    """Parse and validate a scenario (poso_sim format, or the reference's legacy format if it has `nodes:`)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _fail(where, line, "(syntax)", f"invalid YAML: {problem}") from None
    if data is None:
        raise _fail(where, 1, "(top level)", "empty scenario file")
    if not isinstance(data, dict):
        raise _fail(where, 1, "(top level)", "expected a mapping of scenario fields")
    marks: dict[tuple[str, ...], int] = {}
    if root is not None:
        _marks(root, (), marks)
    if "nodes" in data and "delegates" not in data:
        return import_legacy(data, where, marks=marks, defaults=defaults)
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
        line, field = _locate(err["loc"], marks)
        msg = err["msg"]
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        more = len({e["loc"][:1] for e in errs}) - 1
        raise _fail(where, line, field, msg + (f" (and {more} more)" if more > 0 else "")) from None
    try:
        _check(scn)
    except _FieldError as exc:
        line, field = _locate(exc.path, marks)
        raise _fail(where, line, field, exc.msg) from None
    return scn


def load_scenario(path: str | os.PathLike[str], **defaults: Any) -> Scenario:
    """Load a scenario file (poso_sim format or the reference's legacy format)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc.strerror or exc}") from None
    scn = parse_scenario(text, str(p), defaults=defaults or None)
    if "name" not in (yaml.safe_load(text) or {}):
        scn = scn.with_(name=p.stem)
    return scn


# -------------------------------------------------------------------------------------------- legacy import
def import_legacy(
    data: Mapping[str, Any],
    where: str = "<legacy>",
    *,
    marks: Mapping[tuple[str, ...], int] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Scenario:
    """The reference's configuration (``nodes:`` keyed by numeric id, each with ``is_delegate``/``is_normal``
    and an optional ``leader_evil`` block of the six behaviour keys, values lists of node ids) as a Scenario.

    Delegate ids map to names by the reference's rule (8 -> C, 9 -> D, ... 12 -> G); nodes with ``is_normal``
    become normal nodes (at least the default three are kept). Unknown behaviour keys in ``leader_evil`` and
    ids that are not delegates are errors; ``delegate_evil``/``normal_evil`` blocks (price games the paper does
    not study) are refused with a clear message when set."""
    marks = marks or {}
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        line, _ = _locate(("nodes",), marks)
        raise _fail(where, line, "nodes", "expected a mapping of node id -> node settings")
    delegates: dict[str, int] = {}
    normals: list[str] = []
    for nid, cfg in nodes.items():
        loc = ("nodes", nid)
        if isinstance(nid, bool) or not isinstance(nid, int):
            line, field = _locate(loc, marks)
            raise _fail(where, line, field, f"node ids must be integers, got {nid!r}")
        cfg = cfg or {}
        if not isinstance(cfg, dict):
            line, field = _locate(loc, marks)
            raise _fail(where, line, field, "expected a mapping of node settings")
        for blk in ("delegate_evil", "normal_evil"):
            if cfg.get(blk):
                line, field = _locate(loc + (blk,), marks)
                raise _fail(where, line, field, "not supported (price manipulation is outside the PoSo scenarios)")
        if cfg.get("is_delegate"):
            delegates[legacy_name(nid)] = nid
        elif cfg.get("is_normal"):
            normals.append(f"N{nid}")
    if not delegates:
        line, _ = _locate(("nodes",), marks)
        raise _fail(where, line, "nodes", "no node has is_delegate: true")
    delegates = dict(sorted(delegates.items(), key=lambda kv: kv[1]))
    behaviours: dict[str, dict[str, Any]] = {}
    bmarks: dict[tuple[str, ...], int] = dict(marks)
    for nid, cfg in nodes.items():
        evil = (cfg or {}).get("leader_evil")
        if not evil:
            continue
        loc = ("nodes", str(nid), "leader_evil")
        if not isinstance(evil, dict):
            raise _fail(where, marks.get(loc), f"nodes.{nid}.leader_evil", "expected a mapping of behaviour keys")
        if nid not in delegates.values():
            raise _fail(where, marks.get(loc), f"nodes.{nid}.leader_evil", "only delegates can misbehave")
        opts = {k: v for k, v in evil.items() if v not in (None, [], False)}
        for k in evil:
            if k not in REFERENCE_KEYS:
                raise _fail(where, marks.get(loc + (str(k),)), f"nodes.{nid}.leader_evil.{k}",
                            f"unknown behaviour {k!r} (known: {', '.join(REFERENCE_KEYS)})")
        behaviours[legacy_name(nid)] = opts
        # semantic errors inside behaviours point at the legacy block's lines
        bmarks.setdefault(("behaviours",), marks.get(("nodes",), 1))
        for k, line in marks.items():
            if k[:3] == loc:
                bmarks[("behaviours", legacy_name(nid)) + k[3:]] = line
    params = (data.get("scene") or {}).get("params") or {}
    out: dict[str, Any] = {"name": Path(where).stem if where != "<legacy>" else "legacy", **(defaults or {})}
    out.update(delegates=delegates, behaviours=behaviours)
    if normals:
        out["normal_nodes"] = normals
    if isinstance(params, dict):
        for k in ("window", "heights", "seed"):
            if k in params:
                out[k] = params[k]
    return _validate(out, where, bmarks)


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
    """A Scenario, a packaged name (``scenario-1``...) or a file path -> Scenario."""
    if isinstance(spec, Scenario):
        return spec
    s = str(spec)
    entry = _data_dir() / f"{s}.yaml"
    if "/" not in s and not s.endswith((".yaml", ".yml")) and entry.is_file():
        return parse_scenario(entry.read_text(encoding="utf-8"), f"<package>/{s}.yaml", defaults=defaults or None)
    if not Path(s).exists():
        known = ", ".join(packaged_scenarios())
        raise ScenarioError(f"{s}: no such scenario file or packaged scenario (packaged: {known})")
    return load_scenario(s, **defaults)
