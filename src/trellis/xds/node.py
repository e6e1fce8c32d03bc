"""Who is asking: turn an Envoy node (Istio-style id + metadata) into a `Proxy`.

The node id is `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local` (DESIGN §4); labels and the
service account come from node metadata the way Istio's agent sends them (LABELS,
SERVICE_ACCOUNT, NAMESPACE, NAME, INTERCEPTION_MODE; APP_HOST is Trellis's own). Metadata wins
over what the id implies for NAME/NAMESPACE only when the id leaves them out; a contradiction is
an error, not a guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from trellis.errors import TrellisError
from trellis.model.proxy import InterceptionMode, Proxy, ProxyType

_DOMAIN_SUFFIX = ".svc.cluster.local"


class MalformedNode(TrellisError):
    """The node id or metadata does not describe a proxy; the stream is refused."""

    def __init__(self, node_id: str, reason: str) -> None:
        self.node_id = node_id
        self.reason = reason
        super().__init__(
            f"node id {node_id!r}: {reason}; expected "
            "TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local with TYPE sidecar or router"
        )


def proxy_from_node(node: base_pb2.Node) -> Proxy:
    """Parse the proxy identity from an xDS request's node."""
    fields = _split_id(node.id)
    meta = node.metadata.fields
    proxy_type = _proxy_type(node.id, fields[0])
    ip = _ip(node.id, fields[1])
    name, namespace = _name_and_namespace(node.id, fields[2], fields[3])
    _check_meta_agrees(node.id, "NAME", _meta_str(meta, "NAME"), name)
    _check_meta_agrees(node.id, "NAMESPACE", _meta_str(meta, "NAMESPACE"), namespace)
    return Proxy(
        type=proxy_type,
        ip=ip,
        name=name,
        namespace=namespace,
        labels=_labels(node.id, meta),
        service_account=_meta_str(meta, "SERVICE_ACCOUNT") or "default",
        interception=_interception(node.id, _meta_str(meta, "INTERCEPTION_MODE")),
        app_host=_ip(node.id, _meta_str(meta, "APP_HOST") or "127.0.0.1"),
    )


def _interception(node_id: str, text: str) -> InterceptionMode:
    """Istio's INTERCEPTION_MODE; absent means REDIRECT, as in Istio."""
    try:
        return InterceptionMode(text or InterceptionMode.REDIRECT.value)
    except ValueError:
        allowed = ", ".join(m.value for m in InterceptionMode)
        raise MalformedNode(node_id, f"INTERCEPTION_MODE {text!r} is not one of {allowed}") from None


def _split_id(node_id: str) -> list[str]:
    fields = node_id.split("~")
    if len(fields) != 4:
        raise MalformedNode(node_id, f"has {len(fields)} '~'-separated fields, not 4")
    return fields


def _proxy_type(node_id: str, text: str) -> ProxyType:
    try:
        return ProxyType(text)
    except ValueError:
        raise MalformedNode(node_id, f"unknown proxy type {text!r}") from None


def _ip(node_id: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise MalformedNode(node_id, f"{text!r} is not an IP address") from None


def _name_and_namespace(node_id: str, pod: str, domain: str) -> tuple[str, str]:
    name, dot, namespace = pod.rpartition(".")
    if not dot or not name or not namespace:
        raise MalformedNode(node_id, f"{pod!r} is not NAME.NAMESPACE")
    if domain != namespace + _DOMAIN_SUFFIX:
        raise MalformedNode(node_id, f"domain {domain!r} is not {namespace}{_DOMAIN_SUFFIX}")
    return name, namespace


def _meta_str(meta: Mapping[str, struct_pb2.Value], key: str) -> str:
    value = meta.get(key)
    if value is None or value.WhichOneof("kind") != "string_value":
        return ""
    return str(value.string_value)


def _check_meta_agrees(node_id: str, key: str, meta_value: str, from_id: str) -> None:
    if meta_value and meta_value != from_id:
        raise MalformedNode(node_id, f"metadata {key}={meta_value!r} contradicts the id")


def _labels(node_id: str, meta: Mapping[str, struct_pb2.Value]) -> dict[str, str]:
    value = meta.get("LABELS")
    if value is None:
        return {}
    if value.WhichOneof("kind") != "struct_value":
        raise MalformedNode(node_id, "metadata LABELS is not a struct")
    labels: dict[str, str] = {}
    struct: struct_pb2.Struct = value.struct_value
    for key, item in struct.fields.items():
        if item.WhichOneof("kind") != "string_value":
            raise MalformedNode(node_id, f"label {key!r} is not a string")
        labels[key] = item.string_value
    return labels
