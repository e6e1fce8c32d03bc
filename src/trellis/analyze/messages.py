"""Analysis messages with Istio's codes and levels, so `istioctl analyze` knowledge carries over.

Codes, names and levels are Istio's (pkg/config/analysis/msg/messages.yaml); the wording is
ours. The JSON form has the keys `istioctl analyze -o json` prints: code, level, message,
origin, reference (where the resource was read from, when known) and documentationUrl.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

DOCS_BASE = "https://istio.io/latest/docs/reference/config/analysis"


class Level(enum.Enum):
    """Istio's message levels; the order is severity (Error is worst)."""

    ERROR = "Error"
    WARNING = "Warning"
    INFO = "Info"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Level) -> bool:
        """True when this level is as bad as `other` or worse."""
        return self.rank <= other.rank


_RANK = {Level.ERROR: 0, Level.WARNING: 1, Level.INFO: 2}


@dataclass(frozen=True, slots=True)
class MessageType:
    code: str
    name: str
    level: Level

    @property
    def documentation_url(self) -> str:
        return f"{DOCS_BASE}/{self.code.lower()}/"


REFERENCED_RESOURCE_NOT_FOUND = MessageType("IST0101", "ReferencedResourceNotFound", Level.ERROR)
SCHEMA_VALIDATION_ERROR = MessageType("IST0106", "SchemaValidationError", Level.ERROR)
UNKNOWN_ANNOTATION = MessageType("IST0108", "UnknownAnnotation", Level.WARNING)
CONFLICTING_MESH_GATEWAY_VS_HOSTS = MessageType(
    "IST0109", "ConflictingMeshGatewayVirtualServiceHosts", Level.ERROR
)
PORT_NAME_NOT_UNDER_CONVENTION = MessageType(
    "IST0118", "PortNameIsNotUnderNamingConvention", Level.INFO
)
NO_SERVER_CERT_VERIFICATION_DESTINATION = MessageType(
    "IST0128", "NoServerCertificateVerificationDestinationLevel", Level.WARNING
)
NO_SERVER_CERT_VERIFICATION_PORT = MessageType(
    "IST0129", "NoServerCertificateVerificationPortLevel", Level.WARNING
)
VS_UNREACHABLE_RULE = MessageType("IST0130", "VirtualServiceUnreachableRule", Level.WARNING)
VS_INEFFECTIVE_MATCH = MessageType("IST0131", "VirtualServiceIneffectiveMatch", Level.INFO)
VS_HOST_NOT_FOUND_IN_GATEWAY = MessageType(
    "IST0132", "VirtualServiceHostNotFoundInGateway", Level.WARNING
)
CONFLICTING_GATEWAYS = MessageType("IST0145", "ConflictingGateways", Level.ERROR)
GATEWAY_PORT_NOT_ON_SERVICE = MessageType(
    "IST0162", "GatewayPortNotDefinedOnService", Level.WARNING
)
UNKNOWN_DESTINATION_RULE_HOST = MessageType("IST0174", "UnknownDestinationRuleHost", Level.WARNING)

ALL_TYPES: tuple[MessageType, ...] = (
    REFERENCED_RESOURCE_NOT_FOUND,
    SCHEMA_VALIDATION_ERROR,
    UNKNOWN_ANNOTATION,
    CONFLICTING_MESH_GATEWAY_VS_HOSTS,
    PORT_NAME_NOT_UNDER_CONVENTION,
    NO_SERVER_CERT_VERIFICATION_DESTINATION,
    NO_SERVER_CERT_VERIFICATION_PORT,
    VS_UNREACHABLE_RULE,
    VS_INEFFECTIVE_MATCH,
    VS_HOST_NOT_FOUND_IN_GATEWAY,
    CONFLICTING_GATEWAYS,
    GATEWAY_PORT_NOT_ON_SERVICE,
    UNKNOWN_DESTINATION_RULE_HOST,
)


@dataclass(frozen=True, slots=True)
class Origin:
    """The resource a message is about; `reference` says where it was read (a file name)."""

    kind: str
    namespace: str
    name: str
    reference: str = ""

    @property
    def friendly_name(self) -> str:
        """Istio's form: `VirtualService reviews.default`."""
        return (
            f"{self.kind} {self.name}.{self.namespace}"
            if self.namespace
            else (f"{self.kind} {self.name}")
        )


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    origin: Origin
    text: str
    field: str = ""  # the field path the message is about, when there is one

    @property
    def code(self) -> str:
        return self.type.code

    @property
    def level(self) -> Level:
        return self.type.level

    def __str__(self) -> str:
        """The one-line form istioctl prints: `Error [IST0101] (VirtualService x.ns) text`."""
        where = self.origin.friendly_name
        if self.origin.reference:
            where += f" {self.origin.reference}"
        return f"{self.level.value} [{self.code}] ({where}) {self.text}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "level": self.level.value,
            "origin": self.origin.friendly_name,
        }
        if self.origin.reference:
            out["reference"] = self.origin.reference
        out["message"] = self.text
        out["documentationUrl"] = self.type.documentation_url
        return out

    @property
    def sort_key(self) -> tuple[int, str, str, str, str, str]:
        o = self.origin
        return (self.level.rank, o.namespace, o.kind, o.name, self.code, self.text)
