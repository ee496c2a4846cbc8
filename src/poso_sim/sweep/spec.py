"""Sweep files: a declarative grid (product) or random sample of scenario parameters, and the deterministic
mapping ``(sweep, case index) -> scenario``.

A sweep is a base scenario plus `parameters`. Each parameter value is one of

* a constant (``window: 5.3``);
* a list of alternatives (``window: [5.3, 7.7]``): an axis of the product, or a uniform choice in random mode;
* ``{choice: [...]}``: the same, explicit (the only way to vary ``latency`` and ``behaviours``, whose plain values
  are lists themselves);
* ``{randint: [lo, hi]}`` (integers, both ends included; ``dishonest`` accepts ``max`` = the largest f with
  N >= 2f + 1) or ``{uniform: [lo, hi]}``: drawn per case (in both modes).

Case ``i`` is built from a random stream keyed by ``(sweep seed, i)`` only, so a case never depends on the worker,
on the other cases or on how many cases the sweep has; in product mode ``i`` is also decoded (mixed radix, last
axis fastest) into the grid point.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from poso_sim.errors import PosoError, ScenarioError
from poso_sim.scenarios.model import Scenario, generated_name, parse_scenario, resolve_scenario

__all__ = [
    "SweepError",
    "SweepSpec",
    "Parameters",
    "CaseSpec",
    "load_sweep",
    "parse_sweep",
    "resolve_sweep",
    "packaged_sweeps",
    "scenario_yaml",
    "BEHAVIOUR_KINDS",
]


class SweepError(PosoError):
    """A sweep file is invalid (the message names the file and the field)."""


#: every behaviour kind the generator can assign (the reference's six and poso_sim's generic attackers)
BEHAVIOUR_KINDS = (
    "follower_ignore",
    "follower_error",
    "follower_feasible",
    "follower_collusion",
    "follower_trick_ignore",
    "follower_trick_error",
    "equivocate",
    "forged_multipliers",
    "leader_sends",
    "trick_error",
    "delay",
    "crash",
    "silence",
)
BAD_LABELS = ("tampered", "feasible", "forged")

# parameters whose plain value is itself a list (vary them with {choice: [...]})
_STRUCTURED = ("latency", "behaviours")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameters(_Strict):
    """What varies from case to case (see the module docstring for the value forms)."""

    delegates: Any = 5
    dishonest: Any = {"randint": [0, "max"]}  # f; "max" = (N-1)//2; "base" = the base scenario's committee and behaviours
    leader_dishonest: Any = 0.5  # probability that the first leader is one of the dishonest (when f >= 1)
    behaviours: Any = list(BEHAVIOUR_KINDS)  # the pool each dishonest delegate draws its kinds from
    behaviours_per_node: Any = {"randint": [1, 2]}
    signatures: Any = True
    latency: Any = 0.05
    loss: Any = 0.0
    duplicate: Any = 0.0
    reorder: Any = 0.0
    reorder_delay: Any = 0.5
    partition: Any = 0.0  # probability of one partition isolating a random minority for a while
    crash: Any = 0.0  # probability that one dishonest delegate's node crashes (kernel fault) for a while
    window: Any = 5.3
    heights: Any = 1
    normal_nodes: Any = 3
    verify_cost: Any = 0.0
    solve_time: Any = 0.0
    rotate_heights: Any = False
    seed: Any = None  # the simulation seed; default: derived from (sweep seed, case index)


class SweepSpec(_Strict):
    """A sweep file."""

    name: str = "sweep"
    description: str = ""
    mode: Literal["product", "random"] = "random"
    cases: int | None = Field(None, ge=1, le=10_000_000)
    repeat: int = Field(1, ge=1)  # product mode: cases per grid point
    seed: int = 0
    payloads: Literal["stub", "real"] = "stub"
    base: Any = None  # a packaged scenario name, a path (relative to the sweep file) or inline scenario fields
    parameters: Parameters = Field(default_factory=Parameters)
    signature_memo: bool = True  # memoise Ed25519 verification across simulated nodes of one process
    source: str | None = Field(None, exclude=True)

    @field_validator("base")
    @classmethod
    def _base_kind(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, (str, dict)):
            raise ValueError("expected a scenario name, a path or a mapping of scenario fields")
        return v

    # ------------------------------------------------------------------------------------------- grid
    def axes(self) -> list[tuple[str, list[Any]]]:
        """The product axes (parameters given as alternatives), in declaration order."""
        out = []
        for name in Parameters.model_fields:
            alts = _alternatives(name, getattr(self.parameters, name))
            if alts is not None:
                out.append((name, alts))
        return out

    @property
    def n_cases(self) -> int:
        if self.mode == "product":
            total = math.prod(len(a) for _, a in self.axes()) * self.repeat
            return min(total, self.cases) if self.cases else total
        if self.cases is None:
            raise SweepError(f"{self.source or '<sweep>'}: cases: required in random mode")
        return self.cases

    def base_scenario(self) -> Scenario:
        b = self.base
        if b is None:
            return Scenario()
        if isinstance(b, dict):
            return parse_scenario(yaml.safe_dump(b), f"{self.source or '<sweep>'}: base")
        path = Path(b)
        if self.source and not path.is_absolute() and not str(self.source).startswith("<"):
            cand = Path(self.source).parent / path
            if cand.exists():
                path = cand
        return resolve_scenario(str(path) if path.exists() else b)

    def case(self, index: int) -> "CaseSpec":
        """Case `index` (0-based): deterministic from the sweep and the index only."""
        n = self.n_cases
        if not 0 <= index < n:
            raise SweepError(f"case {index}: out of range (the sweep has {n} cases, 0..{n - 1})")
        return _make_case(self, index)

    def iter_cases(self, limit: int | None = None) -> Iterator["CaseSpec"]:
        n = self.n_cases if limit is None else min(limit, self.n_cases)
        base = self.base_scenario()
        axes = self.axes()
        for i in range(n):
            yield _make_case(self, i, base, axes)


@dataclass
class CaseSpec:
    """One case: its index, the scenario it runs and the drawn parameters (flat, for the results table)."""

    index: int
    scenario: Scenario
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.scenario.seed

    def to_yaml(self) -> str:
        return scenario_yaml(self.scenario, header=f"sweep case {self.index}")


# ------------------------------------------------------------------------------------------ value forms
def _alternatives(name: str, v: Any) -> list[Any] | None:
    """The alternatives of a parameter value (None if it is a constant or a per-case draw)."""
    if isinstance(v, dict) and set(v) == {"choice"}:
        alts = v["choice"]
        if not isinstance(alts, list) or not alts:
            raise SweepError(f"parameters.{name}.choice: expected a non-empty list")
        return list(alts)
    if isinstance(v, list) and name not in _STRUCTURED:
        if not v:
            raise SweepError(f"parameters.{name}: expected a non-empty list of alternatives")
        return list(v)
    return None


def _draw(name: str, v: Any, rng: random.Random, *, hi_max: int | None = None) -> Any:
    """A per-case value of a non-axis parameter (constants pass through)."""
    if isinstance(v, dict) and len(v) == 1:
        (kind, arg), = v.items()
        if kind in ("randint", "uniform"):
            if not isinstance(arg, list) or len(arg) != 2:
                raise SweepError(f"parameters.{name}.{kind}: expected [lo, hi]")
            lo, hi = arg
            if hi == "max" or lo == "max":
                if hi_max is None:
                    raise SweepError(f"parameters.{name}.{kind}: 'max' is only meaningful for dishonest")
                lo = hi_max if lo == "max" else lo
                hi = hi_max if hi == "max" else hi
            try:
                if kind == "randint":
                    lo, hi = int(lo), int(hi)
                    return rng.randint(lo, max(lo, hi))
                return rng.uniform(float(lo), float(hi))
            except (TypeError, ValueError):
                raise SweepError(f"parameters.{name}.{kind}: expected numbers, got {arg!r}") from None
    if v == "max" and hi_max is not None:
        return hi_max
    return v


def _case_rng(spec: SweepSpec, index: int, purpose: str = "case") -> random.Random:
    h = hashlib.sha256(f"poso-sim/sweep/{spec.seed}/{purpose}/{index}".encode()).digest()
    return random.Random(int.from_bytes(h[:8], "little"))


# -------------------------------------------------------------------------------------- case generation
def _make_case(spec: SweepSpec, index: int, base: Scenario | None = None,
               axes: list[tuple[str, list[Any]]] | None = None) -> CaseSpec:
    where = spec.source or "<sweep>"
    try:
        return _build_case(spec, index, base, axes)
    except SweepError as exc:
        if str(exc).startswith(where):
            raise
        raise SweepError(f"{where}: case {index}: {exc}") from None


def _build_case(spec: SweepSpec, index: int, base: Scenario | None = None,
                axes: list[tuple[str, list[Any]]] | None = None) -> CaseSpec:
    """Case ``index``: draw its parameters (in a fixed order from the case's own generator, so a case depends on
    the sweep and its index only) and build the scenario from the base scenario's fields (``base`` and ``axes``:
    the sweep's, when the caller has them already)."""
    base = base or spec.base_scenario()
    rng = _case_rng(spec, index)
    draw = _Draws(spec, base, _axis_values(spec, index, rng, axes), rng)
    com = _committee(spec.parameters, base, draw, rng)
    pool = _behaviour_pool(draw) if not com.keep_base else []
    window = float(draw("window"))
    behaviours, kinds_of = _behaviours(com, base, pool, draw, rng, window)
    normals = draw("normal_nodes")
    normal_names = [f"N{i + 1}" for i in range(int(normals))] if isinstance(normals, int) else list(normals)
    latency = draw("latency")
    net = _faults(base, draw, rng, com, normal_names, window)
    seed_v = draw("seed")
    if seed_v is None:
        seed_v = int.from_bytes(hashlib.sha256(f"poso-sim/sweep/{spec.seed}/seed/{index}".encode()).digest()[:4], "little")
    heights = int(draw("heights"))
    fields = {
        "name": f"{spec.name}-case-{index:05d}",
        "description": f"case {index} of sweep {spec.name!r} (seed {spec.seed})",
        "delegates": com.delegates_field,
        "normal_nodes": normals,
        "window": window,
        "heights": heights,
        "seed": int(seed_v),
        "signatures": bool(draw("signatures")),
        "verify_cost": draw("verify_cost"),
        "solve_time": float(draw("solve_time")),
        "rotate_heights": bool(draw("rotate_heights")),
        "network": {"latency": latency, "faults": net.faults},
        "behaviours": behaviours,
        "source": f"{spec.source or '<sweep>'}: case {index}",
    }
    try:
        scn = base.with_(**fields)  # validated as a scenario file is, without a detour through YAML text
    except ScenarioError as exc:
        raise SweepError(str(exc)) from None
    params = {
        "N": com.n,
        "f": com.f,
        "dishonest": ",".join(com.bad),
        "leader_dishonest": bool(com.bad) and com.bad[0] == com.names[0],
        "kinds": ";".join(f"{d}:{'+'.join(kinds_of.get(d, []))}" for d in com.bad),
        "signatures": scn.signatures,
        "latency": _latency_text(latency),
        "loss": net.loss,
        "duplicate": net.duplicate,
        "reorder": net.reorder,
        "partition": net.partition,
        "crash": net.crashed,
        "window": window,
        "heights": heights,
        "seed": scn.seed,
    }
    return CaseSpec(index, scn, params)


