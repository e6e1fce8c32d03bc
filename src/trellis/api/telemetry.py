"""telemetry.istio.io Telemetry: tracing, access logging and metrics per mesh/namespace/workload.

Fields follow Istio's telemetry proto (istio-notes §1.12); semantic checks are in
trellis.api.telemetry_validation, and how levels combine in trellis.api.policy_scope.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import Field, model_validator

from trellis.api.base import ApiModel, Resource
from trellis.api.duration import Duration
from trellis.api.policy_target import PolicyTargetReference, TargetedPolicySpec

TELEMETRY_GROUP = "telemetry.istio.io"
TELEMETRY_VERSIONS = ("v1", "v1alpha1")


class WorkloadMode(enum.Enum):
    """Which side of a connection a setting applies to: the client, the server, or both."""

    CLIENT_AND_SERVER = "CLIENT_AND_SERVER"
    CLIENT = "CLIENT"
    SERVER = "SERVER"


class ProviderRef(ApiModel):
    """A MeshConfig extension provider by name, e.g. `otel-tracing`, `envoy`, `prometheus`."""

    name: str


class WorkloadModeSelector(ApiModel):
    """`match: {mode: ...}` of tracing and accessLogging entries."""

    mode: WorkloadMode = WorkloadMode.CLIENT_AND_SERVER


class LiteralTag(ApiModel):
    value: str


class EnvironmentTag(ApiModel):
    name: str
    default_value: str | None = None


class RequestHeaderTag(ApiModel):
    name: str
    default_value: str | None = None


class CustomTag(ApiModel):
    """A span tag: a literal, an environment variable of the proxy, or a request header."""

    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: RequestHeaderTag | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CustomTag:
        chosen = [k for k in ("literal", "environment", "header") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of literal, environment or header")
        return self


class Tracing(ApiModel):
    match: WorkloadModeSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] = Field(default_factory=dict)


class AccessLogFilter(ApiModel):
    """A CEL expression; only matching requests are logged."""

    expression: str


class AccessLogging(ApiModel):
    match: WorkloadModeSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


class IstioMetric(enum.Enum):
    """Istio's standard metrics by their Telemetry API names (istio-notes §2.1)."""

    ALL_METRICS = "ALL_METRICS"
    REQUEST_COUNT = "REQUEST_COUNT"
    REQUEST_DURATION = "REQUEST_DURATION"
    REQUEST_SIZE = "REQUEST_SIZE"
    RESPONSE_SIZE = "RESPONSE_SIZE"
    TCP_OPENED_CONNECTIONS = "TCP_OPENED_CONNECTIONS"
    TCP_CLOSED_CONNECTIONS = "TCP_CLOSED_CONNECTIONS"
    TCP_SENT_BYTES = "TCP_SENT_BYTES"
    TCP_RECEIVED_BYTES = "TCP_RECEIVED_BYTES"
    GRPC_REQUEST_MESSAGES = "GRPC_REQUEST_MESSAGES"
    GRPC_RESPONSE_MESSAGES = "GRPC_RESPONSE_MESSAGES"


class MetricSelector(ApiModel):
    """Which metric an override changes: a standard one or a custom metric by name."""

    metric: IstioMetric | None = None
    custom_metric: str | None = None
    mode: WorkloadMode = WorkloadMode.CLIENT_AND_SERVER


class TagOperation(enum.Enum):
    UPSERT = "UPSERT"
    REMOVE = "REMOVE"


class TagOverride(ApiModel):
    """Add or replace a metric label (value is a CEL expression), or remove it."""

    operation: TagOperation = TagOperation.UPSERT
    value: str | None = None


class MetricsOverrides(ApiModel):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] = Field(default_factory=dict)


class Metrics(ApiModel):
    providers: list[ProviderRef] = Field(default_factory=list)
    overrides: list[MetricsOverrides] = Field(default_factory=list)
    reporting_interval: Duration | None = None


class TelemetrySpec(TargetedPolicySpec):
    tracing: list[Tracing] = Field(default_factory=list)
    access_logging: list[AccessLogging] = Field(default_factory=list)
    metrics: list[Metrics] = Field(default_factory=list)


class Telemetry(Resource):
    GROUP: ClassVar[str] = TELEMETRY_GROUP
    KIND: ClassVar[str] = "Telemetry"
    VERSIONS: ClassVar[tuple[str, ...]] = TELEMETRY_VERSIONS

    spec: TelemetrySpec = Field(default_factory=TelemetrySpec)


__all__ = [
    "TELEMETRY_GROUP",
    "TELEMETRY_VERSIONS",
    "AccessLogFilter",
    "AccessLogging",
    "CustomTag",
    "EnvironmentTag",
    "IstioMetric",
    "LiteralTag",
    "MetricSelector",
    "Metrics",
    "MetricsOverrides",
    "PolicyTargetReference",
    "ProviderRef",
    "RequestHeaderTag",
    "TagOperation",
    "TagOverride",
    "Telemetry",
    "TelemetrySpec",
    "Tracing",
    "WorkloadMode",
    "WorkloadModeSelector",
]
