"""VirtualService `delegate` and the rule for several VirtualServices on one host (sidecars)."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from trellis.api.kinds import parse_documents
from trellis.api.networking import HTTPMatchRequest, VirtualService
from trellis.api.validation import problems_of
from trellis.compiler import compile_all
from trellis.compiler.delegate import delegated_rules, find_delegate
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol, Service, ServicePort, Workload
from trellis.model.snapshot import MeshSnapshot

ROOT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [reviews]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    timeout: 3s
    delegate: {name: leaf, namespace: team}
  - route: [{destination: {host: reviews}}]
"""
LEAF = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf, namespace: team}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /api/v2}, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - name: other
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
  - name: rest
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
"""


def _vs(text: str) -> list[VirtualService]:
    return [r for r in parse_documents(text) if isinstance(r, VirtualService)]


def test_delegate_rules_merge_under_the_root_match_and_inherit_its_policies() -> None:
    [root, leaf] = _vs(ROOT + "---" + LEAF)
    rule = root.spec.http[0]
    assert find_delegate([root, leaf], root, rule) is leaf
    merged = list(delegated_rules(rule, leaf))
    assert [r.name for r in merged] == ["api-v2", "api-rest"]  # /other contradicts /api
    first, last = merged
    assert first.match[0].uri is not None and first.match[0].uri.prefix == "/api/v2"
    assert "end-user" in first.match[0].headers
    assert last.match == [HTTPMatchRequest.model_validate({"uri": {"prefix": "/api"}})]
    assert [r.timeout for r in merged] == ["3s", "3s"]


def test_a_delegate_with_hosts_or_not_exported_to_the_root_is_not_used() -> None:
    [root, leaf] = _vs(ROOT + "---" + LEAF.replace("spec:\n", "spec:\n  exportTo: ['.']\n", 1))
    assert find_delegate([root, leaf], root, root.spec.http[0]) is None
    [root, leaf] = _vs(ROOT + "---" + LEAF.replace("spec:\n", "spec:\n  hosts: [x]\n", 1))
    assert find_delegate([root, leaf], root, root.spec.http[0]) is None


def test_hostless_virtual_service_is_a_valid_delegate_with_delegate_rules_only() -> None:
    [leaf] = _vs(LEAF)
    assert problems_of(leaf) == []
    bad = LEAF.replace("spec:\n", "spec:\n  gateways: [mesh]\n", 1)
    assert [e.field for e in problems_of(_vs(bad)[0])] == ["spec.gateways"]
    nested = LEAF.replace(
        "  - name: rest\n", "  - name: deeper\n    delegate: {name: x}\n  - name: rest\n"
    )
    assert [e.field for e in problems_of(_vs(nested)[0])] == ["spec.http[2].delegate"]


# --- compiled routes --------------------------------------------------------------------


def _push(text: str) -> PushContext:
    port = (ServicePort("http", 9080, 9080, Protocol.HTTP),)
    services = (
        Service("reviews", "default", "240.240.0.12", port, {"app": "reviews"}),
        Service("productpage", "default", "240.240.0.10", port, {"app": "productpage"}),
    )
    workloads = (Workload("productpage-v1", "default", "198.18.0.10", {"app": "productpage"}),)
    return PushContext.build(MeshSnapshot(1, tuple(parse_documents(text)), services, workloads))


def _reviews_routes(push: PushContext) -> list[dict[str, Any]]:
    proxy = Proxy(
        ProxyType.SIDECAR, "198.18.0.10", "productpage-v1", "default", {"app": "productpage"}
    )
    config = compile_all(proxy, push)
    route_config = MessageToDict(config.routes["9080"])
    [host] = [h for h in route_config["virtualHosts"] if h["name"].startswith("reviews")]
    routes: list[dict[str, Any]] = host["routes"]
    return routes


def test_compiled_routes_put_the_delegates_rules_in_place_of_the_root_rule() -> None:
    routes = _reviews_routes(_push(ROOT + "---" + LEAF))
    assert [r.get("name") for r in routes] == ["api-v2", "api-rest", None]
    assert routes[0]["match"]["prefix"] == "/api/v2"
    assert routes[0]["route"]["cluster"] == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert routes[1]["match"]["prefix"] == "/api" and routes[1]["route"]["timeout"] == "3s"


def test_a_missing_delegate_routes_nothing_for_its_rule() -> None:
    routes = _reviews_routes(_push(ROOT))
    assert len(routes) == 1 and routes[0]["match"]["prefix"] == "/"


def test_sidecars_use_the_oldest_virtual_service_for_a_host_whatever_the_input_order() -> None:
    def named(name: str, created: str, subset: str) -> str:
        return (
            f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
            f"  name: {name}\n  creationTimestamp: '{created}'\nspec:\n  hosts: [reviews]\n"
            f"  http:\n  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]\n"
        )

    old = named("zz-old", "2024-01-01T00:00:00Z", "v1")
    new = named("aa-new", "2025-01-01T00:00:00Z", "v2")
    for text in (old + "---\n" + new, new + "---\n" + old):
        [route] = _reviews_routes(_push(text))
        assert route["route"]["cluster"] == "outbound|9080|v1|reviews.default.svc.cluster.local"
    # Without timestamps (the local store), namespace/name order decides: aa-new wins.
    plain = (old + "---\n" + new).replace("  creationTimestamp: '2024-01-01T00:00:00Z'\n", "")
    plain = plain.replace("  creationTimestamp: '2025-01-01T00:00:00Z'\n", "")
    [route] = _reviews_routes(_push(plain))
    assert route["route"]["cluster"] == "outbound|9080|v2|reviews.default.svc.cluster.local"
