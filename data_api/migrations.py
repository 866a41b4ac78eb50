"""The Data API's SQLite schema, as numbered migrations applied in order.

``PRAGMA user_version`` holds the number of the last migration applied
(``common/sqlite_db.py``, the scheme of every store). A migration is never
edited once released: a change is a new entry at the end.
"""

from __future__ import annotations

import sqlite3

from common import sqlite_db
from common.sqlite_db import schema_version

MIGRATIONS: tuple[str, ...] = (
    # 1: blocks, honeypots and references, status reports, nonces, rate counters.
    """
    CREATE TABLE epochs (
        epoch_id INTEGER PRIMARY KEY,
        block_id TEXT NOT NULL UNIQUE,
        block_json BLOB NOT NULL,          -- the exact bytes served, for every validator
        created_at REAL NOT NULL
    );
    CREATE TABLE block_zipcodes (          -- what rotation looks back at
        epoch_id INTEGER NOT NULL REFERENCES epochs(epoch_id),
        zipcode TEXT NOT NULL,
        PRIMARY KEY (epoch_id, zipcode)
    ) WITHOUT ROWID;
    CREATE TABLE block_honeypots (
        epoch_id INTEGER NOT NULL REFERENCES epochs(epoch_id),
        zipcode TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('reference', 'no_residential')),
        references_json TEXT NOT NULL,     -- {source: [[zpid, record_hash], ...]} at issue time
        PRIMARY KEY (epoch_id, zipcode)
    ) WITHOUT ROWID;
    CREATE TABLE honeypot_references (
        zipcode TEXT NOT NULL,
        source TEXT NOT NULL,
        records_json TEXT NOT NULL,        -- [[zpid, record_hash], ...]
        record_count INTEGER NOT NULL,
        added_at REAL NOT NULL,
        added_by TEXT NOT NULL,
        PRIMARY KEY (zipcode, source)
    ) WITHOUT ROWID;
    CREATE TABLE status_reports (
        epoch_id INTEGER NOT NULL,
        validator_hotkey TEXT NOT NULL,
        received_at REAL NOT NULL,
        report_json TEXT NOT NULL,
        PRIMARY KEY (epoch_id, validator_hotkey)
    ) WITHOUT ROWID;
    CREATE TABLE nonces (
        hotkey TEXT NOT NULL,
        nonce_ns INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (hotkey, nonce_ns)
    ) WITHOUT ROWID;
    CREATE INDEX nonces_by_expiry ON nonces(expires_at);
    CREATE TABLE rate_counters (
        hotkey TEXT NOT NULL,
        window_id INTEGER NOT NULL,        -- floor(unix time / window length)
        count INTEGER NOT NULL,
        PRIMARY KEY (hotkey, window_id)
    ) WITHOUT ROWID;
    """,
    # 2: upload grants, so the per-zipcode upload cap holds across worker processes.
    """
    CREATE TABLE upload_grants (
        hotkey TEXT NOT NULL,
        epoch_id INTEGER NOT NULL,
        source TEXT NOT NULL,
        zipcode TEXT NOT NULL,
        content_hash TEXT NOT NULL,        -- a retry of the same file is the same grant
        granted_at REAL NOT NULL,
        PRIMARY KEY (hotkey, epoch_id, source, zipcode, content_hash)
    ) WITHOUT ROWID;
    CREATE INDEX upload_grants_by_epoch ON upload_grants(epoch_id);
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations ``conn`` has not seen (``common/sqlite_db.migrate``); the version.

    Raises ``SchemaTooNew`` (a RuntimeError) for a database newer than this code.
    """
    return sqlite_db.migrate(conn, MIGRATIONS)


__all__ = ["MIGRATIONS", "migrate", "schema_version"]
