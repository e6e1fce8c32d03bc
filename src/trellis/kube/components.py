"""The installed components: trellisd, gateways, console, trace store."""

from __future__ import annotations

from typing import Any

import yaml

from trellis.kube.objects import (
    config_map,
    deployment,
    labels,
    resources,
    service,
    service_account,
)
from trellis.kube.overlay import EGRESS_PORTS, INGRESS_PORTS
from trellis.kube.proxy_pod import ProxySettings, proxy_container, proxy_volumes
from trellis.kube.rbac import (
    CONSOLE_PORT,
    CONSOLE_SERVICE,
    cluster_role,
    cluster_role_binding,
    console_access_role,
    console_rules,
    trellisd_rules,
)
from trellis.kube.spec import (
    GatewayComponent,
    InstallSpec,
    K8sSettings,
    ServicePort,
    ServiceSettings,
    ServiceType,
)

TRELLISD = "trellisd"
STATE_DIR = "/var/lib/trellis"  # an emptyDir in trellisd's and the console's pods
WEBHOOK_PORT = 15017
MONITORING_PORT = 15014
_TRELLISD_PORTS = [
    # trellisd serves one xDS port and it is always TLS + token (Istio's 15012 semantics); the
    # Service keeps Istio's two port numbers so proxies configured for either reach it.
    ServicePort(name="grpc-xds", port=15010, targetPort=15010),
    ServicePort(name="https-dns", port=15012, targetPort=15010),
    ServicePort(name="http-monitoring", port=MONITORING_PORT, targetPort=MONITORING_PORT),
    ServicePort(name="https-webhook", port=443, targetPort=WEBHOOK_PORT),
]


def mesh_config(spec: InstallSpec) -> dict[str, Any]:
    """ConfigMap `istio` with key `mesh`, where Istio keeps MeshConfig too."""
    mesh = yaml.safe_dump(spec.meshConfig.model_dump(mode="json"), sort_keys=True)
    return config_map("istio", spec.namespace, labels(TRELLISD), {"mesh": mesh})


def trellisd_args(spec: InstallSpec) -> list[str]:
    """trellisd's flags (`build_parser` in src/trellis/controlplane/app.py). trellisd does not
    read the `istio` ConfigMap, so the mesh settings it needs are passed here."""
    ns = spec.namespace
    sampling = spec.meshConfig.defaultConfig.tracing.sampling
    args = [
        "--state-dir", STATE_DIR,
        "--xds-address", "0.0.0.0:15010",
        "--no-hosts",
        "--trace-sampling", f"{sampling:g}",
        "--outbound-traffic-policy", spec.meshConfig.outboundTrafficPolicy.mode.value,
        "--monitoring-address", f"0.0.0.0:{MONITORING_PORT}",
        "--kubernetes",
        "--kube-namespace", ns,
        "--webhook-address", f"0.0.0.0:{WEBHOOK_PORT}",
    ]  # fmt: skip
    if spec.values.tracing.enabled:
        args += ["--tracing-address", f"tracing.{ns}.svc:4317"]
    return args


def trellisd_objects(spec: InstallSpec) -> list[dict[str, Any]]:
    ns = spec.namespace
    lab = labels(TRELLISD, istio="pilot")
    args = trellisd_args(spec)
    container: dict[str, Any] = {
        "name": "discovery",
        "image": spec.image(spec.values.pilot.image),
        "imagePullPolicy": spec.values.global_.imagePullPolicy,
        "command": ["trellisd"],
        "args": args,
        "ports": [
            {"name": p.name, "containerPort": p.targetPort, "protocol": "TCP"}
            for p in _TRELLISD_PORTS
            if p.port == p.targetPort or p.targetPort != 15010  # one entry per container port
        ],
        "readinessProbe": {"tcpSocket": {"port": 15010}, "periodSeconds": 3},
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1337,
            "allowPrivilegeEscalation": False,
        },
    }
    res = resources(spec.components.pilot.k8s.resources)
    if res:
        container["resources"] = res
    return [
        service_account(TRELLISD, ns, lab),
        cluster_role(f"{TRELLISD}-{ns}", lab, trellisd_rules()),
        cluster_role_binding(f"{TRELLISD}-{ns}", lab, f"{TRELLISD}-{ns}", TRELLISD, ns),
        mesh_config(spec),
        deployment(
            name=TRELLISD,
            ns=ns,
            pod_labels=lab,
            account=TRELLISD,
            containers=[container],
            k8s=spec.components.pilot.k8s,
            volumes=[{"name": "state", "emptyDir": {}}],
        ),
        service(name=TRELLISD, ns=ns, object_labels=lab, ports=_TRELLISD_PORTS),
    ]


