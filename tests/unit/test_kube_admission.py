"""AdmissionReview v1 in and out of trellisd's webhooks, over a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.kube_fake import running_fake
from tests.kube_fake.client import create, namespace
from tests.kube_fake.patches import apply_json_patch
from typer.testing import CliRunner

from trellis.api.kinds import parse_resource
from trellis.cli.main import app
from trellis.kube.admission import Injector, admission_app
from trellis.kube.cluster import connect
from trellis.kube.inject import InjectSettings
from trellis.kube.overlay import build_spec

SETTINGS = InjectSettings.from_spec(build_spec(profile=None, overlays=[], sets=[]))
NAMESPACES = {
    "shop": {"istio-injection": "enabled"},
    "canary": {"istio.io/rev": "stable"},
    "plain": {},
}
DEST_RULE = parse_resource(
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
    }
)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    injector = Injector(SETTINGS, namespace_labels=NAMESPACES.get)
    app = admission_app(injector, stored_rules=lambda: [DEST_RULE])
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def review(obj: dict[str, Any], *, namespace: str = "shop", op: str = "CREATE") -> dict[str, Any]:
    group, _, version = obj["apiVersion"].rpartition("/")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": obj["kind"]},
            "namespace": namespace,
            "operation": op,
            "object": obj,
        },
    }


async def post(client: TestClient[Any, Any], path: str, body: Any) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status == 200
    answer = await response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    return dict(answer["response"])


def vs(route: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {"hosts": ["reviews"], "http": [{"route": route}]},
    }


async def test_validate_allows_a_valid_resource(client: TestClient[Any, Any]) -> None:
    route = [{"destination": {"host": "reviews", "subset": "v1"}}]
    assert (await post(client, "/validate", review(vs(route))))["allowed"] is True


async def test_validate_denies_with_resource_field_and_reason(client: TestClient[Any, Any]) -> None:
    route = [
        {"destination": {"host": "reviews"}, "weight": 60},
        {"destination": {"host": "ratings"}, "weight": 60},
    ]
    answer = await post(client, "/validate", review(vs(route)))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert message.startswith("VirtualService shop/reviews: spec.http[0]")
    assert "100" in message


async def test_validate_denies_schema_errors_and_missing_subsets(
    client: TestClient[Any, Any],
) -> None:
    unknown = vs([{"destination": {"host": "reviews"}}])
    unknown["spec"]["hostz"] = ["x"]
    answer = await post(client, "/validate", review(unknown))
    assert answer["allowed"] is False and "spec.hostz" in answer["status"]["message"]
    missing = vs([{"destination": {"host": "reviews", "subset": "v9"}}])
    answer = await post(client, "/validate", review(missing))
    assert answer["allowed"] is False and "v9" in answer["status"]["message"]


async def test_validate_allows_deletes_and_other_kinds(client: TestClient[Any, Any]) -> None:
    bad = vs([{"destination": {"host": "reviews"}, "weight": 7}])
    assert (await post(client, "/validate", review(bad, op="DELETE")))["allowed"] is True
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert (await post(client, "/validate", review(config_map)))["allowed"] is True


def pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "reviews-v1-7d9f-",
            "labels": {"app": "reviews", "version": "v1"},
            "annotations": annotations or {},
        },
        "spec": {
            "containers": [
                {"name": "reviews", "image": "reviews:1", "ports": [{"containerPort": 9080}]}
            ]
        },
    }


def patched(original: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(answer["patch"]))
    return dict(apply_json_patch(original, ops))


async def test_inject_patch_adds_sidecar_and_reinjection_changes_nothing(
    client: TestClient[Any, Any],
) -> None:
    original = pod()
    injected = patched(original, await post(client, "/inject", review(original)))
    names = [c["name"] for c in injected["spec"]["containers"]]
    assert names == ["reviews", "istio-proxy"]
    assert [c["name"] for c in injected["spec"]["initContainers"]] == ["istio-init"]
    assert "sidecar.istio.io/status" in injected["metadata"]["annotations"]
    assert injected["metadata"]["labels"]["service.istio.io/canonical-name"] == "reviews"
    again = await post(client, "/inject", review(injected))
    assert again["allowed"] is True and "patch" not in again


async def test_inject_follows_namespace_labels_and_pod_opt_out(
    client: TestClient[Any, Any],
) -> None:
    canary = await post(client, "/inject", review(pod(), namespace="canary"))
    assert "patch" in canary  # revision label
    plain = await post(client, "/inject", review(pod(), namespace="plain"))
    assert plain["allowed"] is True and "patch" not in plain
    opted_out = pod({"sidecar.istio.io/inject": "false"})
    answer = await post(client, "/inject", review(opted_out))
    assert answer["allowed"] is True and "patch" not in answer


async def test_a_body_that_is_not_an_admission_review_is_refused(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post("/inject", data=b"{not json")
    assert response.status == 400
    response = await client.post("/validate", json={"kind": "Pod"})
    assert response.status == 400


async def test_check_inject_lists_pods_that_need_a_restart(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig):
        api = await connect(kubeconfig)
        try:
            for name, labels in NAMESPACES.items():
                await create(api, "/api/v1/namespaces", namespace(name, labels))
            old = {**pod(), "metadata": {"name": "old", "labels": {"app": "reviews"}}}
            fresh = patched(old, Injector(SETTINGS).review(review(old))["response"])
            out = {
                **old,
                "metadata": {
                    **old["metadata"],
                    "name": "out",
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
            }
            for ns, body in (
                ("shop", old),
                ("shop", {**fresh, "metadata": {**fresh["metadata"], "name": "new"}}),
                ("shop", out),
                ("plain", old),
            ):
                await create(api, f"/api/v1/namespaces/{ns}/pods", body)
        finally:
            await api.close()
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["x", "check-inject", "--kubeconfig", str(kubeconfig), "-o", "json"],
        )
    assert result.exit_code == 0, result.output
    rows = {(r["namespace"], r["pod"]): r["sidecar"] for r in json.loads(result.stdout)}
    assert rows == {
        ("plain", "old"): "namespace not enabled",
        ("shop", "new"): "injected",
        ("shop", "old"): "needs restart",
        ("shop", "out"): "opted out",
    }
