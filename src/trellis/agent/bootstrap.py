"""Envoy's bootstrap: who the proxy is, where its xDS server is, and the agent's static ports.

Pure: options in, Envoy v3 bootstrap JSON (as a dict) out. Everything else the proxy does comes
over ADS from trellisd (DESIGN.md §3, §4).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trellis.model.proxy import InterceptionMode, Proxy, ProxyType

XDS_CLUSTER = "xds-grpc"
ADMIN_CLUSTER = "prometheus_stats"
STATS_LISTENER = "prometheus_stats"
READY_LISTENER = "agent_ready"
READY_PATH = "/healthz/ready"
STATS_PATH = "/stats/prometheus"
TOKEN_HEADER = "x-trellis-token"  # trellis.controlplane.auth reads it
_TLS_SOCKET_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)

_ROUTER_FILTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_CONNECTIONS_MONITOR_TYPE = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
    "DownstreamConnectionsConfig"
)

# What telemetry, the console and proxy-status read; everything else is dropped, because an
# unscoped proxy with thousands of clusters otherwise makes a scrape of tens of MB (DESIGN §3).
_STATS_PREFIXES = (
    "server.",
    "listener.",
    "listener_manager.",
    "cluster_manager.",
    "control_plane.",
    "tcp.",
    "sds.",
)
_STATS_REGEXES = (
    r"^cluster\..+\.(upstream_(rq|rs|cx)_[a-z0-9_]+|membership_[a-z_]+)$",
    r"^cluster\..+\.(outlier_detection\.[a-z_]+|ssl\.(handshake|connection_error|fail_[a-z_]+))$",
    r"^http\..+\.(downstream_(rq|cx)_[a-z0-9_]+)$",
    r"^http\..+\.(rbac|jwt_authn|fault|local_rate_limit|ext_authz)\..+$",
    r"^vhost\..+\.vcluster\..+$",
)

# Envoy's default `envoy_cluster_name` tag stops at the first dot, cutting
# `outbound|9080|v1|reviews.default.svc.cluster.local` to `...|reviews` and pushing the rest into
# the metric name. This replacement keeps a mesh cluster name whole when its host is a
# `*.svc.cluster.local` name (and `inbound|PORT||` names), so Envoy's Prometheus output carries
# the destination that telemetry/istio_metrics.py translates; other clusters keep the default
# (name up to the first dot). Group 1 is removed from the metric name, group 2 is the value.
CLUSTER_NAME_TAG = "envoy.cluster_name"
_CLUSTER_NAME_TAG_REGEX = (
    r"^cluster\.(("
    r"(?:inbound|outbound)\|[0-9]+\|[^|]*\|(?:[^|]*?\.svc\.cluster\.local)?[^|.]*?"
    r"|[^.]+?)\.)"
)


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    """Everything the bootstrap depends on; one frozen value so the output is reproducible."""

    type: ProxyType
    ip: str
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    xds_host: str = "127.0.0.1"
    xds_port: int = 15010
    delta: bool = True
    admin_port: int = 15000
    stats_port: int = 15090
    # False when the agent serves the stats port itself with Istio's metrics merged in
    # (agent/stats.py, DESIGN §6); True gives a plain Envoy its own `prometheus_stats` listener.
    envoy_serves_stats: bool = True
    ready_port: int = 15021
    access_log_path: str = "/dev/stdout"
    # 0 = wait for the control plane as long as it takes (Istio's choice): a proxy must not
    # report ready, and so let its app start, before it has any listeners or clusters.
    initial_fetch_timeout_s: float = 0.0
    app_ports: tuple[int, ...] = ()
    # NONE: no capture; the sidecar binds the pod address and is the app's HTTP proxy, and the
    # app listens on `app_host` (DESIGN §7, `--capture=proxy`).
    interception: InterceptionMode = InterceptionMode.REDIRECT
    app_host: str = "127.0.0.1"
    # xDS credentials: the mesh roots that signed trellisd's serving cert (PEM; "" = plaintext
    # xDS) and the join token sent as gRPC metadata on the ADS stream ("" = none).
    xds_root_pem: str = ""
    xds_token: str = ""

    @property
    def proxy(self) -> Proxy:
        return Proxy(
            type=self.type,
            ip=self.ip,
            name=self.name,
            namespace=self.namespace,
            labels=dict(self.labels),
            service_account=self.service_account,
            interception=self.interception,
            app_host=self.app_host,
        )


def build_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The Envoy v3 bootstrap for one proxy."""
    return {
        "node": build_node(opts),
        "admin": {"address": _socket_address("127.0.0.1", opts.admin_port)},
        "dynamic_resources": build_dynamic_resources(opts),
        "static_resources": {
            "clusters": [build_xds_cluster(opts), build_admin_cluster(opts)],
            "listeners": build_static_listeners(opts),
        },
        "stats_config": build_stats_config(),
        "overload_manager": _overload_manager(),
        "layered_runtime": build_layered_runtime(),
    }


# Envoy's OpenTelemetry tracer exports every 5 s by default; 1 s puts a request's spans in the
# trace store about as soon as its response is back (Jaeger's own clients flush every 1 s).
# It only sends when spans are buffered, so an idle proxy sends nothing.
TRACE_FLUSH_INTERVAL_MS = 1000


def build_layered_runtime() -> dict[str, Any]:
    """Static runtime values, plus the admin layer so `/runtime_modify` keeps working."""
    static = {"tracing.opentelemetry.flush_interval_ms": TRACE_FLUSH_INTERVAL_MS}
    return {
        "layers": [
            {"name": "trellis-static", "static_layer": static},
            {"name": "admin", "admin_layer": {}},
        ]
    }


