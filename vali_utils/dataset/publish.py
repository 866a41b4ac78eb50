"""Publishing one epoch of the dataset: full records from miners' files, Parquet, manifest last.

    exporter = DatasetExporter(storage, reader, hotkey, max_file_bytes=settings.s3.max_file_bytes)
    summary = await exporter.publish(outcome_job)      # never raises: a dict saying what happened

Layout, under the storage's root (``docs/dataset.md``)::

    v1/listings/epoch={e}/state={ST}/part-0.parquet
    v1/listing_history/epoch={e}/part-0.parquet
    v1/listing_state/epoch={e}/part-0.parquet
    v1/manifests/epoch={e}.json

Atomic by a manifest written last: the part files of an epoch go first, the
manifest (record count, zipcodes, every file with its sha256, the plan hash,
the validator's hotkey) after them all. An epoch exists for readers only
when its manifest does, and readers read exactly the files it lists
(``vali_utils/dataset/query.py``), so a reader listing the prefix during an
export, or after one that died half way, never sees part of an epoch. (A
staging prefix copied into place would not help: S3 has no atomic rename,
so the copy is as non-atomic as the first write, and costs twice.) An
export that died is redone whole by the next one of that epoch; an epoch
whose manifest exists is never written again.

Full records: for each zipcode the exporter reads the uploaded file of the
reporter holding the most of its confirmed records (``ConfirmedSet.sources``),
then the next, up to ``files_per_zipcode`` reporters, keeping only records
whose fields hash to the confirmed value. Only keys of that reporter's own
files of this epoch and zipcode are fetched (``common/s3_layout.py``): a
manifest naming another miner's object is not read. Reads are bounded like
every other read of a miner's file (``common/s3_files.py``), and decoded off
the event loop. An epoch of which more than half the confirmed records could
not be read (an outage) is not published.

Deadline: reading stops at the exporter's deadline, and the writer, which
runs in a thread that a cancelled await would not stop, checks the deadline
before every file: past it, it writes nothing more (no manifest), so an
export reported failed is never published later behind the report's back.

History: epoch E continues the ``listing_state`` of epoch E-1, and only of
E-1, so that two validators build the same history whatever epochs either
missed. When E-1 has no manifest here, the history restarts: the manifest
says ``history_restarted: true`` and ``previous_epoch: null``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from common.manifest import Manifest
from common.records import PropertyRecord
from common.s3_files import DecodedFile, decode_zipcode_file
from common.s3_layout import InvalidKey, parse_key
from consensus.answers import hash_to_int
from consensus.provenance import ConfirmedRecord, ConfirmedSet
from vali_utils.dataset.parquet import (
    arrow_bytes,
    merged_state,
    read_table,
    state_rows,
    table_bytes,
)
from vali_utils.dataset.rows import EpochTables, build_epoch, states_from_rows
from vali_utils.dataset.schema import DATASET_VERSION
from vali_utils.dataset.storage import DatasetStorage
from vali_utils.s3_reader import (
    FolderPadded,
    ObjectFetcher,
    ObjectMissing,
    ObjectTooLarge,
    StorageUnavailable,
)

logger = logging.getLogger(__name__)

MANIFESTS = f"{DATASET_VERSION}/manifests/"
# Reporters' files read per zipcode while some of its confirmed records are still
# missing: every reporter of a batch's two groups. The first file usually holds
# them all; a record only a few reporters hold (one group's value a tie-break
# settled) may be in a later one.
FILES_PER_ZIPCODE = 20
FETCH_CONCURRENCY = 16
# More of an epoch's confirmed records than this unreadable is an outage, not a few bad
# files: the epoch is not published (it would be published for good, with holes).
MAX_SKIPPED_SHARE = 0.5
# The manifest's ``skipped`` counts: confirmed records no readable file held, and
# files a manifest named that were not its miner's own (files, not records).
UNREAD = "record_not_in_files"
NOT_OWNED = "keys_not_owned"


class ExportIncomplete(RuntimeError):
    """Too few of the confirmed records could be read from miners' files to publish."""


class ExportTimedOut(RuntimeError):
    """The export's deadline passed: nothing more was written, and no manifest."""


