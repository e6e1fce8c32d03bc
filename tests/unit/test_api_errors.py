"""Errors a user reads: each names kind, namespace/name, the camelCase field path and a fix."""

from __future__ import annotations

import pytest

from trellis.api.kinds import parse_documents
from trellis.api.validation import validate_resource
from trellis.errors import ValidationError, ValidationErrors

VS_HEAD = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
"""


def _problems(text: str) -> list[ValidationError]:
    """Schema and semantic problems of `text`, the way `trellis apply` finds them."""
    try:
        resources = parse_documents(text)
    except ValidationErrors as exc:
        return exc.errors
    found: list[ValidationError] = []
    for resource in resources:
        try:
            validate_resource(resource)
        except ValidationErrors as exc:
            found.extend(exc.errors)
    return found


BAD_INPUTS = [
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n      weight: 101\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].route[0].weight"),
        "101 is out of range; use 0..100",
        id="weight-out-of-range",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n"
        "      weight: 50\n    - destination: {host: reviews, subset: v2}\n      weight: 30\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].route"),
        "weights add up to 80; make them add up to 100",
        id="weights-do-not-sum-to-100",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n      weight: ten\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].route[0].weight"),
        "valid integer",
        id="weight-not-a-number",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - match:\n    - uri: {regex: '/api/(v1'}\n"
        "    route:\n    - destination: {host: reviews}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].match[0].uri.regex"),
        "is not valid RE2",
        id="bad-regex",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - match:\n    - headers: {cookie: {regex: '(?!x).*'}}\n"
        "    route:\n    - destination: {host: reviews}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].match[0].headers.cookie.regex"),
        "RE2",
        id="regex-uses-lookahead",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n    timeout: 10\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].timeout"),
        "valid string",
        id="duration-without-unit-as-number",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n"
        "    retries: {attempts: 3, perTryTimeout: 2 seconds}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].retries.perTryTimeout"),
        "is not a duration; write a number with a unit",
        id="bad-duration",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n      wieght: 100\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].route[0].wieght"),
        "unknown field; remove it or fix its spelling",
        id="unknown-field",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {subset: v1}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].route[0].destination.host"),
        "required field is missing; add it",
        id="missing-field",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - redirect: {uri: /new}\n    rewrite: {uri: /old}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0]"),
        "rewrite cannot be used together with redirect",
        id="rewrite-with-redirect",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - delegate: {name: reviews-v2}\n"
        "    route:\n    - destination: {host: reviews}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].delegate"),
        "delegate cannot be used with route or redirect",
        id="delegate-with-route",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n    fault: {}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].fault"),
        "fault needs a delay or an abort",
        id="empty-fault",
    ),
    pytest.param(
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n"
        "    fault: {abort: {httpStatus: 503, percentage: {value: 150}}}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.http[0].fault.abort.percentage.value"),
        "150.0 is not a percentage; use 0..100",
        id="percentage-out-of-range",
    ),
    pytest.param(
        # No hosts with http rules is a delegate; with only tcp rules it is a mistake.
        VS_HEAD.replace("hosts: [reviews]", "hosts: []")
        + "  tcp:\n  - route:\n    - destination: {host: reviews}\n",
        ("VirtualService", "bookinfo", "reviews", "spec.hosts"),
        "at least one host is required",
        id="no-hosts",
    ),
    pytest.param(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: reviews}\nspec:\n  host: reviews\n  subsets:\n"
        "  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n"
        "  - {name: v3}\n",
        ("DestinationRule", "default", "reviews", "spec.subsets"),
        "subset name v1 appears more than once",
        id="duplicate-subset",
    ),
    pytest.param(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
        "  servers:\n  - port: {number: 70000, name: http, protocol: HTTP}\n    hosts: ['*']\n",
        ("Gateway", "default", "gw", "spec.servers[0].port.number"),
        "70000 is out of range; use 1..65535",
        id="gateway-port-range",
    ),
    pytest.param(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db}\n"
        "spec:\n  hosts: [db.internal]\n  resolution: STATIC\n"
        "  ports: [{number: 5432, name: tcp}, {number: 5432, name: tcp-2}]\n",
        ("ServiceEntry", "default", "db", "spec.resolution"),
        "STATIC resolution needs endpoints or a workloadSelector",
        id="static-without-endpoints",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n"
        "  ports: [{name: http, port: 9080}, {name: http, port: 9080}]\n",
        ("Service", "default", "reviews", "spec.ports"),
        "port 9080/TCP appears more than once",
        id="service-duplicate-port",
    ),
    pytest.param(
        "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: reviews}\n",
        ("VirtualServce", "default", "reviews", "kind"),
        "unknown kind 'VirtualServce'; supported kinds: VirtualService, DestinationRule",
        id="unknown-kind",
    ),
    pytest.param(
        "apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n",
        ("Gateway", "default", "gw", "apiVersion"),
        "use one of networking.istio.io/v1, networking.istio.io/v1beta1, "
        "networking.istio.io/v1alpha3",
        id="unknown-api-version",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\nspec: {}\n",
        ("Service", "shop", "", "metadata.name"),
        "metadata.name is required",
        id="missing-name",
    ),
]


@pytest.mark.parametrize(("text", "where", "reason"), BAD_INPUTS)
def test_error_names_resource_field_and_fix(
    text: str, where: tuple[str, str, str, str], reason: str
) -> None:
    problems = _problems(text)
    found = [(p.kind, p.namespace, p.name, p.field) for p in problems]
    assert where in found, f"{where} not in {found}"
    error = problems[found.index(where)]
    assert reason in error.reason
    kind, namespace, name, field = where
    expected_prefix = f"{kind} {namespace}/{name}: {field}:" if name else f"{kind}: {field}:"
    assert str(error).startswith(expected_prefix)


def test_malformed_yaml_names_the_document_and_line() -> None:
    good = VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n"
    text = good + "---\nkind: Service\nmetadata:\n  name: x\n   bad: indent\n"
    with pytest.raises(ValidationErrors) as caught:
        parse_documents(text)
    [error] = caught.value.errors
    assert error.document == 2
    assert "malformed YAML at line 13" in error.reason
    assert str(error).startswith("document 2: malformed YAML at line 13, column")


def test_every_bad_document_is_reported_at_once() -> None:
    text = (
        VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews}\n      weight: x\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec:\n"
        "  ports: [{port: 80}]\n  bogus: 1\n"
    )
    with pytest.raises(ValidationErrors) as caught:
        parse_documents(text)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("VirtualService bookinfo/reviews: spec.http[0].route[0].weight:")
    assert lines[1].startswith("Pod default/p: kind: unknown kind 'Pod'")
    assert lines[2].startswith("Service default/ok: spec.bogus: unknown field")
    assert isinstance(caught.value, ValidationError)


def test_a_document_that_is_not_a_mapping_is_reported() -> None:
    with pytest.raises(ValidationErrors, match="document 1: expected a mapping"):
        parse_documents("- just\n- a list\n")
