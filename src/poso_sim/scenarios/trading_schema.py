"""Trading scenario files: the iterative market's hubs, delegates, round timing and the seven dishonest keys.

A trading scenario is a YAML file with a top-level ``hubs:`` (that is what tells it from a dispatch scenario):

```yaml
name: trading-12
case: trading            # the trading case (poso_sim.cases.trading)
hour: 12                 # the hour whose tariff, grid cap and loads the market clears
hubs: 12                 # a count (hubs 1..n) or a list of hub ids
delegates: [10, 11, 12]  # hubs that are also delegates (ids); a count n = the last n hubs
round_timeout: 1.0       # virtual seconds per round (a delegate's round timer)
max_rounds: 2000         # the round limit: the prices of that round carry the end flag
silent_rounds: 3         # a hub silent this many rounds in a row is excluded
network: {latency: 0.01} # as in dispatch scenarios (latency, faults)
behaviours:              # per hub id: the reference's keys
  11: {price_target: all, price_rate: 1.2}
variants:                # named runs of the same market: `trading-12:<variant>`
  liar: {description: ..., behaviours: {...}}
```

Errors are one `ScenarioError` naming the file, the line and the field, like the dispatch scenarios'.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poso_sim.errors import ScenarioError
from poso_sim.protocol import market_behaviours as MB

from .schema import FieldError, NetworkSpec
from .yaml_locator import Marks, fail, locate

__all__ = ["TradingScenario", "VariantSpec", "hub_name", "validate_trading", "TRADING_KEYS", "is_trading_data"]

TRADING_KEYS = MB.MARKET_KEYS
_HUB_TARGETS = ("price_ignore", "price_target", "broadcast_collusion")  # keys whose targets are hubs
_RATES = {"demand_target": "demand_rate", "price_target": "price_rate", "broadcast_collusion": "broadcast_rate"}


def hub_name(hub_id: int) -> str:
    """The node name of hub `hub_id` (``H1`` ... ``H12``)."""
    return f"H{hub_id}"


def is_trading_data(data: Any) -> bool:
    """Whether loaded YAML data is a trading scenario (it has a top-level ``hubs:``)."""
    return isinstance(data, dict) and "hubs" in data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantSpec(_Strict):
    """A named run of a trading scenario: its own description and behaviours (and optional overrides)."""

    description: str = ""
    behaviours: dict[str, dict[str, Any]] = Field(default_factory=dict)
    network: NetworkSpec | None = None
    max_rounds: int | None = Field(None, ge=1, le=1_000_000)
    signatures: bool | None = None


class TradingScenario(_Strict):
    """A market of hubs clearing prices by iteration, some hubs also delegates (see the module docstring)."""

    name: str = "trading"
    description: str = ""
    case: str = "trading"
    hour: int = Field(12, ge=1, le=24)
    hubs: Union[int, list[int]]
    delegates: Union[int, list[int]] = 3
    round_timeout: float = Field(1.0, gt=0)
    respond_time: float = Field(0.0, ge=0)
    max_rounds: int = Field(2000, ge=1, le=1_000_000)
    silent_rounds: int = Field(3, ge=1)
    tolerance: float = Field(1e-3, gt=0)
    seed: int = 0
    signatures: bool = True
    network: NetworkSpec = Field(default_factory=lambda: NetworkSpec(latency=0.01))
    behaviours: dict[str, dict[str, Any]] = Field(default_factory=dict)
    variants: dict[str, VariantSpec] = Field(default_factory=dict)
    variant: str | None = None
    source: str | None = Field(None, exclude=True)

    # ---- derived
    @property
    def hub_ids(self) -> list[int]:
        return list(range(1, self.hubs + 1)) if isinstance(self.hubs, int) else list(self.hubs)

    @property
    def delegate_ids(self) -> list[int]:
        d = self.delegates
        return self.hub_ids[-d:] if isinstance(d, int) else list(d)

    @property
    def hub_names(self) -> list[str]:
        return [hub_name(i) for i in self.hub_ids]

    @property
    def delegate_names(self) -> list[str]:
        return [hub_name(i) for i in self.delegate_ids]

    def node_ref(self, ref: Any) -> str:
        """A hub given by id (``3``, ``"3"``) or name (``H3``) -> its node name (ValueError if unknown)."""
        if isinstance(ref, bool):
            raise ValueError(f"expected a hub id or name, got {ref!r}")
        text = str(ref)
        if text.isdigit():
            text = hub_name(int(text))
        if text in self.hub_names:
            return text
        raise ValueError(f"unknown hub {ref!r} (hubs: {', '.join(map(str, self.hub_ids))})")

    def targets(self, owner: str, key: str, refs: Any) -> list[str]:
        pool = self.hub_names if key in _HUB_TARGETS else self.delegate_names
        if refs == "all":
            return list(pool)
        if refs == "others":
            return [n for n in pool if n != owner]
        return [self.node_ref(r) for r in (refs if isinstance(refs, list) else [refs])]

    @property
    def dishonest(self) -> list[str]:
        named = {self.node_ref(k) for k, v in self.behaviours.items() if v}
        return [n for n in self.hub_names if n in named]

    def with_variant(self, variant: str) -> "TradingScenario":
        """This scenario with the named variant's description, behaviours and overrides."""
        v = self.variants.get(variant)
        if v is None:
            known = ", ".join(self.variants) or "none"
            raise ScenarioError(f"{self.source or self.name}: no variant {variant!r} (variants: {known})")
        changes: dict[str, Any] = {"variant": variant, "name": f"{self.name}:{variant}",
                                   "description": v.description or self.description, "behaviours": v.behaviours}
        for fld in ("network", "max_rounds", "signatures"):
            if getattr(v, fld) is not None:
                changes[fld] = getattr(v, fld)
        return self.model_copy(update=changes)

    def with_(self, **changes: Any) -> "TradingScenario":
        data = {**self.model_dump(), "source": self.source, **changes}
        return validate_trading(data, self.source or self.name, {})


