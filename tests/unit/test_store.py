"""The sqlite config store: atomic batches, resourceVersion/generation, history, sharing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from trellis.api.base import Resource
from trellis.api.kinds import parse_documents
from trellis.errors import NotFound, ValidationErrors
from trellis.store.sqlite import SqliteStore

REVIEWS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
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
metadata: {name: reviews}
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

RATINGS_SVC = """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""

VS = ("VirtualService", "default", "reviews")
DR = ("DestinationRule", "default", "reviews")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "config.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(db_path)
    try:
        yield opened
    finally:
        opened.close()


def _parse(*texts: str) -> list[Resource]:
    return parse_documents("\n---\n".join(texts))


def test_apply_creates_with_increasing_resource_versions(store: SqliteStore) -> None:
    results = store.apply(_parse(REVIEWS_DR, JASON_TO_V2))
    assert [(r.key, r.action, r.resource_version) for r in results] == [
        (DR, "created", "1"),
        (VS, "created", "2"),
    ]
    assert store.revision() == 2
    vs = store.get(*VS)
    assert vs is not None
    assert (vs.metadata.resource_version, vs.metadata.generation) == ("2", 1)
    assert vs.to_wire()["spec"] == _parse(JASON_TO_V2)[0].to_wire()["spec"]


def test_reapplying_the_same_resources_changes_nothing(store: SqliteStore) -> None:
    store.apply(_parse(REVIEWS_DR, JASON_TO_V2))
    again = store.apply(_parse(REVIEWS_DR, JASON_TO_V2))
    assert [(r.action, r.resource_version) for r in again] == [
        ("unchanged", "1"),
        ("unchanged", "2"),
    ]
    assert store.revision() == 2
    assert len(store.history(*VS)) == 1


def test_generation_counts_spec_changes_only(store: SqliteStore) -> None:
    store.apply(_parse(REVIEWS_DR, JASON_TO_V2))
    labelled = JASON_TO_V2.replace("{name: reviews}", "{name: reviews, labels: {team: a}}")
    [result] = store.apply(_parse(labelled))
    assert (result.action, result.resource_version) == ("configured", "3")
    vs = store.get(*VS)
    assert vs is not None and (vs.metadata.generation, vs.metadata.labels) == (1, {"team": "a"})

    rerouted = labelled.replace("subset: v1", "subset: v3")
    [result] = store.apply(_parse(rerouted))
    assert (result.action, result.resource_version) == ("configured", "4")
    vs = store.get(*VS)
    assert vs is not None and (vs.metadata.resource_version, vs.metadata.generation) == ("4", 2)


def test_one_bad_document_writes_nothing(store: SqliteStore) -> None:
    store.apply(_parse(RATINGS_SVC))
    bad_weight = JASON_TO_V2.replace(
        "    - destination: {host: reviews, subset: v1}\n",
        "    - destination: {host: reviews, subset: v1}\n      weight: 60\n"
        "    - destination: {host: reviews, subset: v3}\n      weight: 60\n",
    )
    with pytest.raises(ValidationErrors) as caught:
        store.apply(_parse(REVIEWS_DR, bad_weight))
    assert "spec.http[1].route: destination weights add up to 120" in str(caught.value)
    assert store.revision() == 1
    assert [r.key for r in store.list()] == [("Service", "bookinfo", "ratings")]


def test_subset_without_destination_rule_is_refused_with_what_to_apply(
    store: SqliteStore,
) -> None:
    with pytest.raises(ValidationErrors) as caught:
        store.apply(_parse(JASON_TO_V2))
    assert len(caught.value.errors) == 2
    assert "apply a DestinationRule for reviews.default.svc.cluster.local" in str(caught.value)
    assert store.list() == []
    store.apply(_parse(REVIEWS_DR))
    [result] = store.apply(_parse(JASON_TO_V2))
    assert result.action == "created"


