"""The shared compile cache (compiler/dependencies.py + MeshState.generate) and the host indexes
of PushContext that make compiling thousands of services linear.

The cache may share output between proxies only when nothing the output reads differs: every
test compares what MeshState serves with a fresh, uncached compile of the same proxy.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trellis.api.base import Resource
from trellis.api.kinds import parse_documents
from trellis.compiler import compile_resources, dependencies
from trellis.compiler.incremental import READS_FIELDS, ReuseCache
from trellis.controlplane.state import MeshState
from trellis.errors import TrellisError
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


# --- output kept across versions (compiler/incremental.py) equals a fresh compile --------------

# Proxies of every kind the cache keys tell apart: namespaces, labels a sourceLabels match
# reads, a Sidecar-scoped one, a gateway, a sidecar without capture.
ACROSS_VERSIONS = [
    BASE,
    dataclasses.replace(BASE, name="client-2", ip="198.18.0.9"),
    dataclasses.replace(BASE, namespace="other", name="o-1"),
    dataclasses.replace(BASE, labels={"app": "client", "team": "blue"}, name="blue-1"),
    dataclasses.replace(BASE, labels={"app": "reviews", "version": "v1"}, name="reviews-v1"),
    SCOPED,
    dataclasses.replace(BASE, type=ProxyType.ROUTER, labels={"istio": "ingressgateway"}),
    dataclasses.replace(BASE, interception=InterceptionMode.NONE, app_host="127.0.0.7"),
]

_HOSTS = ("reviews", "db", "ratings")


def _vs_doc(host: str, weight: int, source_team: bool) -> str:
    match = "- match: [{sourceLabels: {team: blue}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n  "
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-{host}}}
spec:
  hosts: [{host}]
  http:
  {match if source_team else ""}- route:
    - {{destination: {{host: {host}, subset: v1}}, weight: {weight}}}
    - {{destination: {{host: {host}, subset: v2}}, weight: {100 - weight}}}
"""


def _dr_doc(host: str, subsets: int, lb: str) -> str:
    names = "".join(
        f"\n  - {{name: v{i + 1}, labels: {{version: v{i + 1}}}}}" for i in range(subsets)
    )
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dr-{host}}}
spec:
  host: {host}
  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}
  subsets:{names or " []"}
"""


_SERVICE_DOC = """
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""

_OPS = st.one_of(
    st.tuples(st.just("vs"), st.sampled_from(_HOSTS), st.integers(0, 100), st.booleans()),
    st.tuples(st.just("del-vs"), st.sampled_from(_HOSTS)),
    st.tuples(
        st.just("dr"),
        st.sampled_from(_HOSTS),
        st.integers(0, 2),
        st.sampled_from(["RANDOM", "ROUND_ROBIN"]),
    ),
    st.tuples(st.just("del-dr"), st.sampled_from(_HOSTS)),
    st.tuples(
        st.just("workload"),
        st.integers(1, 4),
        st.sampled_from(["reviews", "ratings", "db"]),
        st.sampled_from(["v1", "v2"]),
    ),
    st.tuples(st.just("del-workload"), st.integers(1, 4)),
    st.tuples(st.just("sidecar"), st.booleans()),
    st.tuples(st.just("service"), st.booleans()),
)


def _apply_op(mesh: MeshState, op: tuple[object, ...]) -> None:
    """One change; one the store refuses (a dangling reference, a missing resource) is none."""
    with contextlib.suppress(TrellisError):
        _change(mesh, op)


def _change(mesh: MeshState, op: tuple[object, ...]) -> None:
    kind = op[0]
    if kind == "vs":
        mesh.apply(parse_documents(_vs_doc(str(op[1]), int(str(op[2])), bool(op[3]))))
    elif kind == "dr":
        mesh.apply(parse_documents(_dr_doc(str(op[1]), int(str(op[2])), str(op[3]))))
    elif kind in ("del-vs", "del-dr"):
        resource = "VirtualService" if kind == "del-vs" else "DestinationRule"
        mesh.delete([(resource, "default", f"{kind[4:]}-{op[1]}")])
    elif kind == "workload":
        labels = {"app": str(op[2]), "version": str(op[3])}
        mesh.put_workload(Workload(f"w-{op[1]}", "default", f"198.18.2.{op[1]}", labels), "")
    elif kind == "del-workload":
        mesh.delete_workload("default", f"w-{op[1]}")
    elif kind == "sidecar":
        if op[1]:
            mesh.apply(parse_documents(SCOPING_SIDECAR))
        else:
            mesh.delete([("Sidecar", "default", "only-db")])
    elif op[1]:
        mesh.apply(parse_documents(_SERVICE_DOC))
    else:
        mesh.delete([("Service", "default", "ratings")])


def _assert_served_equals_fresh(mesh: MeshState, proxies: list[Proxy]) -> None:
    for proxy in proxies:
        for type_url in TYPES:
            fresh = compile_resources(proxy, mesh.push, type_url)
            served = dict(mesh.generate(proxy, type_url))
            assert serialized(served) == serialized(fresh), (proxy.key, type_url)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_OPS, min_size=1, max_size=6))
