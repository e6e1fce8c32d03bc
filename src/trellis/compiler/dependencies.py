"""Which facts about a proxy each part of the compiled output reads: the xDS cache's keys.

Proxies that would get identical config share one compiled copy (DESIGN §3). A key must name
every input of the output it stands for (STYLE: cache keys name every input), so this module is
the one place that says, part by part, what a generator reads from the proxy; the PushContext
version is added by the cache. The heavy outbound parts (one entry per service) read only the
proxy's type, namespace, the Sidecar resource that scopes it (model/sidecar_scope.py: chosen
by namespace and labels, so its identity stands for those labels) and the labels VirtualService
`sourceLabels` select on (plus, with tracing on, the service name and sampling its HCMs get:
compiler/tracing.py); everything else
(inbound listeners and clusters, gateways, secrets) is keyed on the whole proxy.

A generator that starts reading another proxy fact must change its key here; the tests in
tests/unit/test_compile_cache.py check that each fact misses the cache and that merged parts
equal a fresh compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf.message import Message

from trellis.compiler import compile_resources
from trellis.compiler.clusters import (
    build_inbound_clusters,
    build_service_clusters,
    build_special_clusters,
)
from trellis.compiler.endpoints import build_service_endpoints
from trellis.compiler.incremental import ReuseCache
from trellis.compiler.listeners import (
    build_outbound_listeners,
    build_virtual_inbound,
    build_virtual_outbound,
)
from trellis.compiler.locality import eds_proxy_labels
from trellis.compiler.routes import build_service_virtual_host, build_sidecar_route_configs
from trellis.compiler.telemetry import access_log_plan
from trellis.compiler.tracing import HcmTracing, hcm_tracing_for
from trellis.model import xds_types
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Service

KeyFn = Callable[[Proxy, PushContext], Hashable]
_T = TypeVar("_T")


class Reuse(Protocol):
    """Build one piece of a part (`build(push)`), or take it from the cache across versions
    (compiler/incremental.py): `key` names the piece within its part, `inputs` are what it
    reads besides the PushContext and the part's proxy facts."""

    def __call__(
        self, key: Hashable, inputs: tuple[object, ...], build: Callable[[PushContext], _T]
    ) -> _T: ...


BuildFn = Callable[[Proxy, PushContext, Reuse], Mapping[str, Message]]


