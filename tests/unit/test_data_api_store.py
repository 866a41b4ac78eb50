"""The Data API's SQLite layer: migrations, first-write-wins blocks, shared nonces and counters.

The seed's mock kept its tokens in memory: a second worker (or a restart)
accepted a replayed request. These tests open the same database twice, as two
worker processes would.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from bittensor import http_auth
from bittensor.sp_core import Keypair

from common.data_api_models import HoneypotReference
from data_api.guards import SqliteNonceStore, SqliteRateLimiter, guard_connection
from data_api.migrations import MIGRATIONS, migrate, schema_version
from data_api.store import ApiStore, IssuedBlock, IssuedHoneypot, connect

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_migrations_apply_once_and_refuse_a_newer_database(tmp_path):
    path = tmp_path / "api.sqlite"
    store = ApiStore.open(path)
    store.close()
    conn = connect(path)
    assert schema_version(conn) == len(MIGRATIONS)
    assert migrate(conn) == len(MIGRATIONS)  # idempotent
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "epochs",
        "block_zipcodes",
        "block_honeypots",
        "honeypot_references",
        "status_reports",
        "nonces",
        "rate_counters",
    } <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn)
    conn.close()


def test_first_block_written_wins_across_connections(tmp_path):
    path = tmp_path / "api.sqlite"
    one, two = ApiStore.open(path), ApiStore.open(path)
    honeypot = IssuedHoneypot("77494", "reference", {"ZILLOW_SOLD": [["1", "a" * 32]]})
    first = IssuedBlock(5, "e5-a", b'{"a":1}', ["77494", "10001"], [honeypot])
    stored, inserted = one.save_block(first)
    assert (stored, inserted) == (b'{"a":1}', True)
    stored, inserted = two.save_block(IssuedBlock(5, "e5-b", b'{"b":2}', ["11111"], []))
    assert (stored, inserted) == (b'{"a":1}', False)
    assert two.block_json(5) == b'{"a":1}'
    block_id, honeypots = two.honeypots(5)
    assert block_id == "e5-a" and honeypots == [honeypot]
    assert two.honeypots(6) is None


def test_recent_zipcodes_most_recent_first_and_bounded(tmp_path):
    store = ApiStore.open(tmp_path / "api.sqlite")
    for epoch in (1, 2, 4):  # epoch 3 was never served
        zipcodes = [f"{epoch}0000", f"{epoch}1111"]
        store.save_block(IssuedBlock(epoch, f"e{epoch}", b"{}", zipcodes, []))
    assert store.recent_zipcodes(5, 6) == [
        frozenset({"40000", "41111"}),
        frozenset({"20000", "21111"}),
        frozenset({"10000", "11111"}),
    ]
    assert store.recent_zipcodes(5, 2) == [frozenset({"40000", "41111"})]
    assert store.recent_zipcodes(5, 0) == []


def test_references_and_status_reports(tmp_path):
    store = ApiStore.open(tmp_path / "api.sqlite")

    def reference(source: str, records: list[tuple[str, str]]) -> HoneypotReference:
        return HoneypotReference(zipcode="77494", source=source, records=records)

    store.upsert_reference(reference("ZILLOW_SOLD", [("1", "a" * 32)]), "owner")
    store.upsert_reference(reference("ZILLOW_SOLD", [("2", "b" * 32), ("3", "c" * 32)]), "cli")
    store.upsert_reference(reference("ZILLOW", [("4", "d" * 32)]), "cli")
    assert [(r.source, r.record_count) for r in store.references()] == [
        ("ZILLOW", 1),
        ("ZILLOW_SOLD", 2),
    ]
    assert store.reference_zipcodes() == ["77494"]
    assert store.reference_records(["77494", "10001"]) == {
        "77494": {"ZILLOW": [["4", "d" * 32]], "ZILLOW_SOLD": [["2", "b" * 32], ["3", "c" * 32]]}
    }
    assert store.delete_reference("77494", "ZILLOW") == 1
    assert store.delete_reference("77494") == 1
    assert store.references() == []
    store.save_status(3, "hk", '{"completed": 1}')
    store.save_status(3, "hk", '{"completed": 2}')  # replaces
    assert store.status_reports(3) == {"hk": {"completed": 2}}


def test_nonce_store_is_shared_between_workers(tmp_path):
    path = tmp_path / "api.sqlite"
    ApiStore.open(path).close()
    worker_a = SqliteNonceStore(guard_connection(path))
    worker_b = SqliteNonceStore(guard_connection(path))
    assert worker_a.check_and_store("hk", 123) is True
    assert worker_b.check_and_store("hk", 123) is False  # a replay, whichever worker sees it
    assert worker_a.check_and_store("hk", 123) is False
    assert worker_b.check_and_store("other", 123) is True
    assert worker_b.check_and_store("hk", 124) is True


def test_nonce_store_forgets_after_retention(tmp_path):
    path = tmp_path / "api.sqlite"
    ApiStore.open(path).close()
    clock = FakeClock()
    conn = guard_connection(path)
    store = SqliteNonceStore(conn, retention=60.0, clock=clock)
    assert store.check_and_store("hk", 1)
    clock.now += 61
    assert store.check_and_store("hk", 2)  # sweeps expired rows on its way
    assert conn.execute("SELECT COUNT(*) FROM nonces").fetchone()[0] == 1


def test_nonce_store_plugs_into_btauth_verify(tmp_path):
    path = tmp_path / "api.sqlite"
    ApiStore.open(path).close()
    store = SqliteNonceStore(guard_connection(path))
    sender, receiver = Keypair.create_from_uri("//sender"), Keypair.create_from_uri("//api")
    headers = http_auth.sign(sender, method="GET", path="/x", receiver_ss58=receiver.ss58_address)
    caller = http_auth.verify(
        headers,
        b"",
        method="GET",
        path="/x",
        self_hotkey_ss58=receiver.ss58_address,
        nonce_store=store,
    )
    assert caller.hotkey_ss58 == sender.ss58_address
    other_worker = SqliteNonceStore(guard_connection(path))
    with pytest.raises(http_auth.ReplayedRequest):
        http_auth.verify(
            headers,
            b"",
            method="GET",
            path="/x",
            self_hotkey_ss58=receiver.ss58_address,
            nonce_store=other_worker,
        )


def test_rate_limiter_counts_per_hotkey_per_window_across_workers(tmp_path):
    path = tmp_path / "api.sqlite"
    ApiStore.open(path).close()
    clock = FakeClock(600.0 + 0.25)
    a = SqliteRateLimiter(guard_connection(path), per_minute=3, clock=clock)
    b = SqliteRateLimiter(guard_connection(path), per_minute=3, clock=clock)
    assert [a.take("hk"), b.take("hk"), a.take("hk")] == [0.0, 0.0, 0.0]
    wait = b.take("hk")
    assert 59 < wait <= 60  # until the next minute starts
    assert a.take("other") == 0.0
    clock.now += wait
    assert a.take("hk") == 0.0


def test_nonce_store_write_is_cheap(tmp_path):
    """The nonce check runs on the event loop: it must stay in the tens of microseconds."""
    path = tmp_path / "api.sqlite"
    ApiStore.open(path).close()
    store = SqliteNonceStore(guard_connection(path))
    started = time.perf_counter()
    for i in range(2000):
        store.check_and_store("hk", i)
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 0.002, per_call  # generous: shared CI cores


def test_connection_rejects_nothing_parameterised(tmp_path):
    """Hostile strings are data, never SQL."""
    store = ApiStore.open(tmp_path / "api.sqlite")
    hostile = "x'); DROP TABLE epochs; --"
    store.save_status(1, hostile, "{}")
    assert hostile in store.status_reports(1)
    conn = sqlite3.connect(tmp_path / "api.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 0


def test_the_wal_stays_bounded_when_checkpointed_off_the_request_path(tmp_path):
    """The guards never checkpoint (it stalled requests for ~20 ms at p99); the
    store's background checkpoint must keep the WAL from growing without end."""
    path = tmp_path / "api.sqlite"
    store = ApiStore.open(path)
    nonces = SqliteNonceStore(guard_connection(path))
    wal = path.with_name(path.name + "-wal")

    def burst(start: int) -> None:
        for i in range(start, start + 1500):
            nonces.check_and_store("hk", i)

    burst(0)
    store.checkpoint()
    first = wal.stat().st_size
    for round_ in range(1, 4):
        burst(round_ * 1500)
        store.checkpoint()
    assert wal.stat().st_size <= first * 1.2  # reused from its start, not appended to


