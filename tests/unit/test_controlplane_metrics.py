"""trellisd's :15014/metrics: istiod's pilot_* names and labels, fed by a real AdsServer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import aiohttp
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from trellis.api.kinds import parse_documents
from trellis.controlplane.metrics import (
    ControlPlaneMetrics,
    MeshSizes,
    metric_type,
    start_metrics_server,
    trellis_version,
)
from trellis.model.proxy import Proxy
from trellis.model.snapshot import MeshSnapshot
from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from trellis.xds.lightclient import LightAdsClient
from trellis.xds.server import AdsServer

NODE = "sidecar~198.18.0.1~a.demo~demo.svc.cluster.local"
TIMEOUT = 5.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(metrics: ControlPlaneMetrics) -> Samples:
    """Every sample of the exposition as written (names untouched), by name and labels.

    prometheus_client's own parser renames counters to `*_total`, hiding what is tested here.
    """
    found: Samples = {}
    for line in metrics.exposition().decode().splitlines():
        match = _SAMPLE.match(line)
        if line.startswith("#") or match is None:
            continue
        name, labels, number = match.groups()
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        found[(name, pairs)] = float(number)
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def make_metrics(connected: int = 0, snapshot: MeshSnapshot | None = None) -> ControlPlaneMetrics:
    current = snapshot or MeshSnapshot(version=1)
    return ControlPlaneMetrics(
        MeshSizes(connected_proxies=lambda: connected, snapshot=lambda: current), process=False
    )


def test_type_label_values_are_istiods() -> None:
    assert [metric_type(t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)] == [
        "cds",
        "eds",
        "lds",
        "rds",
        "sds",
    ]


def test_sizes_are_read_at_scrape_time() -> None:
    docs = parse_documents(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews, namespace: default}\n"
        "spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n"
    )
    found = samples(
        make_metrics(connected=3, snapshot=MeshSnapshot(version=2, resources=tuple(docs)))
    )
    assert [v for (n, _), v in found.items() if n == "pilot_xds"] == [3.0]
    assert value(found, "pilot_services") == 0.0
    assert value(found, "pilot_virt_services") == 1.0


def test_push_reject_and_config_events_use_istiods_names_and_labels() -> None:
    metrics = make_metrics()
    metrics.response_sent(CLUSTER)
    metrics.response_sent(CLUSTER)
    metrics.response_sent(ROUTE)
    metrics.push_time(CLUSTER, 0.02)
    metrics.converged(0.4)
    metrics.rejected("a.demo", LISTENER, "listener l1: bad")
    metrics.config_event("VirtualService", "add")
    metrics.inbound_update("eds")
    found = samples(metrics)
    assert value(found, "pilot_xds_pushes", type="cds") == 2.0
    assert value(found, "pilot_xds_pushes", type="rds") == 1.0
    assert value(found, "pilot_xds_push_time_count", type="cds") == 1.0
    assert value(found, "pilot_proxy_convergence_time_bucket", le="0.5") == 1.0
    assert value(found, "pilot_proxy_convergence_time_bucket", le="0.1") == 0.0
    assert value(found, "pilot_total_xds_rejects", type="lds") == 1.0
    assert value(found, "pilot_xds_lds_reject", node="a.demo", err="listener l1: bad") == 1.0
    assert value(found, "pilot_k8s_cfg_events", type="VirtualService", event="add") == 1.0
    assert value(found, "pilot_inbound_updates", type="eds") == 1.0


def test_a_disconnected_proxy_leaves_no_reject_gauge() -> None:
    metrics = make_metrics()
    metrics.rejected("a.demo", CLUSTER, "cluster c1: bad")
    metrics.disconnected("a.demo")
    found = samples(metrics)
    assert not [k for k in found if k[0] == "pilot_xds_cds_reject"]
    assert value(found, "pilot_total_xds_rejects", type="cds") == 1.0


def test_process_metrics_are_exported() -> None:
    metrics = ControlPlaneMetrics(
        MeshSizes(connected_proxies=lambda: 0, snapshot=lambda: MeshSnapshot(version=1))
    )
    names = {name for name, _ in samples(metrics)}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names


# -- with a real xDS server and client ---------------------------------------------------------


def cluster(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)


class Clusters:
    def __init__(self) -> None:
        self.names = ["c1"]

    def __call__(self, proxy: Proxy, type_url: str) -> Mapping[str, Message]:
        return {n: cluster(n) for n in self.names} if type_url == CLUSTER else {}


def reject_bad(type_url: str, resources: Sequence[any_pb2.Any]) -> str | None:
    names = {cluster_pb2.Cluster.FromString(r.value).name for r in resources}
    return "cluster bad: invalid" if "bad" in names else None


@pytest.fixture
async def served() -> AsyncIterator[tuple[AdsServer, ControlPlaneMetrics, Clusters]]:
    clusters = Clusters()
    server: AdsServer | None = None
    metrics = ControlPlaneMetrics(
        MeshSizes(
            connected_proxies=lambda: 0 if server is None else len(server.connected()),
            snapshot=lambda: MeshSnapshot(version=1),
        ),
        process=False,
    )
    server = AdsServer(clusters, version="v1", debounce_quiet=0.0, observer=metrics)
    await server.start("127.0.0.1", 0)
    try:
        yield server, metrics, clusters
    finally:
        await server.stop(0)


async def until(check: Callable[[], object]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_real_stream_counts_pushes_rejects_and_convergence(
    served: tuple[AdsServer, ControlPlaneMetrics, Clusters],
) -> None:
    server, metrics, clusters = served
    client = LightAdsClient(f"127.0.0.1:{server.port}", NODE, reject=reject_bad)
    await client.start()
    try:
        await client.wait_for_version(CLUSTER, "v1", TIMEOUT)
        await until(lambda: value(samples(metrics), "pilot_xds", version=trellis_version()) == 1.0)
        clusters.names = ["c1", "c2"]
        server.update("v2", frozenset({CLUSTER}))
        await client.wait_for_version(CLUSTER, "v2", TIMEOUT)
        await until(lambda: value(samples(metrics), "pilot_proxy_convergence_time_count") >= 1)
        clusters.names = ["bad"]
        server.update("v3", frozenset({CLUSTER}))
        await until(lambda: value(samples(metrics), "pilot_total_xds_rejects", type="cds"))
        found = samples(metrics)
        assert value(found, "pilot_xds_pushes", type="cds") >= 3
        assert value(found, "pilot_xds_push_time_count", type="cds") >= 1
        rejects = [k for k in found if k[0] == "pilot_xds_cds_reject"]
        assert rejects and dict(rejects[0][1])["node"] == "a.demo"
    finally:
        await client.close()
    await until(lambda: value(samples(metrics), "pilot_xds", version=trellis_version()) == 0.0)


async def test_metrics_are_served_over_http_in_prometheus_text() -> None:
    metrics = make_metrics(connected=2)
    runner, port = await start_metrics_server(metrics, "127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = await response.text()
    finally:
        await runner.cleanup()
    assert "# TYPE pilot_xds gauge" in body


def test_counters_carry_istiods_bare_names_and_no_created_series() -> None:
    metrics = make_metrics()
    metrics.response_sent(CLUSTER)
    text = metrics.exposition().decode()
    assert "# TYPE pilot_xds_pushes counter" in text
    assert 'pilot_xds_pushes{type="cds"} 1.0' in text
    assert "_created" not in text
    assert "pilot_xds_pushes_total" not in text


def test_label_values_are_escaped() -> None:
    metrics = make_metrics()
    metrics.rejected("a.demo", ROUTE, 'route "r1":\nbad \\ path')
    text = metrics.exposition().decode()
    assert 'err="route \\"r1\\":\\nbad \\\\ path"' in text
