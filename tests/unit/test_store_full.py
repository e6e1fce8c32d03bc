"""A store that cannot grow (a full disk) refuses a write whole and keeps working afterwards.

SQLite's `max_page_count` makes the database file unable to grow, which SQLite reports exactly
as it reports a full disk (SQLITE_FULL); tests/chaos/test_store_faults.py fills a real tmpfs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from trellis.api.kinds import parse_documents
from trellis.errors import RuntimeProblem
from trellis.store.sqlite import SqliteStore


def _virtual_services(count: int, pad: int) -> str:
    return "---\n".join(
        f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-{i}}}
spec:
  hosts: [h{i}.example.com]
  http:
  - headers: {{request: {{set: {{x-pad: "{"p" * pad}"}}}}}}
    route: [{{destination: {{host: h{i}.example.com}}}}]
"""
        for i in range(count)
    )


def test_a_write_that_does_not_fit_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "config.db"
    store = SqliteStore(db)
    store.apply(parse_documents(_virtual_services(1, 10), default_namespace="default"))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    big = parse_documents(_virtual_services(50, 2000), default_namespace="default")
    with pytest.raises(RuntimeProblem, match=r"full.*nothing was changed"):
        store.apply(big)
    assert [r.name for r in store.list("VirtualService", None)] == ["vs-0"]
    store._db.execute("PRAGMA max_page_count = 1073741823")
    store.apply(big)  # no transaction left open by the failure
    assert len(store.list("VirtualService", None)) == 50
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