SQLITE_WITHOUT_PSYCOPG = """
import asyncio, sys, time
sys.modules["psycopg"] = sys.modules["psycopg_pool"] = None   # as if the extra were absent
from data_api.app import start_data_api  # noqa: F401 - the whole service imports
from data_api.stores import open_store

async def main():
    store = await open_store(sys.argv[1])
    assert await store.admit("hotkey", time.time_ns()) == 0.0
    await store.close()
    print(store.kind)

asyncio.run(main())
"""


def test_the_sqlite_store_needs_no_postgresql_packages(tmp_path):
    """The local subnet and other parts' tests run without the postgres extra."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SQLITE_WITHOUT_PSYCOPG, str(tmp_path / "api.sqlite")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "sqlite"), done.stderr[-2000:]


POSTGRES_WITHOUT_PSYCOPG = """
import asyncio, sys
sys.modules["psycopg"] = sys.modules["psycopg_pool"] = None   # as if the extra were absent
from config.settings import SettingsError
from data_api.stores import open_store

try:
    asyncio.run(open_store("postgresql://api@127.0.0.1:1/data_api"))
except SettingsError as exc:
    print(exc)
"""


def test_a_postgresql_url_without_the_postgres_extra_is_a_one_line_setting_error():
    """Not an ImportError's traceback: ``run_neuron`` turns a SettingsError into exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", POSTGRES_WITHOUT_PSYCOPG],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pip install -e '.[postgres]'" in done.stdout
