"""Semantic checks of PeerAuthentication and RequestAuthentication (istio-notes §1.9, §1.10).

AuthorizationPolicy has its own module (authz_validation); the checks here are the ones Istio's
webhook and CEL rules apply, with reasons that say what to write instead.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from trellis.api.duration import parse_duration
from trellis.api.policy_target import check_policy_target, check_selector
from trellis.api.security import JWTRule, PeerAuthenticationSpec, RequestAuthenticationSpec
from trellis.api.semantic_checks import Problems

# An HTTP header name is an RFC 9110 token.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def check_peer_authentication(spec: PeerAuthenticationSpec) -> Problems:
    problems: Problems = []
    check_selector(spec.selector, problems)
    if spec.port_level_mtls and (spec.selector is None or not spec.selector.match_labels):
        problems.append(
            (
                "spec.portLevelMtls",
                "portLevelMtls requires a selector; add selector.matchLabels naming the "
                "workloads whose ports these are",
            )
        )
    for key in spec.port_level_mtls:
        if not (key.isascii() and key.isdigit() and 1 <= int(key) <= 65535):
            problems.append(
                (
                    f"spec.portLevelMtls.{key}",
                    f"{key!r} is not a port number; use the workload's port, 1..65535",
                )
            )
    return problems


def check_request_authentication(spec: RequestAuthenticationSpec) -> Problems:
    problems: Problems = []
    check_policy_target(spec, problems)
    for i, rule in enumerate(spec.jwt_rules):
        _check_jwt_rule(rule, f"spec.jwtRules[{i}]", problems)
    return problems


def _check_jwt_rule(rule: JWTRule, path: str, problems: Problems) -> None:
    if not rule.issuer:
        problems.append((f"{path}.issuer", "issuer must not be empty, e.g. issuer.example.com"))
    for k, audience in enumerate(rule.audiences):
        if not audience:
            problems.append((f"{path}.audiences[{k}]", "an empty audience is not allowed"))
    if rule.jwks is not None and rule.jwks_uri is not None:
        problems.append((path, "set jwks or jwksUri, not both; keep one"))
    if rule.jwks_uri is not None:
        _check_jwks_uri(rule.jwks_uri, f"{path}.jwksUri", problems)
    if rule.jwks is not None:
        _check_jwks(rule.jwks, f"{path}.jwks", problems)
    _check_token_locations(rule, path, problems)
    _check_outputs(rule, path, problems)
    if rule.timeout is not None and parse_duration(rule.timeout) <= 0:
        problems.append((f"{path}.timeout", "timeout must be more than 0s, e.g. 5s"))


def _check_jwks_uri(uri: str, path: str, problems: Problems) -> None:
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        problems.append((path, f"{uri!r} is not a URL ({exc}); use https://host/path"))
        return
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append((path, f"{uri!r} is not an http(s) URL; use https://host/path"))


def _check_jwks(jwks: str, path: str, problems: Problems) -> None:
    try:
        document = json.loads(jwks)
    except json.JSONDecodeError as exc:
        problems.append((path, f"jwks is not valid JSON ({exc}); paste the JWKS document"))
        return
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        problems.append((path, 'jwks must be a JSON object with a "keys" list (a JWK Set)'))


def _check_token_locations(rule: JWTRule, path: str, problems: Problems) -> None:
    for k, header in enumerate(rule.from_headers):
        if not header.name:
            problems.append((f"{path}.fromHeaders[{k}].name", "header name must not be empty"))
    for field, values in (("fromParams", rule.from_params), ("fromCookies", rule.from_cookies)):
        for k, value in enumerate(values):
            if not value:
                problems.append((f"{path}.{field}[{k}]", "an empty name is not allowed"))


def _check_outputs(rule: JWTRule, path: str, problems: Problems) -> None:
    if rule.output_payload_to_header is not None:
        _check_header_name(rule.output_payload_to_header, f"{path}.outputPayloadToHeader", problems)
    for k, output in enumerate(rule.output_claim_to_headers):
        where = f"{path}.outputClaimToHeaders[{k}]"
        _check_header_name(output.header, f"{where}.header", problems)
        if not output.claim:
            problems.append((f"{where}.claim", "claim must not be empty, e.g. sub"))


def _check_header_name(name: str, path: str, problems: Problems) -> None:
    if not _HEADER_NAME.match(name):
        problems.append((path, f"{name!r} is not a valid HTTP header name, e.g. x-jwt-claim-sub"))
