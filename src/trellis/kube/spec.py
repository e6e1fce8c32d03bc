"""The install spec: an IstioOperator-like `spec` as pydantic models.

Every model forbids unknown keys, so a typo in an overlay or a `--set` path is reported with
its full path instead of being silently ignored (istioctl's most common support question).
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Profile(enum.StrEnum):
    default = "default"
    demo = "demo"
    minimal = "minimal"


class ResourceRequirements(_Strict):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class ServicePort(_Strict):
    name: str
    port: int = Field(ge=1, le=65535)
    targetPort: int = Field(ge=1, le=65535)
    protocol: str = "TCP"


class ServiceType(enum.StrEnum):
    LoadBalancer = "LoadBalancer"
    NodePort = "NodePort"
    ClusterIP = "ClusterIP"


class ServiceSettings(_Strict):
    type: ServiceType = ServiceType.ClusterIP
    ports: list[ServicePort] = Field(default_factory=list)


class K8sSettings(_Strict):
    """Kubernetes settings of one component, as IstioOperator's `k8s` block."""

    resources: ResourceRequirements | None = None
    replicaCount: int | None = Field(default=None, ge=0)
    service: ServiceSettings | None = None
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    podAnnotations: dict[str, str] = Field(default_factory=dict)


class Component(_Strict):
    enabled: bool = True
    k8s: K8sSettings = Field(default_factory=K8sSettings)


class GatewayComponent(_Strict):
    name: str
    enabled: bool = True
    namespace: str = ""
    label: dict[str, str] = Field(default_factory=dict)
    k8s: K8sSettings = Field(default_factory=K8sSettings)


class Components(_Strict):
    pilot: Component = Field(default_factory=Component)
    ingressGateways: list[GatewayComponent] = Field(default_factory=list)
    egressGateways: list[GatewayComponent] = Field(default_factory=list)


class TracingConfig(_Strict):
    sampling: float = Field(default=1.0, ge=0, le=100)


class ProxyConfig(_Strict):
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class OutboundTrafficMode(enum.StrEnum):
    ALLOW_ANY = "ALLOW_ANY"
    REGISTRY_ONLY = "REGISTRY_ONLY"


class OutboundTrafficPolicy(_Strict):
    mode: OutboundTrafficMode = OutboundTrafficMode.ALLOW_ANY


class MeshConfig(_Strict):
    """The subset of Istio's MeshConfig that Trellis reads."""

    trustDomain: str = "cluster.local"
    accessLogFile: str = ""
    accessLogEncoding: str = "TEXT"
    enableTracing: bool = True
    enableAutoMtls: bool = True
    defaultConfig: ProxyConfig = Field(default_factory=ProxyConfig)
    outboundTrafficPolicy: OutboundTrafficPolicy = Field(default_factory=OutboundTrafficPolicy)


class ProxyValues(_Strict):
    image: str = "proxyv2"
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "2", "memory": "1Gi"}
        )
    )


class GlobalValues(_Strict):
    hub: str = "ghcr.io/trellis-mesh"
    tag: str = "0.1.0"
    imagePullPolicy: str = "IfNotPresent"
    istioNamespace: str = "istio-system"
    proxy: ProxyValues = Field(default_factory=ProxyValues)


class PilotValues(_Strict):
    image: str = "trellisd"


class AuthStrategy(enum.StrEnum):
    token = "token"
    anonymous = "anonymous"


class ConsoleAuth(_Strict):
    strategy: AuthStrategy = AuthStrategy.token


class GrantableRole(enum.StrEnum):
    admin = "admin"
    edit = "edit"
    view = "view"


class ConsoleRbac(_Strict):
    """Who may open the console besides cluster-admin: Kubernetes' admin/edit/view roles."""

    allowedRoles: list[GrantableRole] = Field(default_factory=list)


class ConsoleValues(_Strict):
    """The console (Kiali's place): runs as service account `kiali`, as Kiali does."""

    enabled: bool = False
    image: str = "trellis"
    auth: ConsoleAuth = Field(default_factory=ConsoleAuth)
    rbac: ConsoleRbac = Field(default_factory=ConsoleRbac)


class TracingValues(_Strict):
    """The all-in-one trace store; memory is bounded by maxTraces, as Jaeger's."""

    enabled: bool = False
    image: str = "trellis"
    maxTraces: int = Field(default=50000, ge=1)


class Values(_Strict):
    global_: GlobalValues = Field(default_factory=GlobalValues, alias="global")
    pilot: PilotValues = Field(default_factory=PilotValues)
    console: ConsoleValues = Field(default_factory=ConsoleValues)
    tracing: TracingValues = Field(default_factory=TracingValues)


class InstallSpec(_Strict):
    """What to install: the merged result of profile, overlay file and `--set` flags."""

    profile: Profile = Profile.default
    components: Components = Field(default_factory=Components)
    meshConfig: MeshConfig = Field(default_factory=MeshConfig)
    values: Values = Field(default_factory=Values)

    def image(self, name: str) -> str:
        """`hub/name:tag`, or `name` itself when it already names a registry path."""
        if "/" in name:
            return name
        g = self.values.global_
        return f"{g.hub}/{name}:{g.tag}"

    @property
    def namespace(self) -> str:
        return self.values.global_.istioNamespace
