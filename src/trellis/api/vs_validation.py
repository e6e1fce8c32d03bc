"""Semantic checks of a VirtualService (istio-notes §1.1): what the schema cannot say."""

from __future__ import annotations

from collections.abc import Sequence

from trellis.api.common import StringMatch
from trellis.api.semantic_checks import (
    Problems,
    check_cidr,
    check_host,
    check_int_range,
    check_percent,
    check_regex,
)
from trellis.api.virtual_service import (
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    RouteDestination,
    VirtualServiceSpec,
)


def check_virtual_service(spec: VirtualServiceSpec) -> Problems:
    problems: Problems = []
    if not spec.hosts:
        _check_delegate_only(spec, problems)
    for i, host in enumerate(spec.hosts):
        check_host(host, f"spec.hosts[{i}]", problems)
    for i, http in enumerate(spec.http):
        _check_http_route(http, f"spec.http[{i}]", problems)
    for i, tls in enumerate(spec.tls):
        path = f"spec.tls[{i}]"
        for j, tls_match in enumerate(tls.match):
            if not tls_match.sni_hosts:
                problems.append((f"{path}.match[{j}].sniHosts", "sniHosts is required; add one"))
        _check_l4_route(tls.route, path, problems)
    for i, tcp in enumerate(spec.tcp):
        path = f"spec.tcp[{i}]"
        for j, l4_match in enumerate(tcp.match):
            for k, subnet in enumerate(l4_match.destination_subnets):
                check_cidr(subnet, f"{path}.match[{j}].destinationSubnets[{k}]", problems)
        _check_l4_route(tcp.route, path, problems)
    return problems


def _check_delegate_only(spec: VirtualServiceSpec, problems: Problems) -> None:
    """No hosts makes a delegate: only a root VirtualService's `delegate` reaches it, so it
    has no gateways, only http rules, and delegates no further (one level, as in Istio)."""
    if not spec.http:
        problems.append(
            ("spec.hosts", "at least one host is required; list the hosts routed, e.g. reviews")
        )
        return
    if spec.gateways:
        problems.append(("spec.gateways", "a delegate VirtualService (no hosts) has no gateways"))
    if spec.tls or spec.tcp:
        problems.append(("spec.hosts", "tls and tcp rules need hosts; only http rules delegate"))
    for i, http in enumerate(spec.http):
        if http.delegate is not None:
            problems.append(
                (f"spec.http[{i}].delegate", "a delegate VirtualService cannot delegate again")
            )


def _check_http_route(http: HTTPRoute, path: str, problems: Problems) -> None:
    _check_actions(http, path, problems)
    _check_weights(http.route, f"{path}.route", problems)
    for j, dest in enumerate(http.route):
        check_host(dest.destination.host, f"{path}.route[{j}].destination.host", problems)
    for j, match in enumerate(http.match):
        _check_match(match, f"{path}.match[{j}]", problems)
    if http.rewrite is not None and http.rewrite.uri_regex_rewrite is not None:
        if http.rewrite.uri is not None:
            problems.append((f"{path}.rewrite", "set uri or uriRegexRewrite, not both"))
        check_regex(
            http.rewrite.uri_regex_rewrite.match, f"{path}.rewrite.uriRegexRewrite.match", problems
        )
    if http.retries is not None:
        check_int_range(http.retries.attempts, 0, 2**31 - 1, f"{path}.retries.attempts", problems)
    if http.fault is not None:
        _check_fault(http.fault, f"{path}.fault", problems)
    _check_mirrors(http, path, problems)
    if http.cors_policy is not None:
        for j, origin in enumerate(http.cors_policy.allow_origins):
            _check_string_match(origin, f"{path}.corsPolicy.allowOrigins[{j}]", problems)


