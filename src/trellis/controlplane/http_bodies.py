"""Reading trellisd API request bodies: anything malformed is the caller's 4xx, never a 500.

Found by fuzzing the API against its OpenAPI document (openapi.yaml beside this module, served
as /openapi.json): bodies that were not JSON objects, and workload records with a missing IP or
ports that were not numbers, escaped the handlers as tracebacks.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from trellis.errors import TrellisError, ValidationError
from trellis.model.registry import Workload

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """trellisd's OpenAPI document, read once."""
    document: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text())
    return document


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a TrellisError (400) saying what is wrong."""
    raw = await request.read()
    try:
        body = json.loads(raw)  # bytes: invalid UTF-8 is a ValueError here, not a 500
    except ValueError as e:
        raise TrellisError(f"the request body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise TrellisError(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def workload_from_body(body: dict[str, Any], namespace: str, name: str) -> Workload:
    """A workload from PUT /workloads/{namespace}/{name}; ValidationError names the bad field."""
    ip = body.get("ip")
    try:
        ip = str(ipaddress.ip_address(ip if isinstance(ip, str) else ""))
    except ValueError:
        raise _invalid("ip", f"must be an IP address, got {ip!r}", namespace, name) from None
    labels = body.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise _invalid("labels", "must map label names to strings", namespace, name)
    ports = body.get("ports", [])
    if not isinstance(ports, list) or not all(_is_port(p) for p in ports):
        raise _invalid("ports", "must be a list of port numbers 1-65535", namespace, name)
    account = body.get("serviceAccount", "default")
    if not isinstance(account, str):
        raise _invalid("serviceAccount", "must be a string", namespace, name)
    if not isinstance(body.get("hasSidecar", True), bool):
        raise _invalid("hasSidecar", "must be true or false", namespace, name)
    return Workload(
        name=name,
        namespace=namespace,
        ip=ip,
        labels=dict(labels),
        service_account=account,
        has_sidecar=body.get("hasSidecar", True),
        ports=tuple(ports),
    )


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _invalid(field: str, reason: str, namespace: str, name: str) -> ValidationError:
    return ValidationError(reason, kind="workload", namespace=namespace, name=name, field=field)
