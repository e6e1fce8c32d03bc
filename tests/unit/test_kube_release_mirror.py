"""The release mirror: `release-mirror build` renders every profile, specs and the images
list; `serve` serves them on a loopback port; `trellis upgrade --mirror URL` upgrades an
install on the fake API server with what the mirror rendered (nothing rendered locally).
The chart's mirror Deployment is schema-checked and its command lines parsed by the real
CLI."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tests.kube_chart import parse_trellis, render_chart
from tests.kube_fake import FakeApiServer, running_fake
from tests.kube_schema import assert_valid

from trellis.errors import TrellisError, ValidationError
from trellis.kube.cluster import Cluster, connect
from trellis.kube.installer import install, read_record
from trellis.kube.manifests import render_objects
from trellis.kube.overlay import build_spec
from trellis.kube.release_mirror import build, checked_release, load_manifests, spec_json
from trellis.kube.release_mirror_server import fetch_release, mirror_app

CHART_SCHEMA = Path(__file__).resolve().parents[2] / "charts" / "trellis" / "values.schema.json"
NEW_TAG = ["values.global.hub=registry.local/mesh", "values.global.tag=0.2.0"]


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Path:
    out = tmp_path / "release"
    build(out, sets=NEW_TAG, chart_schema=CHART_SCHEMA)
    return out


@pytest.fixture
async def mirror_url(mirror_dir: Path) -> AsyncIterator[str]:
    runner = web.AppRunner(mirror_app(mirror_dir), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def test_build_renders_every_profile_and_lists_images(mirror_dir: Path) -> None:
    index = json.loads((mirror_dir / "index.json").read_text())
    assert set(index["profiles"]) == {"default", "demo", "minimal"}
    for profile, entry in index["profiles"].items():
        objects = load_manifests((mirror_dir / entry["manifests"]).read_text())
        assert_valid(objects)
        expected = build_spec(profile=profile, sets=NEW_TAG)
        assert objects == render_objects(expected)
        assert json.loads((mirror_dir / entry["spec"]).read_text()) == spec_json(expected)
    images = (mirror_dir / "images.txt").read_text().splitlines()
    assert images == sorted(set(images))
    assert {
        "registry.local/mesh/trellisd:0.2.0",
        "registry.local/mesh/proxyv2:0.2.0",  # gateways and the injected sidecar
        "registry.local/mesh/trellis:0.2.0",  # console and trace store (demo)
    } <= set(images)
    assert all(image.startswith("registry.local/mesh/") for image in images)
    assert (mirror_dir / "values.schema.json").read_text() == CHART_SCHEMA.read_text()


async def test_serve_serves_only_the_indexed_files(mirror_url: str, mirror_dir: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{mirror_url}/images.txt") as response:
            assert response.status == 200
            assert await response.text() == (mirror_dir / "images.txt").read_text()
        async with session.get(f"{mirror_url}/") as response:
            assert (await response.json())["release"]
        (mirror_dir / "secret.txt").write_text("not served")
        for path in ("/secret.txt", "/manifests/", "/../etc/passwd"):
            async with session.get(f"{mirror_url}{path}") as response:
                assert response.status == 404, path
        async with session.post(f"{mirror_url}/render", json={"profile": "bogus"}) as response:
            assert response.status == 422
            assert "bogus" in (await response.json())["error"]


async def test_fetch_bare_profile_and_with_overlay(mirror_url: str) -> None:
    _, objects = await fetch_release(mirror_url, "minimal", [], [])
    assert objects == render_objects(build_spec(profile="minimal", sets=NEW_TAG))
    overlay = "spec:\n  components:\n    pilot:\n      k8s: {replicaCount: 3}\n"
    _, objects = await fetch_release(mirror_url, "minimal", [overlay], [])
    assert objects == render_objects(build_spec(profile="minimal", overlays=[overlay]))
    trellisd = next(o for o in objects if o["kind"] == "Deployment")
    assert trellisd["spec"]["replicas"] == 3
    with pytest.raises(ValidationError, match="no profile 'huge'"):
        await fetch_release(mirror_url, "huge", [], [])
    with pytest.raises(ValidationError, match=r"refused the overlay.*replicas"):
        await fetch_release(mirror_url, None, ["spec: {components: {pilot: {replicas: 1}}}"], [])


def test_objects_from_a_mirror_are_checked() -> None:
    spec = build_spec(profile="minimal")
    objects = render_objects(spec)
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "istio-system"},
    }
    with pytest.raises(TrellisError, match=r"lacks the app\.kubernetes\.io/managed-by"):
        checked_release(spec_json(spec), [*objects, foreign], "http://m")
    elsewhere = {**objects[-1], "metadata": {**objects[-1]["metadata"]}}
    moved = next(o for o in objects if o.get("metadata", {}).get("namespace"))
    moved = {**moved, "metadata": {**moved["metadata"], "namespace": "kube-system"}}
    with pytest.raises(TrellisError, match="namespace 'kube-system'"):
        checked_release(spec_json(spec), [elsewhere, moved], "http://m")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, Path, Cluster]]:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig) as fake:
        api = await connect(kubeconfig)
        try:
            yield fake, kubeconfig, Cluster(api)
        finally:
            await api.close()


def _images(fake: FakeApiServer) -> set[str]:
    return {
        c["image"]
        for o in fake.objects()
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }


async def test_cli_upgrade_from_the_mirror(
    cluster: tuple[FakeApiServer, Path, Cluster], mirror_url: str
) -> None:
    fake, kubeconfig, kube = cluster
    await install(kube, build_spec(profile="default"))
    assert _images(fake) == {
        "ghcr.io/trellis-mesh/trellisd:0.1.0",
        "ghcr.io/trellis-mesh/proxyv2:0.1.0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from trellis.cli.main import main; main()",
        "upgrade", "--profile", "default", "--mirror", mirror_url, "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "upgraded in istio-system from the release mirror" in out.decode()
    assert _images(fake) == {
        "registry.local/mesh/trellisd:0.2.0",
        "registry.local/mesh/proxyv2:0.2.0",
    }
    record = await read_record(kube, "istio-system")
    assert record is not None and record.spec.values.global_.tag == "0.2.0"


async def test_cli_upgrade_from_an_unreachable_mirror_is_one_line(
    cluster: tuple[FakeApiServer, Path, Cluster],
) -> None:
    _, kubeconfig, kube = cluster
    await install(kube, build_spec(profile="minimal"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from trellis.cli.main import main; main()",
        "upgrade", "--mirror", "http://127.0.0.1:9", "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1
    assert "cannot read the release mirror at http://127.0.0.1:9" in err.decode()
    assert "Traceback" not in err.decode()


def _by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_chart_release_mirror_is_off_by_default_and_valid_when_on() -> None:
    assert not [o for o in render_chart() if o["metadata"]["name"] == "trellis-release-mirror"]
    values = {"installer": {"releaseMirror": {"enabled": True}}, "global": {"tag": "0.2.0"}}
    objects = render_chart(values)
    assert_valid(objects)
    pod = _by_name(objects, "Deployment", "trellis-release-mirror")["spec"]["template"]["spec"]
    build_args = parse_trellis(pod["initContainers"][0]["args"])
    assert build_args["out"] == Path("/release")
    assert "values.global.tag=0.2.0" in build_args["sets"]
    assert "values.global.istioNamespace=istio-system" in build_args["sets"]
    serve_args = parse_trellis(pod["containers"][0]["args"])
    assert serve_args == {"directory": Path("/release"), "address": "0.0.0.0", "port": 8080}
    assert pod["initContainers"][0]["args"][0] == "release-mirror"
    service = _by_name(objects, "Service", "trellis-release-mirror")
    assert service["spec"]["ports"][0]["port"] == 8080