def _axis_values(spec: SweepSpec, index: int, rng: random.Random,
                 axes: list[tuple[str, list[Any]]] | None = None) -> dict[str, Any]:
    """The value of each product axis for case ``index``: its grid point (product mode) or a random pick."""
    raw: dict[str, Any] = {}
    axes = spec.axes() if axes is None else axes
    if spec.mode == "product":
        point = index // spec.repeat
        picks = []
        for size in reversed([len(a) for _, a in axes]):
            picks.append(point % size)
            point //= size
        picks.reverse()
        for (name, alts), k in zip(axes, picks):
            raw[name] = alts[k]
    else:
        for name, alts in axes:
            raw[name] = alts[rng.randrange(len(alts))]
    return raw


class _Draws:
    """``draw(name)``: a case's value of a parameter - its axis value, else the file's value or draw, else (for
    parameters the file does not set) the base scenario's value."""

    def __init__(self, spec: SweepSpec, base: Scenario, raw: dict[str, Any], rng: random.Random) -> None:
        self.params = spec.parameters
        self.raw = raw
        self.rng = rng
        self.given = spec.parameters.model_fields_set
        self.from_base = {
            "delegates": len(base.delegate_names), "window": base.window, "heights": base.heights,
            "normal_nodes": base.normal_nodes, "verify_cost": base.verify_cost, "solve_time": base.solve_time,
            "rotate_heights": base.rotate_heights, "signatures": base.signatures, "latency": base.network.latency,
        }

    def __call__(self, name: str, **kw: Any) -> Any:
        if name in self.raw:
            return _draw(name, self.raw[name], self.rng, **kw)
        if name not in self.given and name in self.from_base:
            v = self.from_base[name]
            return list(v) if isinstance(v, tuple) else v
        return _draw(name, getattr(self.params, name), self.rng, **kw)


