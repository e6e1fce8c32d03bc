"""One VirtualService HTTPRoute -> Envoy Routes (one per applicable match block).

Match blocks are ORed, so each becomes its own Route with the same action; blocks whose
selectors (sourceLabels, sourceNamespace, gateways, port) exclude this proxy are dropped.
"""

from __future__ import annotations

from dataclasses import replace

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2

from trellis.api.networking import (
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualService,
)
from trellis.compiler.delegate import delegated_rules, find_delegate
from trellis.compiler.destinations import RouteScope, destination_cluster, selects_proxy
from trellis.compiler.filters import CORS, FAULT
from trellis.compiler.protos import duration, duration_of, pack, struct
from trellis.compiler.retries import build_retry_policy
from trellis.compiler.route_extras import (
    apply_header_operations,
    build_cors_config,
    build_direct_response,
    build_fault_config,
    build_hash_policies,
    build_mirror_policies,
)
from trellis.compiler.route_match import build_route_match

_REDIRECT_CODES = {
    301: rc.RedirectAction.RedirectResponseCode.MOVED_PERMANENTLY,
    302: rc.RedirectAction.RedirectResponseCode.FOUND,
    303: rc.RedirectAction.RedirectResponseCode.SEE_OTHER,
    307: rc.RedirectAction.RedirectResponseCode.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.RedirectResponseCode.PERMANENT_REDIRECT,
}


def translate_virtual_service(scope: RouteScope, vs: VirtualService) -> list[rc.Route]:
    """All Envoy routes for the VirtualService's http rules, in order (first match wins)."""
    routes: list[rc.Route] = []
    for rule in vs.spec.http:
        if rule.delegate is not None:
            routes.extend(_translate_delegate(scope, vs, rule))
        else:
            routes.extend(translate_http_route(scope, vs, rule))
    return routes


def _translate_delegate(scope: RouteScope, root: VirtualService, rule: HTTPRoute) -> list[rc.Route]:
    """The delegate's rules under this root rule (compiler/delegate.py); short hosts in them
    resolve against the delegate's own namespace."""
    delegate = find_delegate(scope.push.virtual_services, root, rule)
    if delegate is None:
        return []  # a missing delegate routes nothing (`trellis analyze` reports IST0101)
    inner = replace(scope, namespace=delegate.namespace)
    return [
        route
        for merged in delegated_rules(rule, delegate)
        for route in translate_http_route(inner, delegate, merged)
    ]


def translate_http_route(scope: RouteScope, vs: VirtualService, rule: HTTPRoute) -> list[rc.Route]:
    """Routes for one rule with an action; `delegate` rules are expanded by the caller."""
    if rule.delegate is not None or not (rule.route or rule.redirect or rule.direct_response):
        return []
    blocks: list[HTTPMatchRequest | None] = [m for m in rule.match if _applies(scope, m)]
    if rule.match and not blocks:
        return []
    return [build_route(scope, vs, rule, block) for block in blocks or [None]]


def _applies(scope: RouteScope, match: HTTPMatchRequest) -> bool:
    return selects_proxy(
        scope,
        source_labels=match.source_labels,
        source_namespace=match.source_namespace,
        gateways=match.gateways,
        port=match.port,
    )


def build_route(
    scope: RouteScope, vs: VirtualService, rule: HTTPRoute, match: HTTPMatchRequest | None
) -> rc.Route:
    route = rc.Route(
        name=_route_name(rule, match),
        match=build_route_match(match),
        metadata=_config_metadata(vs),
    )
    if rule.redirect is not None:
        route.redirect.CopyFrom(build_redirect(rule.redirect))
    elif rule.direct_response is not None:
        route.direct_response.CopyFrom(build_direct_response(rule.direct_response))
    else:
        route.route.CopyFrom(build_route_action(scope, rule, match))
        live = live_destinations(rule.route)
        if len(live) == 1:
            apply_header_operations(route, live[0].headers)
    apply_header_operations(route, rule.headers)
    fault = build_fault_config(rule.fault)
    if fault is not None:
        route.typed_per_filter_config[FAULT].CopyFrom(pack(fault))
    cors = build_cors_config(rule.cors_policy)
    if cors is not None:
        route.typed_per_filter_config[CORS].CopyFrom(pack(cors))
    return route


