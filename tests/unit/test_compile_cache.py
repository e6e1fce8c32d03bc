"""The shared compile cache (compiler/dependencies.py + MeshState.generate) and the host indexes
of PushContext that make compiling thousands of services linear.

The cache may share output between proxies only when nothing the output reads differs: every
test compares what MeshState serves with a fresh, uncached compile of the same proxy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trellis.api.kinds import parse_documents
from trellis.compiler import compile_resources, dependencies
from trellis.controlplane.state import MeshState
from trellis.model import xds_types
from trellis.model.proxy import InterceptionMode, Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol, Service, ServicePort, Workload
from trellis.model.snapshot import MeshConfig, MeshSnapshot
from trellis.store.sqlite import SqliteStore

TYPES = (xds_types.CLUSTER, xds_types.ENDPOINT, xds_types.LISTENER, xds_types.ROUTE)

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: other}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  exportTo: ["."]
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {team: blue}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{sourceNamespace: other}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{sourceLabels: {tier: batch}}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
"""

BASE = Proxy(ProxyType.SIDECAR, "198.18.0.5", "client", "default", {"app": "client"})

VARIANTS = [
    dataclasses.replace(BASE, ip="198.18.0.6"),
    dataclasses.replace(BASE, name="client-2"),
    dataclasses.replace(BASE, service_account="other"),
    dataclasses.replace(BASE, namespace="other"),
    dataclasses.replace(BASE, type=ProxyType.ROUTER, labels={"istio": "ingressgateway"}),
    dataclasses.replace(BASE, labels={"app": "reviews", "version": "v1"}),  # inbound: selected
    dataclasses.replace(BASE, labels={"app": "client", "team": "blue"}),  # http sourceLabels
    dataclasses.replace(BASE, labels={"app": "client", "tier": "batch"}),  # tcp sourceLabels
    dataclasses.replace(BASE, labels={"app": "db"}),
    dataclasses.replace(BASE, interception=InterceptionMode.NONE, app_host="127.0.0.7"),
    dataclasses.replace(BASE, labels={"app": "reviews"}, app_host="127.0.0.8"),
]


@pytest.fixture
def state(tmp_path: Path) -> MeshState:
    store = SqliteStore(tmp_path / "config.db")
    mesh = MeshState(store=store, mesh=MeshConfig(), notify=lambda *a: None)
    mesh.apply(parse_documents(CONFIG))
    for i, version in enumerate(("v1", "v2")):
        labels = {"app": "reviews", "version": version}
        mesh.put_workload(
            Workload(f"reviews-{version}", "default", f"198.18.1.{i + 1}", labels), ""
        )
    return mesh


def serialized(resources: dict[str, object] | object) -> dict[str, bytes]:
    assert isinstance(resources, dict)
    return {n: m.SerializeToString(deterministic=True) for n, m in sorted(resources.items())}


@pytest.mark.parametrize(
    "variant",
    VARIANTS,
    ids=lambda p: "-".join(str(getattr(p, f.name)) for f in dataclasses.fields(p)),
)
def test_cached_output_equals_a_fresh_compile_whatever_was_cached_first(
    state: MeshState, variant: Proxy
) -> None:
    for type_url in TYPES:
        state.generate(BASE, type_url)  # fill the cache with the base proxy's parts
        fresh = compile_resources(variant, state.push, type_url)
        assert serialized(dict(state.generate(variant, type_url))) == serialized(fresh)


def test_proxies_alike_share_the_heavy_outbound_parts(state: MeshState) -> None:
    twin = dataclasses.replace(BASE, name="client-2", ip="198.18.0.9")
    first = state.generate(BASE, xds_types.ENDPOINT)
    second = state.generate(twin, xds_types.ENDPOINT)
    assert all(first[n] is second[n] for n in first)


def test_every_proxy_fact_is_in_the_key_unless_listed_as_unread() -> None:
    """A field added to Proxy later must change the outbound keys until proven unread."""
    push = PushContext.build(MeshSnapshot(1))
    for f in dataclasses.fields(Proxy):
        if f.name in ("labels", "ip", "name", "service_account", "app_host"):
            continue
        value = getattr(BASE, f.name)
        other = next(v for v in _other_values(value) if v != value)
        changed = dataclasses.replace(BASE, **{f.name: other})
        assert dependencies.namespace_scope(changed, push) != dependencies.namespace_scope(
            BASE, push
        ), f.name


def _other_values(value: object) -> list[object]:
    if isinstance(value, str):
        return [value + "-x"]
    return list(type(value))  # an enum: any other member


def test_a_new_version_misses_the_cache(state: MeshState) -> None:
    before = state.generate(BASE, xds_types.ENDPOINT)
    state.put_workload(Workload("reviews-v3", "default", "198.18.1.9", {"app": "reviews"}), "")
    after = state.generate(BASE, xds_types.ENDPOINT)
    assert serialized(dict(after)) != serialized(dict(before))
    assert serialized(dict(after)) == serialized(
        compile_resources(BASE, state.push, xds_types.ENDPOINT)
    )


# --- PushContext host indexes: Istio's order rules survive indexing ---------------------------


