"""Which policies apply to a workload, in Istio's precedence: a table of cases per kind."""

from __future__ import annotations

from typing import Any

import pytest

from trellis.api.base import Resource
from trellis.api.common import LabelSelector
from trellis.api.networking import VirtualService
from trellis.api.policy_scope import (
    EffectiveMTLS,
    authorization_policies_for,
    effective_mtls,
    mtls_for_workload,
    oldest_first,
    peer_authentications_for,
    request_authentications_for,
    selector_matches,
    telemetries_for,
    telemetry_for_workload,
)
from trellis.api.security import (
    AuthorizationPolicy,
    PeerAuthentication,
    PeerAuthenticationMode,
    RequestAuthentication,
)
from trellis.api.telemetry import Telemetry

STRICT = PeerAuthenticationMode.STRICT
PERMISSIVE = PeerAuthenticationMode.PERMISSIVE
DISABLE = PeerAuthenticationMode.DISABLE
REVIEWS = {"app": "reviews", "version": "v2"}


def _meta(name: str, namespace: str, created: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created is not None:
        meta["creationTimestamp"] = created
    return meta


def pa(
    name: str,
    namespace: str,
    mode: str | None = None,
    *,
    app: str | None = None,
    ports: dict[str, str] | None = None,
    created: str | None = None,
) -> PeerAuthentication:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if app is not None:
        spec["selector"] = {"matchLabels": {"app": app}}
    if ports is not None:
        spec["portLevelMtls"] = {port: {"mode": m} for port, m in ports.items()}
    return PeerAuthentication.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": _meta(name, namespace, created),
            "spec": spec,
        }
    )


def _targeted(
    cls: type[Resource],
    group: str,
    name: str,
    namespace: str,
    app: str | None,
    target: bool,
    created: str | None,
    extra: dict[str, Any],
) -> Any:
    spec: dict[str, Any] = dict(extra)
    if app is not None:
        spec["selector"] = {"matchLabels": {"app": app}}
    if target:
        spec["targetRef"] = {"kind": "Gateway", "name": "bookinfo-gateway"}
    return cls.model_validate(
        {
            "apiVersion": f"{group}/v1",
            "kind": cls.KIND,
            "metadata": _meta(name, namespace, created),
            "spec": spec,
        }
    )


def ap(
    name: str,
    namespace: str,
    *,
    app: str | None = None,
    target: bool = False,
    created: str | None = None,
) -> AuthorizationPolicy:
    policy: AuthorizationPolicy = _targeted(
        AuthorizationPolicy, "security.istio.io", name, namespace, app, target, created, {}
    )
    return policy


def ra(name: str, namespace: str, *, app: str | None = None) -> RequestAuthentication:
    rules = {"jwtRules": [{"issuer": "testing@secure.istio.io"}]}
    policy: RequestAuthentication = _targeted(
        RequestAuthentication, "security.istio.io", name, namespace, app, False, None, rules
    )
    return policy


def tel(
    name: str,
    namespace: str,
    *,
    app: str | None = None,
    target: bool = False,
    created: str | None = None,
    blocks: tuple[str, ...] = (),
) -> Telemetry:
    content = {
        "tracing": [{"providers": [{"name": f"tracer-{name}"}]}],
        "accessLogging": [{"providers": [{"name": f"log-{name}"}]}],
        "metrics": [{"providers": [{"name": f"metrics-{name}"}]}],
    }
    extra = {block: content[block] for block in blocks}
    telemetry: Telemetry = _targeted(
        Telemetry, "telemetry.istio.io", name, namespace, app, target, created, extra
    )
    return telemetry


def _names(*resources: Resource | None) -> tuple[str | None, ...]:
    return tuple(r.name if r is not None else None for r in resources)


