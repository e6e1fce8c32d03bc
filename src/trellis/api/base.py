"""Common shape of every resource: Kubernetes-style apiVersion/kind/metadata/spec.

Models use snake_case attributes with camelCase aliases, so the wire format is Istio's exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as a user would write it: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")


class ObjectMeta(ApiModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None

    @field_validator("creation_timestamp")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        """Naive times are read as UTC, so any two resources' ages compare (oldest policy wins)."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Resource(ApiModel):
    """A stored resource. Subclasses set GROUP, KIND, VERSIONS and type `spec`."""

    GROUP: ClassVar[str] = ""
    KIND: ClassVar[str] = ""
    VERSIONS: ClassVar[tuple[str, ...]] = ()

    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name): identity in the store."""
        return (self.kind, self.metadata.namespace, self.metadata.name)
