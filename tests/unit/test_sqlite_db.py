"""One way to open a store and one schema-version scheme (PRAGMA user_version), for every store.

Regression: the stores once had two schemes (a meta row, user_version); a
miner's upload ledger written under the meta-row scheme must open with the
new code, its rows intact (it holds files not yet uploaded).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from common.sqlite_db import SchemaTooNew, adopt_meta_version, connect, migrate, schema_version
from scraping.upload_ledger import MIGRATIONS as LEDGER_MIGRATIONS
from scraping.upload_ledger import PENDING, UploadLedger

pytestmark = pytest.mark.unit

STEPS = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "ALTER TABLE t ADD COLUMN size INTEGER NOT NULL DEFAULT 0; CREATE INDEX t_size ON t(size)",
)


def test_connect_sets_wal_durability_busy_timeout_and_any_thread(tmp_path: Path) -> None:
    db = connect(tmp_path / "deep" / "a.sqlite", synchronous="FULL", busy_timeout_ms=1234)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    assert db.isolation_level is None  # autocommit: transactions are explicit
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(db.execute("SELECT 1").fetchone()[0]))
    thread.start()
    thread.join()
    assert seen == [1]  # a store's own worker thread may use it
    assert connect(tmp_path / "b.sqlite").execute("PRAGMA synchronous").fetchone()[0] == 1
    with pytest.raises(ValueError):
        connect(tmp_path / "c.sqlite", synchronous="OFF")


def test_migrations_apply_once_and_in_order(tmp_path: Path) -> None:
    db = connect(tmp_path / "s.sqlite")
    assert migrate(db, STEPS[:1]) == 1
    db.execute("INSERT INTO t (name) VALUES ('kept')")
    assert migrate(db, STEPS[:1]) == 1  # nothing new: nothing runs
    assert migrate(db, STEPS) == 2
    assert db.execute("SELECT name, size FROM t").fetchall() == [("kept", 0)]
    assert schema_version(db) == 2


def test_a_newer_file_is_refused_untouched(tmp_path: Path) -> None:
    db = connect(tmp_path / "s.sqlite")
    migrate(db, STEPS)
    with pytest.raises(SchemaTooNew):
        migrate(db, STEPS[:1])
    assert schema_version(db) == 2


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    db = connect(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, (STEPS[0], "ALTER TABLE missing ADD COLUMN x"))
    assert schema_version(db) == 0
    assert db.execute("SELECT name FROM sqlite_master WHERE name='t'").fetchone() is None


def test_meta_row_version_is_adopted_once(tmp_path: Path) -> None:
    db = connect(tmp_path / "s.sqlite")
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');" + STEPS[0]
    )
    assert migrate(db, STEPS, legacy=adopt_meta_version) == 2  # only step 2 ran
    assert db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0  # one answer left
    assert migrate(db, STEPS, legacy=adopt_meta_version) == 2
    fresh = connect(tmp_path / "fresh.sqlite")
    assert migrate(fresh, STEPS, legacy=adopt_meta_version) == 2  # no meta table: version 0


def test_an_upload_ledger_of_the_meta_row_scheme_opens_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "uploads.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(LEDGER_MIGRATIONS[0])  # the same tables, created by the old code
    old.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    old.execute(
        "INSERT INTO uploads (epoch, source, zipcode, content_hash, size, record_count, state,"
        " next_try_at, created_at) VALUES (12, 'ZILLOW_SOLD', '77494', ?, 10, 2, ?, 0, 0)",
        ("ab" * 32, PENDING),
    )
    old.close()

    async def reopen() -> dict[str, int]:
        ledger = await UploadLedger.open(path, tmp_path / "spool")
        try:
            return await ledger.counts()
        finally:
            await ledger.close()

    assert asyncio.run(reopen()) == {PENDING: 1}
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == len(LEDGER_MIGRATIONS)
    assert check.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0
    check.close()


def test_a_ledger_from_newer_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "uploads.sqlite"
    db = connect(path)
    db.execute(f"PRAGMA user_version = {len(LEDGER_MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(SchemaTooNew):
        asyncio.run(UploadLedger.open(path, tmp_path / "spool"))


def test_a_semicolon_in_a_comment_or_string_ends_no_statement():
    from common.sqlite_db import statements

    script = "CREATE TABLE a (x); -- found later; or not\nCREATE TABLE b (y TEXT DEFAULT ';');\n"
    assert [s.split("(")[0].strip(" \n").splitlines()[-1] for s in statements(script)] == [
        "CREATE TABLE a",
        "CREATE TABLE b",
    ]


def test_a_step_sql_cannot_say_runs_in_the_same_transaction(tmp_path):
    def salts(db) -> None:
        db.execute("UPDATE t SET salt = 'drawn' WHERE salt IS NULL")

    db = connect(tmp_path / "s.sqlite")
    migrate(db, ("CREATE TABLE t (salt TEXT); INSERT INTO t VALUES (NULL)",))
    assert migrate(db, ("CREATE TABLE t (salt TEXT); INSERT INTO t VALUES (NULL)", salts)) == 2
    assert db.execute("SELECT salt FROM t").fetchall() == [("drawn",)]

    def broken(db) -> None:
        db.execute("CREATE TABLE u (x)")
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        migrate(db, ("CREATE TABLE t (salt TEXT); INSERT INTO t VALUES (NULL)", salts, broken))
    assert schema_version(db) == 2  # nothing of the failed step stays
    assert db.execute("SELECT name FROM sqlite_master WHERE name='u'").fetchone() is None