def key_owned(key: str, hotkey: str, epoch: int, zipcode: str, prefix: str | None) -> bool:
    """Whether ``key`` is ``hotkey``'s file of ``epoch`` and ``zipcode`` under ``prefix``.

    ``prefix`` None accepts any valid prefix (keys handed out by the Data API
    carry its own). The same layout check the S3 audit makes before a fetch
    (``consensus/s3_audit.py``): a manifest may name only its miner's files.
    """
    try:
        parts = parse_key(key, prefix)
    except InvalidKey:
        return False
    return (parts.hotkey, parts.epoch, parts.zipcode) == (hotkey, epoch, zipcode)


def manifest_key(epoch: int) -> str:
    return f"{MANIFESTS}epoch={epoch}.json"


def manifest_epoch(key: str) -> int | None:
    """The epoch of a manifest key, None for any other key."""
    name = key[len(MANIFESTS) :] if key.startswith(MANIFESTS) else ""
    if not (name.startswith("epoch=") and name.endswith(".json")):
        return None
    digits = name[len("epoch=") : -len(".json")]
    return int(digits) if digits.isdigit() and len(digits) <= 13 else None


def published_epochs(storage: DatasetStorage) -> list[int]:
    """Epochs whose manifest exists, ascending: the only epochs a reader may see."""
    return sorted(e for e in map(manifest_epoch, storage.list(MANIFESTS)) if e is not None)


@dataclass(frozen=True)
class ExportJob:
    """What one cycle hands the exporter."""

    epoch: int
    plan_hash: str
    confirmed: ConfirmedSet
    files: Mapping[tuple[str, str], tuple[str, ...]]  # (hotkey, zipcode) -> object keys
    states: Mapping[str, str] = field(default_factory=dict)  # zipcode -> state (the block's)


