"""Envoy RBAC matchers for the values an AuthorizationPolicy names (istio-notes §1.11).

One builder per Istio attribute: each turns one user value into one Permission or Principal.
Strings follow Istio's four forms: exact, `prefix*`, `*suffix` and `*` (present, non-empty).
Peer identities are SPIFFE URIs (`spiffe://` + `cluster.local/ns/NS/sa/SA`) from the client
certificate; JWT facts come from jwt_authn's dynamic metadata, which compiler/jwt.py stores
under the token's issuer (`payload_in_metadata`), so request principals and claims are looked
up per issuer this proxy verifies.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.rbac.v3.rbac_pb2 import Permission, Principal
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

SPIFFE = "spiffe://"
JWT_AUTHN = "envoy.filters.http.jwt_authn"


def string_matcher(
    value: str, *, exact_prefix: str = "", ignore_case: bool = False
) -> string_pb2.StringMatcher:
    """Istio's string forms; `exact_prefix` is prepended to exact and prefix values (SPIFFE)."""
    if value == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=exact_prefix + value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=exact_prefix + value, ignore_case=ignore_case)


def any_of_permissions(items: Sequence[Permission]) -> Permission:
    if len(items) == 1:
        return items[0]
    return Permission(or_rules=rbac_pb2.Permission.Set(rules=items))


def all_of_permissions(items: Sequence[Permission]) -> Permission:
    if not items:
        return Permission(any=True)
    if len(items) == 1:
        return items[0]
    return Permission(and_rules=rbac_pb2.Permission.Set(rules=items))


def any_of_principals(items: Sequence[Principal]) -> Principal:
    if not items:
        return Principal(not_id=Principal(any=True))  # no candidate: matches nothing
    if len(items) == 1:
        return items[0]
    return Principal(or_ids=rbac_pb2.Principal.Set(ids=items))


def all_of_principals(items: Sequence[Principal]) -> Principal:
    if not items:
        return Principal(any=True)
    if len(items) == 1:
        return items[0]
    return Principal(and_ids=rbac_pb2.Principal.Set(ids=items))


# --- permissions (what the request asks for) --------------------------------------------


def method_permission(value: str) -> Permission:
    return Permission(header=_header(":method", value))


def host_permission(value: str) -> Permission:
    """`:authority` case-insensitively (DNS names), with or without a `:port` after it."""
    if value == "*":
        return Permission(
            header=route_components_pb2.HeaderMatcher(name=":authority", present_match=True)
        )
    if value.startswith("*"):
        pattern = ".*" + re.escape(value[1:])
    elif value.endswith("*"):
        pattern = re.escape(value[:-1]) + ".*"
    else:
        pattern = re.escape(value)
    regex = regex_pb2.RegexMatcher(regex=f"(?i){pattern}(:[0-9]+)?")
    return Permission(
        header=route_components_pb2.HeaderMatcher(
            name=":authority", string_match=string_pb2.StringMatcher(safe_regex=regex)
        )
    )


def path_permission(value: str) -> Permission:
    """`url_path`: the path without its query string, after the HCM's normalisation."""
    return Permission(url_path=path_pb2.PathMatcher(path=string_matcher(value)))


def port_permission(value: str) -> Permission:
    return Permission(destination_port=int(value))


def destination_ip_permission(value: str) -> Permission:
    return Permission(destination_ip=cidr_range(value))


def sni_permission(value: str) -> Permission:
    return Permission(requested_server_name=string_matcher(value))


# --- principals (who sends it) -----------------------------------------------------------


def peer_principal(value: str) -> Principal:
    """`cluster.local/ns/NS/sa/SA` against the client certificate's URI SAN."""
    return _authenticated(string_matcher(value, exact_prefix=SPIFFE))


def namespace_principal(value: str) -> Principal:
    """A namespace is the `/ns/NS/` segment of the peer's SPIFFE identity."""
    if value == "*":
        segment = "[^/]+"
    elif value.endswith("*"):
        segment = re.escape(value[:-1]) + "[^/]*"
    elif value.startswith("*"):
        segment = "[^/]*" + re.escape(value[1:])
    else:
        segment = re.escape(value)
    regex = f"spiffe://[^/]+/ns/{segment}/.*"
    return _authenticated(string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex)))


