"""A miner store of schema 1 (before commit-then-reveal) opens as schema 2, work kept.

Assignments taken before the upgrade get a secret salt, finished zipcodes a
completion order, so the upgraded miner can commit to and reveal them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3

import pytest

from scraping.collect import finished_work
from scraping.store import _SCHEMA, SCHEMA_VERSION, MinerStore

pytestmark = pytest.mark.unit

# Stores written before the one schema scheme (common/sqlite_db.py) kept their
# version in this table; the miner upgrades them in place.
OLD_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"


def test_a_schema_1_store_is_migrated_with_salts_and_completion_order(tmp_path):
    path = tmp_path / "miner.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_META + _SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO assignments (key, request_json, status, zipcodes_total, created_at)"
        " VALUES ('k1', '{}', 'in_progress', 3, 0)"
    )
    db.executemany(
        "INSERT INTO zipcodes (key, source, zipcode, done) VALUES ('k1', 'ZILLOW_SOLD', ?, ?)",
        [("10003", 1), ("10001", 1), ("10002", 0)],
    )
    db.commit()
    db.close()

    async def reopen():
        store = await MinerStore.open(path)
        try:
            return await store.run(
                lambda d: (
                    d.execute("PRAGMA user_version").fetchone()[0],
                    d.execute("SELECT salt FROM assignments").fetchone()[0],
                    finished_work(d, "k1").zipcode_rows,
                    finished_work(d, "k1", 1).zipcode_rows,
                    d.execute("SELECT COUNT(*) FROM commitments").fetchone()[0],
                )
            )
        finally:
            await store.close()

    version, salt, done, first, commitments = asyncio.run(reopen())
    assert int(version) == SCHEMA_VERSION == 2
    assert re.fullmatch(r"[0-9a-f]{64}", salt)
    assert done == [("ZILLOW_SOLD", "10001"), ("ZILLOW_SOLD", "10003")]
    assert first == [("ZILLOW_SOLD", "10001")]
    assert commitments == 0
    # Opening again is a no-op: the salt drawn at migration stays.
    assert asyncio.run(reopen())[1] == salt


def test_a_store_of_a_newer_miner_is_refused(tmp_path):
    path = tmp_path / "miner.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="upgrade the miner"):
        asyncio.run(MinerStore.open(path))


def test_a_miner_rolled_back_one_release_finds_the_version_it_reads(tmp_path):
    """The release before reads meta.schema_version; without it, it migrated again and died."""
    path = tmp_path / "miner.sqlite"

    async def open_close() -> None:
        store = await MinerStore.open(path)
        await store.close()

    asyncio.run(open_close())
    db = sqlite3.connect(path)
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    assert row == (str(SCHEMA_VERSION),)  # the old release sees "2": nothing to migrate
