"""RequestAuthentication -> Envoy jwt_authn (istio-notes §1.10, DESIGN §5).

One provider per jwtRule. A request with a token must carry a valid one (else 401); a request
without a token passes with no request principal (`requires_any` of every provider or
`allow_missing`, as Istio builds it), so requiring a token is an AuthorizationPolicy's job.
Each provider stores the verified payload in dynamic metadata under its issuer
(`payload_in_metadata`), where compiler/rbac_match.py looks up request principals and claims.

Keys: `jwks` inline as written; `jwksUri` documents are fetched by trellisd (the compiler does
no I/O) and passed in by URI. A URI whose document trellisd does not have yet gets a key set
nobody holds the private key of, so its tokens fail closed (401), never open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import empty_pb2

from trellis.api.security import JWTRule, RequestAuthentication
from trellis.compiler.protos import pack

JWT_AUTHN = "envoy.filters.http.jwt_authn"

# An RSA public key generated for Trellis whose private half was never kept: stands in for a
# JWKS that is not available, so every token is rejected.
UNUSABLE_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "kid": "trellis-unavailable",
                "alg": "RS256",
                "e": "AQAB",
                "n": (
                    "xNZ49fNP3i5VF9MA-eTfKJFpe7t8K32odt4-YlP3ygLfDohadCZyHfTiciGqyh2u7zGdR9yq"
                    "SkOPdA_EzLk2lO3NIbDuV3kI_ldW_vQ0kB9KV9FIDgakEEq470Y6uMz--zl5pMUT1UMSV2Gt"
                    "_D0n9TGpNrmj38_rXsIlTshzqbtYN4aTNokDwG7g9po8D3QIIhf6_BcCFe98gQ8vMVZ_WWHA"
                    "yPP4K2d3NZ8v67IESbEpAPN7j-bPsOgDHZD_SIGx564VKc13jXyY64bGkdKQqLi42JKpRGKr"
                    "wlZA8vdwbwHPqbbbeI8a93RMKr2OAWgJv6WniDJNdrY0Pmd9fcKp7w"
                ),
            }
        ]
    },
    sort_keys=True,
)


@dataclass(frozen=True, slots=True)
class JwtInputs:
    """The RequestAuthentications on a workload and the JWKS documents trellisd fetched."""

    policies: tuple[RequestAuthentication, ...] = ()
    fetched_jwks: Mapping[str, str] | None = None

    @property
    def issuers(self) -> tuple[str, ...]:
        """Distinct issuers in policy order: the metadata keys RBAC reads."""
        found = (r.issuer for p in self.policies for r in p.spec.jwt_rules)
        return tuple(dict.fromkeys(found))


def provider_name(policy: RequestAuthentication, index: int) -> str:
    return f"ns[{policy.namespace}]-ra[{policy.name}]-rule[{index}]"


def build_jwt_filter(inputs: JwtInputs) -> hcm.HttpFilter | None:
    """The jwt_authn filter for an inbound HCM, or None when no jwtRule applies."""
    providers = {
        provider_name(policy, i): build_provider(rule, inputs.fetched_jwks or {})
        for policy in inputs.policies
        for i, rule in enumerate(policy.spec.jwt_rules)
    }
    if not providers:
        return None
    config = jwt_pb2.JwtAuthentication(
        providers=providers,
        rules=[
            jwt_pb2.RequirementRule(
                match=route_components_pb2.RouteMatch(prefix="/"),
                requires=optional_token_requirement(list(providers)),
            )
        ],
        bypass_cors_preflight=True,
    )
    return hcm.HttpFilter(name=JWT_AUTHN, typed_config=pack(config))


def optional_token_requirement(names: Sequence[str]) -> jwt_pb2.JwtRequirement:
    """Any provider's valid token, or no token at all; a token that fails is a 401."""
    alternatives = [jwt_pb2.JwtRequirement(provider_name=n) for n in names]
    alternatives.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    return jwt_pb2.JwtRequirement(
        requires_any=jwt_pb2.JwtRequirementOrList(requirements=alternatives)
    )


def build_provider(rule: JWTRule, fetched: Mapping[str, str]) -> jwt_pb2.JwtProvider:
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=bool(rule.forward_original_token),
        from_headers=[
            jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix or "") for h in rule.from_headers
        ],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        forward_payload_header=rule.output_payload_to_header or "",
        payload_in_metadata=rule.issuer,
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(header_name=c.header, claim_name=c.claim)
            for c in rule.output_claim_to_headers
        ],
    )
    provider.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=jwks_for(rule, fetched)))
    return provider


def jwks_for(rule: JWTRule, fetched: Mapping[str, str]) -> str:
    """The keys to inline. Envoy rejects a whole listener whose JWKS has no key, so a set
    without keys (or keys not fetched yet) becomes UNUSABLE_JWKS: its tokens fail, closed."""
    document = rule.jwks
    if document is None and rule.jwks_uri is not None:
        document = fetched.get(rule.jwks_uri)
    return document if document is not None and _has_keys(document) else UNUSABLE_JWKS


def _has_keys(document: str) -> bool:
    try:
        keys = json.loads(document).get("keys")
    except (ValueError, AttributeError):
        return False
    return isinstance(keys, list) and any(isinstance(k, dict) and k.get("kty") for k in keys)
