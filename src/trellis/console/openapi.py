"""`/api/openapi.json`: the console API (docs/console-api.md) as OpenAPI 3.0, for clients and
for property-based testing (schemathesis) against a running console."""

from __future__ import annotations

from typing import Any

from trellis.api.kinds import ALL_KINDS

JSON = "application/json"
PUBLIC = ("/api/auth/info", "/api/authenticate", "/api/openapi.json")
YAML = "application/yaml"

# (method, path, summary, query parameters, request body type or "", write?)
_OPERATIONS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("get", "/api/auth/info", "Login strategy and the current session", (), ""),
    ("post", "/api/authenticate", "Exchange a token for a session cookie", (), "form"),
    ("get", "/api/logout", "Clear the session cookie", (), ""),
    ("get", "/api/status", "Console and mesh status", (), ""),
    ("get", "/api/openapi.json", "This document", (), ""),
    ("get", "/api/namespaces", "Namespaces with workloads or services", (), ""),
    (
        "get",
        "/api/namespaces/graph",
        "Traffic graph (Kiali's shape)",
        ("namespaces", "graphType", "duration", "injectServiceNodes"),
        "",
    ),
    ("get", "/api/namespaces/{ns}/workloads", "Workloads of a namespace", ("rateInterval",), ""),
    ("get", "/api/namespaces/{ns}/workloads/{name}", "One workload", ("rateInterval",), ""),
    ("get", "/api/namespaces/{ns}/services", "Services of a namespace", ("rateInterval",), ""),
    ("get", "/api/namespaces/{ns}/services/{name}", "One service", ("rateInterval",), ""),
    ("get", "/api/namespaces/{ns}/apps", "Apps of a namespace", ("rateInterval",), ""),
    ("get", "/api/namespaces/{ns}/apps/{name}", "One app", ("rateInterval",), ""),
    (
        "get",
        "/api/namespaces/{ns}/{kind}/{name}/metrics",
        "Request, error and latency series",
        ("direction", "duration", "step", "rateInterval"),
        "",
    ),
    (
        "get",
        "/api/namespaces/{ns}/{kind}/{name}/traces",
        "Traces from the trace store",
        ("limit", "lookback"),
        "",
    ),
    ("get", "/api/namespaces/{ns}/pods/{pod}/config_dump", "Envoy config summaries", (), ""),
    ("get", "/api/namespaces/{ns}/pods/{pod}/logs", "Log tail", ("container", "tailLines"), ""),
    ("get", "/api/istio/config", "Istio config with validations", ("namespaces",), ""),
    ("post", "/api/istio/validate", "Validate YAML without storing it", ("namespace",), "yaml"),
    ("post", "/api/namespaces/{ns}/istio", "Create or update config (edit+)", (), "yaml"),
    (
        "get",
        "/api/namespaces/{ns}/istio/{kind}/{name}",
        "One resource, YAML and validation",
        (),
        "",
    ),
    ("put", "/api/namespaces/{ns}/istio/{kind}/{name}", "Replace a resource (edit+)", (), "yaml"),
    ("delete", "/api/namespaces/{ns}/istio/{kind}/{name}", "Delete a resource (edit+)", (), ""),
)

_ENUMS = {
    "graphType": ["app", "versionedApp", "workload", "service"],
    "direction": ["inbound", "outbound"],
    "container": ["app", "proxy"],
    "kind": ["workloads", "services", "apps"],
    "injectServiceNodes": ["true", "false"],
}
# {kind} under /istio/ is a config kind, not an entity kind; Service is Kubernetes, not Istio.
ISTIO_KINDS = [cls.KIND for cls in ALL_KINDS if cls.KIND != "Service"]
WRITES = frozenset({"post", "put", "delete"})


def _param(name: str, where: str, path: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if name == "kind" and "/istio/" in path:
        schema["enum"] = ISTIO_KINDS
    elif name in _ENUMS:
        schema["enum"] = _ENUMS[name]
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


def _body(kind: str) -> dict[str, Any]:
    if kind == "form":
        schema = {
            "type": "object",
            "properties": {"token": {"type": "string"}},
            "required": ["token"],
        }
        return {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    return {"required": True, "content": {YAML: {"schema": {"type": "string"}}}}


def _error(why: str) -> dict[str, Any]:
    return {
        "description": why,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _responses(method: str, path: str) -> dict[str, Any]:
    """Every status the server can answer for this operation (server.py's two middlewares)."""
    out: dict[str, Any] = {
        "200": {"description": "OK", "content": {JSON: {"schema": {}}}},
        "400": _error("a bad parameter or body, a token in the URL, or refused by trellisd"),
        "404": _error("no such entity, resource, pod or API path"),
    }
    if path not in PUBLIC or path == "/api/authenticate":
        out["401"] = _error("no valid token or session")
        out["403"] = _error("the role is not allowed here (or may not write)")
    if path not in PUBLIC:
        out["502"] = _error("trellisd or the runtime could not be reached or failed")
    if method in WRITES and path not in PUBLIC and path != "/api/istio/validate":
        out["409"] = _error("the change clashes with what is stored")
    if path == "/api/logout":
        out["204"] = {"description": "cookie cleared"}
    return out


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, summary, query, body in _OPERATIONS:
        params = [_param(p.strip("{}"), "path", path) for p in path.split("/") if p.startswith("{")]
        params += [_param(q, "query") for q in query]
        op: dict[str, Any] = {
            "summary": summary,
            "parameters": params,
            "responses": _responses(method, path),
        }
        if body:
            op["requestBody"] = _body(body)
        if path in PUBLIC:
            op["security"] = []
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Trellis console API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "trellis-session"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }
