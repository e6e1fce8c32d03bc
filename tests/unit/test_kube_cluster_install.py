"""The installer against the full fake API server (tests/kube_fake: CRD-gated custom
resources, namespace deletion) with a user's namespace present: the purge round trip, and
cluster_precheck's webhook and permission checks. Upgrade, pruning, verify and uninstall
without purge are in tests/unit/test_kube_installer.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.kube_fake import FakeApiServer, running_fake
from tests.kube_fake.client import create, namespace

from trellis.kube.cluster import Cluster, connect
from trellis.kube.installer import install, uninstall
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
