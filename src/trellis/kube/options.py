"""trellisd's Kubernetes settings (`--kubernetes`), importable without the Kubernetes client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class KubeOptions:
    kubeconfig: Path | None = None  # None: KUBECONFIG, ~/.kube/config, or in-cluster
    namespace: str = "istio-system"  # trellisd's own: Lease, install record, webhooks
    identity: str = ""  # leader-election identity; "" = the host (pod) name
    webhook_host: str = ""  # HTTPS admission webhooks on HOST:webhook_port; "" = not served
    webhook_port: int = 15017
