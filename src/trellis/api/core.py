"""Core `v1 Service`: the Kubernetes-shaped service declaration the local runtime also accepts."""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from pydantic import Field, model_validator

from trellis.api.base import ApiModel, Resource

CORE_GROUP = ""
CORE_VERSIONS = ("v1",)


class TransportProtocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class ServicePortSpec(ApiModel):
    """A Service port; targetPort defaults to port as in Kubernetes."""

    name: str | None = None
    port: int
    target_port: int = 0
    protocol: TransportProtocol = TransportProtocol.TCP
    app_protocol: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_target_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "targetPort" not in data and "target_port" not in data:
            port = data.get("port")
            return {**data, "targetPort": port} if port is not None else data
        return data


class ServiceSpec(ApiModel):
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePortSpec] = Field(default_factory=list)
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    type: str | None = None


class Service(Resource):
    GROUP: ClassVar[str] = CORE_GROUP
    KIND: ClassVar[str] = "Service"
    VERSIONS: ClassVar[tuple[str, ...]] = CORE_VERSIONS

    spec: ServiceSpec
