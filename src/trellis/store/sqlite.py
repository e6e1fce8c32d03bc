"""The one-machine config store: sqlite in WAL mode, safe for trellisd and the CLI at once.

Every write runs in one IMMEDIATE transaction (all or nothing); a global revision counter
gives each written object its resourceVersion, so readers can tell what changed since when.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from trellis.api.base import Resource
from trellis.api.destination_rule import DestinationRule
from trellis.api.kinds import KINDS, resolve_kind
from trellis.api.validation import check_references, problems_of
from trellis.errors import NotFound, RuntimeProblem, ValidationErrors
from trellis.store.interface import (
    ApplyResult,
    HistoryAction,
    HistoryEntry,
    ResourceKey,
)
from trellis.store.sqlite_schema import SCHEMA

_BUSY_TIMEOUT_MS = 10_000


class SqliteStore:
    """Config store in one sqlite file: one connection under a lock; WAL lets processes share it."""

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._parsed: dict[tuple[str, str, str], tuple[int, Resource]] = {}
        self._path = os.fspath(path)
        self._db = sqlite3.connect(
            os.fspath(path),
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
            check_same_thread=False,
        )
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._create_schema()

    def _create_schema(self) -> None:
        with self._write() as db:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO revision (id, value) VALUES (0, 0)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- transactions -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the lock; rolled back on any exception.

        A failed COMMIT (disk full, read-only file) rolls back too, so the next write starts
        clean, and reaches the user as one line saying nothing was written.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as err:
                raise RuntimeProblem(
                    f"the config store could not write ({err}); nothing was changed. "
                    f"Check free space and permissions of {self._path}, then try again"
                ) from err

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _bump_revision(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE revision SET value = value + 1 WHERE id = 0")
        row = db.execute("SELECT value FROM revision WHERE id = 0").fetchone()
        return int(row[0])

    # --- resources ----------------------------------------------------------------------

    def apply(self, resources: Sequence[Resource]) -> builtins.list[ApplyResult]:
        """Create or update all `resources` in one transaction, or raise and write nothing."""
        problems = [error for resource in resources for error in problems_of(resource)]
        with self._write() as db:
            stored_rules = self._load(db, DestinationRule.KIND, None)
            problems.extend(check_references(resources, stored_rules))
            if problems:
                raise ValidationErrors(problems)
            return [self._write_one(db, resource) for resource in resources]

    def _write_one(self, db: sqlite3.Connection, resource: Resource) -> ApplyResult:
        body = _body(resource)
        row = db.execute(
            "SELECT body, resource_version, generation FROM resources"
            " WHERE kind = ? AND namespace = ? AND name = ?",
            resource.key,
        ).fetchone()
        if row is None:
            return self._store(db, resource, body, generation=1, action="created")
        old_body, old_version, old_generation = row
        old = json.loads(old_body)
        if _comparable(old) == _comparable(body):
            return ApplyResult(resource.key, "unchanged", str(old_version))
        spec_changed = _spec_of(resource.kind, old) != _spec_of(resource.kind, body)
        generation = old_generation + 1 if spec_changed else old_generation
        return self._store(db, resource, body, generation=generation, action="configured")

    def _store(
        self,
        db: sqlite3.Connection,
        resource: Resource,
        body: dict[str, Any],
        *,
        generation: int,
        action: Literal["created", "configured"],
    ) -> ApplyResult:
        version = self._bump_revision(db)
        now = self._clock()
        text = json.dumps(body, sort_keys=True)
        db.execute(
            "INSERT INTO resources (kind, namespace, name, api_version, body, resource_version,"
            " generation, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, namespace, name) DO UPDATE SET api_version = excluded.api_version,"
            " body = excluded.body, resource_version = excluded.resource_version,"
            " generation = excluded.generation, updated_at = excluded.updated_at",
            (*resource.key, resource.api_version, text, version, generation, now, now),
        )
        self._record_history(db, resource.key, version, generation, action, text, now)
        return ApplyResult(resource.key, action, str(version))

    def _record_history(
        self,
        db: sqlite3.Connection,
        key: ResourceKey,
        version: int,
        generation: int,
        action: HistoryAction,
        body: str,
        now: float,
    ) -> None:
        db.execute(
            "INSERT INTO history (kind, namespace, name, resource_version, generation, action,"
            " body, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, version, generation, action, body, now),
        )

    def delete(self, keys: Sequence[ResourceKey]) -> builtins.list[ResourceKey]:
        """Delete all `keys` in one transaction; if any is missing, raise NotFound, delete none."""
        wanted = list(dict.fromkeys((_kind_name(k), ns, n) for k, ns, n in keys))
        with self._write() as db:
            for key in wanted:
                row = db.execute(
                    "SELECT body, generation FROM resources"
                    " WHERE kind = ? AND namespace = ? AND name = ?",
                    key,
                ).fetchone()
                if row is None:
                    kind, namespace, name = key
                    raise NotFound(f"{kind} {namespace}/{name} not found; nothing was deleted")
                version = self._bump_revision(db)
                self._record_history(db, key, version, row[1], "deleted", row[0], self._clock())
                db.execute(
                    "DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?", key
                )
        return wanted

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        with self._read() as db:
            row = db.execute(
                "SELECT kind, body, resource_version, generation FROM resources"
                " WHERE kind = ? AND namespace = ? AND name = ?",
                (_kind_name(kind), namespace, name),
            ).fetchone()
        return None if row is None else _resource(*row)

    def list(
        self, kind: str | None = None, namespace: str | None = None
    ) -> builtins.list[Resource]:
        """Stored resources, optionally of one kind and/or namespace, sorted by key."""
        with self._read() as db:
            return self._load(db, _kind_name(kind) if kind else None, namespace)

    def _load(
        self, db: sqlite3.Connection, kind: str | None, namespace: str | None
    ) -> builtins.list[Resource]:
        rows = db.execute(
            "SELECT kind, namespace, name, body, resource_version, generation FROM resources"
            " WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR namespace = ?2)"
            " ORDER BY kind, namespace, name",
            (kind, namespace),
        ).fetchall()
        # Parsing and validating is the cost of a rebuild (seconds for 10 000 resources);
        # resources are immutable, so one parsed per stored version is shared by every read.
        parsed: dict[tuple[str, str, str], tuple[int, Resource]] = {}
        for r_kind, r_ns, r_name, body, version, generation in rows:
            key = (r_kind, r_ns, r_name)
            hit = self._parsed.get(key)
            if hit is None or hit[0] != version:
                hit = (version, _resource(r_kind, body, version, generation))
            parsed[key] = hit
        if kind is None and namespace is None:
            self._parsed = parsed  # a full read also forgets deleted resources
        else:
            self._parsed.update(parsed)
        return [resource for _, resource in parsed.values()]

    def revision(self) -> int:
        """The global revision: the resourceVersion of the latest write or deletion."""
        with self._read() as db:
            return int(db.execute("SELECT value FROM revision WHERE id = 0").fetchone()[0])

    def history(self, kind: str, namespace: str, name: str) -> builtins.list[HistoryEntry]:
        """Every stored version of one resource, oldest first, deletions included."""
        with self._read() as db:
            rows = db.execute(
                "SELECT kind, body, resource_version, generation, action, recorded_at"
                " FROM history WHERE kind = ? AND namespace = ? AND name = ?"
                " ORDER BY resource_version",
                (_kind_name(kind), namespace, name),
            ).fetchall()
        return [
            HistoryEntry(
                resource_version=str(version),
                generation=generation,
                action=action,
                resource=_resource(row_kind, body, version, generation),
                recorded_at=recorded_at,
            )
            for row_kind, body, version, generation, action, recorded_at in rows
        ]

    # --- generic records (registry allocations) -----------------------------------------

    def put_record(self, table: str, key: str, value: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO records (tbl, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
                (table, key, json.dumps(value, sort_keys=True)),
            )

    def delete_record(self, table: str, key: str) -> None:
        """Forget one record; a missing record is not an error."""
        with self._write() as db:
            db.execute("DELETE FROM records WHERE tbl = ? AND key = ?", (table, key))

    def get_record(self, table: str, key: str) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute(
                "SELECT value FROM records WHERE tbl = ? AND key = ?", (table, key)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_records(self, table: str) -> dict[str, dict[str, Any]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT key, value FROM records WHERE tbl = ? ORDER BY key", (table,)
            ).fetchall()
        return {key: json.loads(value) for key, value in rows}


def _kind_name(kind: str) -> str:
    """Accept the kind (VirtualService) or a CLI word (vs) for it."""
    return kind if kind in KINDS else resolve_kind(kind).KIND


def _body(resource: Resource) -> dict[str, Any]:
    """The wire form to store, without the fields the store itself assigns."""
    body = resource.to_wire()
    meta = body.setdefault("metadata", {})
    meta.pop("resourceVersion", None)
    meta.pop("generation", None)
    meta["namespace"] = resource.namespace
    return body


def _comparable(body: dict[str, Any]) -> tuple[str, str, str, str]:
    """What decides "unchanged": apiVersion, labels, annotations and the normalised spec."""
    meta = body.get("metadata", {})
    return (
        str(body.get("apiVersion")),
        json.dumps(meta.get("labels", {}), sort_keys=True),
        json.dumps(meta.get("annotations", {}), sort_keys=True),
        _spec_of(str(body.get("kind")), body),
    )


def _spec_of(kind: str, body: dict[str, Any]) -> str:
    """The spec with defaults filled in, so `gateways: []` and no gateways compare equal."""
    model = KINDS[kind].model_validate(body)
    spec = model.model_dump(by_alias=True, exclude_none=True, mode="json").get("spec")
    return json.dumps(spec, sort_keys=True)


def _resource(kind: str, body: str, version: int, generation: int) -> Resource:
    data = json.loads(body)
    data["metadata"] = {**data["metadata"], "resourceVersion": str(version)}
    data["metadata"]["generation"] = generation
    return KINDS[kind].model_validate(data)