# (policies, workload namespace, expected (mesh, namespace, workload) names, mode, port modes)
PEER_AUTHENTICATION_CASES = [
    pytest.param([], "bookinfo", (None, None, None), PERMISSIVE, {}, id="nothing-is-permissive"),
    pytest.param(
        [pa("default", "istio-system", "STRICT")],
        "bookinfo",
        ("default", None, None),
        STRICT,
        {},
        id="mesh-wide-strict",
    ),
    pytest.param(
        [pa("default", "istio-system", "STRICT"), pa("ns", "bookinfo", "PERMISSIVE")],
        "bookinfo",
        ("default", "ns", None),
        PERMISSIVE,
        {},
        id="namespace-overrides-mesh",
    ),
    pytest.param(
        [pa("default", "istio-system", "STRICT"), pa("ns", "bookinfo", "UNSET")],
        "bookinfo",
        ("default", "ns", None),
        STRICT,
        {},
        id="unset-namespace-inherits-mesh",
    ),
    pytest.param(
        [pa("default", "istio-system", "DISABLE"), pa("ns", "bookinfo")],
        "bookinfo",
        ("default", "ns", None),
        DISABLE,
        {},
        id="namespace-without-mtls-inherits-mesh",
    ),
    pytest.param(
        [
            pa("default", "istio-system", "STRICT"),
            pa("ns", "bookinfo", "DISABLE"),
            pa("reviews", "bookinfo", app="reviews", ports={"8080": "UNSET", "9000": "STRICT"}),
        ],
        "bookinfo",
        ("default", "ns", "reviews"),
        DISABLE,
        {8080: DISABLE, 9000: STRICT},
        id="unset-workload-and-port-inherit",
    ),
    pytest.param(
        [
            pa("ns", "bookinfo", "STRICT"),
            pa("reviews", "bookinfo", "PERMISSIVE", app="reviews", ports={"8080": "DISABLE"}),
        ],
        "bookinfo",
        (None, "ns", "reviews"),
        PERMISSIVE,
        {8080: DISABLE},
        id="workload-overrides-namespace-and-port-overrides-workload",
    ),
    pytest.param(
        [pa("ns", "bookinfo", "STRICT"), pa("ratings", "bookinfo", "DISABLE", app="ratings")],
        "bookinfo",
        (None, "ns", None),
        STRICT,
        {},
        id="other-workloads-selector-ignored",
    ),
    pytest.param(
        [pa("reviews", "istio-system", "DISABLE", app="reviews")],
        "bookinfo",
        (None, None, None),
        PERMISSIVE,
        {},
        id="selector-in-root-namespace-ignored",
    ),
    pytest.param(
        [
            pa("default", "istio-system", "STRICT"),
            pa("reviews", "istio-system", "DISABLE", app="reviews"),
        ],
        "istio-system",
        ("default", None, None),
        STRICT,
        {},
        id="root-namespace-workload-gets-mesh-level-only",
    ),
    pytest.param(
        [pa("ns", "shop", "DISABLE"), pa("reviews", "shop", "DISABLE", app="reviews")],
        "bookinfo",
        (None, None, None),
        PERMISSIVE,
        {},
        id="other-namespaces-ignored",
    ),
    pytest.param(
        [
            pa("b-newer", "bookinfo", "DISABLE", created="2024-05-01T00:00:00Z"),
            pa("c-older", "bookinfo", "STRICT", created="2024-01-01T00:00:00Z"),
            pa("a-untimed", "bookinfo", "PERMISSIVE"),
        ],
        "bookinfo",
        (None, "c-older", None),
        STRICT,
        {},
        id="oldest-namespace-policy-wins",
    ),
    pytest.param(
        [pa("b", "bookinfo", "DISABLE"), pa("a", "bookinfo", "STRICT")],
        "bookinfo",
        (None, "a", None),
        STRICT,
        {},
        id="without-timestamps-name-order-wins",
    ),
    pytest.param(
        [
            pa("new", "bookinfo", "DISABLE", app="reviews", created="2024-05-01T00:00:00Z"),
            pa("old", "bookinfo", "STRICT", app="reviews", created="2023-05-01T00:00:00Z"),
        ],
        "bookinfo",
        (None, None, "old"),
        STRICT,
        {},
        id="oldest-workload-policy-wins",
    ),
    pytest.param(
        [pa("ns", "bookinfo", "STRICT", ports={"8080": "DISABLE"})],
        "bookinfo",
        (None, "ns", None),
        STRICT,
        {},
        id="port-level-on-namespace-policy-ignored",
    ),
    pytest.param(
        [pa("reviews", "bookinfo", "STRICT", app="reviews", ports={"http": "DISABLE"})],
        "bookinfo",
        (None, None, "reviews"),
        STRICT,
        {},
        id="invalid-port-key-skipped",
    ),
]


@pytest.mark.parametrize(
    ("policies", "namespace", "levels", "mode", "ports"), PEER_AUTHENTICATION_CASES
)
def test_peer_authentication_precedence_and_effective_mode(
    policies: list[Resource],
    namespace: str,
    levels: tuple[str | None, ...],
    mode: PeerAuthenticationMode,
    ports: dict[int, PeerAuthenticationMode],
) -> None:
    found = peer_authentications_for(policies, namespace=namespace, labels=REVIEWS)
    assert _names(found.mesh, found.namespace, found.workload) == levels
    effective = effective_mtls(found)
    assert effective == EffectiveMTLS(mode=mode, port_modes=tuple(sorted(ports.items())))
    assert mtls_for_workload(policies, namespace=namespace, labels=REVIEWS) == effective
    assert effective.mode_for_port(12345) is mode
    for port, port_mode in ports.items():
        assert effective.mode_for_port(port) is port_mode