def gateway_objects(
    spec: InstallSpec, gateway: GatewayComponent, istio_label: str
) -> list[dict[str, Any]]:
    """A gateway: trellis-agent as `router` with Envoy, its Service and service account."""
    ns = gateway.namespace or spec.namespace
    lab = labels(gateway.name, **{"istio": istio_label, **gateway.label})
    svc = gateway.k8s.service
    if svc is None or not svc.ports:
        svc = default_gateway_service(istio_label, svc)
    ports = svc.ports
    container_ports = [
        {"name": p.name, "containerPort": p.targetPort, "protocol": p.protocol}
        for p in ports
        if p.targetPort != 15021
    ]
    label_arg = ",".join(f"{k}={v}" for k, v in sorted(lab.items()))
    container = proxy_container(
        ProxySettings.from_spec(spec), "router", ["--labels", label_arg], container_ports
    )
    res = resources(gateway.k8s.resources)
    if res:
        container["resources"] = res
    account = f"{gateway.name}-service-account"
    return [
        service_account(account, ns, lab),
        deployment(
            name=gateway.name,
            ns=ns,
            pod_labels=lab,
            account=account,
            containers=[container],
            k8s=gateway.k8s,
            volumes=proxy_volumes(),
        ),
        service(
            name=gateway.name,
            ns=ns,
            object_labels=lab,
            ports=ports,
            kind=svc.type,
        ),
    ]


def default_gateway_service(istio_label: str, given: ServiceSettings | None) -> ServiceSettings:
    """A gateway added by an overlay without ports gets its kind's usual Service."""
    if istio_label == "ingressgateway":
        ports, kind = INGRESS_PORTS, ServiceType.LoadBalancer
    else:
        ports, kind = EGRESS_PORTS, ServiceType.ClusterIP
    return ServiceSettings(
        type=given.type if given else kind, ports=[ServicePort.model_validate(p) for p in ports]
    )


def console_objects(spec: InstallSpec) -> list[dict[str, Any]]:
    """The console, as Kiali is installed: account and Service `kiali`, port 20001."""
    ns = spec.namespace
    lab = labels(CONSOLE_SERVICE)
    console = spec.values.console
    container = {
        "name": "console",
        "image": spec.image(console.image),
        "imagePullPolicy": spec.values.global_.imagePullPolicy,
        "command": ["trellis", "console"],
        "args": console_args(spec),
        "ports": [{"name": "http", "containerPort": CONSOLE_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}],
    }
    port = ServicePort(name="http", port=CONSOLE_PORT, targetPort=CONSOLE_PORT)
    return [
        service_account(CONSOLE_SERVICE, ns, lab),
        cluster_role(CONSOLE_SERVICE, lab, console_rules()),
        cluster_role_binding(CONSOLE_SERVICE, lab, CONSOLE_SERVICE, CONSOLE_SERVICE, ns),
        console_access_role(lab, list(console.rbac.allowedRoles)),
        deployment(
            name=CONSOLE_SERVICE,
            ns=ns,
            pod_labels=lab,
            account=CONSOLE_SERVICE,
            containers=[container],
            k8s=K8sSettings(),
            volumes=[{"name": "state", "emptyDir": {}}],
        ),
        service(name=CONSOLE_SERVICE, ns=ns, object_labels=lab, ports=[port]),
    ]


def console_args(spec: InstallSpec) -> list[str]:
    """`trellis console`'s flags (src/trellis/cli/console.py). The roles are always given, so
    an empty list means cluster-admin only rather than a default from the environment; the
    login keys live in the pod's scratch state dir. `console.auth.strategy` has no flag: the
    console always asks for a token (see docs/kubernetes.md, known gaps)."""
    roles = ",".join(sorted({role.value for role in spec.values.console.rbac.allowedRoles}))
    return [
        "--address", "0.0.0.0",
        "--port", str(CONSOLE_PORT),
        "--console-roles", roles,
        "--state-dir", STATE_DIR,
    ]  # fmt: skip


def tracing_objects(spec: InstallSpec) -> list[dict[str, Any]]:
    """The all-in-one trace store: OTLP, Zipkin and the Jaeger query API in one pod."""
    ns = spec.namespace
    lab = labels("tracing")
    ports = [
        ServicePort(name="grpc-otlp", port=4317, targetPort=4317),
        ServicePort(name="http-otlp", port=4318, targetPort=4318),
        ServicePort(name="http-zipkin", port=9411, targetPort=9411),
        ServicePort(name="http-query", port=16686, targetPort=16686),
    ]
    container = {
        "name": "tracing",
        "image": spec.image(spec.values.tracing.image),
        "imagePullPolicy": spec.values.global_.imagePullPolicy,
        "command": ["trellis", "tracing"],
        "args": ["--host", "0.0.0.0", "--max-traces", str(spec.values.tracing.maxTraces)],
        "ports": [{"name": p.name, "containerPort": p.port, "protocol": "TCP"} for p in ports],
    }
    return [
        deployment(
            name="tracing",
            ns=ns,
            pod_labels=lab,
            account="default",
            containers=[container],
            k8s=K8sSettings(),
        ),
        service(name="tracing", ns=ns, object_labels=lab, ports=ports),
    ]