def _route_name(rule: HTTPRoute, match: HTTPMatchRequest | None) -> str:
    name = rule.name or ""
    if match is not None and match.name:
        return f"{name}.{match.name}" if name else match.name
    return name


def _config_metadata(vs: VirtualService) -> base_pb2.Metadata:
    """Which VirtualService made a route, as Istio records it for `proxy-config routes`."""
    path = f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.name}"
    return base_pb2.Metadata(filter_metadata={"istio": struct({"config": path})})


def build_route_action(
    scope: RouteScope, rule: HTTPRoute, match: HTTPMatchRequest | None
) -> rc.RouteAction:
    action = rc.RouteAction(timeout=duration_of(rule.timeout) or duration(0))
    _apply_destinations(scope, action, rule.route)
    _apply_rewrite(action, rule, match)
    hashing = build_hash_policies(scope, rule.route[0].destination) if rule.route else []
    action.hash_policy.extend(hashing)
    retry = build_retry_policy(rule.retries, consistent_hash=bool(hashing))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    action.request_mirror_policies.extend(build_mirror_policies(scope, rule))
    return action


def _apply_destinations(
    scope: RouteScope, action: rc.RouteAction, routes: list[HTTPRouteDestination]
) -> None:
    """One cluster, or weighted clusters each carrying its destination's header operations."""
    live = live_destinations(routes)
    if len(live) == 1:
        action.cluster = destination_cluster(scope, live[0].destination)
        return
    for destination in live:
        entry = action.weighted_clusters.clusters.add(
            name=destination_cluster(scope, destination.destination)
        )
        entry.weight.value = destination.weight or 0
        apply_header_operations(entry, destination.headers)


def live_destinations(routes: list[HTTPRouteDestination]) -> list[HTTPRouteDestination]:
    """A single destination takes all traffic; among several, 0-weight ones are dropped."""
    return list(routes) if len(routes) == 1 else [r for r in routes if (r.weight or 0) > 0]


def _apply_rewrite(action: rc.RouteAction, rule: HTTPRoute, match: HTTPMatchRequest | None) -> None:
    rewrite = rule.rewrite
    if rewrite is None:
        return
    if rewrite.uri_regex_rewrite is not None:
        action.regex_rewrite.pattern.CopyFrom(
            regex_pb2.RegexMatcher(regex=rewrite.uri_regex_rewrite.match)
        )
        action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite
    elif rewrite.uri is not None:
        uri = match.uri if match is not None else None
        if uri is not None and uri.match_kind == "regex":
            # Envoy refuses prefix_rewrite on regex routes: replace what the regex matched.
            action.regex_rewrite.pattern.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex or ""))
            action.regex_rewrite.substitution = rewrite.uri
        else:
            action.prefix_rewrite = rewrite.uri
    if rewrite.authority is not None:
        action.host_rewrite_literal = rewrite.authority


def build_redirect(redirect: HTTPRedirect) -> rc.RedirectAction:
    """TODO(redirect): derivePort FROM_REQUEST_PORT is not translated yet."""
    action = rc.RedirectAction(response_code=_REDIRECT_CODES.get(redirect.status, 0))
    if redirect.uri is not None:
        action.path_redirect = redirect.uri
    elif redirect.prefix_rewrite is not None:
        action.prefix_rewrite = redirect.prefix_rewrite
    if redirect.authority is not None:
        action.host_redirect = redirect.authority
    if redirect.port is not None:
        action.port_redirect = redirect.port
    if redirect.scheme is not None:
        action.scheme_redirect = redirect.scheme
    return action
