"""Access logging and the Telemetry resource's logging and metrics settings per proxy.

Envoy's file logger with Istio's default TEXT format (istio-notes §2.2): users compare our logs
with Istio's task outputs line by line, so the field order matters. A Telemetry's accessLogging
turns logging off or filters it per workload and side; its metrics overrides travel to the
agent as listener metadata (docs/DECISIONS.md "Telemetry: access logging and metrics").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from trellis.api.policy_scope import EffectiveTelemetry, telemetry_for_workload
from trellis.api.telemetry import MetricsOverrides, TagOperation, WorkloadMode
from trellis.api.telemetry_expr import (
    StatusFilter,
    StatusOp,
    parse_status_filter,
    parse_tag_literal,
)
from trellis.compiler.peer_stats import add_inbound_peer_stats
from trellis.compiler.protos import pack
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol
from trellis.model.snapshot import MeshConfig
from trellis.telemetry.metric_config import (
    ALL_METRICS,
    DESTINATION,
    METRICS_METADATA_KEY,
    SOURCE,
    MetricOverride,
    MetricsConfig,
)

FILE_ACCESS_LOGGER = "envoy.access_loggers.file"

# Istio's default text access-log format, field for field.
_FIELDS = (
    "[%START_TIME%]",
    '"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"',
    "%RESPONSE_CODE%",
    "%RESPONSE_FLAGS%",
    "%RESPONSE_CODE_DETAILS%",
    "%CONNECTION_TERMINATION_DETAILS%",
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%"',
    "%BYTES_RECEIVED%",
    "%BYTES_SENT%",
    "%DURATION%",
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    '"%REQ(X-FORWARDED-FOR)%"',
    '"%REQ(USER-AGENT)%"',
    '"%REQ(X-REQUEST-ID)%"',
    '"%REQ(:AUTHORITY)%"',
    '"%UPSTREAM_HOST%"',
    "%UPSTREAM_CLUSTER_RAW%",
    "%UPSTREAM_LOCAL_ADDRESS%",
    "%DOWNSTREAM_LOCAL_ADDRESS%",
    "%DOWNSTREAM_REMOTE_ADDRESS%",
    "%REQUESTED_SERVER_NAME%",
    "%ROUTE_NAME%",
)
ISTIO_TEXT_FORMAT = " ".join(_FIELDS) + "\n"


def build_access_logs(mesh: MeshConfig) -> list[accesslog_pb2.AccessLog]:
    """The access loggers for HCMs and tcp_proxies; none when the mesh turns logging off."""
    if not mesh.access_log_file:
        return []
    config = file_pb2.FileAccessLog(
        path=mesh.access_log_file,
        log_format=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string=ISTIO_TEXT_FORMAT)
        ),
    )
    return [accesslog_pb2.AccessLog(name=FILE_ACCESS_LOGGER, typed_config=pack(config))]


# --- Telemetry resource: accessLogging per proxy and side ---------------------------------


@dataclass(frozen=True, slots=True)
class AccessLogPlan:
    """What a Telemetry's accessLogging says for one side of one proxy; hashable, so it can be
    part of a cache key. `path` empty: logging off."""

    path: str
    status_filter: StatusFilter | None = None


def access_log_plan(proxy: Proxy, push: PushContext, *, server: bool) -> AccessLogPlan | None:
    """None when no Telemetry speaks about access logs for this side (the mesh default holds).

    The most specific Telemetry with accessLogging decides (api/policy_scope.py); among its
    entries for this side, `disabled: true` turns logging off, otherwise it is on (in the mesh's
    log file, /dev/stdout when the mesh has none) with the entry's filter."""
    entries = [
        e
        for e in _effective(proxy, push).access_logging
        if _mode_applies(e.match.mode if e.match else WorkloadMode.CLIENT_AND_SERVER, server)
    ]
    if not entries:
        return None
    if any(e.disabled for e in entries):
        return AccessLogPlan(path="")
    expression = next((e.filter.expression for e in entries if e.filter is not None), None)
    status = _status_filter(expression)
    return AccessLogPlan(path=push.mesh.access_log_file or "/dev/stdout", status_filter=status)