def ip_principal(value: str, *, remote: bool = False) -> Principal:
    """ipBlocks: the connection's peer address; remoteIpBlocks: the client behind proxies."""
    if remote:
        return Principal(remote_ip=cidr_range(value))
    return Principal(direct_remote_ip=cidr_range(value))


def header_principal(name: str, value: str) -> Principal:
    return Principal(header=_header(name, value))


def request_principal(value: str, issuers: Sequence[str]) -> Principal:
    """`ISS/SUB` of a verified token. jwt_authn stores each issuer's payload apart, so the
    value is split against every issuer this proxy verifies (an unknown one matches nothing)."""
    return any_of_principals([p for iss in issuers for p in _request_principal_for(value, iss)])


def claim_principal(claim_path: Sequence[str], value: str, issuers: Sequence[str]) -> Principal:
    """A claim equal to `value`, or a list claim containing it (e.g. `groups`)."""
    matcher = string_matcher(value)
    as_string = value_pb2.ValueMatcher(string_match=matcher)
    in_list = value_pb2.ValueMatcher(
        list_match=value_pb2.ListMatcher(one_of=value_pb2.ValueMatcher(string_match=matcher))
    )
    return any_of_principals(
        [
            _jwt_metadata(iss, list(claim_path), match)
            for iss in issuers
            for match in (as_string, in_list)
        ]
    )


def filter_metadata_principal(filter_name: str, keys: Sequence[str], value: str) -> Principal:
    """`experimental.envoy.filters.NAME[k]...`: another filter's dynamic metadata."""
    return Principal(
        metadata=metadata_pb2.MetadataMatcher(
            filter=filter_name,
            path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in keys],
            value=value_pb2.ValueMatcher(string_match=string_matcher(value)),
        )
    )


def _request_principal_for(value: str, issuer: str) -> list[Principal]:
    """`ISS/SUB` matches `value` when the issuer part and the subject part both fit."""
    head = issuer + "/"
    present = value_pb2.ValueMatcher(present_match=True)
    if value == "*":
        return [_jwt_metadata(issuer, ["sub"], present)]
    if value.endswith("*"):
        stem = value[:-1]
        if head.startswith(stem):
            return [_jwt_metadata(issuer, ["sub"], present)]
        if stem.startswith(head):
            return [_sub_matches(issuer, string_pb2.StringMatcher(prefix=stem[len(head) :]))]
        return []
    if value.startswith("*"):
        tail = value[1:]
        found = [_sub_matches(issuer, string_pb2.StringMatcher(suffix=tail))]
        for cut in (i for i, ch in enumerate(tail) if ch == "/"):
            if issuer.endswith(tail[:cut]):
                found.append(_sub_matches(issuer, string_pb2.StringMatcher(exact=tail[cut + 1 :])))
        return found
    if value.startswith(head):
        return [_sub_matches(issuer, string_pb2.StringMatcher(exact=value[len(head) :]))]
    return []


def _sub_matches(issuer: str, matcher: string_pb2.StringMatcher) -> Principal:
    return _jwt_metadata(issuer, ["sub"], value_pb2.ValueMatcher(string_match=matcher))


def _jwt_metadata(issuer: str, path: list[str], value: value_pb2.ValueMatcher) -> Principal:
    segments = [metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in [issuer, *path]]
    return Principal(
        metadata=metadata_pb2.MetadataMatcher(filter=JWT_AUTHN, path=segments, value=value)
    )


def _authenticated(matcher: string_pb2.StringMatcher) -> Principal:
    return Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher))


def _header(name: str, value: str) -> route_components_pb2.HeaderMatcher:
    if value == "*":
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(name=name, string_match=string_matcher(value))


def cidr_range(value: str) -> address_pb2.CidrRange:
    """`10.0.0.0/8` or a bare address (a /32 or /128)."""
    network = ipaddress.ip_network(value, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
    )
