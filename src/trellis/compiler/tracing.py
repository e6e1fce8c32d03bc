"""Tracing: Envoy's OpenTelemetry tracer on every HCM, exporting to the mesh's trace store.

Off unless the mesh config names the trace store (`MeshConfig.tracing_address`), so a mesh
without one compiles exactly as before. Spans are named like Istio's (`APP.NAMESPACE`), so a
Jaeger query for `productpage.default` finds the same traces it would in Istio.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import grpc_service_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.tracing.v3 import custom_tag_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from trellis.api.policy_scope import telemetry_for_workload
from trellis.api.telemetry import CustomTag, Tracing, WorkloadMode
from trellis.compiler.protos import duration, pack, socket_address
from trellis.compiler.traffic_policy import HTTP_PROTOCOL_OPTIONS
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext
from trellis.model.snapshot import MeshConfig

TRACING_CLUSTER = "tracing-otlp"
OPENTELEMETRY_TRACER = "envoy.tracers.opentelemetry"


class SpanTagSource(enum.Enum):
    LITERAL = "literal"
    HEADER = "header"
    ENVIRONMENT = "environment"


@dataclass(frozen=True, slots=True)
class SpanTag:
    """A Telemetry `customTags` entry: a literal, or read from a request header or the
    proxy's environment at request time (`default` when absent)."""

    name: str
    source: SpanTagSource
    value: str  # the literal, or the header / environment variable name
    default: str = ""


@dataclass(frozen=True, slots=True)
class HcmTracing:
    """What a proxy's HCMs trace with; hashable, so it can be part of a cache key."""

    service_name: str
    sampling: float  # percent of new requests
    custom_tags: tuple[SpanTag, ...] = ()


def hcm_tracing_for(proxy: Proxy, push: PushContext, *, server: bool = False) -> HcmTracing | None:
    """How the proxy's client-side (outbound, gateway) or `server`-side (inbound) HCMs trace:
    None when the mesh has no trace store or a Telemetry disables span reporting."""
    if not tracing_enabled(push.mesh):
        return None
    entry = _telemetry_tracing(proxy, push, server)
    if entry is not None and entry.disable_span_reporting:
        return None
    sampling = push.mesh.trace_sampling
    if entry is not None and entry.random_sampling_percentage is not None:
        sampling = entry.random_sampling_percentage
    tags = _span_tags(entry.custom_tags) if entry is not None else ()
    return HcmTracing(trace_service_name(proxy), sampling, tags)


def _span_tags(custom_tags: dict[str, CustomTag]) -> tuple[SpanTag, ...]:
    """Telemetry `customTags`, sorted by name so equal Telemetries give equal cache keys."""
    tags = []
    for name, tag in sorted(custom_tags.items()):
        if tag.literal is not None:
            tags.append(SpanTag(name, SpanTagSource.LITERAL, tag.literal.value))
        elif tag.header is not None:
            header = tag.header
            tags.append(
                SpanTag(name, SpanTagSource.HEADER, header.name, header.default_value or "")
            )
        elif tag.environment is not None:
            env = tag.environment
            tags.append(SpanTag(name, SpanTagSource.ENVIRONMENT, env.name, env.default_value or ""))
    return tuple(tags)


def _telemetry_tracing(proxy: Proxy, push: PushContext, server: bool) -> Tracing | None:
    """The first tracing entry for this side of the most specific Telemetry (workload,
    namespace, mesh in the root namespace) that has any; its unset fields fall back to the
    mesh config, not to a less specific Telemetry."""
    effective = telemetry_for_workload(
        push.telemetries,
        namespace=proxy.namespace,
        labels=proxy.labels,
        root_namespace=push.mesh.root_namespace,
    )
    wanted = WorkloadMode.SERVER if server else WorkloadMode.CLIENT
    for entry in effective.tracing:
        mode = entry.match.mode if entry.match else WorkloadMode.CLIENT_AND_SERVER
        if mode in (WorkloadMode.CLIENT_AND_SERVER, wanted):
            return entry
    return None


def trace_service_name(proxy: Proxy) -> str:
    """Istio's canonical service: the `app` label (else the workload name), dot, namespace."""
    return f"{proxy.labels.get('app') or proxy.name}.{proxy.namespace}"


def tracing_enabled(mesh: MeshConfig) -> bool:
    return bool(mesh.tracing_address)


def build_hcm_tracing(tracing: HcmTracing) -> hcm.HttpConnectionManager.Tracing:
    """Sample `tracing.sampling` percent of new traces. A request an upstream Envoy already
    sampled keeps that decision (Envoy marks it in the x-request-id it forwards); an app's
    `traceparent` alone does not override this percentage (docs/DECISIONS.md, Tracing)."""
    tracer = opentelemetry_pb2.OpenTelemetryConfig(
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=TRACING_CLUSTER),
            timeout=duration(1.0),
        ),
        service_name=tracing.service_name,
    )
    return hcm.HttpConnectionManager.Tracing(
        random_sampling=percent_pb2.Percent(value=tracing.sampling),
        spawn_upstream_span=wrappers_pb2.BoolValue(value=False),
        provider=http_tracer_pb2.Tracing.Http(name=OPENTELEMETRY_TRACER, typed_config=pack(tracer)),
        custom_tags=[build_custom_tag(tag) for tag in tracing.custom_tags],
    )


def build_custom_tag(tag: SpanTag) -> custom_tag_pb2.CustomTag:
    """Envoy evaluates header and environment tags itself, per span: no Python per request."""
    if tag.source is SpanTagSource.HEADER:
        header = custom_tag_pb2.CustomTag.Header(name=tag.value, default_value=tag.default)
        return custom_tag_pb2.CustomTag(tag=tag.name, request_header=header)
    if tag.source is SpanTagSource.ENVIRONMENT:
        env = custom_tag_pb2.CustomTag.Environment(name=tag.value, default_value=tag.default)
        return custom_tag_pb2.CustomTag(tag=tag.name, environment=env)
    literal = custom_tag_pb2.CustomTag.Literal(value=tag.value)
    return custom_tag_pb2.CustomTag(tag=tag.name, literal=literal)


def build_tracing_clusters(mesh: MeshConfig) -> list[cluster_pb2.Cluster]:
    """`tracing-otlp`: the trace store's OTLP/gRPC port (HTTP/2), static; none when off."""
    if not tracing_enabled(mesh):
        return []
    host, _, port = mesh.tracing_address.rpartition(":")
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(host, int(port)))
    )
    options = hpo.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.CopyFrom(
        protocol_pb2.Http2ProtocolOptions()
    )
    cluster = cluster_pb2.Cluster(
        name=TRACING_CLUSTER,
        type=cluster_pb2.Cluster.DiscoveryType.STATIC,
        connect_timeout=duration(mesh.connect_timeout_s),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=TRACING_CLUSTER,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return [cluster]
