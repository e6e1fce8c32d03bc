"""install / upgrade / uninstall / verify-install / precheck against the fake API server
(tests/kube_fake) through the real kubernetes_asyncio client over HTTP.

tests/unit/test_kube_cluster_install.py has the purge round trip and cluster_precheck's own
checks; this file has everything else the installer and its CLI promise."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.kube_fake import FakeApiServer, running_fake

from trellis.errors import NotFound
from trellis.kube.cluster import Cluster, KubeApiError, ObjectRef, connect
from trellis.kube.installer import (
    RECORD_NAME,
    install,
    precheck,
    read_record,
    uninstall,
    verify_install,
)
from trellis.kube.manifests import render_objects
from trellis.kube.overlay import build_spec


@dataclass
class Server:
    fake: FakeApiServer
    kubeconfig: Path
    cluster: Cluster


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig) as fake:
        api = await connect(kubeconfig)
        try:
            yield Server(fake, kubeconfig, Cluster(api))
        finally:
            await api.close()


def _refs(objects: list[dict[str, Any]]) -> set[ObjectRef]:
    return {ObjectRef.of(obj) for obj in objects}


def _stored(fake: FakeApiServer) -> set[ObjectRef]:
    return {ObjectRef.of(obj) for obj in fake.objects()}


async def test_install_applies_every_rendered_object_and_records_it(server: Server) -> None:
    spec = build_spec(profile="default")
    record = await install(server.cluster, spec)
    rendered = _refs(render_objects(spec))
    assert set(record.objects) == rendered
    assert _stored(server.fake) == rendered | {
        ObjectRef("v1", "ConfigMap", "istio-system", RECORD_NAME)
    }
    reads = [path for method, path in server.fake.requests if method != "PATCH"]
    assert reads == [f"/api/v1/namespaces/istio-system/configmaps/{RECORD_NAME}"]
    again = await read_record(server.cluster, "istio-system")
    assert again is not None and again.spec == spec and again.objects == record.objects


async def test_install_twice_converges(server: Server) -> None:
    spec = build_spec()
    await install(server.cluster, spec)
    first = _stored(server.fake)
    await install(server.cluster, spec)
    assert _stored(server.fake) == first


async def test_verify_install_reports_not_ready_then_ok(server: Server) -> None:
    await install(server.cluster, build_spec())
    problems = await verify_install(server.cluster, "istio-system")
    assert any("Deployment istio-system/trellisd: 0/1 replicas ready" in p for p in problems)
    assert any("not established" in p for p in problems)
    server.fake.settle()
    assert await verify_install(server.cluster, "istio-system") == []


async def test_verify_install_names_a_missing_object(server: Server) -> None:
    await install(server.cluster, build_spec())
    server.fake.settle()
    await server.cluster.delete(ObjectRef("v1", "Service", "istio-system", "trellisd"))
    (problem,) = await verify_install(server.cluster, "istio-system")
    assert problem.startswith("Service istio-system/trellisd is missing")


async def test_verify_without_install_says_so(server: Server) -> None:
    assert await verify_install(server.cluster, "istio-system") == [
        f"Trellis is not installed in istio-system (no ConfigMap {RECORD_NAME})"
    ]


async def test_upgrade_needs_an_install(server: Server) -> None:
    with pytest.raises(NotFound, match="run `trellis install` first"):
        await install(server.cluster, build_spec(), upgrade=True)


async def test_upgrade_adds_and_prunes_components(server: Server) -> None:
    await install(server.cluster, build_spec(profile="demo"))
    assert {"kiali", "tracing", "istio-egressgateway"} <= server.fake.names("Deployment")
    await install(server.cluster, build_spec(profile="default"), upgrade=True)
    assert server.fake.names("Deployment") == {"trellisd", "istio-ingressgateway"}
    assert "kiali" not in server.fake.names("ServiceAccount")
    assert len(server.fake.names("CustomResourceDefinition")) == 11


async def test_uninstall_removes_exactly_what_install_created(server: Server) -> None:
    spec = build_spec(profile="demo")
    before_install = _stored(server.fake)
    await install(server.cluster, spec)
    # Objects Trellis did not create, inside and outside its namespace, must survive.
    theirs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cacerts-notes", "namespace": "istio-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "someone-else"},
            "rules": [],
        },
    ]
    for obj in theirs:
        await server.cluster.apply(obj)
    deleted = await uninstall(server.cluster, "istio-system")
    kept = {
        ref
        for ref in _refs(render_objects(spec))
        if ref.kind in ("CustomResourceDefinition", "Namespace")
    }
    assert _stored(server.fake) == before_install | kept | _refs(theirs)
    assert not any(ref.kind in ("CustomResourceDefinition", "Namespace") for ref in deleted)


async def test_uninstall_without_install_is_an_error(server: Server) -> None:
    with pytest.raises(NotFound, match="not installed"):
        await uninstall(server.cluster, "istio-system")


async def test_precheck_flags_old_kubernetes_istio_and_missing_permissions(server: Server) -> None:
    assert await precheck(server.cluster, "istio-system") == []
    server.fake.version = ("1", "29+")
    await server.cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}
    )
    istiod = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": "istio-system"},
        "spec": {},
    }
    await server.cluster.apply(istiod)
    server.fake.denied.add(("create", "apiextensions.k8s.io", "customresourcedefinitions"))
    problems = await precheck(server.cluster, "istio-system")
    assert len(problems) == 3
    assert "Kubernetes 1.29 is too old" in problems[0]
    assert "istiod" in problems[1]
    assert "you may not create customresourcedefinitions.apiextensions.k8s.io" in problems[2]


async def test_api_errors_carry_the_servers_message(server: Server) -> None:
    orphan = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "nowhere"},
    }
    with pytest.raises(
        KubeApiError,
        match=r'applying ConfigMap nowhere/x: namespaces "nowhere" not found \(HTTP 404\)',
    ):
        await server.cluster.apply(orphan)


async def _trellis(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from trellis.cli.main import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_install_verify_uninstall_with_a_kubeconfig(server: Server) -> None:
    config = str(server.kubeconfig)
    code, out, err = await _trellis("install", "--profile", "minimal", "--kubeconfig", config)
    assert code == 0, err
    assert "✔ Trellis installed in istio-system: profile minimal" in out
    code, _, err = await _trellis("verify-install", "--kubeconfig", config)
    assert code == 1 and "replicas ready" in err and "Traceback" not in err
    code, out, err = await _trellis("uninstall", "--purge", "--kubeconfig", config)
    assert code == 0, err
    assert _stored(server.fake) == set()
    code, out, err = await _trellis("uninstall", "--if-installed", "--kubeconfig", config)
    assert code == 0 and "nothing to do" in out, err


async def test_cli_precheck_failure_is_one_clear_message(server: Server) -> None:
    server.fake.version = ("1", "27")
    code, _, err = await _trellis("x", "precheck", "--kubeconfig", str(server.kubeconfig))
    assert code == 1
    assert "Kubernetes 1.27 is too old" in err and "Traceback" not in err
