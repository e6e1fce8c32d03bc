"""Bad input at apply time: regexes Envoy would reject, percentages, and missing subsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.api.kinds import parse_documents
from trellis.api.re2_check import ENVOY_MAX_PROGRAM_SIZE, re2_problem
from trellis.api.validation import check_references, problems_of
from trellis.errors import ValidationErrors
from trellis.store.sqlite import SqliteStore

REVIEWS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""
TO_V9 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v9}}]
"""


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("a{1001}", "repetition"),
        ("(a)\\1", "escape"),
        ("(?=x)abc", "perl operator"),
        ("(?<!x)abc", "perl operator"),
        ("[unclosed", "missing ]"),
        ("(abc|def|ghi){20}", "program size"),
    ],
)
def test_regexes_envoy_rejects_are_rejected(pattern: str, why: str) -> None:
    problem = re2_problem(pattern)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "pattern", ["^/book/[0-9]+$", "[a-f0-9]{16}", "(?i)abc", "^/api/v[12]/.*$"]
)
def test_regexes_envoy_accepts_pass(pattern: str) -> None:
    assert re2_problem(pattern) is None


def test_program_size_limit_is_envoys_default() -> None:
    assert ENVOY_MAX_PROGRAM_SIZE == 100
    assert re2_problem("a{1000}") is not None  # valid RE2, but a program of ~1000 instructions


@pytest.mark.parametrize(
    ("field", "snippet"),
    [
        ("spec.http[0].match[0].uri.regex", "match: [{uri: {regex: 'a{1001}'}}]"),
        ("spec.http[0].match[0].headers.x.regex", "match: [{headers: {x: {regex: '(a)\\1'}}}]"),
        (
            "spec.http[0].match[0].queryParams.q.regex",
            "match: [{queryParams: {q: {regex: '(?=a)'}}}]",
        ),
        ("spec.http[0].match[0].authority.regex", "match: [{authority: {regex: '(?!a)'}}]"),
    ],
)
def test_every_regex_field_names_its_path(field: str, snippet: str) -> None:
    text = TO_V9.replace("  - route:", f"  - {snippet}\n    route:").replace(", subset: v9", "")
    [error] = problems_of(parse_documents(text)[0])
    assert error.field == field and "RE2" in error.reason


@pytest.mark.parametrize(
    ("yaml_fragment", "field"),
    [
        (
            "fault: {abort: {httpStatus: 500, percentage: {value: 101}}}",
            "fault.abort.percentage.value",
        ),
        (
            "fault: {delay: {fixedDelay: 1s, percentage: {value: -1}}}",
            "fault.delay.percentage.value",
        ),
        ("mirror: {host: reviews}\n    mirrorPercentage: {value: 150}", "mirrorPercentage.value"),
    ],
)
def test_percentages_over_100_are_rejected(yaml_fragment: str, field: str) -> None:
    text = TO_V9.replace(", subset: v9", "") + f"    {yaml_fragment}\n"
    errors = problems_of(parse_documents(text)[0])
    assert [e.field for e in errors] == [f"spec.http[0].{field}"]


def test_weights_must_sum_to_100() -> None:
    text = TO_V9.replace(
        "  - route: [{destination: {host: reviews, subset: v9}}]",
        "  - route:\n    - {destination: {host: reviews}, weight: 60}\n"
        "    - {destination: {host: reviews}, weight: 60}",
    )
    [error] = problems_of(parse_documents(text)[0])
    assert error.field == "spec.http[0].route" and "add up to 120" in error.reason


def test_missing_subset_is_refused_whether_or_not_a_rule_exists() -> None:
    [stored] = parse_documents(REVIEWS_DR)
    [vs] = parse_documents(TO_V9)
    [alone] = check_references([vs], [])
    assert "apply a DestinationRule" in alone.reason
    [with_rule] = check_references([vs], [stored])
    assert with_rule.field == "spec.http[0].route[0].destination.subset"
    assert "'v9'" in with_rule.reason and "default/reviews" in with_rule.reason


def test_a_rejected_multi_document_apply_stores_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    try:
        with pytest.raises(ValidationErrors, match="v9"):
            store.apply(parse_documents(REVIEWS_DR + "---" + TO_V9))
        assert store.list() == []
        with pytest.raises(ValidationErrors, match="v9"):
            store.apply(parse_documents(TO_V9))  # alone too: the subset is defined nowhere
        assert store.list() == []
    finally:
        store.close()
