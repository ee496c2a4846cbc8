"""YAML with line numbers: parse a scenario file into data plus a map from field paths to lines, reject
duplicate keys (naming both lines), and turn a pydantic or semantic error location into ``line, field``.

Messages have the form ``<file>, line <n>: <field>: <message>``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import yaml

from poso_sim.errors import ScenarioError

from .schema import FaultSpec, Scenario

__all__ = ["load_yaml", "locate", "fail", "Marks"]

Marks = Mapping[tuple[str, ...], int]


def fail(where: str, line: int | None, field: str, msg: str) -> ScenarioError:
    """The error for a problem at ``line`` (None: unknown) in the field ``field`` of the file ``where``."""
    at = f"{where}, line {line}" if line is not None else where
    return ScenarioError(f"{at}: {field}: {msg}")


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for el in path:
        out += f"[{el}]" if isinstance(el, int) else (("." if out else "") + str(el))
    return out or "(top level)"


def _key_text(node: yaml.Node) -> str | None:
    """A mapping key's identity (scalars by their text: `8` and `"8"` name the same node), None if complex."""
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _marks(node: yaml.Node, path: tuple[str, ...], shown: tuple[Any, ...], out: dict[tuple[str, ...], int],
           where: str) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            text = _key_text(k)
            line = k.start_mark.line + 1
            if text is not None and text != "<<":
                if text in first:
                    raise fail(where, line, _dotted(shown + (text,)),
                               f"duplicate key {text!r} (first at line {first[text]}; a key may appear once)")
                first[text] = line
            key = path + (str(k.value),)
            out[key] = line
            _marks(v, key, shown + (str(k.value),), out, where)
            out[key] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _marks(v, path + (str(i),), shown + (i,), out, where)


def load_yaml(text: str, where: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse ``text`` (the contents of ``where``): the data and the line of every field path (strings: mapping
    keys and sequence indices). Raises ScenarioError for invalid YAML and for duplicate keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise fail(where, line, "(syntax)", f"invalid YAML: {problem}") from None
    marks: dict[tuple[str, ...], int] = {}
    if root is not None:
        _marks(root, (), (), marks, where)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # e.g. a bad tag: composing passed, constructing did not
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise fail(where, line, "(syntax)", f"invalid YAML: {problem}") from None
    return data, marks


_TYPE_TAGS = ("int", "str", "float", "bool", "none", "literal", "union", "constant", "uniform", "lognormal",
              "mean_sd")


def locate(loc: Sequence[Any], marks: Marks) -> tuple[int | None, str]:
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
            if isinstance(el, str) and el in _TYPE_TAGS:
                continue
            shown.append(el)
            break
    return marks.get(cur), _dotted(shown)
