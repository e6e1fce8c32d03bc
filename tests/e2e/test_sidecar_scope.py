"""The Sidecar resource through real Envoy sidecars, on the shared Bookinfo mesh.

A Sidecar for app=productpage that allows only details (and istio-system): productpage's Envoy
loses the reviews and ratings clusters while details' Envoy keeps them, productpage still
reaches details, and with outboundTrafficPolicy REGISTRY_ONLY a call to reviews (now outside
its scope) gets 502 from BlackHoleCluster. Each test deletes its Sidecar and waits until
productpage has its full config again: the mesh is shared by other tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.e2e.meshctl import Mesh, Request, as_list, cli_json, eventually, mesh_http

pytestmark = pytest.mark.e2e

SCOPED = "productpage-v1"
UNSCOPED = "details-v1"
SIDECAR = """apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage-scope, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  egress:
  - hosts: ["./details.default.svc.cluster.local", "istio-system/*"]
"""
REGISTRY_ONLY = SIDECAR + "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
OUT_OF_SCOPE = ("reviews.default.svc.cluster.local", "ratings.default.svc.cluster.local")


def outbound_hosts(mesh: Mesh, workload: str) -> set[str]:
    """The service hosts of a proxy's `outbound|PORT|SUBSET|HOST` clusters, as trellisd
    serves them (`trellis proxy-config clusters -o json`)."""
    clusters = as_list(cli_json(mesh, "proxy-config", "clusters", workload))
    names = [str(c["name"]) for c in clusters]
    return {n.split("|")[3] for n in names if n.startswith("outbound|")}


def scoped(mesh: Mesh) -> bool:
    return not set(OUT_OF_SCOPE) & outbound_hosts(mesh, SCOPED)


def status_from(mesh: Mesh, workload: str, url: str) -> int:
    return mesh_http(mesh, workload, [Request(url)])[0].status


@contextlib.contextmanager
def sidecar_applied(mesh: Mesh, text: str) -> Iterator[None]:
    """Apply the Sidecar; afterwards delete it and wait until productpage is unscoped again."""
    mesh.apply(text)
    try:
        eventually(lambda: scoped(mesh), what="productpage's clusters to be scoped")
        yield
    finally:
        mesh.cli("delete", "-f", "-", input=text, check=False)
        eventually(
            lambda: set(OUT_OF_SCOPE) <= outbound_hosts(mesh, SCOPED),
            what="productpage's full config to come back",
        )


def test_egress_hosts_scope_the_proxy_config_of_selected_workloads_only(bookinfo: Mesh) -> None:
    assert set(OUT_OF_SCOPE) <= outbound_hosts(bookinfo, SCOPED)
    with sidecar_applied(bookinfo, SIDECAR):
        assert "details.default.svc.cluster.local" in outbound_hosts(bookinfo, SCOPED)
        assert set(OUT_OF_SCOPE) <= outbound_hosts(bookinfo, UNSCOPED)
        eventually(
            lambda: status_from(bookinfo, SCOPED, "http://details:9080/details/0") == 200,
            what="productpage to reach details in scope",
        )


def test_registry_only_sidecar_blocks_hosts_outside_the_scope_with_502(bookinfo: Mesh) -> None:
    with sidecar_applied(bookinfo, REGISTRY_ONLY):
        eventually(
            lambda: status_from(bookinfo, SCOPED, "http://reviews:9080/reviews/0") == 502,
            what="productpage's call to reviews to be blocked",
        )
        assert status_from(bookinfo, SCOPED, "http://details:9080/details/0") == 200
        assert status_from(bookinfo, UNSCOPED, "http://reviews:9080/reviews/0") == 200
