"""Text fuzzing of `parse_documents`, the first thing `trellis apply -f` and trellisd's /apply do.

Whatever the text (random characters, random bytes, YAML-looking token soup), the answer is a
list of resources or a ValidationError(s) a user can read: never a traceback.
The examples pinned with @example are inputs that once crashed it.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.profiles import budget
from trellis.api.base import Resource
from trellis.api.kinds import parse_documents
from trellis.errors import ValidationError, ValidationErrors

# Pieces of YAML that matter to a YAML parser or to us; joined at random they reach the
# parser's corners (anchors, tags, flow/block mixes, document markers) far more often
# than random characters do.
_TOKENS = (
    "apiVersion: networking.istio.io/v1", "apiVersion: v1", "kind: VirtualService",
    "kind: Gateway", "kind: List", "items:", "metadata:", "  name: reviews", "name: a",
    "spec:", "  hosts: [reviews]", "  servers:", "- ", "---", "...", "{", "}", "[", "]",
    ":", ",", "&a ", "*a", "<<: *a", "!!binary ", "!!python/object:os.system", "!!set",
    "!!int", "!!float", "!!timestamp", "? ", "|", ">", "'", '"', "#", "%YAML 1.2",
    "%TAG ! tag:x,2000:", "\n", "\n  ", "\t", " ", "null", "~", "true", "0x1F", "1e999",
    ".nan", "2001-12-14", "\x00", "\ufeff", "\udcff", "é",
)  # fmt: skip


def assert_parses_or_refuses_clearly(text: str) -> None:
    """The property every input must have; shared with the atheris harness."""
    try:
        resources = parse_documents(text)
    except ValidationError as exc:
        assert_clear(exc)
    else:
        assert all(isinstance(r, Resource) for r in resources)


def assert_clear(exc: ValidationError) -> None:
    """Every problem is one line with a reason (and ValidationErrors lists at least one)."""
    problems = exc.errors if isinstance(exc, ValidationErrors) else [exc]
    assert problems, "ValidationErrors without any problem"
    for problem in problems:
        assert problem.reason.strip(), f"empty reason in {problem!r}"
        assert "\n" not in problem.describe(), f"multi-line problem: {problem.describe()!r}"


@budget(100)
@given(st.text())
@example("a: \x00")  # the YAML reader refused it before parse_documents could catch it
@example("kind: \udcff")
@example("[" * 1000 + "]" * 1000)  # RecursionError in PyYAML's composer
@example("".join("  " * i + "a:\n" for i in range(1200)))
def test_any_text_parses_or_is_refused_clearly(text: str) -> None:
    assert_parses_or_refuses_clearly(text)


@budget(100)
@given(st.binary())
def test_any_bytes_parse_or_are_refused_clearly(data: bytes) -> None:
    # How a file of unknown encoding reaches the parser; both decodings a reader might use.
    assert_parses_or_refuses_clearly(data.decode("utf-8", "surrogateescape"))
    assert_parses_or_refuses_clearly(data.decode("latin-1"))


@budget(250)
@given(st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join))
@example("a: &a [x, x]\nb: &b [*a, *a]\nkind: *b\n")
@example("kind: List\nitems: [1, null, {kind: Gateway}]\n")
@example("a: !!int ''\nb: !!timestamp x\n")  # PyYAML tag constructors raised IndexError
@example('kind: "VirtualService\\n-"\nmetadata: {name: "a\\nb"}\n')  # multi-line error
def test_yaml_token_soup_parses_or_is_refused_clearly(text: str) -> None:
    assert_parses_or_refuses_clearly(text)


@pytest.mark.parametrize(
    "metadata",
    [
        '{name: "reviews\\n"}',  # `$` in the name pattern matched before a final newline
        '{name: reviews, namespace: "prod\\n"}',
        "{name: reviews, namespace: Prod}",
        "{name: reviews, namespace: a.b}",
    ],
)
def test_names_and_namespaces_must_be_dns_names(metadata: str) -> None:
    text = f"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {metadata}\nspec: {{}}\n"
    with pytest.raises(ValidationError) as refused:
        parse_documents(text)
    assert_clear(refused.value)
    assert refused.value.field in ("metadata.name", "metadata.namespace")