def _push(yaml_text: str) -> PushContext:
    service = Service(
        "reviews", "default", "240.240.0.9", (ServicePort("http", 9080, 9080, Protocol.HTTP),)
    )
    return PushContext.build(MeshSnapshot(1, tuple(parse_documents(yaml_text)), (service,)))


def _vs(name: str, host: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: ["{host}"]
  http: [{{route: [{{destination: {{host: reviews}}}}]}}]
---"""


def test_first_virtual_service_wins_even_when_a_later_one_names_the_host_exactly() -> None:
    # "First" is Istio's order: oldest, then namespace/name (here: name, no timestamps).
    push = _push(_vs("b-exact", "reviews") + _vs("a-wild", "*.default.svc.cluster.local"))
    vs = push.mesh_virtual_service("reviews.default.svc.cluster.local", "default")
    assert vs is not None and vs.name == "a-wild"


def test_exact_destination_rule_beats_an_earlier_wildcard_one() -> None:
    rules = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wild}
spec: {host: "*.default.svc.cluster.local"}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: exact}
spec: {host: reviews}
"""
    push = _push(rules)
    rule = push.destination_rule("reviews.default.svc.cluster.local", "default")
    assert rule is not None and rule.name == "exact"
    other = push.destination_rule("ratings.default.svc.cluster.local", "default")
    assert other is not None and other.name == "wild"


# --- every golden case: shared output equals a fresh compile, whichever proxy came first ------


def _golden_cases() -> list[Path]:
    from tests.golden.golden_case import case_dirs

    return case_dirs()


def _mixed_proxies(proxies: tuple[Proxy, ...]) -> list[Proxy]:
    """The case's proxies, plus each one wearing every other one's labels and namespace: the
    pairs a cache key that forgot an input would confuse."""
    mixed = list(proxies) + [dataclasses.replace(p, namespace="elsewhere") for p in proxies]
    for a in proxies:
        for b in proxies:
            if a is not b:
                mixed.append(dataclasses.replace(a, labels=b.labels, name=a.name + "-x"))
                mixed.append(dataclasses.replace(a, namespace=b.namespace, name=a.name + "-y"))
    return mixed


@pytest.mark.parametrize("directory", _golden_cases(), ids=lambda p: p.name)
def test_golden_case_shared_output_equals_fresh_compile(directory: Path) -> None:
    from tests.golden.golden_case import load_case

    case = load_case(directory)
    push = PushContext.build(case.snapshot)
    proxies = _mixed_proxies(case.proxies)
    for order in (proxies, list(reversed(proxies))):
        cache: dependencies.SharedCache = {}
        for proxy in order:
            for type_url in TYPES:
                shared = dependencies.generate_shared(proxy, push, type_url, cache)
                fresh = compile_resources(proxy, push, type_url)
                assert serialized(shared) == serialized(fresh), (proxy, type_url)


# --- the Sidecar that scopes a proxy is part of the outbound keys -----------------------------

SCOPING_SIDECAR = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: only-db}
spec:
  workloadSelector: {labels: {app: scoped}}
  egress: [{hosts: ["./db.default.svc.cluster.local"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
SCOPED = dataclasses.replace(BASE, name="scoped-1", labels={"app": "scoped"})


@pytest.fixture
def scoped_state(state: MeshState) -> MeshState:
    state.apply(parse_documents(SCOPING_SIDECAR))
    return state


@pytest.mark.parametrize("first", [BASE, SCOPED], ids=["unscoped-first", "scoped-first"])
def test_a_sidecar_scope_misses_the_cache_of_unscoped_proxies(
    scoped_state: MeshState, first: Proxy
) -> None:
    for type_url in TYPES:
        scoped_state.generate(first, type_url)
        for proxy in (BASE, SCOPED):
            fresh = compile_resources(proxy, scoped_state.push, type_url)
            assert serialized(dict(scoped_state.generate(proxy, type_url))) == serialized(fresh)
    # reviews.default stays: db's VirtualService routes to it; reviews.other is out of scope.
    scoped = scoped_state.generate(SCOPED, xds_types.CLUSTER)
    assert "outbound|9080||reviews.other.svc.cluster.local" not in scoped
    assert "outbound|9080||reviews.other.svc.cluster.local" in scoped_state.generate(
        BASE, xds_types.CLUSTER
    )


def test_proxies_under_one_sidecar_still_share(scoped_state: MeshState) -> None:
    twin = dataclasses.replace(SCOPED, name="scoped-2", ip="198.18.0.9")
    for type_url in (xds_types.CLUSTER, xds_types.ENDPOINT, xds_types.ROUTE):
        first, second = (
            scoped_state.generate(SCOPED, type_url),
            scoped_state.generate(twin, type_url),
        )
        shared = [n for n in first if n.startswith("outbound|") or n.isdigit()]
        assert shared and all(first[n] is second[n] for n in shared)


def test_the_sidecar_identity_is_in_the_outbound_keys(scoped_state: MeshState) -> None:
    push = scoped_state.push
    assert dependencies.namespace_scope(SCOPED, push) != dependencies.namespace_scope(BASE, push)
    assert dependencies.outbound_scope(SCOPED, push) != dependencies.outbound_scope(BASE, push)
    unselected = dataclasses.replace(BASE, labels={"app": "other"})
    assert dependencies.namespace_scope(unselected, push) == dependencies.namespace_scope(
        BASE, push
    )
