"""Small building blocks shared by the networking.istio.io kinds."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import Field, model_validator

from trellis.api.base import ApiModel

NETWORKING_GROUP = "networking.istio.io"
NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")

StringMatchKind = Literal["exact", "prefix", "regex"]


class StringMatch(ApiModel):
    """Istio StringMatch: one of exact, prefix or regex (RE2, full match); `{}` means presence."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StringMatch:
        chosen = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"set only one of exact, prefix or regex (found {', '.join(chosen)})")
        return self

    @property
    def match_kind(self) -> StringMatchKind | None:
        """Which of exact/prefix/regex is set; None for the empty (presence) match."""
        if self.exact is not None:
            return "exact"
        if self.prefix is not None:
            return "prefix"
        if self.regex is not None:
            return "regex"
        return None

    @property
    def value(self) -> str | None:
        """The string of whichever alternative is set."""
        kind = self.match_kind
        return None if kind is None else getattr(self, kind)


class Percent(ApiModel):
    """Istio Percent: a percentage 0..100 as a double."""

    value: float = 0.0

    @property
    def fraction(self) -> float:
        """The percentage as a fraction 0..1."""
        return self.value / 100.0


class PortSelector(ApiModel):
    number: int | None = None


class Destination(ApiModel):
    """Where traffic goes: a host in the registry, optional subset and port."""

    host: str
    subset: str | None = None
    port: PortSelector | None = None

    @property
    def port_number(self) -> int | None:
        return self.port.number if self.port else None


class Port(ApiModel):
    """A port as Gateway servers, ServiceEntry and Sidecar listeners declare it."""

    number: int | None = None
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None


class WorkloadSelector(ApiModel):
    """`{labels: {...}}` selector of ServiceEntry, Sidecar and Gateway-like kinds."""

    labels: dict[str, str] = Field(default_factory=dict)


class LabelSelector(ApiModel):
    """`{matchLabels: {...}}` selector (DestinationRule.workloadSelector)."""

    match_labels: dict[str, str] = Field(default_factory=dict)


class HeaderOperations(ApiModel):
    """Header manipulation: set (replace), add (append), remove."""

    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Headers(ApiModel):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class ServerTLSMode(enum.Enum):
    PASSTHROUGH = "PASSTHROUGH"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"
    OPTIONAL_MUTUAL = "OPTIONAL_MUTUAL"


class TLSProtocolVersion(enum.Enum):
    TLS_AUTO = "TLS_AUTO"
    TLSV1_0 = "TLSV1_0"
    TLSV1_1 = "TLSV1_1"
    TLSV1_2 = "TLSV1_2"
    TLSV1_3 = "TLSV1_3"


class ServerTLSSettings(ApiModel):
    """TLS a Gateway server or Sidecar ingress listener terminates."""

    https_redirect: bool | None = None
    mode: ServerTLSMode | None = None
    credential_name: str | None = None
    credential_names: list[str] = Field(default_factory=list)
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    subject_alt_names: list[str] = Field(default_factory=list)
    verify_certificate_spki: list[str] = Field(default_factory=list)
    verify_certificate_hash: list[str] = Field(default_factory=list)
    min_protocol_version: TLSProtocolVersion | None = None
    max_protocol_version: TLSProtocolVersion | None = None
    cipher_suites: list[str] = Field(default_factory=list)
