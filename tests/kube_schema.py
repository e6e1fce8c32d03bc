"""Schema validation of rendered Kubernetes objects with kubernetes-validate (Kubernetes 1.30).

Strict mode: an unknown field is an error, as `kubectl apply --validate=strict` makes it.
An object whose kind has no schema is an error too: nothing is skipped silently.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.30.0"


def schema_problem(obj: dict[str, Any]) -> str | None:
    """None when `obj` is valid against Kubernetes 1.30's schema, else a readable reason."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as err:
        return f"no schema for {obj.get('apiVersion')}/{obj.get('kind')}: {err}"
    except kubernetes_validate.ValidationError as err:
        return f"{'.'.join(str(p) for p in err.path)}: {err.message}"
    return None


def assert_valid(objects: list[dict[str, Any]]) -> None:
    problems = []
    for obj in objects:
        problem = schema_problem(obj)
        if problem:
            name = (obj.get("metadata") or {}).get("name")
            problems.append(f"{obj.get('kind')} {name}: {problem}")
    assert not problems, "\n".join(problems)
