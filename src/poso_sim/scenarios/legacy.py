"""The reference implementation's scenario format (``nodes:`` keyed by numeric id with ``leader_evil`` blocks),
translated into poso_sim's scenario fields with the legacy file's line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .schema import REFERENCE_KEYS, legacy_name
from .yaml_locator import fail, locate

__all__ = ["legacy_fields"]


def legacy_fields(
    data: Mapping[str, Any],
    where: str = "<legacy>",
    *,
    marks: Mapping[tuple[str, ...], int] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """The scenario fields (and their lines) of the reference's configuration (``nodes:`` keyed by numeric id, each with ``is_delegate``/``is_normal``
    and an optional ``leader_evil`` block of the six behaviour keys, values lists of node ids) as a Scenario.

    Delegate ids map to names by the reference's rule (8 -> C, 9 -> D, ... 12 -> G); nodes with ``is_normal``
    become normal nodes (at least the default three are kept). Unknown behaviour keys in ``leader_evil`` and
    ids that are not delegates are errors; ``delegate_evil``/``normal_evil`` blocks (price games the paper does
    not study) are refused with a clear message when set. Validation is the caller's
    (:func:`poso_sim.scenarios.model.import_legacy` does both)."""
    marks = marks or {}
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        line, _ = locate(("nodes",), marks)
        raise fail(where, line, "nodes", "expected a mapping of node id -> node settings")
    delegates: dict[str, int] = {}
    normals: list[str] = []
    for nid, cfg in nodes.items():
        loc = ("nodes", nid)
        if isinstance(nid, bool) or not isinstance(nid, int):
            line, field = locate(loc, marks)
            raise fail(where, line, field, f"node ids must be integers, got {nid!r}")
        cfg = cfg or {}
        if not isinstance(cfg, dict):
            line, field = locate(loc, marks)
            raise fail(where, line, field, "expected a mapping of node settings")
        for blk in ("delegate_evil", "normal_evil"):
            if cfg.get(blk):
                line, field = locate(loc + (blk,), marks)
                raise fail(where, line, field, "not supported (price manipulation is outside the PoSo scenarios)")
        if cfg.get("is_delegate"):
            delegates[legacy_name(nid)] = nid
        elif cfg.get("is_normal"):
            normals.append(f"N{nid}")
    if not delegates:
        line, _ = locate(("nodes",), marks)
        raise fail(where, line, "nodes", "no node has is_delegate: true")
    delegates = dict(sorted(delegates.items(), key=lambda kv: kv[1]))
    behaviours: dict[str, dict[str, Any]] = {}
    bmarks: dict[tuple[str, ...], int] = dict(marks)
    for nid, cfg in nodes.items():
        evil = (cfg or {}).get("leader_evil")
        if not evil:
            continue
        loc = ("nodes", str(nid), "leader_evil")
        if not isinstance(evil, dict):
            raise fail(where, marks.get(loc), f"nodes.{nid}.leader_evil", "expected a mapping of behaviour keys")
        if nid not in delegates.values():
            raise fail(where, marks.get(loc), f"nodes.{nid}.leader_evil", "only delegates can misbehave")
        opts = {k: v for k, v in evil.items() if v not in (None, [], False)}
        for k in evil:
            if k not in REFERENCE_KEYS:
                raise fail(where, marks.get(loc + (str(k),)), f"nodes.{nid}.leader_evil.{k}",
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
    return out, bmarks


