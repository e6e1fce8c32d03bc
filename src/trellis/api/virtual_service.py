"""VirtualService (networking.istio.io): how requests to a host are routed.

Rules in http/tls/tcp are ordered and the first match wins (istio-notes §1.1).
"""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import Field

from trellis.api.base import ApiModel, Resource
from trellis.api.common import (
    NETWORKING_GROUP,
    NETWORKING_VERSIONS,
    Destination,
    Headers,
    Percent,
    StringMatch,
)
from trellis.api.duration import Duration


class HTTPMatchRequest(ApiModel):
    """Conditions ANDed within one match block; blocks of a route are ORed."""

    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    without_headers: dict[str, StringMatch] = Field(default_factory=dict)
    query_params: dict[str, StringMatch] = Field(default_factory=dict)
    ignore_uri_case: bool | None = None
    port: int | None = None
    source_labels: dict[str, str] = Field(default_factory=dict)
    source_namespace: str | None = None
    gateways: list[str] = Field(default_factory=list)
    stat_prefix: str | None = None


class HTTPRouteDestination(ApiModel):
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


class RedirectPortSelection(enum.Enum):
    FROM_PROTOCOL_DEFAULT = "FROM_PROTOCOL_DEFAULT"
    FROM_REQUEST_PORT = "FROM_REQUEST_PORT"


class HTTPRedirect(ApiModel):
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: RedirectPortSelection | None = None
    scheme: str | None = None
    redirect_code: int | None = None
    prefix_rewrite: str | None = None

    @property
    def status(self) -> int:
        """The HTTP status the redirect answers with (Istio's default is 301)."""
        return self.redirect_code or 301


class HTTPBody(ApiModel):
    string: str | None = None
    bytes: str | None = None  # base64, as protobuf JSON writes bytes


class HTTPDirectResponse(ApiModel):
    status: int
    body: HTTPBody | None = None


class Delegate(ApiModel):
    name: str
    namespace: str | None = None


class RegexRewrite(ApiModel):
    match: str
    rewrite: str


class HTTPRewrite(ApiModel):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class HTTPRetry(ApiModel):
    attempts: int | None = None
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


class Delay(ApiModel):
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: int | None = None  # deprecated integer form

    @property
    def percent_value(self) -> float:
        """Share of requests delayed, 0..100; with neither field set Istio faults nothing."""
        return _fault_percent(self.percentage, self.percent)


class Abort(ApiModel):
    http_status: int | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None

    @property
    def percent_value(self) -> float:
        """Share of requests aborted, 0..100; without a percentage nothing is aborted."""
        return _fault_percent(self.percentage, None)


def _fault_percent(percentage: Percent | None, percent: int | None) -> float:
    if percentage is not None:
        return percentage.value
    return float(percent) if percent is not None else 0.0


class HTTPFaultInjection(ApiModel):
    delay: Delay | None = None
    abort: Abort | None = None


class HTTPMirrorPolicy(ApiModel):
    destination: Destination
    percentage: Percent | None = None

    @property
    def percent_value(self) -> float:
        """Share mirrored, 0..100 (100 when no percentage is given)."""
        return self.percentage.value if self.percentage is not None else 100.0


class UnmatchedPreflights(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    FORWARD = "FORWARD"
    IGNORE = "IGNORE"


class CorsPolicy(ApiModel):
    allow_origins: list[StringMatch] = Field(default_factory=list)
    allow_origin: list[str] = Field(default_factory=list)  # deprecated
    allow_methods: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: UnmatchedPreflights | None = None


class HTTPRoute(ApiModel):
    """One HTTP rule: matches, then route/redirect/directResponse/delegate and policies."""

    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: Percent | None = None
    mirror_percent: int | None = None  # deprecated integer form
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    @property
    def mirror_percent_value(self) -> float:
        """Share of requests sent to `mirror`, 0..100; 100 when no percentage is given."""
        if self.mirror_percentage is not None:
            return self.mirror_percentage.value
        return float(self.mirror_percent) if self.mirror_percent is not None else 100.0

    @property
    def all_mirrors(self) -> list[HTTPMirrorPolicy]:
        """`mirror` (+ its percentage) and `mirrors[]` as one list."""
        single: list[HTTPMirrorPolicy] = []
        if self.mirror is not None:
            pct = Percent(value=self.mirror_percent_value)
            single.append(HTTPMirrorPolicy(destination=self.mirror, percentage=pct))
        return single + list(self.mirrors)


class RouteDestination(ApiModel):
    """A weighted destination of a TLS or TCP route."""

    destination: Destination
    weight: int | None = None


class TLSMatchAttributes(ApiModel):
    sni_hosts: list[str] = Field(default_factory=list)
    destination_subnets: list[str] = Field(default_factory=list)
    port: int | None = None
    source_labels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    source_namespace: str | None = None


class TLSRoute(ApiModel):
    match: list[TLSMatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class L4MatchAttributes(ApiModel):
    destination_subnets: list[str] = Field(default_factory=list)
    port: int | None = None
    source_subnet: str | None = None
    source_labels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    source_namespace: str | None = None


class TCPRoute(ApiModel):
    match: list[L4MatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class VirtualServiceSpec(ApiModel):
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)

    @property
    def applies_to_mesh(self) -> bool:
        """True when sidecars use these rules: no gateways listed, or `mesh` among them."""
        return not self.gateways or "mesh" in self.gateways


class VirtualService(Resource):
    GROUP: ClassVar[str] = NETWORKING_GROUP
    KIND: ClassVar[str] = "VirtualService"
    VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS

    spec: VirtualServiceSpec