@dataclass(frozen=True, slots=True)
class OutputPart:
    """One slice of a type's resources: what it depends on and how to build it."""

    name: str
    key: KeyFn
    build_pieces: BuildFn

    def build(
        self, proxy: Proxy, push: PushContext, reuse: Reuse | None = None
    ) -> Mapping[str, Message]:
        """The part's resources; `reuse` may hand back pieces kept from earlier versions."""
        return self.build_pieces(proxy, push, reuse or _pieces(None, push, self.name))


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
    plus the proxy's type and interception mode (special clusters), and which Sidecar
    resource scopes it (its egress hosts; the Sidecar is chosen by namespace and labels)."""
    return (_facts(proxy, without=_NOT_READ_BY_OUTBOUND), push.sidecar_scope(proxy).key)


def endpoint_scope(proxy: Proxy, push: PushContext) -> Hashable:
    """Outbound endpoints: as `namespace_scope` plus the proxy's locality labels and the
    labels `failoverPriority` compares (locality priorities and weights are relative to the
    calling proxy: compiler/locality.py)."""
    return (namespace_scope(proxy, push), eds_proxy_labels(proxy.labels, push))


def outbound_scope(proxy: Proxy, push: PushContext) -> Hashable:
    """Outbound routes and listeners: as `namespace_scope` (short names, exportTo,
    sourceNamespace, DestinationRule hash policies) plus the labels `sourceLabels` read."""
    keys = push.source_label_keys
    selected = tuple(sorted((k, v) for k, v in proxy.labels.items() if k in keys))
    logging = access_log_plan(proxy, push, server=False)  # Telemetry accessLogging
    return (namespace_scope(proxy, push), selected, _trace_identity(proxy, push), logging)


def _trace_identity(proxy: Proxy, push: PushContext) -> HcmTracing | None:
    """With tracing on, outbound HCMs name the workload's service (`app` label, else name) and
    its sampling (Telemetry by namespace/labels): the key holds exactly what they read, so
    proxies of one app still share and proxies of different apps do not."""
    return hcm_tracing_for(proxy, push)


def _by_name(messages: list[Message]) -> dict[str, Message]:
    return {str(getattr(m, "name")): m for m in messages}  # noqa: B009 (protos name themselves)


def _outbound_clusters(proxy: Proxy, push: PushContext, reuse: Reuse) -> Mapping[str, Message]:
    merged: dict[str, Message] = {}
    for service in push.outbound_services(proxy):  # per service: one VS/DR change, one piece
        build = partial(_service_clusters, proxy, service)
        merged.update(reuse(_service_key(service), (service,), build))
    merged.update(reuse("special", (), partial(_special_clusters, proxy)))
    return merged


def _service_key(service: Service) -> Hashable:
    return (service.hostname, service.namespace, service.vip)


def _service_clusters(proxy: Proxy, service: Service, push: PushContext) -> dict[str, Message]:
    return _by_name(list(build_service_clusters(proxy, push, service)))


def _special_clusters(proxy: Proxy, push: PushContext) -> dict[str, Message]:
    return _by_name(list(build_special_clusters(proxy, push.mesh)))


def _outbound_endpoints(proxy: Proxy, push: PushContext, reuse: Reuse) -> Mapping[str, Message]:
    merged: dict[str, Message] = {}
    for service in push.outbound_services(proxy):
        build = partial(_service_endpoints, proxy, service)
        merged.update(reuse(_service_key(service), (service,), build))
    return merged


def _service_endpoints(proxy: Proxy, service: Service, push: PushContext) -> dict[str, Message]:
    return dict(build_service_endpoints(proxy, push, service))


def _outbound_routes(proxy: Proxy, push: PushContext, reuse: Reuse) -> Mapping[str, Message]:
    """Route configurations assembled per version from virtual hosts kept per service."""

    def virtual_host(
        proxy: Proxy, push: PushContext, service: Service, port: int
    ) -> rc.VirtualHost:
        build = partial(_service_virtual_host, proxy, service, port)
        return reuse((_service_key(service), port), (service,), build)

    return build_sidecar_route_configs(proxy, push, virtual_host)


def _service_virtual_host(
    proxy: Proxy, service: Service, port: int, push: PushContext
) -> rc.VirtualHost:
    return build_service_virtual_host(proxy, push, service, port)


def _inbound_clusters(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
    return _by_name(list(build_inbound_clusters(proxy, push)))


def _virtual_listeners(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
    return _by_name(
        [
            build_virtual_outbound(push.mesh, push.outbound_policy(proxy)),
            build_virtual_inbound(proxy, push),
        ]
    )


def _outbound_listeners(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
    return _by_name(list(build_outbound_listeners(proxy, push)))


def _whole(build: Callable[[Proxy, PushContext], Mapping[str, Message]]) -> BuildFn:
    """A part kept as one piece: reused across versions while everything it read holds."""

    def build_whole(proxy: Proxy, push: PushContext, reuse: Reuse) -> Mapping[str, Message]:
        return reuse("whole", (), partial(build, proxy))

    return build_whole


def _whole_type(type_url: str) -> OutputPart:
    def build(proxy: Proxy, push: PushContext) -> Mapping[str, Message]:
        return compile_resources(proxy, push, type_url)

    return OutputPart("all", whole_proxy, _whole(build))


# Captured sidecars only. Merged in this order, later parts winning a name, exactly as
# build_clusters/build_listeners do.
_SIDECAR_PARTS: dict[str, tuple[OutputPart, ...]] = {
    xds_types.CLUSTER: (
        OutputPart("outbound", namespace_scope, _outbound_clusters),
        OutputPart("inbound", whole_proxy, _whole(_inbound_clusters)),
    ),
    xds_types.ENDPOINT: (OutputPart("outbound", endpoint_scope, _outbound_endpoints),),
    xds_types.LISTENER: (
        OutputPart("virtual", whole_proxy, _whole(_virtual_listeners)),
        OutputPart("outbound", outbound_scope, _whole(_outbound_listeners)),
    ),
    xds_types.ROUTE: (OutputPart("outbound", outbound_scope, _outbound_routes),),
}


def output_parts(proxy: Proxy, type_url: str) -> tuple[OutputPart, ...]:
    """The parts whose merged output is `compile_resources(proxy, push, type_url)`; sidecars
    without capture (proxy_mode.py) and gateways are compiled whole, per proxy."""
    if proxy.type == ProxyType.SIDECAR and proxy.captured and type_url in _SIDECAR_PARTS:
        return _SIDECAR_PARTS[type_url]
    return (_whole_type(type_url),)


SharedCache = dict[tuple[int, str, str, Hashable], Mapping[str, Message]]


def generate_shared(
    proxy: Proxy,
    push: PushContext,
    type_url: str,
    cache: SharedCache,
    reuse: ReuseCache | None = None,
) -> Mapping[str, Message]:
    """`compile_resources`, with each part built once per push version and per distinct key
    in `cache` (the caller owns it, clears it, and locks around it). With `reuse`, the pieces
    of a part are also kept across versions while what they read is unchanged, and an output
    equal to the last one is that very object (so the xDS layer recognises it without
    packing it again). The result and its protos are shared: read only."""
    outputs: list[Mapping[str, Message]] = []
    if reuse is not None:
        reuse.advance(push)
    for part in output_parts(proxy, type_url):
        part_key = part.key(proxy, push)
        key = (push.version, type_url, part.name, part_key)
        output = cache.get(key)
        if output is None:
            pieces = _pieces(reuse, push, (type_url, part.name, part_key))
            output = part.build(proxy, push, pieces)
            if reuse is not None:
                output = reuse.stable((type_url, part.name, part_key), output)
            cache[key] = output
        outputs.append(output)
    if reuse is not None:
        return reuse.merged(tuple(outputs))
    merged: dict[str, Message] = {}
    for output in outputs:
        merged.update(output)
    return merged


def _pieces(cache: ReuseCache | None, push: PushContext, part: Hashable) -> Reuse:
    def reuse(key: Hashable, inputs: tuple[object, ...], build: Callable[[PushContext], _T]) -> _T:
        if cache is None:
            return build(push)
        return cache.get((part, key), push, inputs, build)

    return reuse
