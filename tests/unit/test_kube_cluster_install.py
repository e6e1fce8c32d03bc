"""The installer's install/upgrade/uninstall against the full fake API server (tests/kube_fake:
CRD-gated custom resources, watches, namespace deletion), through kubernetes_asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.kube_fake import FakeApiServer, running_fake
from tests.kube_fake.client import create, namespace

from trellis.kube.cluster import Cluster, connect
from trellis.kube.installer import install, uninstall, verify_install
from trellis.kube.overlay import build_spec
from trellis.kube.precheck import cluster_precheck


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, Cluster]]:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig) as fake:
        api = await connect(kubeconfig)
        try:
            await create(api, "/api/v1/namespaces", namespace("shop"))  # the user's, untouched
            yield fake, Cluster(api)
        finally:
            await api.close()


async def test_install_then_uninstall_purge_leaves_the_cluster_as_before(
    cluster: tuple[FakeApiServer, Cluster],
) -> None:
    fake, kube = cluster
    before = fake.object_set()
    record = await install(kube, build_spec(profile="demo", overlays=[], sets=[]))
    installed = fake.object_set() - before
    assert {(r.api_version, r.kind, r.namespace, r.name) for r in record.objects} <= installed
    await uninstall(kube, "istio-system", purge=True)
    assert fake.object_set() == before


async def test_uninstall_without_purge_keeps_only_crds_and_namespace(
    cluster: tuple[FakeApiServer, Cluster],
) -> None:
    fake, kube = cluster
    before = fake.object_set()
    await install(kube, build_spec(profile="default", overlays=[], sets=[]))
    await uninstall(kube, "istio-system")
    left = {kind for _, kind, _, _ in fake.object_set() - before}
    assert left == {"CustomResourceDefinition", "Namespace"}


async def test_upgrade_prunes_what_is_no_longer_rendered_and_verify_sees_readiness(
    cluster: tuple[FakeApiServer, Cluster],
) -> None:
    fake, kube = cluster
    await install(kube, build_spec(profile="demo", overlays=[], sets=[]))
    assert await verify_install(kube, "istio-system")  # Deployments not available yet
    fake.settle()
    assert await verify_install(kube, "istio-system") == []

    def deployments() -> set[str]:
        return {name for _, kind, _, name in fake.object_set() if kind == "Deployment"}

    assert any("egress" in name for name in deployments())
    off = ["components.egressGateways[0].enabled=false"]
    await install(kube, build_spec(profile="demo", overlays=[], sets=off), upgrade=True)
    assert not any("egress" in name for name in deployments())


async def test_precheck_finds_istio_webhooks_and_missing_permissions(
    cluster: tuple[FakeApiServer, Cluster], tmp_path: Path
) -> None:
    fake, _ = cluster
    api = await connect(tmp_path / "kubeconfig")
    try:
        assert await cluster_precheck(api, "istio-system") == []
        injector = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-sidecar-injector"},
            "webhooks": [],
        }
        path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
        await create(api, path, injector)
        fake.denied.add(("create", "apiextensions.k8s.io", "customresourcedefinitions"))
        problems = await cluster_precheck(api, "istio-system")
        assert len(problems) == 2
        assert "istio-sidecar-injector" in problems[0]
        assert "customresourcedefinitions.apiextensions.k8s.io" in problems[1]
    finally:
        await api.close()
