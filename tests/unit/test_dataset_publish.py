"""The exporter against its review findings (issue 17): ownership, deadline, loop, history.

Real consensus cycles over the synthetic world (``sim/dataset_cycle.py``),
real jsonl.gz files, real Parquet in a temporary folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading

import pytest

pytest.importorskip("pyarrow", reason="the dataset extra (pyarrow) is not installed")

import vali_utils.dataset.publish as publish_module
from sim.dataset_cycle import world_cycle
from sim.fixtures import zipcodes
from vali_utils.dataset.parquet import read_rows, table_bytes
from vali_utils.dataset.publish import (
    NOT_OWNED,
    DatasetExporter,
    manifest_key,
    published_epochs,
)
from vali_utils.dataset.rows import build_epoch, states_from_rows
from vali_utils.dataset.storage import LocalStorage

pytestmark = pytest.mark.unit

ZIPCODES = zipcodes(4)
HOTKEY = "5" + "A" * 47


@pytest.fixture(scope="module")
def cycles():
    return {epoch: world_cycle(epoch, ZIPCODES) for epoch in (1, 2, 3)}


def exporter(storage, cycle, **options) -> DatasetExporter:
    return DatasetExporter(storage, cycle.reader, HOTKEY, max_file_bytes=2**22, **options)


class RecordingFetcher:
    """The cycle's objects, remembering every key asked for."""

    def __init__(self, inner) -> None:
        self.inner, self.keys = inner, []

    async def fetch(self, key: str, *, max_bytes: int):
        self.keys.append(key)
        return await self.inner.fetch(key, max_bytes=max_bytes)


def test_a_manifest_naming_another_miners_object_is_not_fetched(tmp_path, cycles):
    """A miner's manifest listed another miner's object for its zipcode: the exporter
    fetched it (and would have published that miner's work as read from the first)."""
    cycle = cycles[1]
    zipcode = ZIPCODES[0]
    first, other = cycle.job.confirmed.sources[zipcode][:2]
    theirs = cycle.job.files[(other, zipcode)]
    files = {**cycle.job.files, (first, zipcode): theirs}
    job = dataclasses.replace(cycle.job, files=files)
    reader = RecordingFetcher(cycle.reader)
    export = exporter(LocalStorage(tmp_path), cycle, files_per_zipcode=1)
    export.reader = reader
    summary = asyncio.run(export.export(job))
    assert summary["status"] == "published"
    assert theirs[0] not in reader.keys
    assert summary["skipped"][NOT_OWNED] == 1
    wanted = sum(r.zipcode == zipcode for r in job.confirmed.records)
    assert summary["skipped"]["record_not_in_files"] == wanted
    # A key of the right miner but another epoch is refused as well.
    stale = {**cycle.job.files, (first, zipcode): (theirs[0].replace("epoch=1/", "epoch=0/"),)}
    assert not publish_module.key_owned(stale[(first, zipcode)][0], first, 1, zipcode, None)
    assert publish_module.key_owned(cycle.job.files[(first, zipcode)][0], first, 1, zipcode, "data")
    assert not publish_module.key_owned(
        cycle.job.files[(first, zipcode)][0], first, 1, zipcode, "other"
    )


class SteppingClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowStorage(LocalStorage):
    """Each put takes ``step`` seconds of the injected clock."""

    def __init__(self, root, clock: SteppingClock, step: float) -> None:
        super().__init__(root)
        self.clock, self.step, self.puts = clock, step, []

    def put(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        super().put(key, data)
        self.clock.now += self.step


def test_past_the_deadline_the_writer_stops_and_no_manifest_follows(tmp_path, cycles):
    """wait_for(export) cancelled only the await: the writer thread went on and could
    publish the manifest after the report said failed. Now the writer checks the
    deadline before each file, and publish returns only when it has stopped."""
    clock = SteppingClock()
    storage = SlowStorage(tmp_path, clock, step=10.0)
    summary = asyncio.run(
        exporter(storage, cycles[1], timeout_s=15.0, clock=clock).publish(cycles[1].job)
    )
    assert summary["status"] == "failed" and summary["error"].startswith("ExportTimedOut")
    assert len(storage.puts) == 2  # at 0 s and 10 s; at 20 s it stopped
    assert published_epochs(storage) == []
    with pytest.raises(KeyError):
        storage.get(manifest_key(1))


def test_reading_past_the_deadline_writes_nothing(tmp_path, cycles):
    class Stuck:
        async def fetch(self, key: str, *, max_bytes: int):
            await asyncio.Event().wait()

    storage = SlowStorage(tmp_path, SteppingClock(), step=0.0)
    export = exporter(storage, cycles[1], timeout_s=0.05)
    export.reader = Stuck()
    summary = asyncio.run(export.publish(cycles[1].job))
    assert summary["status"] == "failed" and summary["error"].startswith("ExportTimedOut")
    assert storage.puts == []


def test_miners_files_are_decoded_off_the_event_loop(tmp_path, cycles, monkeypatch):
    """A file within the caps held the validator's loop for 0.2 s while it decoded."""
    threads = []
    decode = publish_module.decode_zipcode_file

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return decode(*args, **kwargs)

    monkeypatch.setattr(publish_module, "decode_zipcode_file", recording)
    summary = asyncio.run(exporter(LocalStorage(tmp_path), cycles[1]).export(cycles[1].job))
    assert summary["status"] == "published"
    assert threads and threading.main_thread() not in threads


def epoch_files(storage, epoch: int) -> dict[str, bytes]:
    manifest = json.loads(storage.get(manifest_key(epoch)))
    return {f["key"]: storage.get(f["key"]) for f in manifest["files"]}


def test_a_missed_epoch_does_not_change_later_files(tmp_path, cycles):
    """Each validator built on its own last published epoch: one that missed epoch 2
    carried other first_seen_epoch and history rows than one that did not, for good.
    Epoch 3 builds on epoch 2 only, and says when it could not."""
    missed, fresh = LocalStorage(tmp_path / "missed"), LocalStorage(tmp_path / "fresh")
    for storage, epochs in ((missed, (1, 3)), (fresh, (3,))):
        for epoch in epochs:
            summary = asyncio.run(exporter(storage, cycles[epoch]).export(cycles[epoch].job))
            assert summary["status"] == "published"
    assert summary["history_restarted"] and summary["previous_epoch"] is None
    assert epoch_files(missed, 3) == epoch_files(fresh, 3)

    steady = LocalStorage(tmp_path / "steady")
    for epoch in (1, 2, 3):
        summary = asyncio.run(exporter(steady, cycles[epoch]).export(cycles[epoch].job))
    assert not summary["history_restarted"] and summary["previous_epoch"] == 2
    manifest = json.loads(steady.get(manifest_key(3)))
    assert manifest["history_restarted"] is False and manifest["previous_epoch"] == 2


def test_the_state_merged_in_arrow_is_the_state_built_row_by_row(tmp_path, cycles):
    """listing_state holds every zpid ever confirmed and was turned into Python rows
    whole every epoch; now only this epoch's zpids are. The file must not change."""
    storage = LocalStorage(tmp_path)
    later = world_cycle(2, [*ZIPCODES[:2], *zipcodes(2, start=4)])
    for cycle in (cycles[1], later):
        assert asyncio.run(exporter(storage, cycle).export(cycle.job))["status"] == "published"

    def state_file(epoch: int) -> tuple[dict, bytes]:
        manifest = json.loads(storage.get(manifest_key(epoch)))
        entry = next(f for f in manifest["files"] if f["table"] == "listing_state")
        return entry, storage.get(entry["key"])

    _, first = state_file(1)
    entry, merged = state_file(2)
    found, _ = asyncio.run(exporter(storage, later).full_records(later.job))
    whole = build_epoch(2, found, later.job.states, states_from_rows(read_rows(first)))
    assert merged == table_bytes("listing_state", whole.state)
    kept = {row["zpid"] for row in read_rows(first)} - {r.zpid for r in later.job.confirmed.records}
    assert kept and entry["rows"] == len(whole.state) == len(read_rows(merged))
