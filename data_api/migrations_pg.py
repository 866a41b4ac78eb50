"""The Data API's PostgreSQL schema: the SQLite schema (``migrations.py``), step for step.

Migration N here creates what migration N there creates, with PostgreSQL's
types (BYTEA for BLOB, DOUBLE PRECISION for REAL, BIGINT for INTEGER), so a
database of either kind at version N holds the same tables and columns
(``tests/integration/test_data_api_postgres.py`` compares them). The version
is one row in ``schema_version``. ``migrate`` runs in one transaction under
a transaction-scoped advisory lock: instances that start together take
turns, and all but the first find nothing left to do.

    version = await migrate(conn)   # an autocommit AsyncConnection
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.sqlite_db import SchemaTooNew
from data_api.migrations import MIGRATIONS as SQLITE_MIGRATIONS

if TYPE_CHECKING:
    from psycopg import AsyncConnection

# pg_advisory_xact_lock key: "dataapi1" read as a big-endian int64. Any constant
# works as long as nothing else sharing the database takes the same one.
MIGRATION_LOCK = int.from_bytes(b"dataapi1", "big") & 0x7FFF_FFFF_FFFF_FFFF
# Migrating takes milliseconds: an instance that holds the lock longer than this is
# hung, and the others give up (exit 4, a supervisor retries) rather than wait for ever.
LOCK_TIMEOUT_S = 30.0

MIGRATIONS: tuple[str, ...] = (
    # 1: blocks, honeypots and references, status reports, nonces, rate counters.
    """
    CREATE TABLE epochs (
        epoch_id BIGINT PRIMARY KEY,
        block_id TEXT NOT NULL UNIQUE,
        block_json BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE block_zipcodes (
        epoch_id BIGINT NOT NULL REFERENCES epochs(epoch_id),
        zipcode TEXT NOT NULL,
        PRIMARY KEY (epoch_id, zipcode)
    );
    CREATE TABLE block_honeypots (
        epoch_id BIGINT NOT NULL REFERENCES epochs(epoch_id),
        zipcode TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('reference', 'no_residential')),
        references_json TEXT NOT NULL,
        PRIMARY KEY (epoch_id, zipcode)
    );
    CREATE TABLE honeypot_references (
        zipcode TEXT NOT NULL,
        source TEXT NOT NULL,
        records_json TEXT NOT NULL,
        record_count BIGINT NOT NULL,
        added_at DOUBLE PRECISION NOT NULL,
        added_by TEXT NOT NULL,
        PRIMARY KEY (zipcode, source)
    );
    CREATE TABLE status_reports (
        epoch_id BIGINT NOT NULL,
        validator_hotkey TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        report_json TEXT NOT NULL,
        PRIMARY KEY (epoch_id, validator_hotkey)
    );
    CREATE TABLE nonces (
        hotkey TEXT NOT NULL,
        nonce_ns BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (hotkey, nonce_ns)
    );
    CREATE INDEX nonces_by_expiry ON nonces(expires_at);
    CREATE TABLE rate_counters (
        hotkey TEXT NOT NULL,
        window_id BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (hotkey, window_id)
    );
    """,
    # 2: upload grants, so the per-zipcode upload cap holds across instances.
    """
    CREATE TABLE upload_grants (
        hotkey TEXT NOT NULL,
        epoch_id BIGINT NOT NULL,
        source TEXT NOT NULL,
        zipcode TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        granted_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (hotkey, epoch_id, source, zipcode, content_hash)
    );
    CREATE INDEX upload_grants_by_epoch ON upload_grants(epoch_id);
    """,
)

# A step added to one schema and not the other is a bug: caught at import.
if len(MIGRATIONS) != len(SQLITE_MIGRATIONS):
    raise RuntimeError("migrations.py and migrations_pg.py differ in their number of steps")


async def schema_version(conn: AsyncConnection) -> int:
    """The number of migrations applied (0 for an empty database)."""
    cursor = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    (exists,) = await cursor.fetchone()
    if not exists:
        return 0
    cursor = await conn.execute("SELECT version FROM schema_version")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: AsyncConnection, lock_timeout_s: float | None = None) -> int:
    """Apply the migrations the database has not seen, in one transaction; the version.

    Raises ``SchemaTooNew``, with nothing changed, for a database newer than this code,
    and psycopg's ``LockNotAvailable`` when the lock (or a table's) is not had within
    ``lock_timeout_s`` (default ``LOCK_TIMEOUT_S``): an instance that holds it that
    long is hung, not migrating.
    """
    wait_ms = round((LOCK_TIMEOUT_S if lock_timeout_s is None else lock_timeout_s) * 1000)
    async with conn.transaction():
        await conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{wait_ms}ms",))
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = await schema_version(conn)
        if version > len(MIGRATIONS):
            raise SchemaTooNew(
                f"database schema version {version} is newer than this code ({len(MIGRATIONS)})"
            )
        for step in MIGRATIONS[version:]:
            await conn.execute(step)  # no parameters: several statements in one go
        await conn.execute("DELETE FROM schema_version")
        await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS),))
    return len(MIGRATIONS)
