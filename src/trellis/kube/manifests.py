"""Everything Trellis installs for one InstallSpec, as dicts and as multi-document YAML.

Order follows what `kubectl apply -f` needs: namespace and CRDs first, then RBAC and
configuration, then workloads, webhooks last (so they never point at a missing Service).
"""

from __future__ import annotations

from typing import Any

import yaml

from trellis.kube.components import (
    console_objects,
    gateway_objects,
    tracing_objects,
    trellisd_objects,
)
from trellis.kube.crds import all_crds
from trellis.kube.objects import MANAGED_BY, namespace
from trellis.kube.rbac import aggregated_roles
from trellis.kube.spec import InstallSpec
from trellis.kube.webhooks import webhook_objects


def render_objects(spec: InstallSpec) -> list[dict[str, Any]]:
    """Every object for this spec; disabled components render nothing."""
    objects = [namespace(spec.namespace), *all_crds(MANAGED_BY), *aggregated_roles(MANAGED_BY)]
    if spec.components.pilot.enabled:
        objects += trellisd_objects(spec)
    for gateway in spec.components.ingressGateways:
        if gateway.enabled:
            objects += gateway_objects(spec, gateway, "ingressgateway")
    for gateway in spec.components.egressGateways:
        if gateway.enabled:
            objects += gateway_objects(spec, gateway, "egressgateway")
    if spec.values.console.enabled:
        objects += console_objects(spec)
    if spec.values.tracing.enabled:
        objects += tracing_objects(spec)
    if spec.components.pilot.enabled:
        objects += webhook_objects(spec)
    return objects


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order they were built (kind and metadata first)."""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def render_yaml(spec: InstallSpec) -> str:
    return to_yaml(render_objects(spec))
