"""The real parts the benchmarks stand on, exercised small and fast: the upstream server,
the control-plane bench's mesh fixture and the hand-written Envoy config."""

from __future__ import annotations

import asyncio
import http.client
import time
from pathlib import Path

from bench.common import free_port
from bench.cp_fixture import MeshShape, populate, workload_ip
from bench.dp_envoy import static_bootstrap
from bench.dp_upstream import BODY, serve

from trellis.controlplane.state import MeshState
from trellis.model.snapshot import MeshConfig
from trellis.store.sqlite import SqliteStore


async def test_upstream_answers_keep_alive_requests_with_1_kib_bodies() -> None:
    port = free_port()
    server = asyncio.create_task(serve("127.0.0.1", port))
    try:
        bodies = await asyncio.to_thread(_two_requests_on_one_connection, port)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
    assert bodies == [BODY, BODY] and len(BODY) == 1024


def _two_requests_on_one_connection(port: int) -> list[bytes]:
    for _ in range(50):  # the server task may still be binding
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.connect()
            break
        except OSError:
            time.sleep(0.02)
    out = []
    for method, body in (("GET", None), ("POST", b"hello")):
        conn.request(method, "/", body=body)
        response = conn.getresponse()
        out.append(response.read())
    conn.close()
    return out


def test_fixture_mesh_has_three_endpoints_and_two_subsets_per_service(tmp_path: Path) -> None:
    shape = MeshShape(services=4, namespaces=2)
    populate(tmp_path / "config.db", shape)
    store = SqliteStore(tmp_path / "config.db")
    try:
        state = MeshState(store=store, mesh=MeshConfig(), notify=lambda *_: None)
        state.rebuild()
        push = state.push
    finally:
        store.close()
    assert len(push.services) == 4 and len(push.virtual_services) == 4
    service = push.service("svc-1.bench-1.svc.cluster.local")
    assert service is not None
    assert [e.address for e in push.endpoints(service, service.ports[0])] == [
        workload_ip(1, r) for r in range(3)
    ]
    rule = push.destination_rule(service.hostname, "bench-1")
    assert rule is not None and [s.name for s in rule.spec.subsets] == ["v1", "v2"]


def test_hand_written_envoy_routes_everything_to_the_upstream() -> None:
    config = static_bootstrap(listen_port=10001, upstream_port=10002, admin_port=10003)
    listener = config["static_resources"]["listeners"][0]
    cluster = config["static_resources"]["clusters"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 10001}
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 10002
