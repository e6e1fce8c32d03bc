"""telemetry.istio.io Telemetry: parsing in both served versions, round trip, every rule."""

from __future__ import annotations

import pytest
import yaml

from trellis.api.kinds import parse_documents, resolve_kind
from trellis.api.telemetry import (
    IstioMetric,
    TagOperation,
    Telemetry,
    WorkloadMode,
)
from trellis.api.validation import validate_all
from trellis.errors import ValidationError, ValidationErrors

SPECS: dict[str, str] = {
    "mesh-default": """
  tracing:
  - providers: [{name: otel-tracing}]
    randomSamplingPercentage: 100
    customTags:
      cluster: {literal: {value: demo}}
      pod: {environment: {name: POD_NAME, defaultValue: unknown}}
      user: {header: {name: end-user}}
  accessLogging:
  - providers: [{name: envoy}]
""",
    "reviews-quiet": """
  selector:
    matchLabels: {app: reviews}
  tracing:
  - match: {mode: SERVER}
    disableSpanReporting: true
  accessLogging:
  - match: {mode: CLIENT}
    providers: [{name: envoy}]
    filter: {expression: "response.code >= 400"}
  - disabled: true
  metrics:
  - providers: [{name: prometheus}]
    reportingInterval: 15s
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT_AND_SERVER}
      tagOverrides:
        deployment: {value: "'canary'"}
        response_flags: {operation: REMOVE}
    - match: {customMetric: my_requests_total}
      disabled: true
    - disabled: true
""",
    "gateway-attached": """
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: bookinfo-gateway}
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS}
      disabled: true
""",
}


def _doc(name: str, version: str = "v1", namespace: str = "istio-system") -> str:
    return (
        f"apiVersion: telemetry.istio.io/{version}\nkind: Telemetry\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\nspec:{SPECS[name]}"
    )


def _telemetry(spec: str) -> str:
    return (
        "apiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\n"
        f"metadata: {{name: tel, namespace: bookinfo}}\nspec:\n{spec}"
    )


def _problems(text: str) -> list[ValidationError]:
    """Schema and semantic problems of `text`, the way `trellis apply` finds them."""
    try:
        validate_all(parse_documents(text))
    except ValidationErrors as exc:
        return exc.errors
    return []


