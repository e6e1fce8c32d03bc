"""The chart's install Job (`trellis install|upgrade --from-job JOB`) against the fake API
server: step headers in order, and for each way it fails (an RBAC refusal, a webhook
rejection, analysis errors in cluster config, a bad overlay, pods not ready) one message
block naming the step, the object and what to do, never a traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.kube_fake import FakeApiServer, running_fake
from tests.kube_fake.client import create, namespace
from tests.kube_fake.server import forbidden_message, webhook_denied_message

from trellis.kube.cluster import Cluster, connect
from trellis.kube.crds import all_crds
from trellis.kube.install_job import JobFailure, JobOptions, failure_block, run_job
from trellis.kube.installer import read_record
from trellis.kube.manifests import render_objects
from trellis.kube.overlay import build_spec

INSTALLER = "system:serviceaccount:istio-system:trellis-installer"


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


async def _settle_until(fake: FakeApiServer, done: asyncio.Event) -> None:
    """Play the cluster's controllers: Deployments become ready once applied."""
    while not done.is_set():
        fake.settle()
        await asyncio.sleep(0.01)


async def _run(server: Server, options: JobOptions, profile: str = "minimal") -> list[str]:
    lines: list[str] = []
    done = asyncio.Event()
    settler = asyncio.create_task(_settle_until(server.fake, done))
    try:
        await run_job(server.cluster, build_spec(profile=profile), options, lines.append)
    finally:
        done.set()
        await settler
    return lines


async def test_steps_run_in_order_with_headers(server: Server) -> None:
    lines = await _run(server, JobOptions(verify_timeout=10))
    count = len(render_objects(build_spec(profile="minimal")))
    headers = [line for line in lines if line.startswith("==>")]
    assert headers == ["==> precheck", "==> analyze", f"==> apply ({count} objects)", "==> verify"]
    assert lines[-1] == "✔ Trellis installed in istio-system"
    assert await read_record(server.cluster, "istio-system") is not None
    upgraded = await _run(server, JobOptions(upgrade=True, verify_timeout=10))
    assert upgraded[-1] == "✔ Trellis upgraded in istio-system"


async def test_webhook_rejection_names_object_and_webhook(server: Server) -> None:
    denial = webhook_denied_message("policy.example.com", "ConfigMaps need label team")
    server.fake.refuse_writes[("", "configmaps")] = (400, "BadRequest", denial)
    with pytest.raises(JobFailure) as caught:
        await _run(server, JobOptions())
    failure = caught.value
    assert failure.step == "apply"
    assert failure.subject.startswith("ConfigMap istio-system/")
    assert failure.details == (f"{denial} (HTTP 400)",)
    block = failure_block(failure, "istio-system", "trellis-install")
    assert "an admission webhook" in block
    assert "kubectl -n istio-system logs job/trellis-install" in block


async def test_analysis_errors_in_cluster_config_stop_the_job(server: Server) -> None:
    for crd in all_crds({}):
        await server.cluster.apply(crd)
    await create(server.cluster.api, "/api/v1/namespaces", namespace("shop"))
    service = _service("reviews", "shop")
    await create(server.cluster.api, "/api/v1/namespaces/shop/services", service)
    vs = _virtual_service("reviews", "shop", gateway="missing-gw")
    await create(
        server.cluster.api, "/apis/networking.istio.io/v1/namespaces/shop/virtualservices", vs
    )
    with pytest.raises(JobFailure) as caught:
        await _run(server, JobOptions())
    failure = caught.value
    assert (failure.step, failure.subject) == (
        "analyze",
        "VirtualService shop/reviews field spec.gateways",
    )
    assert len(failure.details) == 1  # the host resolves: the cluster's Services are the registry
    assert "missing-gw" in failure.details[0]
    assert "installer.ignoreAnalysisErrors=true" in failure_block(failure, "istio-system", "j")
    assert await read_record(server.cluster, "istio-system") is None  # nothing applied
    lines = await _run(server, JobOptions(ignore_analysis_errors=True, verify_timeout=10))
    assert lines[-1] == "✔ Trellis installed in istio-system"


async def test_verify_reports_pods_not_ready(server: Server) -> None:
    with pytest.raises(JobFailure) as caught:
        await run_job(server.cluster, build_spec(profile="minimal"), JobOptions(), print)
    failure = caught.value
    assert failure.step == "verify"
    assert failure.subject == "CustomResourceDefinition virtualservices.networking.istio.io"
    assert any(
        d.startswith("Deployment istio-system/trellisd: 0/1 replicas ready")
        for d in failure.details
    )
    assert "kubectl -n istio-system get pods" in failure_block(failure, "istio-system", "j")


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


async def test_cli_denied_permission_is_one_block_in_the_log(server: Server) -> None:
    message = forbidden_message(
        "patch", "apps", "deployments", "trellisd", "istio-system", INSTALLER
    )
    server.fake.refuse_writes[("apps", "deployments")] = (403, "Forbidden", message)
    code, out, err = await _trellis(
        "install", "--profile", "minimal", "--from-job", "trellis-install",
        "--kubeconfig", str(server.kubeconfig),
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in out + err
    headers = [line for line in out.splitlines() if line.startswith("==>")]
    assert headers[:3] == ["==> overlay", "==> precheck", "==> analyze"]
    assert headers[3].startswith("==> apply (")
    block = out[out.index("✘ TRELLIS INSTALL FAILED") :]
    assert "in step 'apply'" in block
    assert "object:      Deployment istio-system/trellisd" in block
    assert f"detail:      {message} (HTTP 403)" in block
    assert "ClusterRoleBinding trellis-installer" in block
    assert "kubectl -n istio-system logs job/trellis-install" in block


async def test_cli_bad_overlay_is_one_block_naming_the_key(server: Server, tmp_path: Path) -> None:
    overlay = tmp_path / "user-overlay.yaml"
    overlay.write_text(
        "spec:\n  components:\n    ingressGateways:\n    - name: x\n      replicas: 2\n"
    )
    code, out, err = await _trellis(
        "install", "-f", str(overlay), "--from-job", "trellis-install",
        "--kubeconfig", str(server.kubeconfig),
    )  # fmt: skip
    assert code == 1 and "Traceback" not in out + err
    assert "in step 'overlay'" in out
    assert "components.ingressGateways[1].replicas: unknown key" in out
    assert server.fake.objects() == []


def _service(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "clusterIP": "240.240.0.10",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 9080}],
        },
    }


def _virtual_service(name: str, ns: str, gateway: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "hosts": [name],
            "gateways": [gateway],
            "http": [{"route": [{"destination": {"host": name}}]}],
        },
    }
