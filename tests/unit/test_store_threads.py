"""Every store keeps its SQLite objects on its own thread.

A cursor returned from a store's thread was freed on the event loop's thread,
resetting its statement while the store's thread was stepping another write;
a validator in the local subnet stopped with "bad parameter or other API
misuse" in the middle of saving its reveals. The stores now close such a
cursor where it was made, and hand back only plain values.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from common.sqlite_tx import on_store_thread, transaction
from scraping.store import MinerStore
from scraping.upload_ledger import UploadLedger
from vali_utils.store import ValidatorStore

pytestmark = pytest.mark.unit


def test_a_cursor_is_closed_where_it_was_made_and_values_pass_through():
    db = sqlite3.connect(":memory:")
    made: list[sqlite3.Cursor] = []

    def work() -> sqlite3.Cursor:
        made.append(db.execute("SELECT 1"))
        return made[-1]

    assert on_store_thread(work) is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed: unusable anywhere
        made[0].fetchone()
    assert on_store_thread(lambda: db.execute("SELECT 2").fetchone()) == (2,)
    assert on_store_thread(lambda: transaction(db, lambda d: d.execute("SELECT 3"))) is None


def test_no_store_hands_a_cursor_to_the_event_loop(tmp_path):
    async def scenario() -> list[object]:
        seen: list[object] = []
        loop_thread = threading.get_ident()
        validator = await ValidatorStore.open(tmp_path / "validator.sqlite")
        miner = await MinerStore.open(tmp_path / "miner.sqlite")
        ledger = await UploadLedger.open(tmp_path / "ledger.sqlite", tmp_path / "spool")
        try:

            def probe(db: sqlite3.Connection) -> sqlite3.Cursor:
                assert threading.get_ident() != loop_thread
                return db.execute("SELECT 1")

            seen.append(await validator.run(probe))
            seen.append(await miner.run(probe))
            seen.append(await miner.write(probe))
            seen.append(await ledger._run(lambda: probe(ledger.db)))
        finally:
            await validator.close()
            await miner.close()
            await ledger.close()
        return seen

    assert asyncio.run(scenario()) == [None, None, None, None]
