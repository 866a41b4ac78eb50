"""The dataset on the S3 emulator: two epochs exported, read back by DuckDB, never half seen.

Cycles are the real consensus engine over the synthetic world
(``sim/dataset_cycle.py``): real records, real jsonl.gz files, one
fabricator per cycle, and a price cut on every seventh listing in epoch 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="the dataset extra (pyarrow) is not installed")
pytest.importorskip("duckdb", reason="the dataset extra (duckdb) is not installed")

from sim.dataset_cycle import world_cycle
from sim.fixtures import zipcodes
from sim.s3_server import ACCESS_KEY, REGION, SECRET_KEY
from vali_utils.dataset.publish import (
    DatasetExporter,
    manifest_key,
    published_epochs,
)
from vali_utils.dataset.query import open_dataset
from vali_utils.dataset.storage import S3Storage, open_storage

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ZIPCODES = zipcodes(20)
HOTKEY_A = "5" + "A" * 47
HOTKEY_B = "5" + "B" * 47


def price_cut(record: dict) -> dict:
    """Epoch 2's market: every seventh listing 10,000 cheaper."""
    if int(record["zpid"]) % 7 == 0:
        return {**record, "price": record["price"] - 10_000}
    return record


@pytest.fixture(scope="module")
def cycles():
    return {
        1: world_cycle(1, ZIPCODES, fabricators=1),
        2: world_cycle(2, ZIPCODES, fabricators=1, edit=price_cut),
    }


def s3_storage(s3, prefix: str) -> S3Storage:
    bucket = s3.create_bucket()
    return open_storage(f"s3://{bucket}/{prefix}", s3.settings(bucket))  # type: ignore[return-value]


def export(storage, cycle, hotkey: str = HOTKEY_A) -> dict:
    exporter = DatasetExporter(storage, cycle.reader, hotkey, max_file_bytes=2**22)
    return asyncio.run(exporter.export(cycle.job))


def cli(storage: S3Storage, s3, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "S3_ENDPOINT_URL": s3.endpoint,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "vali_utils.dataset", "--dataset", storage.location, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=True,
    )


def test_two_epochs_read_by_duckdb_from_s3(s3, cycles):
    storage = s3_storage(s3, "dataset")
    for epoch in (1, 2):
        assert export(storage, cycles[epoch])["records"] == len(cycles[epoch].job.confirmed.records)

    out = cli(
        storage,
        s3,
        "query",
        "--format",
        "json",
        "--stats",
        "SELECT epoch, count(*) AS n FROM listings GROUP BY epoch ORDER BY epoch",
    )
    counts = {row["epoch"]: row["n"] for row in json.loads(out.stdout)}
    # What consensus confirmed in each cycle, counted by the engine itself.
    confirmed = {
        e: sum(o.confirmed for o in c.result.zipcodes.values() if not o.honeypot)
        for e, c in cycles.items()
    }
    assert counts == confirmed and all(n > 500 for n in counts.values())
    assert re.search(r"epochs \[1, 2\]: \d+ files", out.stderr)
    # One state: only its listings files are fetched (history and state have no state).
    state = cycles[1].job.states[ZIPCODES[0]]
    out = cli(
        storage,
        s3,
        "query",
        "--state",
        state,
        "--format",
        "json",
        "--stats",
        "SELECT count(*) AS n, count(DISTINCT state) AS states FROM listings",
    )
    keys = [f["key"] for e in (1, 2) for f in json.loads(storage.get(manifest_key(e)))["files"]]
    wanted = [k for k in keys if "/listings/" not in k or f"state={state}/" in k]
    assert f"{len(wanted)} files" in out.stderr and len(wanted) < len(keys) / 2
    assert json.loads(out.stdout)[0]["states"] == 1

    with open_dataset(storage) as dataset:
        zpids = {z for (z,) in dataset.sql("SELECT zpid FROM listings").fetchall()}
        assert cycles[1].fabricated and not (cycles[1].fabricated | cycles[2].fabricated) & zpids
        cuts = dataset.sql(
            "SELECT zpid, previous_price - price, previous_epoch FROM listing_history"
            " WHERE epoch = 2 ORDER BY zpid"
        ).fetchall()
        expected = sorted(z for z in zpids if z % 7 == 0)
        assert [c[0] for c in cuts] == expected
        assert {(c[1], c[2]) for c in cuts} == {(10_000, 1)}
        first_seen = dataset.sql(
            "SELECT DISTINCT first_seen_epoch FROM listings WHERE epoch = 2"
        ).fetchall()
        assert first_seen == [(1,)]