def _check_actions(http: HTTPRoute, path: str, problems: Problems) -> None:
    """Exactly one of route, redirect, directResponse or delegate says what happens."""
    if http.rewrite is not None and http.redirect is not None:
        problems.append((path, "rewrite cannot be used together with redirect; remove one"))
    if http.delegate is not None and (http.route or http.redirect is not None):
        problems.append((f"{path}.delegate", "delegate cannot be used with route or redirect"))
    if http.redirect is not None and http.route:
        problems.append((path, "route and redirect cannot both be set; keep one"))
    if http.direct_response is not None and (http.route or http.redirect is not None):
        problems.append((f"{path}.directResponse", "directResponse excludes route and redirect"))
    actions = (http.route, http.redirect, http.direct_response, http.delegate)
    if not any(a for a in actions if a is not None):
        problems.append((path, "nothing to do: set route, redirect, directResponse or delegate"))
    if http.redirect is not None and http.redirect.redirect_code is not None:
        check_int_range(
            http.redirect.redirect_code, 300, 399, f"{path}.redirect.redirectCode", problems
        )
    if http.direct_response is not None:
        check_int_range(
            http.direct_response.status, 200, 599, f"{path}.directResponse.status", problems
        )


def _check_weights(
    routes: Sequence[HTTPRouteDestination | RouteDestination],
    path: str,
    problems: Problems,
) -> None:
    """Weights are 0..100; with several destinations they must add up to 100."""
    for j, dest in enumerate(routes):
        check_int_range(dest.weight, 0, 100, f"{path}[{j}].weight", problems)
    if len(routes) > 1:
        total = sum(dest.weight or 0 for dest in routes)
        if total != 100:
            problems.append(
                (path, f"destination weights add up to {total}; make them add up to 100")
            )


def _check_l4_route(routes: Sequence[RouteDestination], path: str, problems: Problems) -> None:
    if not routes:
        problems.append((f"{path}.route", "at least one destination is required; add one"))
    _check_weights(routes, f"{path}.route", problems)
    for j, dest in enumerate(routes):
        check_host(dest.destination.host, f"{path}.route[{j}].destination.host", problems)


def _check_match(match: HTTPMatchRequest, path: str, problems: Problems) -> None:
    for field in ("uri", "scheme", "method", "authority"):
        value: StringMatch | None = getattr(match, field)
        if value is not None:
            _check_string_match(value, f"{path}.{field}", problems)
    for field, alias in (
        ("headers", "headers"),
        ("without_headers", "withoutHeaders"),
        ("query_params", "queryParams"),
    ):
        matches: dict[str, StringMatch] = getattr(match, field)
        for key, value in matches.items():
            if field != "query_params" and key != key.lower():
                problems.append(
                    (f"{path}.{alias}.{key}", "header names must be lowercase; write it so")
                )
            _check_string_match(value, f"{path}.{alias}.{key}", problems)
    check_int_range(match.port, 1, 65535, f"{path}.port", problems)


def _check_string_match(value: StringMatch, path: str, problems: Problems) -> None:
    if value.regex is not None:
        check_regex(value.regex, f"{path}.regex", problems)


def _check_fault(fault: HTTPFaultInjection, path: str, problems: Problems) -> None:
    if fault.delay is None and fault.abort is None:
        problems.append((path, "fault needs a delay or an abort; add one or remove fault"))
    if fault.delay is not None:
        delay = fault.delay
        if delay.fixed_delay is None and delay.exponential_delay is None:
            problems.append((f"{path}.delay", "set fixedDelay (e.g. 7s)"))
        check_percent(delay.percentage, f"{path}.delay.percentage", problems)
        check_int_range(delay.percent, 0, 100, f"{path}.delay.percent", problems)
    if fault.abort is not None:
        abort = fault.abort
        if abort.http_status is None and abort.grpc_status is None and abort.http2_error is None:
            problems.append((f"{path}.abort", "set httpStatus (e.g. 500) or grpcStatus"))
        check_int_range(abort.http_status, 200, 599, f"{path}.abort.httpStatus", problems)
        check_percent(abort.percentage, f"{path}.abort.percentage", problems)


def _check_mirrors(http: HTTPRoute, path: str, problems: Problems) -> None:
    if http.mirror is not None:
        check_host(http.mirror.host, f"{path}.mirror.host", problems)
    check_percent(http.mirror_percentage, f"{path}.mirrorPercentage", problems)
    check_int_range(http.mirror_percent, 0, 100, f"{path}.mirrorPercent", problems)
    for j, mirror in enumerate(http.mirrors):
        check_host(mirror.destination.host, f"{path}.mirrors[{j}].destination.host", problems)
        check_percent(mirror.percentage, f"{path}.mirrors[{j}].percentage", problems)
