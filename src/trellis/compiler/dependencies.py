"""Which facts about a proxy each part of the compiled output reads: the xDS cache's keys.

Proxies that would get identical config share one compiled copy (DESIGN §3). A key must name
every input of the output it stands for (STYLE: cache keys name every input), so this module is
the one place that says, part by part, what a generator reads from the proxy; the PushContext
version is added by the cache. The heavy outbound parts (one entry per service) read only the
proxy's type, namespace and the labels VirtualService `sourceLabels` select on (plus, with
tracing on, the service name and sampling its HCMs get: compiler/tracing.py); everything else
(inbound listeners and clusters, gateways, secrets) is keyed on the whole proxy.

A generator that starts reading another proxy fact must change its key here; the tests in
tests/unit/test_compile_cache.py check that each fact misses the cache and that merged parts
equal a fresh compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from trellis.compiler import compile_resources
from trellis.compiler.clusters import (
    build_inbound_clusters,
    build_outbound_clusters,
    build_special_clusters,
)
from trellis.compiler.endpoints import build_endpoints
from trellis.compiler.listeners import (
    build_outbound_listeners,
    build_virtual_inbound,
    build_virtual_outbound,
)
from trellis.compiler.routes import build_sidecar_route_configs
from trellis.compiler.tracing import HcmTracing, hcm_tracing_for
from trellis.model import xds_types
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext

KeyFn = Callable[[Proxy, PushContext], Hashable]
BuildFn = Callable[[Proxy, PushContext], Mapping[str, Message]]


@dataclass(frozen=True, slots=True)
class OutputPart:
    """One slice of a type's resources: what it depends on and how to build it."""

    name: str
    key: KeyFn
    build: BuildFn


# Proxy facts the outbound parts are known not to read. Keys are built from every *other*
# field of Proxy, so a field added to Proxy later is part of every key until proven unread.
_NOT_READ_BY_OUTBOUND = frozenset({"ip", "name", "service_account", "labels", "app_host"})


def _facts(proxy: Proxy, *, without: frozenset[str] = frozenset()) -> tuple[Hashable, ...]:
    return tuple(
        (f.name, _hashable(getattr(proxy, f.name)))
        for f in dataclasses.fields(proxy)
        if f.name not in without
    )


def _hashable(value: object) -> Hashable:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in value.items()))
    assert isinstance(value, Hashable), f"proxy fact {value!r} is not hashable"
    return value


def whole_proxy(proxy: Proxy, push: PushContext) -> Hashable:
    """Every fact a Proxy carries: for parts that depend on the proxy's own identity."""
    return _facts(proxy)


def namespace_scope(proxy: Proxy, push: PushContext) -> Hashable:
    """Outbound clusters and endpoints: DestinationRule lookup and exportTo by namespace,
    plus the proxy's type and interception mode (special clusters)."""
    return _facts(proxy, without=_NOT_READ_BY_OUTBOUND)


def outbound_scope(proxy: Proxy, push: PushContext) -> Hashable:
    """Outbound routes and listeners: as `namespace_scope` (short names, exportTo,
    sourceNamespace, DestinationRule hash policies) plus the labels `sourceLabels` read."""
    keys = push.source_label_keys
    selected = tuple(sorted((k, v) for k, v in proxy.labels.items() if k in keys))
    return (_facts(proxy, without=_NOT_READ_BY_OUTBOUND), selected, _trace_identity(proxy, push))


def _trace_identity(proxy: Proxy, push: PushContext) -> HcmTracing | None:
    """With tracing on, outbound HCMs name the workload's service (`app` label, else name) and
    its sampling (Telemetry by namespace/labels): the key holds exactly what they read, so
    proxies of one app still share and proxies of different apps do not."""
    return hcm_tracing_for(proxy, push)


def _by_name(messages: list[Message]) -> dict[str, Message]:
    return {str(getattr(m, "name")): m for m in messages}  # noqa: B009 (protos name themselves)


def _outbound_clusters(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
    return _by_name(
        [*build_outbound_clusters(proxy, push), *build_special_clusters(proxy, push.mesh)]
    )


def _inbound_clusters(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
    return _by_name(list(build_inbound_clusters(proxy, push)))


def _virtual_listeners(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
    return _by_name([build_virtual_outbound(push.mesh), build_virtual_inbound(proxy, push)])


def _outbound_listeners(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
    return _by_name(list(build_outbound_listeners(proxy, push)))


def _whole_type(type_url: str) -> OutputPart:
    def build(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
        return compile_resources(proxy, push, type_url)

    return OutputPart("all", whole_proxy, build)


# Captured sidecars only. Merged in this order, later parts winning a name, exactly as
# build_clusters/build_listeners do.
_SIDECAR_PARTS: dict[str, tuple[OutputPart, ...]] = {
    xds_types.CLUSTER: (
        OutputPart("outbound", namespace_scope, _outbound_clusters),
        OutputPart("inbound", whole_proxy, _inbound_clusters),
    ),
    xds_types.ENDPOINT: (OutputPart("outbound", namespace_scope, build_endpoints),),
    xds_types.LISTENER: (
        OutputPart("virtual", whole_proxy, _virtual_listeners),
        OutputPart("outbound", outbound_scope, _outbound_listeners),
    ),
    xds_types.ROUTE: (OutputPart("outbound", outbound_scope, build_sidecar_route_configs),),
}


def output_parts(proxy: Proxy, type_url: str) -> tuple[OutputPart, ...]:
    """The parts whose merged output is `compile_resources(proxy, push, type_url)`; sidecars
    without capture (proxy_mode.py) and gateways are compiled whole, per proxy."""
    if proxy.type == ProxyType.SIDECAR and proxy.captured and type_url in _SIDECAR_PARTS:
        return _SIDECAR_PARTS[type_url]
    return (_whole_type(type_url),)


SharedCache = dict[tuple[int, str, str, Hashable], Mapping[str, Message]]


def generate_shared(
    proxy: Proxy, push: PushContext, type_url: str, cache: SharedCache
) -> dict[str, Message]:
    """`compile_resources`, with each part built once per push version and per distinct key
    in `cache` (the caller owns it, clears it, and locks around it). The cached protos are
    shared between proxies: read only."""
    merged: dict[str, Message] = {}
    for part in output_parts(proxy, type_url):
        key = (push.version, type_url, part.name, part.key(proxy, push))
        output = cache.get(key)
        if output is None:
            output = cache[key] = part.build(proxy, push)
        merged.update(output)
    return merged