def test_two_validators_write_byte_identical_files(s3, cycles):
    one, two = s3_storage(s3, "validator-a"), s3_storage(s3, "validator-b")
    export(one, cycles[1], HOTKEY_A)
    export(two, cycles[1], HOTKEY_B)
    manifests = [json.loads(s.get(manifest_key(1))) for s in (one, two)]
    assert manifests[0]["validator_hotkey"] != manifests[1]["validator_hotkey"]
    files = [{f["key"]: f["sha256"] for f in m["files"]} for m in manifests]
    assert files[0] == files[1] and len(files[0]) > 3
    for key in files[0]:
        assert one.get(key) == two.get(key)


class PausingStorage:
    """A storage whose writer stops after ``pause_after`` puts until released, or dies there."""

    def __init__(self, inner, pause_after: int, die: bool = False) -> None:
        self.inner, self.pause_after, self.die = inner, pause_after, die
        self.location = inner.location
        self.puts = 0
        self.paused, self.release = threading.Event(), threading.Event()

    def put(self, key: str, data: bytes) -> None:
        if self.puts == self.pause_after:
            self.paused.set()
            if self.die:
                raise OSError("writer killed mid-epoch")
            assert self.release.wait(60)
        self.puts += 1
        self.inner.put(key, data)

    def get(self, key):
        return self.inner.get(key)

    def list(self, prefix):
        return self.inner.list(prefix)

    def local_path(self, key):
        return self.inner.local_path(key)


def test_a_reader_never_sees_part_of_an_epoch(s3, cycles):
    storage = s3_storage(s3, "dataset")
    export(storage, cycles[1])
    slow = PausingStorage(storage, pause_after=4)
    writer = threading.Thread(target=export, args=(slow, cycles[2]))
    writer.start()
    try:
        assert slow.paused.wait(60)
        assert any("epoch=2" in k for k in storage.list("v1/listings/"))  # parts are there...
        with open_dataset(storage) as dataset:  # ...but the epoch is not
            assert dataset.epochs == [1]
            assert dataset.sql("SELECT DISTINCT epoch FROM listings").fetchall() == [(1,)]
            assert dataset.sql("SELECT max(epoch) FROM listing_history").fetchall() == [(1,)]
    finally:
        slow.release.set()
        writer.join(60)
    assert published_epochs(storage) == [1, 2]


def test_an_export_that_died_is_invisible_then_redone(s3, cycles):
    storage = s3_storage(s3, "dataset")
    dying = PausingStorage(storage, pause_after=3, die=True)
    with pytest.raises(OSError):
        export(dying, cycles[1])
    assert published_epochs(storage) == []
    with open_dataset(storage) as dataset:
        assert dataset.sql("SELECT count(*) FROM listings").fetchall() == [(0,)]
    assert export(storage, cycles[1])["status"] == "published"
    assert export(storage, cycles[1])["status"] == "exists"
    with open_dataset(storage) as dataset:
        assert dataset.sql("SELECT count(*) FROM listings").fetchall() == [
            (len(cycles[1].job.confirmed.records),)
        ]


def example_queries() -> list[str]:
    text = (ROOT / "docs" / "dataset.md").read_text()
    return re.findall(r"```sql\n(.*?)```", text.split("## Example queries")[1], re.S)


def test_the_documented_example_queries(s3, cycles):
    queries = example_queries()
    assert len(queries) == 3
    storage = s3_storage(s3, "dataset")
    for epoch in (1, 2):
        export(storage, cycles[epoch])
    truth = cycles[2].truth
    with open_dataset(storage) as dataset:
        medians = dataset.sql(queries[0]).fetchall()
        sold = {
            z: [r.price for r in records if r.listing_status.value == "SOLD"]
            for z, records in truth.items()
        }
        assert medians and all(m == statistics.median(sold[z]) for z, m, _ in medians)
        drops = dataset.sql(queries[1]).fetchall()
        assert drops and {(d[2], d[3], d[6]) for d in drops} == {(1, 2, 10_000)}
        coverage = dataset.sql(queries[2]).fetchall()
        assert sum(row[3] for row in coverage) == sum(
            len(c.job.confirmed.records) for c in cycles.values()
        )
        assert {row[1] for row in coverage} == {r[0].state for r in truth.values()}


def test_a_refused_query_is_one_line_and_exit_2(tmp_path, cycles):
    storage = open_storage(str(tmp_path))
    export(storage, cycles[1])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vali_utils.dataset",
            "--dataset",
            str(tmp_path),
            "query",
            "SELECT no_such_column FROM listings",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("dataset: ") and "no_such_column" in proc.stderr
    assert "Traceback" not in proc.stderr
