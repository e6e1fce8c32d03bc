"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), for the fake API server's PATCH."""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def apply_json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """add, replace, remove and test; raises KeyError/IndexError/ValueError when one fails."""
    doc = copy.deepcopy(target)
    for op in ops:
        parent, last = _parent(doc, str(op["path"]))
        kind = op["op"]
        if kind == "test":
            if _get(parent, last) != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif kind == "remove":
            _get(parent, last)
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind == "replace":
            _get(parent, last)
            _set(parent, last, copy.deepcopy(op["value"]), insert=False)
        elif kind == "add":
            _set(parent, last, copy.deepcopy(op["value"]), insert=True)
        else:
            raise ValueError(f"unsupported op {kind}")
    return doc


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in path.lstrip("/").split("/")]


def _parent(doc: Any, path: str) -> tuple[Any, str]:
    tokens = _tokens(path)
    node = doc
    for token in tokens[:-1]:
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node, tokens[-1]


def _get(parent: Any, last: str) -> Any:
    return parent[int(last)] if isinstance(parent, list) else parent[last]


def _set(parent: Any, last: str, value: Any, *, insert: bool) -> None:
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif insert:
            parent.insert(int(last), value)
        else:
            parent[int(last)] = value
    else:
        if not insert and last not in parent:
            raise KeyError(last)
        parent[last] = value