# ------------------------------------------------------------------------------------------ semantic checks
def _check_refs(scn: TradingScenario, where: tuple[Any, ...], key: str, val: Any) -> None:
    if val in ("all", "others"):
        return
    if not isinstance(val, list):
        raise FieldError(where, f"expected a list of hub ids, 'all' or 'others', got {val!r}")
    pool = scn.hub_names if key in _HUB_TARGETS else scn.delegate_names
    for i, r in enumerate(val):
        try:
            n = scn.node_ref(r)
        except ValueError as exc:
            raise FieldError(where + (i,), str(exc)) from None
        if n not in pool:
            raise FieldError(where + (i,), f"{n!r} is not a delegate")


def _check_behaviours(scn: TradingScenario, behaviours: Mapping[str, Any], at: tuple[Any, ...]) -> None:
    for key, opts in behaviours.items():
        try:
            who = scn.node_ref(key)
        except ValueError as exc:
            raise FieldError(at + (key,), str(exc)) from None
        if not isinstance(opts, dict):
            raise FieldError(at + (key,), "expected a mapping of behaviour keys")
        for bkey, val in opts.items():
            where = at + (key, bkey)
            if bkey not in TRADING_KEYS:
                raise FieldError(where, f"unknown behaviour {bkey!r} (known: {', '.join(TRADING_KEYS)})")
            if bkey in MB.DELEGATE_KEYS and who not in scn.delegate_names:
                raise FieldError(where, f"{who} is not a delegate; only delegates have {bkey}")
            if bkey.endswith("_rate"):
                if isinstance(val, bool) or not isinstance(val, (int, float)) or not (math.isfinite(val) and val > 0):
                    raise FieldError(where, f"expected a positive number, got {val!r}")
            else:
                _check_refs(scn, where, bkey, val)
        for head, rate in _RATES.items():
            if (head in opts) != (rate in opts):
                missing = rate if head in opts else head
                raise FieldError(at + (key, head if head in opts else rate), f"needs {missing!r} too")
        if "broadcast_collusion" in opts and "broadcast_target" not in opts:
            raise FieldError(at + (key, "broadcast_collusion"), "needs 'broadcast_target' too")
        if "broadcast_target" in opts and "broadcast_collusion" not in opts:
            raise FieldError(at + (key, "broadcast_target"), "needs 'broadcast_collusion' too")


def check_trading(scn: TradingScenario) -> None:
    """Checks beyond the schema; raises FieldError(path, message)."""
    ids = scn.hub_ids
    if isinstance(scn.hubs, int) and not 1 <= scn.hubs <= 1000:
        raise FieldError(("hubs",), f"need 1..1000 hubs, got {scn.hubs}")
    for i, h in enumerate(ids):
        if h < 1 or ids.index(h) != i:
            raise FieldError(("hubs", i), f"hub ids must be distinct and >= 1, got {h}")
    d = scn.delegates
    if isinstance(d, int) and not 1 <= d <= len(ids):
        raise FieldError(("delegates",), f"need 1..{len(ids)} delegates (they are hubs), got {d}")
    if isinstance(d, list):
        if not d:
            raise FieldError(("delegates",), "at least one delegate is needed")
        for i, h in enumerate(d):
            if h not in ids:
                raise FieldError(("delegates", i), f"delegate {h} is not a hub of this market")
            if d.index(h) != i:
                raise FieldError(("delegates", i), f"duplicate delegate {h}")
    if scn.case != "trading" and not scn.case.endswith(".json"):
        raise FieldError(("case",), f"unknown trading case {scn.case!r}: 'trading' or a trading case file (.json)")
    _check_behaviours(scn, scn.behaviours, ("behaviours",))
    for name, v in scn.variants.items():
        if not name or ":" in name or "/" in name:
            raise FieldError(("variants", name), "a variant name must be non-empty, without ':' or '/'")
        _check_behaviours(scn, v.behaviours, ("variants", name, "behaviours"))
    try:
        scn.network.build_latency()
        [f.build() for f in scn.network.faults]
    except Exception as exc:  # noqa: BLE001 - the dispatch schema's own messages, one line
        raise FieldError(("network",), str(exc)) from None
    names = set(scn.hub_names)
    for i, f in enumerate(scn.network.faults):
        for sub, n in f.nodes():
            if n not in names:
                raise FieldError(("network", "faults", i) + sub, f"unknown node {n!r} (nodes are H1, H2, ...)")


def validate_trading(data: Mapping[str, Any], where: str, marks: Marks) -> TradingScenario:
    """Validate loaded YAML data as a trading scenario; a problem is one ScenarioError at file:line."""
    data = dict(data)
    for fld in ("behaviours",):
        if isinstance(data.get(fld), dict):
            data[fld] = {str(k): v for k, v in data[fld].items()}
    if isinstance(data.get("variants"), dict):
        data["variants"] = {str(k): ({**v, "behaviours": {str(a): b for a, b in v["behaviours"].items()}}
                                     if isinstance(v, dict) and isinstance(v.get("behaviours"), dict) else v)
                            for k, v in data["variants"].items()}
    try:
        scn = TradingScenario.model_validate({**data, "source": where})
    except ValidationError as exc:
        err = exc.errors()[0]
        line, field = locate(err["loc"], marks)
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise fail(where, line, field, msg) from None
    try:
        check_trading(scn)
    except FieldError as exc:
        line, field = locate(exc.path, marks)
        raise fail(where, line, field, exc.msg) from None
    return scn