@pytest.mark.parametrize("version", ["v1", "v1alpha1"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_telemetry_parses_in_every_served_version(name: str, version: str) -> None:
    [resource] = parse_documents(_doc(name, version))
    assert isinstance(resource, Telemetry)
    assert resource.api_version == f"telemetry.istio.io/{version}"
    assert resource.key == ("Telemetry", "istio-system", name)
    assert _problems(_doc(name, version)) == []


@pytest.mark.parametrize("name", sorted(SPECS))
def test_to_wire_round_trips_what_the_user_wrote(name: str) -> None:
    text = _doc(name)
    [resource] = parse_documents(text)
    assert resource.to_wire() == yaml.safe_load(text)


def test_tracing_fields_are_typed() -> None:
    [telemetry] = parse_documents(_doc("mesh-default"))
    assert isinstance(telemetry, Telemetry)
    [tracing] = telemetry.spec.tracing
    assert [p.name for p in tracing.providers] == ["otel-tracing"]
    assert tracing.random_sampling_percentage == 100.0
    tags = tracing.custom_tags
    assert tags["cluster"].literal is not None and tags["cluster"].literal.value == "demo"
    assert tags["pod"].environment is not None
    assert tags["pod"].environment.default_value == "unknown"
    assert tags["user"].header is not None and tags["user"].header.name == "end-user"


def test_metrics_and_access_logging_fields_are_typed() -> None:
    [telemetry] = parse_documents(_doc("reviews-quiet", namespace="bookinfo"))
    assert isinstance(telemetry, Telemetry)
    [metrics] = telemetry.spec.metrics
    first, second, third = metrics.overrides
    assert first.match is not None and first.match.metric is IstioMetric.REQUEST_COUNT
    assert first.tag_overrides["deployment"].operation is TagOperation.UPSERT
    assert first.tag_overrides["response_flags"].operation is TagOperation.REMOVE
    assert second.match is not None and second.match.custom_metric == "my_requests_total"
    assert second.match.mode is WorkloadMode.CLIENT_AND_SERVER
    assert third.match is None and third.disabled is True
    logging, off = telemetry.spec.access_logging
    assert logging.match is not None and logging.match.mode is WorkloadMode.CLIENT
    assert logging.filter is not None and logging.filter.expression == "response.code >= 400"
    assert off.disabled is True


@pytest.mark.parametrize("word", ["telemetry", "Telemetry", "telemetries"])
def test_cli_words_resolve_to_telemetry(word: str) -> None:
    assert resolve_kind(word) is Telemetry


@pytest.mark.parametrize("metric", [m.value for m in IstioMetric])
def test_every_standard_metric_name_is_accepted(metric: str) -> None:
    spec = f"  metrics:\n  - overrides:\n    - match: {{metric: {metric}}}\n      disabled: true\n"
    assert _problems(_telemetry(spec)) == []


WHERE = ("Telemetry", "bookinfo", "tel")

BAD_INPUTS = [
    pytest.param(
        "  tracing:\n  - randomSamplingPercentage: 100.5\n",
        "spec.tracing[0].randomSamplingPercentage",
        "100.5 is not a percentage; use 0..100",
        id="sampling-above-100",
    ),
    pytest.param(
        "  tracing:\n  - randomSamplingPercentage: -1\n",
        "spec.tracing[0].randomSamplingPercentage",
        "-1.0 is not a percentage",
        id="sampling-negative",
    ),
    pytest.param(
        "  tracing:\n  - customTags:\n      a: {literal: {value: x}, header: {name: y}}\n",
        "spec.tracing[0].customTags.a",
        "set exactly one of literal, environment or header",
        id="custom-tag-two-kinds",
    ),
    pytest.param(
        "  tracing:\n  - customTags:\n      a: {}\n",
        "spec.tracing[0].customTags.a",
        "set exactly one of literal, environment or header",
        id="custom-tag-empty",
    ),
    pytest.param(
        "  tracing:\n  - customTags:\n      a: {environment: {defaultValue: x}}\n",
        "spec.tracing[0].customTags.a.environment.name",
        "required field is missing",
        id="custom-tag-environment-without-name",
    ),
    pytest.param(
        "  tracing:\n  - providers: [{name: ''}]\n",
        "spec.tracing[0].providers[0].name",
        "provider name must not be empty",
        id="empty-provider-name",
    ),
    pytest.param(
        "  tracing:\n  - match: {mode: BOTH}\n",
        "spec.tracing[0].match.mode",
        "'CLIENT_AND_SERVER', 'CLIENT' or 'SERVER' (got 'BOTH')",
        id="unknown-tracing-mode",
    ),
    pytest.param(
        "  accessLogging:\n  - match: {mode: ALL}\n",
        "spec.accessLogging[0].match.mode",
        "(got 'ALL')",
        id="unknown-access-log-mode",
    ),
    pytest.param(
        "  accessLogging:\n  - filter: {expression: '  '}\n",
        "spec.accessLogging[0].filter.expression",
        "expression must not be empty",
        id="empty-filter",
    ),
    pytest.param(
        "  accessLogging:\n  - filter: {expression: 'request.path == \"/x\"'}\n",
        "spec.accessLogging[0].filter.expression",
        "Trellis supports response.code OP N",
        id="filter-envoy-cannot-evaluate",
    ),
    pytest.param(
        "  metrics:\n  - overrides:\n    - tagOverrides: {host: {value: request.host}}\n",
        "spec.metrics[0].overrides[0].tagOverrides.host.value",
        "Trellis supports a string literal",
        id="tag-value-not-a-literal",
    ),
    pytest.param(
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_TOTAL}\n",
        "spec.metrics[0].overrides[0].match.metric",
        "(got 'REQUEST_TOTAL')",
        id="unknown-metric",
    ),
    pytest.param(
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, customMetric: x}\n",
        "spec.metrics[0].overrides[0].match",
        "set metric or customMetric, not both",
        id="metric-and-custom-metric",
    ),
    pytest.param(
        "  metrics:\n  - overrides:\n    - tagOverrides: {source_app: {operation: UPSERT}}\n",
        "spec.metrics[0].overrides[0].tagOverrides.source_app.value",
        "UPSERT needs a value",
        id="upsert-without-value",
    ),
    pytest.param(
        "  metrics:\n  - overrides:\n    - tagOverrides:\n"
        "        source_app: {operation: REMOVE, value: x}\n",
        "spec.metrics[0].overrides[0].tagOverrides.source_app.value",
        "REMOVE takes no value",
        id="remove-with-value",
    ),
    pytest.param(
        "  metrics:\n  - overrides:\n    - tagOverrides: {source_app: {operation: DROP}}\n",
        "spec.metrics[0].overrides[0].tagOverrides.source_app.operation",
        "'UPSERT' or 'REMOVE' (got 'DROP')",
        id="unknown-tag-operation",
    ),
    pytest.param(
        "  metrics:\n  - reportingInterval: 0s\n",
        "spec.metrics[0].reportingInterval",
        "must be more than 0s",
        id="zero-reporting-interval",
    ),
    pytest.param(
        "  metrics:\n  - reportingInterval: often\n",
        "spec.metrics[0].reportingInterval",
        "is not a duration",
        id="bad-reporting-interval",
    ),
    pytest.param(
        "  selector: {matchLabels: {app: x}}\n  targetRef: {kind: Service, name: x}\n",
        "spec.selector",
        "set selector or targetRef(s), not both",
        id="selector-and-target-ref",
    ),
    pytest.param(
        "  tracing:\n  - sampling: 10\n",
        "spec.tracing[0].sampling",
        "unknown field",
        id="unknown-field",
    ),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD_INPUTS)
def test_error_names_resource_field_and_fix(spec: str, field: str, reason: str) -> None:
    problems = _problems(_telemetry(spec))
    found = [(p.kind, p.namespace, p.name, p.field) for p in problems]
    assert (*WHERE, field) in found, f"{field} not in {found}"
    error = problems[found.index((*WHERE, field))]
    assert reason in error.reason
    assert str(error).startswith(f"Telemetry bookinfo/tel: {field}: ")
