"""Pruning of the miner's finished work (issue 16: "Miner state grows forever").

The store never deleted a row and the service's maps never shrank: a miner
running for months filled its disk and memory with work no validator would
ask for again. Pruning must take only finished work whose deadline is past
the retention, never open work nor what a validator may still ask for.
"""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from common.chain import NeuronInfo
from common.protocol import DataAssignmentRequest
from scraping.assignments import MinerService
from scraping.epoch_gate import EpochGate
from scraping.fairness import RefusalLog
from scraping.retention import FALLBACK_EPOCH_S, Retention, prune_finished
from scraping.store import MinerStore
from sim.source import SyntheticSource
from sim.world import SyntheticWorld

pytestmark = pytest.mark.unit

NOW = 1_000_000.0
KEEP_S = 300.0
TABLES = ("assignments", "requests", "zipcodes", "records", "properties", "commitments")


def add_assignment(db, key: str, status: str, deadline: float | None, validator: str = "v1"):
    db.execute(
        "INSERT INTO assignments (key, request_json, status, zipcodes_total, created_at,"
        " deadline_at, salt) VALUES (?, ?, ?, 1, ?, ?, 's')",
        (key, json.dumps({"request_id": f"r-{key}"}), status, NOW - 10_000, deadline),
    )
    db.execute("INSERT INTO requests VALUES (?, ?, ?, ?)", (validator, f"r-{key}", key, NOW))
    db.execute(
        "INSERT INTO zipcodes (key, source, zipcode, done) VALUES (?, 'S', '10001', 1)", (key,)
    )
    db.execute("INSERT INTO records VALUES (?, 'S', '10001', '1', 'h', '{}')", (key,))
    db.execute("INSERT INTO properties (key, source, zpid) VALUES (?, 'S', '7')", (key,))
    db.execute("INSERT INTO commitments VALUES (?, 'c', 1, ?)", (key, NOW))


def rows_of(db, key: str) -> dict[str, int]:
    return {
        t: db.execute(f"SELECT COUNT(*) FROM {t} WHERE key=?", (key,)).fetchone()[0] for t in TABLES
    }


@pytest_asyncio.fixture
async def store(tmp_path):
    store = await MinerStore.open(tmp_path / "miner.sqlite")
    yield store
    await store.close()


@pytest.mark.asyncio
async def test_finished_work_past_the_retention_goes_with_every_row_and_nothing_else(store):
    def fill(db):
        add_assignment(db, "old-done", "completed", NOW - KEEP_S - 1)
        add_assignment(db, "old-failed", "failed", NOW - KEEP_S - 1)
        add_assignment(db, "recent-done", "completed", NOW - KEEP_S + 1)  # may still be revealed
        add_assignment(db, "old-open", "in_progress", NOW - 10 * KEEP_S)  # a task may write it
        add_assignment(db, "no-deadline", "completed", None)  # an old version's row: created_at
        # A request remembered behind its answer while its assignment was pruned.
        db.execute("INSERT INTO requests VALUES ('v2', 'orphan', 'gone', ?)", (NOW,))

    await store.write(fill)
    pruned = await store.write(lambda db: prune_finished(db, NOW - KEEP_S))

    assert sorted(pruned.keys) == ["no-deadline", "old-done", "old-failed"]
    assert pruned.rows == {
        "zipcodes": 3,
        "records": 3,
        "properties": 3,
        "commitments": 3,
        "assignments": 3,
        "requests": 4,  # 3 and the orphan
    }
    left = await store.run(
        lambda db: {k: rows_of(db, k) for k in ("old-done", "recent-done", "old-open")}
    )
    assert set(left["old-done"].values()) == {0}
    assert set(left["recent-done"].values()) == {1}
    assert set(left["old-open"].values()) == {1}
    orphans = await store.run(
        lambda db: db.execute("SELECT COUNT(*) FROM requests WHERE key='gone'").fetchone()
    )
    assert orphans == (0,)


@pytest.mark.asyncio
async def test_the_service_forgets_pruned_keys_and_keeps_the_rest(store):
    service = MinerService(
        store,
        SyntheticSource(SyntheticWorld(1), "m"),
        "miner",
        retention=Retention(KEEP_S, 60.0),
    )

    def fill(db):
        add_assignment(db, "old", "completed", NOW - KEEP_S - 1)
        add_assignment(db, "recent", "completed", NOW - 1)

    await store.write(fill)
    service._status.update({"old": "completed", "recent": "completed"})
    service._open.own("old", "v1")
    service._open.disown("old", "v1")  # a restart's finished work leaves an empty owner set
    service._refusals.due("over quota:v9", NOW - KEEP_S - 60)
    service._refusals.due("over quota:v1", NOW - 5)
    memo = service.digester

    pruned = await service.prune(NOW)

    assert pruned.keys == ("old",)
    assert service._status == {"recent": "completed"}
    assert "old" not in service._open._owners
    assert set(service._refusals._last) == {"over quota:v1"}
    assert service.digester is not memo  # one epoch's listings, not every listing ever seen
    # What the validator of the kept work asks is still answered.
    caller = NeuronInfo(0, "v1", "c", 1.0, True, None)
    for request_id, status in (("r-recent", "completed"), ("r-old", "rejected")):
        ask = DataAssignmentRequest(request_id=request_id, phase="collect")
        answer = await service.answers.answer(caller, ask)
        assert answer.status == status, answer.error


def test_retention_is_counted_in_epochs_from_the_gates_clock():
    from common.epochs import EpochClock

    assert Retention.epochs(100.0) == Retention(300.0, 100.0)
    assert Retention.epochs(100.0, keep=5).keep_s == 500.0
    with pytest.raises(ValueError):
        Retention(0.0, 1.0)
    gated = MinerService(None, None, "m", epochs=EpochGate(EpochClock(40.0, 0.75), 30.0))
    assert gated.retention == Retention(120.0, 40.0)
    # The local preset checks no epochs: the production epoch, so nothing goes early.
    unchecked = MinerService(None, None, "m", epochs=EpochGate(None, 30.0))
    assert unchecked.retention == Retention.epochs(FALLBACK_EPOCH_S)


def test_refusal_log_forgets_validators_quiet_since_the_cutoff():
    log = RefusalLog(60.0)
    assert log.due("a", 0.0) == 0
    assert log.due("a", 10.0) is None  # suppressed, counted
    assert log.due("b", 500.0) == 0
    log.forget_before(100.0)
    assert set(log._last) == {"b"} and "a" not in log._since
    assert log.due("a", 510.0) == 0  # a fresh start: logged, nothing counted before it


def test_the_retention_is_a_miner_setting_with_a_floor():
    from config.setting import SettingsError
    from config.settings import load_settings

    chain = {"CHAIN_FILE": "/tmp/chain.json"}
    settings, _ = load_settings("miner", [], environ={**chain, "MINER_RETENTION_EPOCHS": "5"})
    assert settings.retention_epochs == 5
    settings, _ = load_settings("miner", ["--miner.retention.epochs", "4"], environ=chain)
    assert Retention.epochs(settings.cycle_seconds, settings.retention_epochs).keep_s == (
        4 * settings.cycle_seconds
    )
    # One epoch would prune a validator's reveals of the epoch before.
    with pytest.raises(SettingsError, match="MINER_RETENTION_EPOCHS"):
        load_settings("miner", [], environ={**chain, "MINER_RETENTION_EPOCHS": "1"})
