"""security.istio.io kinds: PeerAuthentication, AuthorizationPolicy, RequestAuthentication.

Field names and defaults follow Istio's protos (istio-notes §1.9-1.11); semantic checks are in
trellis.api.security_validation, and which policies apply to a workload in trellis.api.policy_scope.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator

from trellis.api.base import ApiModel, Resource
from trellis.api.common import LabelSelector
from trellis.api.duration import Duration
from trellis.api.policy_target import PolicyTargetReference, TargetedPolicySpec

SECURITY_GROUP = "security.istio.io"
SECURITY_VERSIONS = ("v1", "v1beta1")


def _numbers_as_strings(values: Any) -> Any:
    """`ports: [8080]` is read as `["8080"]`: Istio's ports are strings, YAML makes them ints."""
    if isinstance(values, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]
    return values


PortStrings = Annotated[list[str], BeforeValidator(_numbers_as_strings)]


class PeerAuthenticationMode(enum.Enum):
    """How a workload accepts inbound connections; UNSET inherits from the enclosing level."""

    UNSET = "UNSET"
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


class PeerAuthenticationMTLS(ApiModel):
    mode: PeerAuthenticationMode = PeerAuthenticationMode.UNSET


class PeerAuthenticationSpec(ApiModel):
    """mTLS mode for the selected workloads, optionally per workload (container) port."""

    selector: LabelSelector | None = None
    mtls: PeerAuthenticationMTLS | None = None
    port_level_mtls: dict[str, PeerAuthenticationMTLS] = Field(default_factory=dict)

    @field_validator("port_level_mtls", mode="before")
    @classmethod
    def _port_keys_as_strings(cls, value: Any) -> Any:
        # YAML reads `8080:` as an int key, JSON (and Istio's wire format) has "8080".
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value


class PeerAuthentication(Resource):
    GROUP: ClassVar[str] = SECURITY_GROUP
    KIND: ClassVar[str] = "PeerAuthentication"
    VERSIONS: ClassVar[tuple[str, ...]] = SECURITY_VERSIONS

    spec: PeerAuthenticationSpec = Field(default_factory=PeerAuthenticationSpec)


class AuthorizationPolicyAction(enum.Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


class ExtensionProvider(ApiModel):
    """A MeshConfig extension provider by name (external authorization for CUSTOM)."""

    name: str


class Source(ApiModel):
    """Who sends the request; fields are ANDed, the values of one field ORed."""

    principals: list[str] = Field(default_factory=list)
    not_principals: list[str] = Field(default_factory=list)
    request_principals: list[str] = Field(default_factory=list)
    not_request_principals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    not_namespaces: list[str] = Field(default_factory=list)
    ip_blocks: list[str] = Field(default_factory=list)
    not_ip_blocks: list[str] = Field(default_factory=list)
    remote_ip_blocks: list[str] = Field(default_factory=list)
    not_remote_ip_blocks: list[str] = Field(default_factory=list)


class Operation(ApiModel):
    """What the request asks for; fields are ANDed, the values of one field ORed."""

    hosts: list[str] = Field(default_factory=list)
    not_hosts: list[str] = Field(default_factory=list)
    ports: PortStrings = Field(default_factory=list)
    not_ports: PortStrings = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    not_methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    not_paths: list[str] = Field(default_factory=list)


class RuleFrom(ApiModel):
    source: Source | None = None


class RuleTo(ApiModel):
    operation: Operation | None = None


class Condition(ApiModel):
    """A `when` condition: an attribute key and the values it must (not) have."""

    key: str
    values: list[str] = Field(default_factory=list)
    not_values: list[str] = Field(default_factory=list)


class Rule(ApiModel):
    """Matches when any `from`, any `to` and every `when` match; a missing list matches all."""

    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class AuthorizationPolicySpec(TargetedPolicySpec):
    """`{}` is ALLOW with no rules: it matches nothing and so denies every request."""

    action: AuthorizationPolicyAction = AuthorizationPolicyAction.ALLOW
    provider: ExtensionProvider | None = None
    rules: list[Rule] = Field(default_factory=list)


class AuthorizationPolicy(Resource):
    GROUP: ClassVar[str] = SECURITY_GROUP
    KIND: ClassVar[str] = "AuthorizationPolicy"
    VERSIONS: ClassVar[tuple[str, ...]] = SECURITY_VERSIONS

    spec: AuthorizationPolicySpec = Field(default_factory=AuthorizationPolicySpec)


class JWTHeader(ApiModel):
    """A header carrying the token, e.g. {name: Authorization, prefix: "Bearer "}."""

    name: str
    prefix: str | None = None


class ClaimToHeader(ApiModel):
    header: str
    claim: str


class JWTRule(ApiModel):
    """Tokens of one issuer: where to find them, which keys verify them, what to pass on."""

    issuer: str
    audiences: list[str] = Field(default_factory=list)
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: list[JWTHeader] = Field(default_factory=list)
    from_params: list[str] = Field(default_factory=list)
    from_cookies: list[str] = Field(default_factory=list)
    output_payload_to_header: str | None = None
    output_claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    forward_original_token: bool | None = None
    timeout: Duration | None = None


class RequestAuthenticationSpec(TargetedPolicySpec):
    """A request without a token is still accepted; pair with an AuthorizationPolicy to require one."""

    jwt_rules: list[JWTRule] = Field(default_factory=list)


class RequestAuthentication(Resource):
    GROUP: ClassVar[str] = SECURITY_GROUP
    KIND: ClassVar[str] = "RequestAuthentication"
    VERSIONS: ClassVar[tuple[str, ...]] = SECURITY_VERSIONS

    spec: RequestAuthenticationSpec = Field(default_factory=RequestAuthenticationSpec)


__all__ = [
    "SECURITY_GROUP",
    "SECURITY_VERSIONS",
    "AuthorizationPolicy",
    "AuthorizationPolicyAction",
    "AuthorizationPolicySpec",
    "ClaimToHeader",
    "Condition",
    "ExtensionProvider",
    "JWTHeader",
    "JWTRule",
    "LabelSelector",
    "Operation",
    "PeerAuthentication",
    "PeerAuthenticationMTLS",
    "PeerAuthenticationMode",
    "PeerAuthenticationSpec",
    "PolicyTargetReference",
    "RequestAuthentication",
    "RequestAuthenticationSpec",
    "Rule",
    "RuleFrom",
    "RuleTo",
    "Source",
]
