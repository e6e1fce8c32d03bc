"""Tables of the sqlite config store (created if absent; safe to run from several processes)."""

from __future__ import annotations

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS revision (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        value INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS resources (
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        api_version TEXT NOT NULL,
        body TEXT NOT NULL,
        resource_version INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (kind, namespace, name)
    )""",
    """CREATE TABLE IF NOT EXISTS history (
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        resource_version INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        action TEXT NOT NULL,
        body TEXT NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (kind, namespace, name, resource_version)
    )""",
    """CREATE TABLE IF NOT EXISTS records (
        tbl TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (tbl, key)
    )""",
)