@dataclass
class _Committee:
    names: list[str]
    n: int
    bad: list[str]
    f: int
    delegates_field: Any
    keep_base: bool


def _committee(P: Parameters, base: Scenario, draw: _Draws, rng: random.Random) -> _Committee:
    """The delegates and which of them are dishonest (``dishonest: base`` keeps the base scenario's)."""
    if P.dishonest == "base":
        bad = base.dishonest
        return _Committee(base.delegate_names, len(base.delegate_names), bad, len(bad), base.delegates, True)
    n = int(draw("delegates"))
    if not 1 <= n <= 1000:
        raise SweepError(f"parameters.delegates: need 1..1000 delegates, got {n}")
    fmax = (n - 1) // 2
    f = draw("dishonest", hi_max=fmax)
    f = fmax if f == "max" else int(f)
    if not 0 <= f <= fmax:
        raise SweepError(f"parameters.dishonest: need 0 <= f <= (N-1)//2 = {fmax} for N = {n}, got {f}")
    names = [generated_name(i) for i in range(n)]
    lead_p = float(draw("leader_dishonest"))
    if f >= 1 and rng.random() < lead_p:
        bad = [names[0]] + rng.sample(names[1:], f - 1)
    else:
        bad = rng.sample(names[1:], f) if f else []
    return _Committee(names, n, [m for m in names if m in set(bad)], f, n, False)


