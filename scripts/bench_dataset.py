#!/usr/bin/env python3
"""The dataset's figures, for ``scripts/bench.py`` (``dataset``; docs/dataset.md).

- ``dataset_export_s``: median of 3 exports of a full cycle (1,000 zipcodes
  of the synthetic world, ~50 listings each, 2 groups x 3 miners, the real
  engine and real jsonl.gz files served from memory) to a local folder:
  fetch and decode the files, build the rows and the history, write Parquet,
  manifest last. ``dataset_export_s3_s``: the same to the S3 emulator (moto,
  one process: its puts are the slow part).
  ``dataset_export_cpu_s``: its CPU time (what a loaded machine does not inflate);
  ``dataset_export_extra_mb``: the most resident memory an export added over
  what the process held before it (the kernel's high-water mark ``VmHWM``,
  reset before each run through ``/proc/self/clear_refs``).
- ``dataset_query_*``: a 10-epoch dataset of that cycle; DuckDB runs one
  query on one state (``WHERE state = 'TX'``) over every published file.
  ``files_read`` / ``files_total`` are DuckDB's own count (EXPLAIN ANALYZE's
  "Total Files Read" and "Scanning Files"); ``bytes_read`` is what the
  process read from disk meanwhile (``/proc/self/io`` rchar), beside
  ``state_bytes`` (that state's files) and ``listings_bytes`` (all listings
  files).

    python scripts/bench_dataset.py
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.dataset_cycle import world_cycle  # noqa: E402
from sim.fixtures import zipcodes  # noqa: E402
from vali_utils.dataset.publish import DatasetExporter  # noqa: E402
from vali_utils.dataset.query import manifest_files, open_dataset  # noqa: E402
from vali_utils.dataset.storage import LocalStorage, open_storage  # noqa: E402

ZIPCODES = 1000
EPOCHS = 10
QUERY_STATE = "TX"
QUERY = f"SELECT count(*), median(price) FROM listings WHERE state = '{QUERY_STATE}'"


def _status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/self/status")


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def _timed_export(storage, cycle, job) -> tuple[float, float, float]:
    """(seconds, extra MB of peak RSS, CPU seconds) of one export."""
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    exporter = DatasetExporter(storage, cycle.reader, "5" + "V" * 47, max_file_bytes=2**22)
    started, cpu = time.perf_counter(), time.process_time()
    summary = asyncio.run(exporter.export(job))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert summary["status"] == "published", summary
    return elapsed, (_status_kb("VmHWM") - before) / 1024, cpu


def bench_dataset() -> dict:
    cycle = world_cycle(1, zipcodes(ZIPCODES))
    records = len(cycle.job.confirmed.records)
    runs = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder:
            runs.append(_timed_export(LocalStorage(Path(folder)), cycle, cycle.job))
    s3_runs = _s3_exports(cycle)
    with tempfile.TemporaryDirectory() as folder:
        storage = LocalStorage(Path(folder))
        for epoch in range(1, EPOCHS + 1):
            # Each epoch's own cycle: the exporter reads only files whose keys name its epoch.
            this = cycle if epoch == 1 else world_cycle(epoch, zipcodes(ZIPCODES))
            exporter = DatasetExporter(storage, this.reader, "5" + "V" * 47, max_file_bytes=2**22)
            asyncio.run(exporter.export(this.job))
        query = _query(storage)
    return {
        "dataset_export_records": records,
        "dataset_export_s": round(statistics.median(r[0] for r in runs), 3),
        "dataset_export_s_runs": [round(r[0], 3) for r in runs],
        "dataset_export_cpu_s": round(statistics.median(r[2] for r in runs), 3),
        "dataset_export_extra_mb": round(max(r[1] for r in runs), 1),
        "dataset_export_s3_s": round(statistics.median(s3_runs), 3) if s3_runs else None,
        **query,
    }


def _s3_exports(cycle) -> list[float]:
    from sim.s3_server import S3Server

    server = S3Server.start()
    try:
        out = []
        for _ in range(3):
            bucket = server.create_bucket()
            storage = open_storage(f"s3://{bucket}/dataset", server.settings(bucket))
            out.append(_timed_export(storage, cycle, cycle.job)[0])
        return out
    finally:
        server.stop()


def _query(storage: LocalStorage) -> dict:
    files = [f for f in manifest_files(storage) if f.table == "listings"]
    with open_dataset(storage) as dataset:
        started, read = time.perf_counter(), _rchar()
        rows = dataset.sql(QUERY).fetchall()
        bytes_read = _rchar() - read
        seconds = time.perf_counter() - started
        profile = dataset.sql(f"EXPLAIN ANALYZE {QUERY}").fetchall()[0][1]
    scanning = re.search(r"Scanning Files: (\d+)/(\d+)", profile)
    total_read = re.search(r"Total Files Read: (\d+)", profile)
    return {
        "dataset_query_epochs": EPOCHS,
        "dataset_query_rows": rows[0][0],
        "dataset_query_s": round(seconds, 4),
        "dataset_query_files_read": int(total_read.group(1)) if total_read else None,
        "dataset_query_files_total": int(scanning.group(2)) if scanning else len(files),
        "dataset_query_state_files": sum(f.state == QUERY_STATE for f in files),
        "dataset_query_bytes_read": bytes_read,
        "dataset_query_state_bytes": sum(f.bytes for f in files if f.state == QUERY_STATE),
        "dataset_query_listings_bytes": sum(f.bytes for f in files),
    }


if __name__ == "__main__":
    print(json.dumps(bench_dataset(), indent=2))
