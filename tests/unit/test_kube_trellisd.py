"""`trellisd --kubernetes` as a process against the fake API server: it takes the Lease,
stores the cluster's Istio config, writes the webhooks' caBundle and serves /validate."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.kube_fake import FakeApiServer, running_fake
from tests.kube_fake.client import create, eventually, namespace

from trellis.kube.cluster import connect
from trellis.kube.crds import all_crds
from trellis.kube.overlay import build_spec
from trellis.kube.webhooks import webhook_objects
from trellis.store.sqlite import SqliteStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def trellisd(state_dir: Path, kubeconfig: Path, webhook_port: int) -> AsyncIterator[Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trellis.controlplane.app",
        "--state-dir", str(state_dir), "--insecure-xds", "--no-hosts",
        "--xds-address", "127.0.0.1:0", "--kubernetes", "--kubeconfig", str(kubeconfig),
        "--webhook-address", f"127.0.0.1:{webhook_port}", "--log-level", "WARNING",
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_trellisd_kubernetes_mode(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    async with running_fake(kubeconfig) as fake:
        api = await connect(kubeconfig)
        try:
            await _prepare(api)
            port = free_port()
            async with trellisd(state_dir, kubeconfig, port):
                await _check_lease_and_bundle(fake)
                vs = _virtual_service()
                await create(
                    api, "/apis/networking.istio.io/v1/namespaces/shop/virtualservices", vs
                )
                store = SqliteStore(state_dir / "config.db")
                try:
                    await eventually(lambda: bool(store.list("VirtualService")), timeout=20)
                finally:
                    store.close()
                await _check_webhook(state_dir, port)
            lease = fake.store.objects[
                ("coordination.k8s.io", "leases", "istio-system", "trellisd-leader")
            ]
            assert lease["spec"]["holderIdentity"] == ""  # released on SIGTERM: no wait for expiry
        finally:
            await api.close()


async def _prepare(api: Any) -> None:
    for crd in all_crds({}):
        await create(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    for name in ("istio-system", "shop"):
        await create(api, "/api/v1/namespaces", namespace(name))
    for config in webhook_objects(build_spec(profile=None, overlays=[], sets=[])):
        plural = config["kind"].lower() + "s"
        await create(api, f"/apis/admissionregistration.k8s.io/v1/{plural}", config)


async def _check_lease_and_bundle(fake: FakeApiServer) -> None:
    lease_key = ("coordination.k8s.io", "leases", "istio-system", "trellisd-leader")

    def holder() -> str:
        lease = fake.store.objects.get(lease_key) or {}
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    await eventually(lambda: holder() != "", timeout=20)

    def bundles() -> list[str]:
        return [
            hook.get("clientConfig", {}).get("caBundle", "")
            for (group, _, _, _), obj in fake.store.objects.items()
            if group == "admissionregistration.k8s.io"
            for hook in obj.get("webhooks") or []
        ]

    await eventually(lambda: all(bundles()) and len(bundles()) == 3, timeout=20)
    assert base64.b64decode(bundles()[0]).startswith(b"-----BEGIN CERTIFICATE-----")
    root_cert = ("", "configmaps", "shop", "istio-ca-root-cert")
    await eventually(lambda: root_cert in fake.store.objects, timeout=20)
    pem = fake.store.objects[root_cert]["data"]["root-cert.pem"]
    assert pem.encode() == base64.b64decode(bundles()[0])


def _virtual_service(weights: tuple[int, ...] = (100,)) -> dict[str, Any]:
    hosts = ("reviews", "ratings")
    route = [
        {"destination": {"host": h}, "weight": w} for h, w in zip(hosts, weights, strict=False)
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {"hosts": ["reviews"], "http": [{"route": route}]},
    }


async def _check_webhook(state_dir: Path, port: int) -> None:
    """Over HTTPS, trusting only the mesh root (what caBundle tells the API server)."""
    ca_file = next(p for p in state_dir.rglob("*.pem") if "root" in p.name)
    context = ssl.create_default_context(cafile=str(ca_file))
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "namespace": "shop",
            "operation": "CREATE",
            "object": _virtual_service((40, 40)),
        },
    }
    url = f"https://trellisd.istio-system.svc:{port}/validate"
    resolver = _LoopbackResolver()
    connector = aiohttp.TCPConnector(ssl=context, resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with asyncio.timeout(20):
            while True:
                try:
                    async with session.post(url, json=review) as response:
                        answer = await response.json()
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.05)
    assert answer["response"]["allowed"] is False
    assert "VirtualService shop/reviews" in answer["response"]["status"]["message"]


class _LoopbackResolver(aiohttp.abc.AbstractResolver):
    """Resolves the in-cluster Service name to loopback, so TLS checks the real DNS name."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