def _behaviour_pool(draw: _Draws) -> list[str]:
    pool = draw("behaviours")
    pool = list([pool] if isinstance(pool, str) else pool or [])
    for k in pool:
        if k not in BEHAVIOUR_KINDS:
            raise SweepError(f"parameters.behaviours: unknown behaviour kind {k!r} (known: {', '.join(BEHAVIOUR_KINDS)})")
    return pool


def _behaviours(com: _Committee, base: Scenario, pool: list[str], draw: _Draws, rng: random.Random,
                window: float) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Each dishonest delegate's behaviours (kinds drawn from ``pool``, options per kind) and their kinds."""
    behaviours: dict[str, dict[str, Any]] = {}
    kinds_of: dict[str, list[str]] = {}
    if com.keep_base:
        behaviours = {str(k): dict(v) for k, v in base.behaviours.items()}
        for k, v in base.behaviours.items():
            if v:
                kinds_of[base.node_ref(int(k) if str(k).isdigit() else k)] = list(v)
        return behaviours, kinds_of
    for d in com.bad:
        k = int(draw("behaviours_per_node")) if pool else 0
        kinds = rng.sample(pool, min(max(k, 1), len(pool))) if pool else []
        kinds.sort(key=BEHAVIOUR_KINDS.index)
        behaviours[d] = {kind: _behaviour_options(kind, d, com.names, com.bad, window, rng) for kind in kinds}
        kinds_of[d] = kinds
    return behaviours, kinds_of


