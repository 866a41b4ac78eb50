"""The validator store's file checks: what counts as history, and how a store is made and moved.

Guards against an existing store with no data being silently treated as new
(issue 15, item 6): the history mark is what tells "new" from "lost".
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from consensus.scoring import ScoringState
from vali_utils.store import SCHEMA_VERSION, ValidatorStore
from vali_utils.store_file import HISTORY_KEY, StoreWithoutHistory, check_store_file, move_aside

pytestmark = pytest.mark.unit


def open_close(path: Path, scoring: bool = False) -> None:
    async def work() -> None:
        store = await ValidatorStore.open(path)
        if scoring:
            await store.save_scoring(ScoringState())
        await store.close()

    asyncio.run(work())


def mark(path: Path) -> str | None:
    db = sqlite3.connect(path)
    row = db.execute("SELECT value FROM meta WHERE key=?", (HISTORY_KEY,)).fetchone()
    db.close()
    return row[0] if row else None


def test_a_store_without_history_yet_reopens_and_one_with_history_is_marked(tmp_path):
    path = tmp_path / "v.sqlite"
    assert check_store_file(path, SCHEMA_VERSION) is False  # no file: a new store
    open_close(path)
    assert check_store_file(path, SCHEMA_VERSION) is True and mark(path) is None
    open_close(path, scoring=True)
    assert mark(path) is not None


def test_a_store_from_before_the_mark_gets_it_when_opened(tmp_path):
    path = tmp_path / "v.sqlite"
    open_close(path, scoring=True)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key=?", (HISTORY_KEY,))
    db.commit()
    db.close()
    open_close(path)
    assert mark(path) is not None
    db = sqlite3.connect(path)
    db.execute("DELETE FROM scoring")
    db.commit()
    db.close()
    with pytest.raises(StoreWithoutHistory):
        check_store_file(path, SCHEMA_VERSION)


def test_a_half_made_store_left_by_a_crash_is_not_data(tmp_path):
    path = tmp_path / "v.sqlite"
    Path(f"{path}.new").write_bytes(b"half made")
    open_close(path)
    assert check_store_file(path, SCHEMA_VERSION) and not Path(f"{path}.new").exists()


def test_move_aside_takes_the_wal_files_along_with_one_stamp(tmp_path):
    path = tmp_path / "v.sqlite"
    for suffix, content in (("", b"db"), ("-wal", b"wal"), ("-shm", b"shm")):
        Path(f"{path}{suffix}").write_bytes(content)
    moved = move_aside(path, now=0.0)
    assert [p.name for p in moved] == [
        "v.sqlite.reset-19700101T000000Z",
        "v.sqlite.reset-19700101T000000Z-wal",
        "v.sqlite.reset-19700101T000000Z-shm",
    ]
    assert moved[1].read_bytes() == b"wal" and not path.exists()
    assert move_aside(path) == []
