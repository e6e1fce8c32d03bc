"""The Kubernetes controller against the fake API server (tests/kube_fake): watches feed the
config store and the registry; dropped watches resume; 410 relists; leases elect one leader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from tests.kube_fake import FakeApiServer, running_fake
from tests.kube_fake.client import call, create, eventually, namespace

from trellis.controlplane.state import MeshState
from trellis.kube.cluster import connect
from trellis.kube.controller import CORE_TARGETS, ControllerSettings, KubeController
from trellis.kube.crds import all_crds
from trellis.kube.leader import LeaderElector, LeaseSettings
from trellis.kube.reflector import Reflector, ReflectorSettings
from trellis.kube.root_cert import RootCertPublisher
from trellis.model.snapshot import MeshConfig
from trellis.store.sqlite import SqliteStore

FAST = ReflectorSettings(backoff_initial=0.02, backoff_max=0.1)
SERVICES = "/api/v1/namespaces/shop/services"
PODS = "/api/v1/namespaces/shop/pods"
VS = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, ApiClient]]:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig) as fake:
        api = await connect(kubeconfig)
        try:
            for crd in all_crds({}):
                await create(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            await create(api, "/api/v1/namespaces", namespace("shop"))
            await create(api, "/api/v1/namespaces", namespace("istio-system"))
            yield fake, api
        finally:
            await api.close()


@pytest.fixture
def state(tmp_path: Path) -> MeshState:
    return MeshState(
        store=SqliteStore(tmp_path / "config.db"), mesh=MeshConfig(), notify=lambda *_: None
    )


@contextlib.asynccontextmanager
async def running(controller: KubeController) -> AsyncIterator[KubeController]:
    task = asyncio.create_task(controller.run())
    try:
        await asyncio.wait_for(controller.wait_synced(), 10)
        yield controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def controller_for(api: ApiClient, state: MeshState, identity: str = "a") -> KubeController:
    settings = ControllerSettings(identity=identity, reflector=FAST, debounce_seconds=0.01)
    return KubeController(api, state, settings)


def service(name: str, ip: str, selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "clusterIP": ip,
        "ports": [{"name": "http", "port": 9080, "targetPort": 9080}],
    }
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "serviceAccountName": "bookinfo-reviews",
            "containers": [{"name": "app", "image": "app", "ports": [{"containerPort": 9080}]}],
        },
    }


def virtual_service(name: str, weights: tuple[int, int] = (50, 50)) -> dict[str, Any]:
    hosts = ("reviews", "ratings")
    routes = [
        {"destination": {"host": h}, "weight": w} for h, w in zip(hosts, weights, strict=True)
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"hosts": ["reviews"], "http": [{"route": routes}]},
    }


def endpoints(state: MeshState, name: str) -> list[tuple[str, int]]:
    for svc in state.snapshot.services:
        if svc.name == name and svc.namespace == "shop":
            port = svc.port(9080)
            assert port is not None
            return [(e.address, e.port) for e in state.push.endpoints(svc, port)]
    return []


def registry_services(state: MeshState) -> dict[str, str]:
    return {s.name: s.vip for s in state.snapshot.services if s.namespace == "shop"}


def registry_workloads(state: MeshState) -> dict[str, Any]:
    return {w.name: w for w in state.snapshot.workloads if w.namespace == "shop"}


async def test_watch_delivers_services_and_pods_into_the_registry(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    fake, api = cluster
    await create(api, SERVICES, service("reviews", "10.96.0.10", {"app": "reviews"}))
    async with running(controller_for(api, state)):
        await eventually(lambda: registry_services(state) == {"reviews": "10.96.0.10"})
        await create(api, PODS, pod("reviews-1", {"app": "reviews", "version": "v1"}))
        fake.set_status("", "pods", "shop", "reviews-1", {"phase": "Running", "podIP": "10.1.0.5"})
        await eventually(lambda: "reviews-1" in registry_workloads(state))
        workload = registry_workloads(state)["reviews-1"]
        assert (workload.ip, workload.service_account) == ("10.1.0.5", "bookinfo-reviews")
        assert workload.labels["version"] == "v1" and not workload.has_sidecar
        assert endpoints(state, "reviews") == [("10.1.0.5", 9080)]

        patch = {"metadata": {"labels": {"app": "reviews", "version": "v2"}}}
        await _merge_patch(api, f"{PODS}/reviews-1", patch)
        await eventually(lambda: registry_workloads(state)["reviews-1"].labels["version"] == "v2")
        await call(api, "DELETE", f"{PODS}/reviews-1")
        await call(api, "DELETE", f"{SERVICES}/reviews")
        await eventually(lambda: not registry_workloads(state) and not registry_services(state))


async def _merge_patch(api: ApiClient, path: str, body: dict[str, Any]) -> Any:
    return await api.call_api(
        path,
        "PATCH",
        header_params={"Content-Type": "application/merge-patch+json"},
        body=body,
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


async def test_selectorless_service_takes_endpoints_from_endpoint_slices(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    _, api = cluster
    await create(api, SERVICES, service("legacy", "10.96.0.20"))
    eps = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "legacy-abc", "labels": {"kubernetes.io/service-name": "legacy"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.2.0.1"], "conditions": {"ready": True}},
            {"addresses": ["10.2.0.2"], "conditions": {"ready": False}},
        ],
    }
    await create(api, "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices", eps)
    async with running(controller_for(api, state)):
        await eventually(lambda: bool(endpoints(state, "legacy")))
        assert endpoints(state, "legacy") == [("10.2.0.1", 8080)]


async def test_istio_resources_are_added_updated_and_deleted_in_the_store(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    _, api = cluster
    async with running(controller_for(api, state)):
        await create(api, VS, virtual_service("reviews"))
        await eventually(lambda: len(state.resources("VirtualService")) == 1)
        stored = await call(api, "GET", f"{VS}/reviews")
        stored["spec"]["hosts"] = ["reviews", "reviews.shop.svc.cluster.local"]
        await call(api, "PUT", f"{VS}/reviews", stored)

        def hosts() -> list[str]:
            (vs,) = state.resources("VirtualService")
            return list(vs.spec.hosts)  # type: ignore[attr-defined]

        await eventually(lambda: len(hosts()) == 2)
        await call(api, "DELETE", f"{VS}/reviews")
        await eventually(lambda: not state.resources("VirtualService"))


async def test_invalid_resource_is_skipped_with_the_reason_and_others_still_apply(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    _, api = cluster
    await create(api, VS, virtual_service("bad", weights=(50, 20)))
    await create(api, VS, virtual_service("good"))
    controller = controller_for(api, state)
    async with running(controller):
        await eventually(lambda: [r.name for r in state.resources("VirtualService")] == ["good"])
        (reason,) = controller.config["VirtualService"].rejected.values()
        assert "VirtualService shop/bad" in reason and "weight" in reason


async def _reflect_services(
    api: ApiClient, state: MeshState
) -> tuple[Reflector, asyncio.Task[None], KubeController]:
    controller = controller_for(api, state)
    reflector = Reflector(api, CORE_TARGETS["services"], controller.registry.services, FAST)
    task = asyncio.create_task(reflector.run())
    await asyncio.wait_for(reflector.synced.wait(), 5)
    return reflector, task, controller


async def test_dropped_watch_resumes_from_the_last_resource_version(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    fake, api = cluster
    await create(api, SERVICES, service("a", "10.96.0.1", {"app": "a"}))
    reflector, task, controller = await _reflect_services(api, state)
    try:
        await eventually(lambda: fake.open_watches() == 1)
        seen = reflector.resource_version
        assert fake.drop_watches() == 1
        await create(api, SERVICES, service("b", "10.96.0.2", {"app": "b"}))
        await eventually(lambda: "shop/b" in controller.registry.services.objects)
        assert fake.watch_requests[-1]["resourceVersion"] == seen
        assert reflector.lists == 1  # resumed, not relisted
    finally:
        task.cancel()


async def test_expired_resource_version_relists_and_converges(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    fake, api = cluster
    await create(api, SERVICES, service("old", "10.96.0.1", {"app": "old"}))
    reflector, task, controller = await _reflect_services(api, state)
    try:
        await eventually(lambda: fake.open_watches() == 1)
        # Watch ends; meanwhile the cluster changes and compacts the history the watch needs.
        fake.drop_watches()
        fake.store.delete(("", "services", "shop", "old"))
        new = service("new", "10.96.0.2", {"app": "new"})
        fake.store.create(
            ("", "services", "shop", "new"),
            {**new, "metadata": {"name": "new", "namespace": "shop"}},
        )
        fake.compact()
        await eventually(lambda: set(controller.registry.services.objects) == {"shop/new"})
        assert reflector.lists == 2
        assert reflector.resource_version == str(fake.store.revision)
    finally:
        task.cancel()


async def test_bookmarks_advance_the_resource_version(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    fake, api = cluster
    reflector, task, _ = await _reflect_services(api, state)
    try:
        await eventually(lambda: fake.open_watches() == 1)
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
        await create(api, "/api/v1/namespaces/shop/configmaps", config_map)
        before = reflector.resource_version
        fake.bookmark()
        await eventually(lambda: reflector.resource_version == str(fake.store.revision))
        assert int(reflector.resource_version) > int(before)
        assert all(q.get("allowWatchBookmarks") == "true" for q in fake.watch_requests)
    finally:
        task.cancel()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def elector(api: ApiClient, identity: str, clock: Clock) -> LeaderElector:
    settings = LeaseSettings(identity=identity, lease_seconds=15, retry_seconds=0.01)
    return LeaderElector(api, settings, clock)


async def test_lease_is_held_by_one_replica_and_taken_over_after_expiry(
    cluster: tuple[FakeApiServer, ApiClient],
) -> None:
    _, api = cluster
    clock_a, clock_b = Clock(), Clock()
    a, b = elector(api, "trellisd-a", clock_a), elector(api, "trellisd-b", clock_b)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock_a.now += timedelta(seconds=10)
    assert await a.try_acquire_or_renew()  # renewed: still A's
    clock_b.now += timedelta(seconds=20)  # B sees A's renewal 10 s ago: not expired yet
    assert not await b.try_acquire_or_renew()
    clock_b.now += timedelta(seconds=10)  # 20 s after A's last renewal: expired
    assert await b.try_acquire_or_renew()
    assert not await a.try_acquire_or_renew()
    lease = await call(api, "GET", a.settings.path)
    assert lease["spec"]["holderIdentity"] == "trellisd-b"
    assert lease["spec"]["leaseTransitions"] == 1


async def test_leader_hands_over_on_stop_and_singletons_follow_leadership(
    cluster: tuple[FakeApiServer, ApiClient],
) -> None:
    _, api = cluster
    clock = Clock()
    a, b = elector(api, "trellisd-a", clock), elector(api, "trellisd-b", clock)
    running_on: list[str] = []

    def singleton(name: str) -> Any:
        async def work() -> None:
            running_on.append(name)
            await asyncio.Event().wait()

        return work

    task_a = asyncio.create_task(a.run([singleton("a")]))
    await asyncio.wait_for(a.leading.wait(), 5)
    task_b = asyncio.create_task(b.run([singleton("b")]))
    try:
        await eventually(lambda: running_on == ["a"])
        assert not b.is_leader
        task_a.cancel()  # a clean stop releases the Lease: no waiting for expiry
        with contextlib.suppress(asyncio.CancelledError):
            await task_a
        await asyncio.wait_for(b.leading.wait(), 5)
        await eventually(lambda: running_on == ["a", "b"])
    finally:
        task_b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task_b


async def test_crds_installed_later_are_picked_up_after_backoff(
    tmp_path: Path, state: MeshState
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig):
        api = await connect(kubeconfig)
        try:
            await create(api, "/api/v1/namespaces", namespace("shop"))
            controller = controller_for(api, state)
            task = asyncio.create_task(controller.run())
            try:
                for crd in all_crds({}):
                    await create(
                        api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
                    )
                await create(api, VS, virtual_service("reviews"))
                await eventually(lambda: len(state.resources("VirtualService")) == 1)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await api.close()


async def test_resync_relists_even_when_watches_are_healthy(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    _, api = cluster
    controller = controller_for(api, state)
    settings = ReflectorSettings(resync_seconds=0.05, backoff_initial=0.02, backoff_max=0.1)
    reflector = Reflector(api, CORE_TARGETS["services"], controller.registry.services, settings)
    task = asyncio.create_task(reflector.run())
    try:
        await eventually(lambda: reflector.lists >= 2)
    finally:
        task.cancel()


async def test_leader_writes_why_a_resource_was_rejected_into_its_status(
    cluster: tuple[FakeApiServer, ApiClient], state: MeshState
) -> None:
    _, api = cluster
    await create(api, VS, virtual_service("bad", weights=(50, 20)))

    async def reconciled() -> dict[str, Any]:
        obj = await call(api, "GET", f"{VS}/bad")
        conditions = (obj.get("status") or {}).get("conditions") or [{}]
        return dict(conditions[0])

    async with running(controller_for(api, state)):
        async with asyncio.timeout(10):
            while (condition := await reconciled()).get("status") != "False":
                await asyncio.sleep(0.02)
        assert condition["reason"] == "Invalid" and "weight" in condition["message"]
        fixed = await call(api, "GET", f"{VS}/bad")
        fixed["spec"] = virtual_service("bad")["spec"]
        await call(api, "PUT", f"{VS}/bad", fixed)
        await eventually(lambda: [r.name for r in state.resources("VirtualService")] == ["bad"])
        async with asyncio.timeout(10):
            while (await reconciled()).get("status") != "True":
                await asyncio.sleep(0.02)


async def test_root_cert_config_map_is_published_and_repaired(
    cluster: tuple[FakeApiServer, ApiClient],
) -> None:
    fake, api = cluster
    publisher = RootCertPublisher(api, b"-----BEGIN CERTIFICATE-----\nroot\n")
    assert await publisher.publish(["shop", "istio-system", "kube-system"]) == 2
    assert await publisher.publish(["shop", "istio-system"]) == 0
    key = ("", "configmaps", "shop", "istio-ca-root-cert")
    fake.store.update(key, {**fake.store.objects[key], "data": {"root-cert.pem": "x"}})
    assert await publisher.publish(["shop", "istio-system"]) == 1
    assert fake.store.objects[key]["data"]["root-cert.pem"].endswith("root\n")
