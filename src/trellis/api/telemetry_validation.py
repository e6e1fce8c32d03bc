"""Semantic checks of a Telemetry resource (istio-notes §1.12): what the schema cannot say."""

from __future__ import annotations

from collections.abc import Sequence

from trellis.api.duration import parse_duration
from trellis.api.policy_target import check_policy_target
from trellis.api.semantic_checks import Problems
from trellis.api.telemetry import (
    MetricsOverrides,
    ProviderRef,
    TagOperation,
    TelemetrySpec,
    Tracing,
)
from trellis.api.telemetry_expr import parse_status_filter, parse_tag_literal


def check_telemetry(spec: TelemetrySpec) -> Problems:
    problems: Problems = []
    check_policy_target(spec, problems)
    for i, tracing in enumerate(spec.tracing):
        _check_tracing(tracing, f"spec.tracing[{i}]", problems)
    for i, logging in enumerate(spec.access_logging):
        path = f"spec.accessLogging[{i}]"
        _check_providers(logging.providers, f"{path}.providers", problems)
        if logging.filter is not None:
            _check_filter(logging.filter.expression, f"{path}.filter.expression", problems)
    for i, metrics in enumerate(spec.metrics):
        path = f"spec.metrics[{i}]"
        _check_providers(metrics.providers, f"{path}.providers", problems)
        for j, override in enumerate(metrics.overrides):
            _check_override(override, f"{path}.overrides[{j}]", problems)
        interval = metrics.reporting_interval
        if interval is not None and parse_duration(interval) <= 0:
            problems.append((f"{path}.reportingInterval", "must be more than 0s, e.g. 15s"))
    return problems


def _check_tracing(tracing: Tracing, path: str, problems: Problems) -> None:
    _check_providers(tracing.providers, f"{path}.providers", problems)
    rate = tracing.random_sampling_percentage
    if rate is not None and not 0.0 <= rate <= 100.0:
        problems.append(
            (f"{path}.randomSamplingPercentage", f"{rate} is not a percentage; use 0..100")
        )
    for name in tracing.custom_tags:
        if not name:
            problems.append((f"{path}.customTags", "a custom tag name is empty; name the tag"))


def _check_providers(providers: Sequence[ProviderRef], path: str, problems: Problems) -> None:
    for k, provider in enumerate(providers):
        if not provider.name:
            problems.append((f"{path}[{k}].name", "provider name must not be empty, e.g. envoy"))


def _check_override(override: MetricsOverrides, path: str, problems: Problems) -> None:
    match = override.match
    if match is not None and match.metric is not None and match.custom_metric is not None:
        problems.append((f"{path}.match", "set metric or customMetric, not both"))
    for tag, change in override.tag_overrides.items():
        where = f"{path}.tagOverrides.{tag}"
        if not tag:
            problems.append((f"{path}.tagOverrides", "a tag name is empty; name the label"))
        if change.operation is TagOperation.UPSERT and not change.value:
            problems.append((f"{where}.value", "UPSERT needs a value (a CEL expression)"))
        if change.operation is TagOperation.REMOVE and change.value is not None:
            problems.append((f"{where}.value", "REMOVE takes no value; remove the value"))
        if change.operation is TagOperation.UPSERT and change.value:
            try:
                parse_tag_literal(change.value)
            except ValueError as err:
                problems.append((f"{where}.value", str(err)))


def _check_filter(expression: str, path: str, problems: Problems) -> None:
    """Only what Envoy's status_code filter can do (api/telemetry_expr.py)."""
    if not expression.strip():
        problems.append((path, "expression must not be empty"))
        return
    try:
        parse_status_filter(expression)
    except ValueError as err:
        problems.append((path, str(err)))