def test_delete_is_all_or_nothing(store: SqliteStore) -> None:
    store.apply(_parse(REVIEWS_DR, JASON_TO_V2, RATINGS_SVC))
    with pytest.raises(NotFound, match="VirtualService default/nope not found"):
        store.delete([VS, ("VirtualService", "default", "nope")])
    assert store.get(*VS) is not None and store.revision() == 3

    assert store.delete([VS, ("svc", "bookinfo", "ratings")]) == [
        VS,
        ("Service", "bookinfo", "ratings"),
    ]
    assert store.get(*VS) is None
    assert store.revision() == 5
    assert [r.key for r in store.list()] == [DR]


def test_history_keeps_every_version_and_the_deletion(store: SqliteStore) -> None:
    store.apply(_parse(REVIEWS_DR, JASON_TO_V2))
    store.apply(_parse(JASON_TO_V2.replace("subset: v1", "subset: v3")))
    store.delete([VS])
    history = store.history(*VS)
    assert [(h.action, h.resource_version, h.generation) for h in history] == [
        ("created", "2", 1),
        ("configured", "3", 2),
        ("deleted", "4", 2),
    ]
    routes = [h.resource.to_wire()["spec"]["http"][1]["route"] for h in history]
    assert [r[0]["destination"]["subset"] for r in routes] == ["v1", "v3", "v3"]


def test_list_filters_by_kind_and_namespace(store: SqliteStore) -> None:
    store.apply(_parse(REVIEWS_DR, JASON_TO_V2, RATINGS_SVC))
    assert [r.key for r in store.list("vs")] == [VS]
    assert [r.key for r in store.list(namespace="bookinfo")] == [("Service", "bookinfo", "ratings")]
    assert [r.key for r in store.list("DestinationRule", "default")] == [DR]
    assert store.list("Gateway") == []


def test_two_connections_see_each_others_writes(db_path: Path) -> None:
    first, second = SqliteStore(db_path), SqliteStore(db_path)
    try:
        first.apply(_parse(REVIEWS_DR))
        assert second.get(*DR) is not None
        second.apply(_parse(JASON_TO_V2))  # the subsets come from what `first` wrote
        assert first.revision() == second.revision() == 2
        second.delete([VS])
        assert first.get(*VS) is None
    finally:
        first.close()
        second.close()


def test_concurrent_applies_from_threads_each_get_their_own_revision(
    store: SqliteStore,
) -> None:
    texts = [RATINGS_SVC.replace("name: ratings", f"name: svc-{i}") for i in range(20)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: store.apply(_parse(t))[0], texts))
    assert sorted(int(r.resource_version) for r in results) == list(range(1, 21))
    assert len(store.list("Service")) == 20


def test_records_hold_registry_allocations(db_path: Path, store: SqliteStore) -> None:
    store.put_record("services", "reviews.default", {"vip": "240.240.0.7"})
    store.put_record("services", "ratings.default", {"vip": "240.240.0.8"})
    store.put_record("services", "reviews.default", {"vip": "240.240.0.9"})
    store.put_record("workloads", "reviews-v1", {"ip": "198.18.0.5"})
    store.delete_record("services", "ratings.default")
    store.delete_record("services", "never-there")
    other = SqliteStore(db_path)
    try:
        assert other.list_records("services") == {"reviews.default": {"vip": "240.240.0.9"}}
        assert other.get_record("workloads", "reviews-v1") == {"ip": "198.18.0.5"}
    finally:
        other.close()
    assert store.revision() == 0


_WRITER = """
import sys
from trellis.api.kinds import parse_documents
from trellis.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
for i in range(10):
    text = sys.argv[3].replace("name: ratings", f"name: {sys.argv[2]}-{i}")
    store.apply(parse_documents(text))
store.close()
"""


def test_two_processes_can_write_at_once(db_path: Path, store: SqliteStore) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db_path), prefix, RATINGS_SVC])
        for prefix in ("a", "b")
    ]
    try:
        assert [w.wait(timeout=60) for w in writers] == [0, 0]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    assert store.revision() == 20
    versions = {r.metadata.resource_version for r in store.list("Service")}
    assert versions == {str(v) for v in range(1, 21)}