def apply_access_logging(listeners: Iterable[listener_pb2.Listener], plan: AccessLogPlan) -> None:
    """Replace the access loggers of every HCM and tcp_proxy in `listeners` (in place)."""
    logs = build_planned_access_logs(plan)
    for listener in listeners:
        chains = [*listener.filter_chains]
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            for network_filter in chain.filters:
                _replace_access_logs(network_filter, logs)


def build_planned_access_logs(plan: AccessLogPlan) -> list[accesslog_pb2.AccessLog]:
    if not plan.path:
        return []
    [log] = build_access_logs(MeshConfig(access_log_file=plan.path))
    if plan.status_filter is not None:
        log.filter.CopyFrom(build_status_filter(plan.status_filter))
    return [log]


def build_status_filter(status: StatusFilter) -> accesslog_pb2.AccessLogFilter:
    """`response.code OP N` as Envoy's status_code filter (> and < become >= and <= of the
    neighbour; != is an or of both sides)."""
    bounds = {
        StatusOp.GE: [(_GE, status.code)],
        StatusOp.GT: [(_GE, status.code + 1)],
        StatusOp.LE: [(_LE, status.code)],
        StatusOp.LT: [(_LE, status.code - 1)],
        StatusOp.EQ: [(_EQ, status.code)],
        StatusOp.NE: [(_LE, status.code - 1), (_GE, status.code + 1)],
    }[status.op]
    filters = [_status_code(op, code) for op, code in bounds]
    if len(filters) == 1:
        return filters[0]
    return accesslog_pb2.AccessLogFilter(or_filter=accesslog_pb2.OrFilter(filters=filters))


_GE = accesslog_pb2.ComparisonFilter.Op.GE
_LE = accesslog_pb2.ComparisonFilter.Op.LE
_EQ = accesslog_pb2.ComparisonFilter.Op.EQ
_STATUS_RUNTIME_KEY = "trellis.access_log.status_code"


def _status_code(
    op: accesslog_pb2.ComparisonFilter.Op.ValueType, code: int
) -> accesslog_pb2.AccessLogFilter:
    comparison = accesslog_pb2.ComparisonFilter(
        op=op,
        value=base_pb2.RuntimeUInt32(default_value=max(code, 0), runtime_key=_STATUS_RUNTIME_KEY),
    )
    return accesslog_pb2.AccessLogFilter(
        status_code_filter=accesslog_pb2.StatusCodeFilter(comparison=comparison)
    )


def _replace_access_logs(
    network_filter: listener_components_pb2.Filter, logs: list[accesslog_pb2.AccessLog]
) -> None:
    kind = {_HCM_TYPE: hcm.HttpConnectionManager, _TCP_PROXY_TYPE: tcp_proxy_pb2.TcpProxy}.get(
        network_filter.typed_config.type_url
    )
    if kind is None:
        return
    config = kind()
    network_filter.typed_config.Unpack(config)
    del config.access_log[:]
    config.access_log.extend(logs)
    network_filter.typed_config.CopyFrom(pack(config))


def _status_filter(expression: str | None) -> StatusFilter | None:
    """Validation rejected what cannot be parsed; a stored resource from before that check
    logs everything rather than failing the whole compile."""
    if expression is None:
        return None
    try:
        return parse_status_filter(expression)
    except ValueError:
        return None


def _mode_applies(mode: WorkloadMode, server: bool) -> bool:
    return mode in (
        WorkloadMode.CLIENT_AND_SERVER,
        WorkloadMode.SERVER if server else WorkloadMode.CLIENT,
    )


def _effective(proxy: Proxy, push: PushContext) -> EffectiveTelemetry:
    return telemetry_for_workload(
        push.telemetries,
        namespace=proxy.namespace,
        labels=proxy.labels,
        root_namespace=push.mesh.root_namespace,
    )


_HCM_TYPE = "type.googleapis.com/" + hcm.HttpConnectionManager.DESCRIPTOR.full_name
_TCP_PROXY_TYPE = "type.googleapis.com/" + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name


# --- Telemetry resource: metrics overrides, handed to the agent -----------------------------


