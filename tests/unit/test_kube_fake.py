"""The fake API server (tests/kube_fake) speaks what kubernetes_asyncio's typed API and
Watch expect: these tests pin the wire behaviour the controller tests rely on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient, ApiException
from tests.kube_fake import FakeApiServer, running_fake

from trellis.kube.cluster import connect


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, ApiClient]]:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig) as fake:
        api_client = await connect(kubeconfig)
        try:
            yield fake, api_client
        finally:
            await api_client.close()


async def test_typed_client_creates_lists_and_patches(api: tuple[FakeApiServer, ApiClient]) -> None:
    _, api_client = api
    core = client.CoreV1Api(api_client)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shop")))
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1"})
    created = await core.create_namespaced_config_map("shop", body)
    assert created.metadata.uid and created.metadata.resource_version
    patched = await core.patch_namespaced_config_map("cfg", "shop", {"data": {"b": "2"}})
    assert patched.data == {"a": "1", "b": "2"}
    listed = await core.list_namespaced_config_map("shop")
    assert [c.metadata.name for c in listed.items] == ["cfg"]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("nope", "shop")
    assert missing.value.status == 404
    with pytest.raises(ApiException) as no_namespace:
        await core.create_namespaced_config_map("elsewhere", body)
    assert no_namespace.value.status == 404


async def test_stale_update_conflicts(api: tuple[FakeApiServer, ApiClient]) -> None:
    _, api_client = api
    core = client.CoreV1Api(api_client)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shop")))
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1"})
    first = await core.create_namespaced_config_map("shop", body)
    first.data = {"a": "2"}
    await core.replace_namespaced_config_map("cfg", "shop", first)
    first.data = {"a": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as conflict:
        await core.replace_namespaced_config_map("cfg", "shop", first)
    assert conflict.value.status == 409


async def test_watch_replays_from_a_version_and_expires_after_compaction(
    api: tuple[FakeApiServer, ApiClient],
) -> None:
    fake, api_client = api
    core = client.CoreV1Api(api_client)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="x")))
    start = await core.list_namespace()  # version "0" would mean "current state, then changes"
    for name in ("a", "b"):
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    await core.delete_namespace("a")
    events = []
    stream = watch.Watch().stream(
        core.list_namespace, resource_version=start.metadata.resource_version, timeout_seconds=1
    )
    async with stream:
        async for event in stream:
            events.append((event["type"], event["object"].metadata.name))
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]

    fake.compact()
    path = f"/api/v1/namespaces?watch=1&resourceVersion={start.metadata.resource_version}"
    response = await api_client.rest_client.pool_manager.get(api_client.configuration.host + path)
    line = json.loads(await response.content.readline())
    response.release()
    assert line["type"] == "ERROR"
    assert (line["object"]["code"], line["object"]["reason"]) == (410, "Expired")


async def test_custom_resources_are_served_only_while_their_crd_exists(
    api: tuple[FakeApiServer, ApiClient],
) -> None:
    _, api_client = api
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as missing:
        await custom.list_cluster_custom_object("networking.istio.io", "v1", "gateways")
    assert missing.value.status == 404
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gateways.networking.istio.io"},
        "spec": {
            "group": "networking.istio.io",
            "scope": "Namespaced",
            "names": {"plural": "gateways", "kind": "Gateway"},
            "versions": [
                {"name": "v1", "served": True, "storage": True},
                {"name": "v1beta1", "served": True, "storage": False},
            ],
        },
    }
    await client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd)
    await client.CoreV1Api(api_client).create_namespace({"metadata": {"name": "shop"}})
    gw = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {},
    }
    await custom.create_namespaced_custom_object(
        "networking.istio.io", "v1beta1", "shop", "gateways", gw
    )
    # One storage, every served version:
    found = await custom.get_namespaced_custom_object(
        "networking.istio.io", "v1", "shop", "gateways", "gw"
    )
    assert found["apiVersion"] == "networking.istio.io/v1"
