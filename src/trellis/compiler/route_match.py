"""HTTPMatchRequest -> Envoy RouteMatch (istio-notes §1.1).

Conditions inside one match block are ANDed in one RouteMatch; uri, method, authority and scheme
become the path matcher and pseudo-header matchers; `{}` means "header present".
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from trellis.api.networking import HTTPMatchRequest, StringMatch

# Header names Istio ignores in `headers` because dedicated fields cover them.
_RESERVED_HEADERS = frozenset({"uri", "scheme", "method", "authority"})


def build_route_match(match: HTTPMatchRequest | None) -> rc.RouteMatch:
    """One RouteMatch for one match block; no block at all matches every request."""
    route_match = rc.RouteMatch()
    if match is None:
        route_match.prefix = "/"
        return route_match
    _apply_path(route_match, match.uri)
    if match.ignore_uri_case:
        route_match.case_sensitive.value = False
    route_match.headers.extend(_pseudo_header_matchers(match))
    route_match.headers.extend(build_header_matchers(match.headers, invert=False))
    route_match.headers.extend(build_header_matchers(match.without_headers, invert=True))
    route_match.query_parameters.extend(build_query_matchers(match.query_params))
    return route_match


def _apply_path(route_match: rc.RouteMatch, uri: StringMatch | None) -> None:
    kind = uri.match_kind if uri is not None else None
    if uri is None or kind is None:
        route_match.prefix = "/"
    elif kind == "exact":
        route_match.path = uri.exact or ""
    elif kind == "prefix":
        route_match.prefix = uri.prefix or ""
    else:
        route_match.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex or ""))


def _pseudo_header_matchers(match: HTTPMatchRequest) -> list[rc.HeaderMatcher]:
    pseudo = {":method": match.method, ":authority": match.authority, ":scheme": match.scheme}
    return [
        build_header_matcher(name, value, invert=False)
        for name, value in pseudo.items()
        if value is not None
    ]


def build_header_matchers(
    headers: Mapping[str, StringMatch], *, invert: bool
) -> list[rc.HeaderMatcher]:
    return [
        build_header_matcher(name.lower(), value, invert=invert)
        for name, value in headers.items()
        if name.lower() not in _RESERVED_HEADERS
    ]


def build_header_matcher(name: str, value: StringMatch, *, invert: bool) -> rc.HeaderMatcher:
    """exact/prefix/regex as a string matcher; the empty match tests presence."""
    matcher = rc.HeaderMatcher(name=name, invert_match=invert)
    string_match = build_string_matcher(value)
    if string_match is None:
        matcher.present_match = True
    else:
        matcher.string_match.CopyFrom(string_match)
    return matcher


def build_query_matchers(params: Mapping[str, StringMatch]) -> list[rc.QueryParameterMatcher]:
    matchers = []
    for name, value in params.items():
        matcher = rc.QueryParameterMatcher(name=name)
        string_match = build_string_matcher(value)
        if string_match is None:
            matcher.present_match = True
        else:
            matcher.string_match.CopyFrom(string_match)
        matchers.append(matcher)
    return matchers


def build_string_matcher(value: StringMatch) -> string_pb2.StringMatcher | None:
    """Istio StringMatch -> Envoy StringMatcher; regexes are RE2 full matches in both.

    None means "present": the empty match, and an empty prefix (which Envoy refuses).
    """
    kind = value.match_kind
    if kind == "exact":
        return string_pb2.StringMatcher(exact=value.exact or "")
    if kind == "prefix" and value.prefix:
        return string_pb2.StringMatcher(prefix=value.prefix)
    if kind == "regex":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value.regex or ""))
    return None
