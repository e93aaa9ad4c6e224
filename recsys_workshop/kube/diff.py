"""Comparing two builds (overlay names or already built documents): a unified diff, or a table of fields.

:func:`diff_overlays` is what ``python -m recsys_workshop.kube diff`` prints; :func:`overlay_differences`
gives the same changes as :class:`Difference` rows a notebook can turn into a table.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recsys_workshop.kube.manifests import Manifest, kustomize_build, overlay_dir, resource_id


@dataclass(frozen=True)
class Difference:
    """One field that differs between two builds (``left``/``right`` is None where it is absent)."""

    resource: str
    path: str
    left: Any
    right: Any


def _canonical(docs: Iterable[Mapping[str, Any]]) -> list[Manifest]:
    return sorted((dict(d) for d in docs), key=resource_id)


def _to_yaml(docs: Iterable[Mapping[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(doc, sort_keys=True, default_flow_style=False) for doc in _canonical(docs))


def _build(side: str | Sequence[Mapping[str, Any]]) -> list[Manifest]:
    return kustomize_build(overlay_dir(side)) if isinstance(side, str) else [dict(d) for d in side]


def diff_overlays(
    left: str | Sequence[Mapping[str, Any]] = "kind",
    right: str | Sequence[Mapping[str, Any]] = "gke",
    context: int = 3,
    labels: tuple[str, str] | None = None,
) -> str:
    """Unified diff of two builds (overlay names or already built documents), resources in a stable order.

    The headers read ``overlays/<label>``: the overlay names, else ``labels``, else "left" and "right"."""
    left_docs, right_docs = _build(left), _build(right)
    names = [side if isinstance(side, str) else label for side, label in ((left, "left"), (right, "right"))]
    if labels is not None:
        names = list(labels)
    lines = difflib.unified_diff(
        _to_yaml(left_docs).splitlines(keepends=True),
        _to_yaml(right_docs).splitlines(keepends=True),
        fromfile=f"overlays/{names[0]}",
        tofile=f"overlays/{names[1]}",
        n=context,
    )
    return "".join(lines)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted.path: leaf value}; list items that have a unique "name" are keyed by it, not by index."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(node, list):
        names = [item.get("name") for item in node if isinstance(item, Mapping)]
        keyed = len(names) == len(node) and None not in names and len(set(names)) == len(names)
        out = {}
        for index, item in enumerate(node):
            out.update(_flatten(item, f"{prefix}[{names[index] if keyed else index}]"))
        return out or {prefix: []}
    return {prefix: node}


def overlay_differences(
    left: str | Sequence[Mapping[str, Any]] = "kind",
    right: str | Sequence[Mapping[str, Any]] = "gke",
    *,
    collapse: bool = False,
) -> list[Difference]:
    """Every field that differs between two builds, as a list a notebook can turn into a table.

    By default one row per leaf value. With ``collapse=True`` a part present on one side only (a whole
    resource, a TFJob's extra replica type, a new list) is one row that holds the part, whose path is that
    of the part (``""`` for a whole resource); fields present on both sides are compared leaf by leaf.
    """
    left_docs = {resource_id(d): d for d in _build(left)}
    right_docs = {resource_id(d): d for d in _build(right)}
    differences: list[Difference] = []
    for rid in sorted(left_docs.keys() | right_docs.keys()):
        if collapse:
            _tree_differences(rid, left_docs.get(rid), right_docs.get(rid), "", differences)
            continue
        a, b = _flatten(left_docs.get(rid, {})), _flatten(right_docs.get(rid, {}))
        for path in sorted(a.keys() | b.keys()):
            if a.get(path) != b.get(path):
                differences.append(Difference(rid, path, a.get(path), b.get(path)))
    return differences


def _by_name(node: Any) -> dict[str, Any] | None:
    """A list whose items all have a unique "name", as {name: item}; None for any other value."""
    if not isinstance(node, list) or not node:
        return None
    names = [item.get("name") if isinstance(item, Mapping) else None for item in node]
    if None in names or len(set(names)) != len(names):
        return None
    return dict(zip(names, node, strict=True))


def _tree_differences(rid: str, a: Any, b: Any, path: str, out: list[Difference]) -> None:
    """Append the differences between ``a`` and ``b`` to ``out``; a side that is absent (None) ends the
    descent, so a part present on one side only is one Difference. Paths look like :func:`_flatten`'s."""
    if a is None or b is None or a == b:
        if a != b:
            out.append(Difference(rid, path, a, b))
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(a.keys() | b.keys(), key=str):
            _tree_differences(rid, a.get(key), b.get(key), f"{path}.{key}" if path else str(key), out)
        return
    named_a, named_b = _by_name(a), _by_name(b)
    if named_a is not None and named_b is not None:
        for name in sorted(named_a.keys() | named_b.keys(), key=str):
            _tree_differences(rid, named_a.get(name), named_b.get(name), f"{path}[{name}]", out)
        return
    if isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            item_a = a[index] if index < len(a) else None
            item_b = b[index] if index < len(b) else None
            _tree_differences(rid, item_a, item_b, f"{path}[{index}]", out)
        return
    out.append(Difference(rid, path, a, b))
