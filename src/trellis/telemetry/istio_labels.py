"""Istio's standard metric labels (istio-notes §2.1) for what one proxy can know.

reporter="source": this workload called a service cluster (`outbound|PORT|SUBSET|HOST`): the
source is this workload, the destination the cluster's host and subset (as version).
reporter="destination": this workload was called (`inbound|PORT||`): the destination is this
workload, the source the caller a per-peer virtual cluster names (telemetry/peer.py), or
`unknown`, as Istio reports for callers it cannot identify.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from trellis.model.names import ClusterName, Direction
from trellis.telemetry.destinations import DestinationWorkload
from trellis.telemetry.peer import PeerIdentity

UNKNOWN = "unknown"
NOBODY_KNOWN = DestinationWorkload()
MUTUAL_TLS = "mutual_tls"
NO_TLS = "none"

# The order Istio's labels appear in; every sample carries all of them.
LABEL_NAMES = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)


@dataclass(frozen=True, slots=True)
class Workload:
    """The proxy's own workload: what the agent knows without asking anyone."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    trust_domain: str = "cluster.local"

    @property
    def principal(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def app(self) -> str:
        return self.labels.get("app") or UNKNOWN

    @property
    def version(self) -> str:
        return self.labels.get("version") or UNKNOWN

    @property
    def service_host(self) -> str:
        """The service that selects this workload, taken from its `app` label (Istio's
        canonical service) in its own namespace; the agent is told no service names."""
        app = self.labels.get("app")
        return f"{app}.{self.namespace}.svc.{self.trust_domain}" if app else UNKNOWN

    @property
    def peer(self) -> PeerIdentity:
        """How this workload introduces itself to the servers it calls (x-trellis-peer)."""
        return PeerIdentity.of(self.name, self.namespace, self.labels, self.service_account)


def request_labels(
    workload: Workload, cluster: ClusterName, behind: DestinationWorkload = NOBODY_KNOWN
) -> dict[str, str]:
    """Istio's labels (response_code `unknown`) for traffic through one service cluster;
    `behind`: what the outbound cluster's endpoints agree on (telemetry/destinations.py)."""
    if cluster.direction is Direction.OUTBOUND:
        return source_reported(workload, cluster, behind)
    return destination_reported(workload, peer=None, security=UNKNOWN)


def source_reported(
    workload: Workload, cluster: ClusterName, behind: DestinationWorkload = NOBODY_KNOWN
) -> dict[str, str]:
    name, _, rest = cluster.host.partition(".")
    namespace = rest.split(".", 1)[0] if rest else UNKNOWN
    labels = _source(workload.peer, workload.trust_domain)
    labels.update(
        destination_workload=behind.workload or UNKNOWN,
        destination_workload_namespace=namespace,
        destination_principal=UNKNOWN,
        destination_app=behind.app or UNKNOWN,
        destination_version=behind.version or cluster.subset or UNKNOWN,
        destination_service=cluster.host,
        destination_service_name=name or UNKNOWN,
        destination_service_namespace=namespace,
    )
    return _complete("source", labels, security=UNKNOWN)


def destination_reported(
    workload: Workload, *, peer: PeerIdentity | None, security: str
) -> dict[str, str]:
    """`peer` None: the caller is unknown. `security`: mutual_tls, none or unknown."""
    service = workload.service_host
    known = service != UNKNOWN
    labels = _source(peer, workload.trust_domain)
    labels.update(
        destination_workload=workload.name,
        destination_workload_namespace=workload.namespace,
        destination_principal=workload.principal,
        destination_app=workload.app,
        destination_version=workload.version,
        destination_service=service,
        destination_service_name=service.split(".", 1)[0] if known else UNKNOWN,
        destination_service_namespace=workload.namespace if known else UNKNOWN,
    )
    return _complete("destination", labels, security=security)


def _source(peer: PeerIdentity | None, trust_domain: str) -> dict[str, str]:
    if peer is None:
        return {
            "source_workload": UNKNOWN,
            "source_workload_namespace": UNKNOWN,
            "source_principal": UNKNOWN,
            "source_app": UNKNOWN,
            "source_version": UNKNOWN,
        }
    return {
        "source_workload": peer.workload or UNKNOWN,
        "source_workload_namespace": peer.namespace or UNKNOWN,
        "source_principal": peer.principal(trust_domain),
        "source_app": peer.app or UNKNOWN,
        "source_version": peer.version or UNKNOWN,
    }


def _complete(reporter: str, labels: dict[str, str], *, security: str) -> dict[str, str]:
    labels.update(
        reporter=reporter,
        request_protocol="http",
        response_code=UNKNOWN,
        response_flags="-",
        connection_security_policy=security,
    )
    return {name: labels[name] for name in LABEL_NAMES}