def build_node(opts: BootstrapOptions) -> dict[str, Any]:
    """Istio's node identity, so trellisd (and istioctl habits) recognise the proxy."""
    proxy = opts.proxy
    metadata: dict[str, Any] = {
        "NAME": opts.name,
        "NAMESPACE": opts.namespace,
        "LABELS": dict(opts.labels),
        "SERVICE_ACCOUNT": opts.service_account,
        "INSTANCE_IPS": opts.ip,
        "INTERCEPTION_MODE": opts.interception.value,
    }
    if opts.interception is InterceptionMode.NONE:
        metadata["APP_HOST"] = opts.app_host
    if opts.access_log_path:
        metadata["ACCESS_LOG_FILE"] = opts.access_log_path
    if opts.app_ports:  # Istio's shape: a JSON string of container ports
        ports = [{"containerPort": port, "protocol": "TCP"} for port in opts.app_ports]
        metadata["POD_PORTS"] = json.dumps(ports, separators=(",", ":"))
    return {"id": proxy.id, "cluster": proxy.key, "metadata": metadata}


def build_dynamic_resources(opts: BootstrapOptions) -> dict[str, Any]:
    fetch_timeout = _duration(opts.initial_fetch_timeout_s)
    source = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": fetch_timeout}
    return {
        "ads_config": {
            "api_type": "DELTA_GRPC" if opts.delta else "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [build_xds_grpc_service(opts)],
            "set_node_on_first_message_only": True,
        },
        "cds_config": dict(source),
        "lds_config": dict(source),
    }


def build_xds_grpc_service(opts: BootstrapOptions) -> dict[str, Any]:
    """trellisd over the `xds-grpc` cluster; the join token rides along as initial metadata."""
    service: dict[str, Any] = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    if opts.xds_token:
        service["initial_metadata"] = [{"key": TOKEN_HEADER, "value": opts.xds_token}]
    return service


def build_xds_tls(opts: BootstrapOptions) -> dict[str, Any] | None:
    """TLS to trellisd: its serving cert must chain to the mesh roots and name the address."""
    if not opts.xds_root_pem:
        return None
    san_type = "IP_ADDRESS" if _is_ip(opts.xds_host) else "DNS"
    context = {
        "@type": _TLS_SOCKET_TYPE,
        "common_tls_context": {
            "validation_context": {
                "trusted_ca": {"inline_string": opts.xds_root_pem},
                "match_typed_subject_alt_names": [
                    {"san_type": san_type, "matcher": {"exact": opts.xds_host}}
                ],
            },
            "alpn_protocols": ["h2"],
        },
    }
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def build_xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    """The one cluster Envoy knows before ADS: HTTP/2 to trellisd (over TLS), kept alive."""
    cluster = _xds_cluster(opts)
    tls = build_xds_tls(opts)
    if tls is not None:
        cluster["transport_socket"] = tls
    return cluster


def _xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    return {
        "name": XDS_CLUSTER,
        "type": "STATIC" if _is_ip(opts.xds_host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": _load_assignment(XDS_CLUSTER, opts.xds_host, opts.xds_port),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS_TYPE,
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "10s"},
                    }
                },
            }
        },
        "upstream_connection_options": {
            "tcp_keepalive": {
                "keepalive_probes": 3,
                "keepalive_time": 300,
                "keepalive_interval": 30,
            }
        },
    }


def build_admin_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": _load_assignment(ADMIN_CLUSTER, "127.0.0.1", opts.admin_port),
    }


def build_static_listeners(opts: BootstrapOptions) -> list[dict[str, Any]]:
    ready = build_ready_listener(opts)
    return [build_stats_listener(opts), ready] if opts.envoy_serves_stats else [ready]


def build_stats_listener(opts: BootstrapOptions) -> dict[str, Any]:
    """:15090/stats/prometheus, served by the admin but reachable from outside the pod."""
    route = {"match": {"prefix": STATS_PATH}, "route": {"cluster": ADMIN_CLUSTER}}
    return _http_listener(STATS_LISTENER, opts.stats_port, route)


def build_ready_listener(opts: BootstrapOptions) -> dict[str, Any]:
    """:15021/healthz/ready -> admin /ready, which is 200 only once Envoy is initialized."""
    route = {
        "match": {"path": READY_PATH},
        "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": "/ready"},
    }
    return _http_listener(READY_LISTENER, opts.ready_port, route)


def build_stats_config() -> dict[str, Any]:
    patterns: list[dict[str, Any]] = [{"prefix": p} for p in _STATS_PREFIXES]
    patterns += [{"safe_regex": {"regex": r}} for r in _STATS_REGEXES]
    return {
        "stats_tags": [{"tag_name": CLUSTER_NAME_TAG, "regex": _CLUSTER_NAME_TAG_REGEX}],
        "allow_default_tag_overrides": True,
        "stats_matcher": {"inclusion_list": {"patterns": patterns}},
    }


def _http_listener(name: str, port: int, route: dict[str, Any]) -> dict[str, Any]:
    hcm = {
        "@type": _HCM_TYPE,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [_ROUTER_FILTER],
    }
    return {
        "name": name,
        "address": _socket_address("0.0.0.0", port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def _overload_manager() -> dict[str, Any]:
    # Envoy warns at every start when no global connection limit is configured; this limit is
    # there to silence that, not to bite.
    monitor = {
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {
            "@type": _CONNECTIONS_MONITOR_TYPE,
            "max_active_downstream_connections": 1_000_000,
        },
    }
    return {"resource_monitors": [monitor]}


def _load_assignment(cluster: str, host: str, port: int) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": _socket_address(host, port)}}
    return {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [endpoint]}]}


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s".replace(".000s", "s")