@dataclass
class _Network:
    faults: list[dict[str, Any]]
    loss: float
    duplicate: float
    reorder: float
    partition: str
    crashed: str


def _faults(base: Scenario, draw: _Draws, rng: random.Random, com: _Committee, normal_names: list[str],
            window: float) -> _Network:
    """The base scenario's faults plus the drawn loss, duplication, reordering, partition and crash."""
    faults: list[dict[str, Any]] = [f.model_dump(mode="json", exclude_none=True) for f in base.network.faults]
    loss = float(draw("loss"))
    dup = float(draw("duplicate"))
    reo = float(draw("reorder"))
    reo_delay = float(draw("reorder_delay"))
    if loss > 0:
        faults.append({"type": "loss", "p": round(loss, 6)})
    if dup > 0:
        faults.append({"type": "duplicate", "p": round(dup, 6)})
    if reo > 0:
        faults.append({"type": "reorder", "p": round(reo, 6), "extra_delay": reo_delay})
    part = ""
    if (part_p := float(draw("partition"))) > 0 and rng.random() < part_p:
        everyone = com.names + normal_names
        size = rng.randint(1, max(1, (com.n - 1) // 2))
        cut = rng.sample(com.names, size) + (rng.sample(normal_names, 1) if normal_names and rng.random() < 0.3 else [])
        t0 = round(rng.uniform(0.0, 2.0 * window), 3)
        t1 = round(t0 + rng.uniform(0.5 * window, 3.0 * window), 3)
        cut = [m for m in everyone if m in set(cut)]
        faults.append({"type": "partition", "isolate": cut, "t0": t0, "t1": t1})
        part = f"{'+'.join(cut)}@[{t0:g},{t1:g})"
    crashed = ""
    crash_p = float(draw("crash"))
    if com.bad and crash_p > 0 and rng.random() < crash_p:
        who = rng.choice(com.bad)
        at = round(rng.uniform(0.0, 2.0 * window), 3)
        rec = round(at + rng.uniform(window, 4.0 * window), 3) if rng.random() < 0.5 else None
        fault = {"type": "crash", "node": who, "at": at}
        if rec is not None:
            fault["recover_at"] = rec
        faults.append(fault)
        crashed = who
    return _Network(faults, loss, dup, reo, part, crashed)


def _latency_text(lat: Any) -> str:
    if isinstance(lat, (int, float)):
        return f"{float(lat):g}"
    if isinstance(lat, (list, tuple)):
        return "mean_sd(" + ",".join(f"{float(x):g}" for x in lat) + ")"
    if isinstance(lat, dict) and len(lat) == 1:
        (k, v), = lat.items()
        if isinstance(v, (list, tuple)):
            return f"{k}(" + ",".join(f"{float(x):g}" for x in v) + ")"
        return f"{k}({v})"
    return str(lat)


def _subset(rng: random.Random, pool: Sequence[str], *, at_least: int = 1) -> list[str]:
    if not pool:
        return []
    k = rng.randint(min(at_least, len(pool)), len(pool))
    chosen = set(rng.sample(list(pool), k))
    return [p for p in pool if p in chosen]


def _behaviour_options(kind: str, me: str, names: list[str], bad: list[str], window: float, rng: random.Random) -> Any:
    others = [m for m in names if m != me]
    if kind in ("follower_ignore", "follower_trick_ignore"):
        return _subset(rng, others)
    if kind in ("follower_error", "follower_feasible"):
        tg = _subset(rng, others)
        if rng.random() < 0.3:
            tg = [m for m in names if m in set(tg) | {me}]
        return tg
    if kind == "follower_collusion":
        partners = [m for m in bad if m != me]
        return _subset(rng, partners) if partners and rng.random() < 0.7 else _subset(rng, others)
    if kind == "follower_trick_error":
        return _subset(rng, others)
    if kind == "equivocate":
        labels = ["optimal"] + rng.sample(BAD_LABELS, rng.randint(1, len(BAD_LABELS)))
        rng.shuffle(labels)
        return labels
    if kind == "forged_multipliers":
        return True if rng.random() < 0.5 else _subset(rng, others)
    if kind == "leader_sends":
        return {"label": rng.choice(BAD_LABELS), "targets": _subset(rng, others)}
    if kind == "trick_error":
        return {"label": rng.choice(BAD_LABELS), "targets": _subset(rng, others)}
    if kind == "delay":
        return {"seconds": round(rng.uniform(0.2 * window, 2.0 * window), 3)}
    if kind == "crash":
        if rng.random() < 0.5:
            return {"at_time": round(rng.uniform(0.0, 2.0 * window), 3)}
        return {"after_events": rng.randint(0, 40)}
    if kind == "silence":
        return True
    raise SweepError(f"unknown behaviour kind {kind!r}")


# --------------------------------------------------------------------------------------- YAML in and out
def scenario_yaml(scn: Scenario, header: str | None = None) -> str:
    """A scenario as a YAML file that `poso-sim run` (and `load_scenario`) reads back to the same scenario."""
    data = scn.model_dump(mode="json", exclude={"source"})
    data["network"]["faults"] = [
        {k: v for k, v in f.items() if v is not None and not (k == "t0" and v == 0.0)} for f in data["network"]["faults"]
    ]
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    return (f"# {header}\n" if header else "") + text


def parse_sweep(text: str, where: str = "<string>") -> SweepSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}, line {mark.line + 1}" if mark is not None else where
        raise SweepError(f"{at}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{where}: expected a mapping of sweep fields")
    try:
        spec = SweepSpec.model_validate({**data, "source": where})
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = "unknown field" if e.get("type") == "extra_forbidden" else e["msg"]
        raise SweepError(f"{where}: {loc}: {msg}") from None
    # fail early: the base scenario and the first case must build
    try:
        spec.base_scenario()
        if spec.n_cases:
            spec.case(0)
    except (ScenarioError, SweepError) as exc:
        if str(exc).startswith(where):
            raise SweepError(str(exc)) from None
        raise SweepError(f"{where}: {exc}") from None
    return spec


def load_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(f"{p}: cannot read sweep file: {exc.strerror or exc}") from None
    return parse_sweep(text, str(p))


def _data_dir() -> Any:
    return resources.files("poso_sim.sweep") / "data"


def packaged_sweeps() -> dict[str, str]:
    """name -> first line of the description of the sweeps shipped in the package."""
    out = {}
    for entry in sorted(_data_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            desc = str(data.get("description", "")).strip()
            out[entry.name[:-5]] = desc.splitlines()[0] if desc else ""
    return out


def resolve_sweep(spec: str | os.PathLike[str] | SweepSpec) -> SweepSpec:
    """A SweepSpec, a packaged sweep name (`poso-sim sweep --list`) or a path."""
    if isinstance(spec, SweepSpec):
        return spec
    s = str(spec)
    entry = _data_dir() / f"{s}.yaml"
    if "/" not in s and not s.endswith((".yaml", ".yml")) and entry.is_file():
        return parse_sweep(entry.read_text(encoding="utf-8"), f"<package>/sweep/{s}.yaml")
    if not Path(s).exists():
        raise SweepError(f"{s}: no such sweep file or packaged sweep (packaged: {', '.join(packaged_sweeps())})")
    return load_sweep(s)

