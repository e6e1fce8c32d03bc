"""MeshSnapshot: everything the compiler reads, immutable and versioned (DESIGN §3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from trellis.api.base import Resource
from trellis.model.registry import Service, Workload


class OutboundPolicy(enum.Enum):
    ALLOW_ANY = "ALLOW_ANY"
    REGISTRY_ONLY = "REGISTRY_ONLY"


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """The subset of Istio's MeshConfig the compiler needs, with Istio's defaults."""

    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    outbound_policy: OutboundPolicy = OutboundPolicy.ALLOW_ANY
    connect_timeout_s: float = 10.0
    access_log_file: str = "/dev/stdout"
    trace_sampling: float = 1.0
    # HOST:PORT of the trace store's OTLP/gRPC port; empty: no tracer on any proxy.
    tracing_address: str = ""


@dataclass(frozen=True, slots=True)
class MeshSnapshot:
    """All config plus all services and workloads at one version."""

    version: int
    resources: tuple[Resource, ...] = ()
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    mesh: MeshConfig = field(default_factory=MeshConfig)
    # (jwksUri, JWKS document) pairs fetched by trellisd: the compiler does no I/O itself.
    jwks: tuple[tuple[str, str], ...] = ()


class Change(enum.Flag):
    """What changed between two snapshots; decides which xDS types are regenerated."""

    NONE = 0
    ENDPOINTS = enum.auto()  # workloads only: EDS-only push
    SERVICES = enum.auto()
    CONFIG = enum.auto()
    ALL = ENDPOINTS | SERVICES | CONFIG