def test_applied_lists_most_specific_first_and_other_kinds_are_ignored() -> None:
    policies: list[Resource] = [
        pa("default", "istio-system", "STRICT"),
        pa("ns", "bookinfo"),
        pa("reviews", "bookinfo", app="reviews"),
        ap("ignored", "bookinfo"),
    ]
    found = peer_authentications_for(policies, namespace="bookinfo", labels=REVIEWS)
    assert [p.name for p in found.applied] == ["reviews", "ns", "default"]


def test_root_namespace_is_a_parameter() -> None:
    policies = [pa("default", "mesh-root", "STRICT"), pa("default", "istio-system", "DISABLE")]
    effective = mtls_for_workload(
        policies, namespace="bookinfo", labels=REVIEWS, root_namespace="mesh-root"
    )
    assert effective.mode is STRICT


# (policies, workload namespace, expected names in order)
AUTHORIZATION_CASES = [
    pytest.param([], "bookinfo", [], id="none"),
    pytest.param([ap("deny-all", "bookinfo")], "bookinfo", ["deny-all"], id="namespace-wide"),
    pytest.param([ap("r", "bookinfo", app="reviews")], "bookinfo", ["r"], id="matching-selector"),
    pytest.param([ap("p", "bookinfo", app="productpage")], "bookinfo", [], id="other-selector"),
    pytest.param([ap("x", "shop")], "bookinfo", [], id="other-namespace"),
    pytest.param([ap("mesh", "istio-system")], "bookinfo", ["mesh"], id="root-namespace-wide"),
    pytest.param(
        [ap("mesh-reviews", "istio-system", app="reviews")],
        "bookinfo",
        ["mesh-reviews"],
        id="root-selector-reaches-every-namespace",
    ),
    pytest.param(
        [ap("mesh-pp", "istio-system", app="productpage")],
        "bookinfo",
        [],
        id="root-selector-not-matching",
    ),
    pytest.param(
        [ap("gw", "bookinfo", target=True)], "bookinfo", [], id="target-ref-is-not-for-sidecars"
    ),
    pytest.param(
        [
            ap("b-local", "bookinfo"),
            ap("z-mesh", "istio-system"),
            ap("a-local", "bookinfo", app="reviews", created="2024-02-01T00:00:00Z"),
            ap("y-mesh", "istio-system", created="2024-03-01T00:00:00Z"),
        ],
        "bookinfo",
        ["y-mesh", "z-mesh", "a-local", "b-local"],
        id="root-first-then-oldest-first",
    ),
]


@pytest.mark.parametrize(("policies", "namespace", "expected"), AUTHORIZATION_CASES)
def test_authorization_policies_that_apply(
    policies: list[Resource], namespace: str, expected: list[str]
) -> None:
    found = authorization_policies_for(policies, namespace=namespace, labels=REVIEWS)
    assert [p.name for p in found] == expected


def test_request_authentications_follow_the_same_scope() -> None:
    policies: list[Resource] = [
        ra("mesh", "istio-system"),
        ra("reviews", "bookinfo", app="reviews"),
        ra("ratings", "bookinfo", app="ratings"),
        ra("shop", "shop"),
        ap("not-an-ra", "bookinfo"),
    ]
    found = request_authentications_for(policies, namespace="bookinfo", labels=REVIEWS)
    assert [p.name for p in found] == ["mesh", "reviews"]


# (telemetries, workload namespace, expected (mesh, namespace, workload) names)
TELEMETRY_LEVEL_CASES = [
    pytest.param([], "bookinfo", (None, None, None), id="none"),
    pytest.param(
        [
            tel("mesh-default", "istio-system"),
            tel("ns", "bookinfo"),
            tel("r", "bookinfo", app="reviews"),
        ],
        "bookinfo",
        ("mesh-default", "ns", "r"),
        id="all-three-levels",
    ),
    pytest.param(
        [tel("mesh-reviews", "istio-system", app="reviews")],
        "bookinfo",
        (None, None, None),
        id="root-selector-does-not-reach-other-namespaces",
    ),
    pytest.param(
        [tel("mesh-default", "istio-system"), tel("gw", "istio-system", app="reviews")],
        "istio-system",
        ("mesh-default", None, "gw"),
        id="root-selector-reaches-root-namespace-workloads",
    ),
    pytest.param(
        [tel("p", "bookinfo", app="productpage"), tel("shop", "shop")],
        "bookinfo",
        (None, None, None),
        id="other-selector-and-namespace-ignored",
    ),
    pytest.param(
        [tel("gw", "bookinfo", target=True)],
        "bookinfo",
        (None, None, None),
        id="target-ref-skipped",
    ),
    pytest.param(
        [
            tel("a", "bookinfo", created="2024-06-01T00:00:00Z"),
            tel("b", "bookinfo", created="2024-01-01T00:00:00Z"),
        ],
        "bookinfo",
        (None, "b", None),
        id="oldest-wins",
    ),
]


