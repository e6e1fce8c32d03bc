"""Per-route policies of an HTTPRoute: headers, fault, CORS, mirroring, hashing, direct responses.

Each `build_*` returns None (or an empty list) when the VirtualService does not ask for it.
"""

from __future__ import annotations

import base64

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from google.protobuf import wrappers_pb2

from trellis.api.duration import parse_duration
from trellis.api.networking import (
    CorsPolicy,
    Destination,
    Headers,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPRoute,
    StringMatch,
)
from trellis.compiler.destinations import RouteScope, destination_cluster
from trellis.compiler.protos import duration_of, fractional_percent
from trellis.compiler.route_match import build_string_matcher
from trellis.compiler.traffic_policy import cluster_policy
from trellis.model.names import ClusterName

_APPEND = base_pb2.HeaderValueOption.HeaderAppendAction
_GRPC_CODES = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]


def apply_header_operations(
    target: rc.Route | rc.WeightedCluster.ClusterWeight, headers: Headers | None
) -> None:
    """set -> overwrite, add -> append, remove -> remove; on a route or a weighted cluster."""
    if headers is None:
        return
    if headers.request is not None:
        target.request_headers_to_add.extend(
            _header_options(headers.request.set, headers.request.add)
        )
        target.request_headers_to_remove.extend(headers.request.remove)
    if headers.response is not None:
        target.response_headers_to_add.extend(
            _header_options(headers.response.set, headers.response.add)
        )
        target.response_headers_to_remove.extend(headers.response.remove)


def _header_options(
    to_set: dict[str, str], to_add: dict[str, str]
) -> list[base_pb2.HeaderValueOption]:
    options = [_header(k, v, _APPEND.OVERWRITE_IF_EXISTS_OR_ADD) for k, v in to_set.items()]
    options += [_header(k, v, _APPEND.APPEND_IF_EXISTS_OR_ADD) for k, v in to_add.items()]
    return options


def _header(key: str, value: str, action: int) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value), append_action=action
    )


def build_fault_config(fault: HTTPFaultInjection | None) -> fault_pb2.HTTPFault | None:
    """Per-route config for the fault filter; a fault without a percentage faults nothing.

    TODO(fault): exponentialDelay and http2Error have no upstream Envoy equivalent; skipped.
    """
    if fault is None:
        return None
    config = fault_pb2.HTTPFault()
    delay = fault.delay
    if delay is not None and delay.fixed_delay is not None and delay.percent_value > 0:
        config.delay.CopyFrom(
            common_fault.FaultDelay(
                fixed_delay=duration_of(delay.fixed_delay),
                percentage=fractional_percent(delay.percent_value),
            )
        )
    abort = build_fault_abort(fault)
    if abort is not None:
        config.abort.CopyFrom(abort)
    return config if config.HasField("delay") or config.HasField("abort") else None


def build_fault_abort(fault: HTTPFaultInjection) -> fault_pb2.FaultAbort | None:
    abort = fault.abort
    if abort is None or abort.percent_value <= 0:
        return None
    result = fault_pb2.FaultAbort(percentage=fractional_percent(abort.percent_value))
    if abort.http_status is not None:
        result.http_status = abort.http_status
    elif abort.grpc_status is not None and abort.grpc_status in _GRPC_CODES:
        result.grpc_status = _GRPC_CODES.index(abort.grpc_status)
    else:
        return None
    return result


def build_cors_config(policy: CorsPolicy | None) -> cors_pb2.CorsPolicy | None:
    if policy is None:
        return None
    origins = list(policy.allow_origins) + [StringMatch(exact=o) for o in policy.allow_origin]
    config = cors_pb2.CorsPolicy(
        allow_origin_string_match=[m for m in map(build_string_matcher, origins) if m is not None],
        allow_methods=",".join(policy.allow_methods),
        allow_headers=",".join(policy.allow_headers),
        expose_headers=",".join(policy.expose_headers),
    )
    if policy.max_age is not None:
        config.max_age = str(int(parse_duration(policy.max_age)))
    if policy.allow_credentials is not None:
        config.allow_credentials.CopyFrom(wrappers_pb2.BoolValue(value=policy.allow_credentials))
    if (
        policy.unmatched_preflights is not None
        and policy.unmatched_preflights.value != "UNSPECIFIED"
    ):
        forward = policy.unmatched_preflights.value == "FORWARD"
        config.forward_not_matching_preflights.CopyFrom(wrappers_pb2.BoolValue(value=forward))
    return config


def build_direct_response(response: HTTPDirectResponse) -> rc.DirectResponseAction:
    action = rc.DirectResponseAction(status=response.status)
    body = response.body
    if body is not None and body.string is not None:
        action.body.inline_string = body.string
    elif body is not None and body.bytes is not None:
        action.body.inline_bytes = base64.b64decode(body.bytes)
    return action


def build_mirror_policies(
    scope: RouteScope, rule: HTTPRoute
) -> list[rc.RouteAction.RequestMirrorPolicy]:
    """`mirror`/`mirrors[]`: fire-and-forget copies; the percentage defaults to 100."""
    policies = []
    for mirror in rule.all_mirrors:
        policy = rc.RouteAction.RequestMirrorPolicy(
            cluster=destination_cluster(scope, mirror.destination)
        )
        if mirror.percent_value < 100:
            policy.runtime_fraction.default_value.CopyFrom(fractional_percent(mirror.percent_value))
        policies.append(policy)
    return policies


def build_hash_policies(
    scope: RouteScope, destination: Destination
) -> list[rc.RouteAction.HashPolicy]:
    """Consistent-hash keys from the destination's DestinationRule (subset policy included)."""
    cluster = ClusterName.parse(destination_cluster(scope, destination))
    rule = scope.push.destination_rule(cluster.host, scope.proxy.namespace)
    lb = cluster_policy(rule, cluster.subset, cluster.port).load_balancer
    hashing = lb.consistent_hash if lb is not None else None
    if hashing is None:
        return []
    policy = rc.RouteAction.HashPolicy()
    if hashing.http_header_name is not None:
        policy.header.header_name = hashing.http_header_name
    elif hashing.http_cookie is not None:
        policy.cookie.name = hashing.http_cookie.name
        policy.cookie.path = hashing.http_cookie.path or ""
        ttl = duration_of(hashing.http_cookie.ttl)
        if ttl is not None:
            policy.cookie.ttl.CopyFrom(ttl)
    elif hashing.use_source_ip:
        policy.connection_properties.source_ip = True
    elif hashing.http_query_parameter_name is not None:
        policy.query_parameter.name = hashing.http_query_parameter_name
    else:
        return []
    return [policy]