@dataclass(eq=False)
class DatasetExporter:
    """Publishes one epoch's confirmed records, read from the reporters' own files."""

    storage: DatasetStorage
    reader: ObjectFetcher | None  # None: a validator that cannot read miners' files
    hotkey: str
    _: KW_ONLY
    max_file_bytes: int
    files_per_zipcode: int = FILES_PER_ZIPCODE
    timeout_s: float = 600.0
    key_prefix: str | None = None  # the bucket prefix miners' keys must be under; None: any
    clock: Callable[[], float] = time.monotonic  # what the deadline is measured on

    async def publish(self, job: ExportJob) -> dict:
        """Export ``job``'s epoch; returns a summary. Never raises: the cycle is done already.

        A failed export is logged with its traceback and reported
        (``status: failed``); weights do not wait for it. Returns once the
        writer has stopped: a failed report means no manifest was written.
        """
        started = time.monotonic()
        try:
            summary = await self.export(job, self.clock() + self.timeout_s)
        except (ExportIncomplete, ExportTimedOut) as exc:  # expected now and then: no traceback
            logger.warning("epoch %d: dataset not exported: %s", job.epoch, exc)
            summary = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}
        except Exception as exc:  # boundary: the dataset must never stop a validator
            logger.exception("epoch %d: dataset export failed", job.epoch)
            summary = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}
        summary.update(location=self.storage.location, seconds=round(time.monotonic() - started, 3))
        return summary

    async def export(self, job: ExportJob, deadline: float | None = None) -> dict:
        """Export, raising on failure (storage, pyarrow missing, ``ExportTimedOut``).

        ``deadline`` is on ``clock``; None: no deadline.
        """
        if await asyncio.to_thread(self._has_manifest, job.epoch):
            logger.info("epoch %d: dataset already published; left as it is", job.epoch)
            return {"status": "exists", "epoch": job.epoch}
        left = None if deadline is None else max(0.0, deadline - self.clock())
        try:
            found, skipped = await asyncio.wait_for(self.full_records(job), left)
        except TimeoutError:
            raise ExportTimedOut(
                f"reading miners' files passed the deadline; epoch {job.epoch} not published"
            ) from None
        confirmed = len(job.confirmed.records)
        unread = skipped[UNREAD]
        if confirmed and unread > MAX_SKIPPED_SHARE * confirmed:
            raise ExportIncomplete(
                f"{unread} of {confirmed} confirmed records unreadable"
                f" ({dict(skipped)}): S3 or the Data API failing; epoch {job.epoch} not published"
            )
        # Not under wait_for: a cancelled await would leave the thread writing. The
        # writer checks the deadline itself, and this returns when it has stopped.
        manifest = await asyncio.to_thread(self.write_epoch, job, found, skipped, deadline)
        logger.info(
            "epoch %d: dataset published to %s: %d records in %d states, %d history rows",
            job.epoch,
            self.storage.location,
            manifest["records"],
            len(manifest["states"]),
            manifest["history_rows"],
        )
        keep = ("epoch", "records", "skipped", "previous_epoch", "history_restarted")
        return {"status": "published", **{k: manifest[k] for k in keep}}

    def _has_manifest(self, epoch: int) -> bool:
        try:
            self.storage.get(manifest_key(epoch))
        except KeyError:
            return False
        return True

    async def full_records(
        self, job: ExportJob
    ) -> tuple[list[tuple[ConfirmedRecord, PropertyRecord, str]], Counter]:
        """Each confirmed record with its fields from a reporter's file; what was not found."""
        by_zipcode: dict[str, list[ConfirmedRecord]] = {}
        for record in job.confirmed.records:
            by_zipcode.setdefault(record.zipcode, []).append(record)
        slots = asyncio.Semaphore(FETCH_CONCURRENCY)
        skipped: Counter = Counter()

        async def one(zipcode: str, wanted: list[ConfirmedRecord]):
            async with slots:
                return await self._zipcode_records(job, zipcode, wanted, skipped)

        parts = await asyncio.gather(*(one(z, w) for z, w in sorted(by_zipcode.items())))
        return [pair for part in parts for pair in part], skipped

    async def _zipcode_records(
        self, job: ExportJob, zipcode: str, wanted: list[ConfirmedRecord], skipped: Counter
    ) -> list[tuple[ConfirmedRecord, PropertyRecord, str]]:
        missing = {(r.zpid, r.record_hash): r for r in wanted}
        out = []
        for hotkey in job.confirmed.sources.get(zipcode, ())[: self.files_per_zipcode]:
            for key in job.files.get((hotkey, zipcode), ()):
                if not key_owned(key, hotkey, job.epoch, zipcode, self.key_prefix):
                    logger.info(
                        "dataset: epoch %d: %s's manifest names %r, not its own file of"
                        " zipcode %s: not read",
                        job.epoch,
                        hotkey,
                        key[:200],
                        zipcode,
                    )
                    skipped[NOT_OWNED] += 1
                    continue
                decoded = await self._read(key, zipcode)
                if decoded is None:
                    continue
                for line in decoded.records:
                    confirmed = missing.pop((line.zpid, hash_to_int(line.record_hash)), None)
                    if confirmed is not None and line.record is not None:
                        out.append((confirmed, line.record, line.record_hash))
            if not missing:
                break
        skipped[UNREAD] += len(missing)
        return out

    async def _read(self, key: str, zipcode: str) -> DecodedFile | None:
        if self.reader is None:
            return None
        try:
            fetched = await self.reader.fetch(key, max_bytes=self.max_file_bytes)
        except (StorageUnavailable, ObjectMissing, ObjectTooLarge, FolderPadded) as exc:
            logger.info("dataset: %s unreadable (%s); trying the next reporter", key, exc)
            return None
        # Off the loop: a file within the caps (73 KB compressed, 63 MB decompressed)
        # holds the loop for 0.2 s, and the validator's loop serves its API meanwhile.
        decoded = await asyncio.to_thread(
            decode_zipcode_file,
            fetched.body,
            zipcode=zipcode,
            max_compressed=self.max_file_bytes,
            keep_records=True,
        )
        return decoded if isinstance(decoded, DecodedFile) else None

    def write_epoch(
        self,
        job: ExportJob,
        found: list[tuple[ConfirmedRecord, PropertyRecord, str]],
        skipped: Counter,
        deadline: float | None = None,
    ) -> dict:
        """Build the tables, write every part file, then the manifest. Blocking.

        Raises ``ExportTimedOut`` before any write past ``deadline`` (on
        ``clock``): the epoch is then left without a manifest.
        """
        previous_epoch, previous = self.previous_state(job.epoch)
        # Only this epoch's zpids of the state become Python rows; the rest of it
        # (every zpid ever confirmed) stays in Arrow and is merged there.
        zpids = sorted({confirmed.zpid for confirmed, _, _ in found})
        before = states_from_rows(state_rows(previous, zpids))
        tables = build_epoch(job.epoch, found, job.states, before)
        files = []
        for key, table, rows in parts(job.epoch, tables):
            arrow = merged_state(previous, rows) if table == "listing_state" else None
            data = table_bytes(table, rows) if arrow is None else arrow_bytes(arrow)
            self._in_time(deadline, job.epoch, key)
            self.storage.put(key, data)
            files.append(
                {
                    "key": key,
                    "table": table,
                    "rows": len(rows) if arrow is None else arrow.num_rows,
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        manifest = {
            "dataset_version": DATASET_VERSION,
            "epoch": job.epoch,
            "plan_hash": job.plan_hash,
            "validator_hotkey": self.hotkey,
            "records": tables.records,
            "zipcodes": sorted({r.zipcode for r, _, _ in found}),
            "states": {s: len(rows) for s, rows in tables.listings.items()},
            "history_rows": len(tables.history),
            "previous_epoch": previous_epoch,
            # E-1 not published here: first_seen_epoch and the history start again.
            "history_restarted": previous_epoch is None,
            "skipped": dict(sorted(skipped.items())),
            "files": files,
        }
        self._in_time(deadline, job.epoch, manifest_key(job.epoch))
        self.storage.put(manifest_key(job.epoch), json.dumps(manifest, indent=1).encode())
        return manifest

    def _in_time(self, deadline: float | None, epoch: int, key: str) -> None:
        if deadline is not None and self.clock() > deadline:
            raise ExportTimedOut(
                f"deadline passed before writing {key}; epoch {epoch} left without a manifest"
            )

    def previous_state(self, epoch: int) -> tuple[int | None, Any]:
        """Epoch ``epoch - 1``'s published ``listing_state``: (epoch - 1, its Arrow table).

        Only E-1, never an older epoch: a validator that missed an epoch would
        otherwise carry other first_seen_epoch and history rows than one that
        did not, for good. (None, {}) when E-1 has no manifest here.
        """
        try:
            manifest = json.loads(self.storage.get(manifest_key(epoch - 1)))
        except KeyError:
            return None, None
        key = next(f["key"] for f in manifest["files"] if f["table"] == "listing_state")
        return epoch - 1, read_table(self.storage.get(key))


def uploaded_files(
    revealed: Iterable[tuple[str, Manifest | None]],
) -> dict[tuple[str, str], tuple[str, ...]]:
    """(hotkey, zipcode) -> keys of the files listed by that miner's revealed manifest.

    Takes (the hotkey the assignment went to, its manifest); a manifest
    signed for another hotkey is skipped, as consensus skips it. Only records
    whose fields hash to a confirmed value are ever taken from these files.
    """
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for hotkey, manifest in revealed:
        if manifest is None or manifest.miner_hotkey != hotkey:
            continue
        for entry in manifest.zipcodes:
            keys = tuple(f.key for f in entry.files) or ((entry.s3_key,) if entry.s3_key else ())
            out.setdefault((hotkey, entry.zipcode), keys)
    return out


def parts(epoch: int, tables: EpochTables) -> list[tuple[str, str, list[dict]]]:
    """(key, table, rows) of every part file of an epoch, in writing order."""
    root = DATASET_VERSION
    out = [
        (f"{root}/listings/epoch={epoch}/state={state}/part-0.parquet", "listings", rows)
        for state, rows in tables.listings.items()
    ]
    out.append(
        (f"{root}/listing_history/epoch={epoch}/part-0.parquet", "listing_history", tables.history)
    )
    out.append(
        (f"{root}/listing_state/epoch={epoch}/part-0.parquet", "listing_state", tables.state)
    )
    return out