def test_output_kept_across_versions_equals_a_fresh_compile(ops: list[tuple[object, ...]]) -> None:
    """After any sequence of applies, deletes and workload changes, what MeshState serves (its
    pieces kept from earlier versions where their reads held) equals an uncached compile."""
    with tempfile.TemporaryDirectory(prefix="trellis-reuse-") as tmp:
        store = SqliteStore(Path(tmp) / "config.db")
        try:
            mesh = MeshState(store=store, mesh=MeshConfig(), notify=lambda *a: None)
            mesh.apply(parse_documents(CONFIG))
            _assert_served_equals_fresh(mesh, ACROSS_VERSIONS)
            for op in ops:
                _apply_op(mesh, op)
                _assert_served_equals_fresh(mesh, ACROSS_VERSIONS)
        finally:
            store.close()


def test_a_virtual_service_change_recompiles_no_cluster_or_endpoint(state: MeshState) -> None:
    proxies = ACROSS_VERSIONS[:5]
    before = {(p.key, t): state.generate(p, t) for p in proxies for t in TYPES}
    changed = CONFIG.split("---")[4].replace("subset: v1}}]\n", "subset: v2}}]\n")
    assert "kind: VirtualService" in changed and "subset: v1" not in changed
    state.apply(parse_documents(changed))
    for proxy in proxies:
        for type_url in (xds_types.CLUSTER, xds_types.ENDPOINT):
            after = state.generate(proxy, type_url)
            assert all(after[n] is before[(proxy.key, type_url)][n] for n in after)
    routes = state.generate(BASE, xds_types.ROUTE)
    assert serialized(dict(routes)) != serialized(dict(before[(BASE.key, xds_types.ROUTE)]))


def test_an_endpoint_change_pushes_eds_only_and_recompiles_only_endpoints(
    state: MeshState,
) -> None:
    notified: list[tuple[frozenset[str], bool]] = []
    state._notify = lambda version, types, affected: notified.append((types, affected is None))
    proxies = ACROSS_VERSIONS[:5]
    before = {(p.key, t): state.generate(p, t) for p in proxies for t in TYPES}
    moved = Workload("reviews-v2", "default", "198.18.1.77", {"app": "reviews", "version": "v2"})
    state.put_workload(moved, "")
    # Every proxy gets EDS only; the moved workload's own proxy alone may get everything.
    assert (frozenset({xds_types.ENDPOINT}), True) in notified
    assert all(types == {xds_types.ENDPOINT} for types, everyone in notified if everyone)
    for proxy in proxies:
        for type_url in (xds_types.CLUSTER, xds_types.LISTENER, xds_types.ROUTE):
            after = state.generate(proxy, type_url)
            unchanged = before[(proxy.key, type_url)]
            assert after.keys() == unchanged.keys()
            assert all(after[n] is unchanged[n] for n in after if n != "9080"), type_url
        endpoints = state.generate(proxy, xds_types.ENDPOINT)
        assert serialized(dict(endpoints)) == serialized(
            compile_resources(proxy, state.push, xds_types.ENDPOINT)
        )


def test_a_piece_whose_read_changed_is_rebuilt_one_whose_reads_held_is_not() -> None:
    push = _push(_vs("a", "reviews"))
    cache = ReuseCache()
    built: list[PushContext] = []

    def build(p: PushContext) -> object:
        built.append(p)
        return p.mesh_virtual_service("reviews.default.svc.cluster.local", "default")

    cache.get("k", push, (), build)
    same = PushContext.build(MeshSnapshot(2, push_resources(push), push.services))
    cache.get("k", same, (), build)
    assert len(built) == 1  # version 2 reads the same VirtualService: reused
    other = PushContext.build(MeshSnapshot(3, tuple(parse_documents(_vs("b", "reviews")))))
    cache.get("k", other, (), build)
    assert len(built) == 2  # another VirtualService for the host: rebuilt
    cache.get("k", other, ("new input",), build)
    assert len(built) == 3  # a different explicit input misses too


def push_resources(push: PushContext) -> tuple[Resource, ...]:
    return (*push.virtual_services, *push.destination_rules)


def _self_attributes(method: str) -> set[str]:
    """Every `self.X` a PushContext method reads, following calls of its other methods."""
    seen: set[str] = set()
    fields: set[str] = set()
    todo = [method]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(PushContext, name))))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                if callable(getattr(PushContext, node.attr, None)) and not any(
                    f.name == node.attr for f in dataclasses.fields(PushContext)
                ):
                    todo.append(node.attr)
                else:
                    fields.add(node.attr)
    return fields


@pytest.mark.parametrize("method", sorted(READS_FIELDS))
def test_the_fields_a_lookup_reads_are_declared(method: str) -> None:
    """The compile cache trusts a lookup's answer while the fields it declares are the same
    objects: a method that starts reading another field must declare it."""
    assert _self_attributes(method) <= set(READS_FIELDS[method])


def test_unchanged_indexes_are_carried_over_and_changed_ones_are_not(state: MeshState) -> None:
    before = state.push
    state.put_workload(Workload("reviews-v9", "default", "198.18.1.99", {"app": "reviews"}), "")
    after = state.push
    assert after._rules_by_host is before._rules_by_host
    assert after._mesh_vs_hosts is before._mesh_vs_hosts
    assert after._endpoints is not before._endpoints
    assert after._endpoints != before._endpoints