def metrics_config_for(proxy: Proxy, push: PushContext) -> MetricsConfig:
    """The metrics overrides of the most specific Telemetry with `metrics` for this proxy,
    for the Prometheus provider (entries naming no provider count as Prometheus)."""
    overrides = [
        _override(o)
        for m in _effective(proxy, push).metrics
        if not m.providers or any(p.name == "prometheus" for p in m.providers)
        for o in m.overrides
    ]
    return MetricsConfig(tuple(o for o in overrides if o is not None))


def attach_metrics_config(listener: listener_pb2.Listener, config: MetricsConfig) -> None:
    """The agent reads this back from Envoy's config dump (agent/stats.py); nothing when
    there is nothing to override, so a mesh without Telemetry compiles as before."""
    if not config.overrides:
        return
    listener.metadata.filter_metadata[METRICS_METADATA_KEY].update(config.to_json())


def _override(entry: MetricsOverrides) -> MetricOverride | None:
    match = entry.match
    if match is not None and match.custom_metric is not None:
        return None  # custom metrics are not produced here
    reporters = {
        WorkloadMode.CLIENT: frozenset({SOURCE}),
        WorkloadMode.SERVER: frozenset({DESTINATION}),
    }.get(match.mode if match else WorkloadMode.CLIENT_AND_SERVER, frozenset({SOURCE, DESTINATION}))
    upsert: list[tuple[str, str]] = []
    remove: list[str] = []
    for tag, change in sorted(entry.tag_overrides.items()):
        if change.operation is TagOperation.REMOVE:
            remove.append(tag)
            continue
        try:
            upsert.append((tag, parse_tag_literal(change.value or "")))
        except ValueError:
            continue  # rejected by validation; skip rather than fail the compile
    return MetricOverride(
        metric=match.metric.value if match and match.metric else ALL_METRICS,
        reporters=reporters,
        disabled=entry.disabled,
        upsert=tuple(upsert),
        remove=tuple(remove),
    )


# --- hooks the listener builders call --------------------------------------------------------


def finish_inbound_listener(
    listener: listener_pb2.Listener, proxy: Proxy, push: PushContext
) -> None:
    """Server side: per-caller stats, the Telemetry's access logging, and the metrics
    overrides for the agent (one listener per proxy carries them)."""
    add_inbound_peer_stats(listener, push)
    plan = access_log_plan(proxy, push, server=True)
    if plan is not None:
        apply_access_logging([listener], plan)
    attach_metrics_config(listener, metrics_config_for(proxy, push))


def finish_client_listeners(
    listeners: Iterable[listener_pb2.Listener], proxy: Proxy, push: PushContext
) -> None:
    """Client side (outbound listeners, gateways): the Telemetry's access logging."""
    plan = access_log_plan(proxy, push, server=False)
    if plan is not None:
        apply_access_logging(listeners, plan)


def finish_uncaptured_listeners(
    listeners: list[listener_pb2.Listener], proxy: Proxy, push: PushContext
) -> None:
    """Gateways and sidecars without capture are compiled whole: inbound-direction listeners
    get the server side, the rest the client side; every listener carries the metrics
    overrides (a gateway may have no inbound listener)."""
    inbound = [lis for lis in listeners if lis.traffic_direction == base_pb2.INBOUND]
    for listener in inbound:
        add_inbound_peer_stats(listener, push)
    plan = access_log_plan(proxy, push, server=True)
    if plan is not None:
        apply_access_logging(inbound, plan)
    finish_client_listeners([lis for lis in listeners if lis not in inbound], proxy, push)
    config = metrics_config_for(proxy, push)
    for listener in listeners:
        attach_metrics_config(listener, config)


def track_request_sizes(cluster: cluster_pb2.Cluster, protocol: Protocol) -> None:
    """HTTP service clusters keep Envoy's request/response size histograms
    (`upstream_rq_body_size`, `upstream_rs_body_size`, ...), which the agent turns into
    istio_request_bytes / istio_response_bytes. Off by default in Envoy, so switched on here."""
    if protocol.is_http:
        cluster.track_cluster_stats.request_response_sizes = True