@pytest.mark.parametrize(("telemetries", "namespace", "levels"), TELEMETRY_LEVEL_CASES)
def test_telemetry_levels(
    telemetries: list[Resource], namespace: str, levels: tuple[str | None, ...]
) -> None:
    found = telemetries_for(telemetries, namespace=namespace, labels=REVIEWS)
    assert _names(found.mesh, found.namespace, found.workload) == levels


# (blocks set by mesh, namespace, workload) -> which level's tracing, logging, metrics win
TELEMETRY_MERGE_CASES = [
    pytest.param(((), (), ()), (None, None, None), id="nothing-set"),
    pytest.param(
        (("tracing", "accessLogging", "metrics"), (), ()),
        ("mesh", "mesh", "mesh"),
        id="mesh-only",
    ),
    pytest.param(
        (("tracing", "accessLogging", "metrics"), ("tracing",), ("metrics",)),
        ("ns", "mesh", "wl"),
        id="each-block-from-the-most-specific-level-that-sets-it",
    ),
    pytest.param(
        (("tracing",), ("accessLogging",), ("tracing", "accessLogging")),
        ("wl", "wl", None),
        id="workload-overrides-whole-blocks",
    ),
]


@pytest.mark.parametrize(("blocks", "winners"), TELEMETRY_MERGE_CASES)
def test_more_specific_telemetry_replaces_the_blocks_it_sets(
    blocks: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    winners: tuple[str | None, str | None, str | None],
) -> None:
    mesh_blocks, ns_blocks, wl_blocks = blocks
    telemetries = [
        tel("mesh", "istio-system", blocks=mesh_blocks),
        tel("ns", "bookinfo", blocks=ns_blocks),
        tel("wl", "bookinfo", app="reviews", blocks=wl_blocks),
    ]
    effective = telemetry_for_workload(telemetries, namespace="bookinfo", labels=REVIEWS)
    tracing, logging, metrics = winners
    assert [p.name for t in effective.tracing for p in t.providers] == (
        [f"tracer-{tracing}"] if tracing else []
    )
    assert [p.name for a in effective.access_logging for p in a.providers] == (
        [f"log-{logging}"] if logging else []
    )
    assert [p.name for m in effective.metrics for p in m.providers] == (
        [f"metrics-{metrics}"] if metrics else []
    )
    sources = (effective.tracing_from, effective.access_logging_from, effective.metrics_from)
    assert tuple(key[2] if key else None for key in sources) == winners


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {}, True),
        ({}, {"app": "x"}, True),
        ({"app": "reviews"}, REVIEWS, True),
        ({"app": "reviews", "version": "v2"}, REVIEWS, True),
        ({"app": "reviews", "version": "v1"}, REVIEWS, False),
        ({"app": "reviews"}, {}, False),
    ],
)
def test_selector_matches(
    selector: dict[str, str] | None, labels: dict[str, str], matches: bool
) -> None:
    parsed = None if selector is None else LabelSelector(match_labels=selector)
    assert selector_matches(parsed, labels) is matches


def test_oldest_first_puts_timestamped_resources_before_untimed_ones_then_names() -> None:
    policies = [
        pa("c", "bookinfo"),
        pa("a", "bookinfo"),
        pa("z", "bookinfo", created="2024-01-02T00:00:00+02:00"),
        pa("y", "bookinfo", created="2024-01-01T23:00:00Z"),
    ]
    assert [p.name for p in oldest_first(policies)] == ["z", "y", "a", "c"]


def test_policy_scope_ignores_unrelated_kinds() -> None:
    vs = VirtualService.model_validate(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {"hosts": ["reviews"]},
        }
    )
    assert authorization_policies_for([vs], namespace="bookinfo", labels=REVIEWS) == ()
    assert telemetries_for([vs], namespace="bookinfo", labels=REVIEWS).applied == ()
