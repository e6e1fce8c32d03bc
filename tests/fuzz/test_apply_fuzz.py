"""Structured fuzzing of the apply path: parse -> semantic validation -> sqlite store.

Documents shaped like each kind (tests/fuzz/shapes.py, from the models' JSON schemas) with
random values and wrong types at random paths. For every one: it is refused with problems
naming the kind, the resource and the field, or it is stored; a refused batch stores nothing
at all; a stored resource comes back from the store and from `get -o yaml | apply -f -`
with the same spec, and applying it again changes nothing.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.profiles import budget
from tests.fuzz.shapes import resource_documents
from tests.fuzz.test_parse_fuzz import assert_clear
from trellis.api.base import Resource
from trellis.api.kinds import ALL_KINDS, parse_documents, parse_resource
from trellis.api.networking import Gateway
from trellis.api.validation import problems_of, validate_all
from trellis.errors import ValidationError, ValidationErrors
from trellis.store.sqlite import SqliteStore

KIND_IDS = [cls.KIND for cls in ALL_KINDS]


@contextmanager
def fresh_store() -> Iterator[SqliteStore]:
    """A new sqlite store in a temporary directory: every example starts from nothing."""
    with tempfile.TemporaryDirectory(prefix="trellis-fuzz-") as tmp:
        store = SqliteStore(Path(tmp) / "config.db")
        try:
            yield store
        finally:
            store.close()


def store_state(store: SqliteStore) -> tuple[int, list[str]]:
    """Everything a failed apply must leave as it was: the revision and every stored body."""
    bodies = [json.dumps(r.to_wire(), sort_keys=True) for r in store.list()]
    return store.revision(), bodies


def same_spec(a: Resource, b: Resource) -> bool:
    """Specs with defaults filled in (as the store compares them), as JSON text so NaN == NaN."""
    dump = [
        json.dumps(
            r.model_dump(by_alias=True, exclude_none=True, mode="json")["spec"], sort_keys=True
        )
        for r in (a, b)
    ]
    return dump[0] == dump[1]


def check_refusal(exc: ValidationError, cls: type[Resource], name: object) -> None:
    """A refused document names its kind, the resource (when it has a usable name), a field."""
    assert_clear(exc)
    for problem in exc.errors if isinstance(exc, ValidationErrors) else [exc]:
        assert problem.kind == cls.KIND, problem.describe()
        assert problem.field, f"no field path: {problem.describe()}"
        if problem.field != "metadata.name" and isinstance(name, str):
            assert problem.name == name, problem.describe()


def check_stored(store: SqliteStore, resource: Resource) -> None:
    """apply -> get gives the same spec; `get -o yaml | apply -f -` too; a re-apply is a no-op."""
    got = store.get(*resource.key)
    assert got is not None and same_spec(got, resource)
    (again,) = parse_documents(yaml.safe_dump(got.to_wire()))
    assert same_spec(again, resource)
    (result,) = store.apply([again])
    assert result.action == "unchanged"


def apply_one(store: SqliteStore, resource: Resource) -> None:
    """Store `resource`, or check that the refusal is clear and the store untouched."""
    problems = problems_of(resource)
    for problem in problems:
        assert problem.kind == resource.kind and problem.name == resource.name
        assert problem.field and problem.reason.strip(), problem.describe()
    before = store_state(store)
    try:
        store.apply([resource])
    except ValidationErrors as exc:
        assert_clear(exc)
        assert {p.describe() for p in problems} <= {p.describe() for p in exc.errors}
        assert store_state(store) == before, "a refused apply changed the store"
        return
    assert not problems, "apply stored a resource with semantic problems"
    check_stored(store, resource)


@pytest.mark.parametrize("cls", ALL_KINDS, ids=KIND_IDS)
def test_shaped_documents_are_stored_or_refused_clearly(cls: type[Resource]) -> None:
    @budget(40)
    @given(resource_documents(cls))
    def check(doc: dict[str, Any]) -> None:
        name = doc.get("metadata", {}).get("name")
        try:
            resource = parse_resource(doc)
        except ValidationError as exc:
            check_refusal(exc, cls, name)
            return
        with fresh_store() as store:
            apply_one(store, resource)

    check()


@pytest.mark.parametrize("cls", ALL_KINDS, ids=KIND_IDS)
def test_shaped_documents_read_from_yaml_as_from_objects(cls: type[Resource]) -> None:
    """The YAML text of a document parses exactly as the object did (the CLI reads text)."""

    @budget(15)
    @given(resource_documents(cls, wrongness=10))
    def check(doc: dict[str, Any]) -> None:
        try:
            direct: Resource | ValidationError = parse_resource(doc, document=1)
        except ValidationError as exc:
            direct = exc
        try:
            (from_text,) = parse_documents(yaml.safe_dump(doc), default_namespace="default")
        except ValidationError as exc:
            assert_clear(exc)
            assert isinstance(direct, ValidationError), f"YAML refused what parses: {exc}"
            return
        assert isinstance(from_text, Resource) and not isinstance(direct, ValidationError)
        assert same_spec(from_text, direct)

    check()


_BAD_SEMANTICS = {  # valid schema, refused by validation: a Gateway without servers
    "apiVersion": "networking.istio.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "bad-semantics"},
    "spec": {"servers": []},
}
_BAD_SCHEMA = {**_BAD_SEMANTICS, "metadata": {"name": "bad-schema"}, "spec": {"servers": 5}}
_GOOD = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "good"},
    "spec": {
        "servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "h"}, "hosts": ["*"]}]
    },
}


def _mostly_valid_documents() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(ALL_KINDS).flatmap(lambda cls: resource_documents(cls, wrongness=200))


@budget(12)
@given(
    good=st.lists(_mostly_valid_documents(), max_size=4).map(lambda docs: [_GOOD, *docs]),
    bad=st.sampled_from([_BAD_SEMANTICS, _BAD_SCHEMA]),
    position=st.integers(0, 5),
)
@example(good=[_GOOD], bad=_BAD_SEMANTICS, position=1)
def test_a_batch_with_one_bad_document_stores_nothing(
    good: list[dict[str, Any]], bad: dict[str, Any], position: int
) -> None:
    docs = [*good]
    docs.insert(min(position, len(docs)), bad)
    text = "---\n".join(yaml.safe_dump(doc) for doc in docs)
    with fresh_store() as store:
        store.apply([parse_resource(_GOOD)])  # something to keep
        before = store_state(store)
        with pytest.raises(ValidationErrors) as refused:
            store.apply(parse_documents(text))  # what trellisd's /apply does
        assert store_state(store) == before
    assert_clear(refused.value)
    if bad is _BAD_SCHEMA or all(_parses(doc) for doc in good):  # else parsing stops first
        named = {(p.kind, p.name) for p in refused.value.errors}
        assert (Gateway.KIND, bad["metadata"]["name"]) in named, refused.value.describe()


def _parses(doc: dict[str, Any]) -> bool:
    try:
        parse_resource(doc)
    except ValidationError:
        return False
    return True


def test_validate_all_lists_every_resources_problems() -> None:
    """One pass shows every problem: the bad Gateway twice under two names gives two problems."""
    twice = [
        parse_resource(_BAD_SEMANTICS),
        parse_resource({**_BAD_SEMANTICS, "metadata": {"name": "b2"}}),
    ]
    with pytest.raises(ValidationErrors) as refused:
        validate_all(twice)
    assert {p.name for p in refused.value.errors} == {"bad-semantics", "b2"}


@pytest.mark.parametrize("key", ["\n", "", "a b"])
def test_an_unknown_key_with_spaces_or_newlines_is_reported_on_one_line(key: str) -> None:
    """Found by the long profile: the field path printed the raw key, newline included."""
    doc = {**_GOOD, "spec": {key: None}}
    with pytest.raises(ValidationErrors) as refused:
        parse_resource(doc)
    check_refusal(refused.value, Gateway, "good")
    assert refused.value.errors[0].field == f"spec[{json.dumps(key)}]"
