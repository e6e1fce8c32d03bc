"""Semantic rules beyond the schema, and what a VirtualService needs from DestinationRules."""

from __future__ import annotations

import pytest

from trellis.api.base import Resource
from trellis.api.kinds import parse_documents
from trellis.api.references import resolve_host
from trellis.api.validation import check_references, validate_all, validate_resource
from trellis.errors import ValidationErrors

REVIEWS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""

JASON_TO_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
"""


def _parse(text: str) -> list[Resource]:
    return parse_documents(text)


def test_bookinfo_rules_are_valid() -> None:
    resources = _parse(REVIEWS_DR + "---" + JASON_TO_V2)
    validate_all(resources)
    assert check_references(resources, []) == []


def test_single_destination_may_omit_weight_but_several_must_sum_to_100() -> None:
    split = JASON_TO_V2.replace(
        "    - destination: {host: reviews, subset: v1}\n",
        "    - destination: {host: reviews, subset: v1}\n      weight: 80\n"
        "    - destination: {host: reviews, subset: v3}\n      weight: 20\n",
    )
    [vs] = _parse(split)
    validate_resource(vs)
    [bad] = _parse(split.replace("weight: 20", "weight: 10"))
    with pytest.raises(ValidationErrors, match=r"spec.http\[1\].route: destination weights add"):
        validate_resource(bad)


def test_subset_needs_a_destination_rule_that_defines_it() -> None:
    [vs] = _parse(JASON_TO_V2)
    [error, _] = check_references([vs], [])
    assert error.field == "spec.http[0].route[0].destination.subset"
    assert (error.kind, error.namespace, error.name) == ("VirtualService", "default", "reviews")
    assert "no DestinationRule for reviews.default.svc.cluster.local" in error.reason
    assert "apply a DestinationRule for reviews.default.svc.cluster.local with subset 'v2'" in (
        error.reason
    )


def test_missing_subset_names_the_destination_rule_to_fix() -> None:
    [dr] = _parse(REVIEWS_DR.replace("  - {name: v2, labels: {version: v2}}\n", ""))
    [vs] = _parse(JASON_TO_V2)
    [error] = check_references([vs], [dr])
    assert "DestinationRule default/reviews has subsets v1, v3" in error.reason
    assert "add subset 'v2' to it and apply it first" in error.reason


def test_destination_rule_in_the_same_batch_replaces_the_stored_one() -> None:
    [stored] = _parse(REVIEWS_DR)
    [narrowed] = _parse(REVIEWS_DR.replace("  - {name: v1, labels: {version: v1}}\n", ""))
    [vs] = _parse(JASON_TO_V2)
    errors = check_references([narrowed, vs], [stored])
    assert [e.field for e in errors] == ["spec.http[1].route[0].destination.subset"]


def test_short_names_resolve_against_each_rules_namespace() -> None:
    assert resolve_host("reviews", "default") == "reviews.default.svc.cluster.local"
    assert resolve_host("reviews.default.svc.cluster.local", "x") == (
        "reviews.default.svc.cluster.local"
    )
    assert resolve_host("*", "default") == "*"
    [dr] = _parse(REVIEWS_DR.replace("namespace: default", "namespace: shop"))
    [vs] = _parse(JASON_TO_V2)
    assert len(check_references([vs], [dr])) == 2  # shop's reviews is another service
    [fqdn_dr] = _parse(
        REVIEWS_DR.replace("namespace: default", "namespace: shop").replace(
            "host: reviews", "host: reviews.default.svc.cluster.local"
        )
    )
    assert check_references([vs], [fqdn_dr]) == []


def test_destination_rule_exported_only_to_its_namespace_is_not_seen_elsewhere() -> None:
    private = REVIEWS_DR.replace("namespace: default", "namespace: shop").replace(
        "host: reviews", "host: reviews.default.svc.cluster.local\n  exportTo: ['.']"
    )
    [dr] = _parse(private)
    [vs] = _parse(JASON_TO_V2)
    assert len(check_references([vs], [dr])) == 2


def test_mirror_and_tcp_subsets_are_checked_too() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mixed}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v9}
  tcp:
  - route:
    - destination: {host: reviews, subset: v8}
"""
    [dr] = _parse(REVIEWS_DR)
    [vs] = _parse(text)
    fields = [e.field for e in check_references([vs], [dr])]
    assert fields == ["spec.http[0].mirror.subset", "spec.tcp[0].route[0].destination.subset"]


def test_wildcard_destination_rule_host_covers_the_namespace() -> None:
    [dr] = _parse(REVIEWS_DR.replace("host: reviews", "host: '*.default.svc.cluster.local'"))
    [vs] = _parse(JASON_TO_V2)
    assert check_references([vs], [dr]) == []


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n"
            "spec:\n  host: r\n  trafficPolicy: {tls: {mode: MUTUAL}}\n",
            "spec.trafficPolicy.tls",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\n"
            "spec:\n  egress: [{hosts: [reviews]}]\n",
            "spec.egress[0].hosts[0]",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"
            "spec:\n  hosts: [db]\n  resolution: STATIC\n  endpoints: [{address: db.example}]\n",
            "spec.endpoints[0].address",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
            "spec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}}]\n",
            "spec.servers[0].hosts",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n"
            "spec:\n  hosts: [reviews]\n  http: [{match: [{uri: {prefix: /}}]}]\n",
            "spec.http[0]",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n"
            "spec:\n  hosts: [reviews]\n  http:\n  - match: [{headers: {End-User: {exact: j}}}]\n"
            "    route: [{destination: {host: reviews}}]\n",
            "spec.http[0].match[0].headers.End-User",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n"
            "spec:\n  hosts: ['bad host!']\n  http: [{route: [{destination: {host: r}}]}]\n",
            "spec.hosts[0]",
        ),
    ],
)
def test_semantic_rule_violations_point_at_the_field(text: str, field: str) -> None:
    [resource] = _parse(text)
    with pytest.raises(ValidationErrors) as caught:
        validate_resource(resource)
    assert field in [e.field for e in caught.value.errors]
