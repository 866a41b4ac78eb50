"""The miner's S3 uploads: a spool and a ledger on disk, a background worker that never blocks.

``enqueue`` encodes a zipcode's records (``common/s3_files.py``), writes the
file to a spool directory and a ``pending`` row to the upload ledger
(``uploads.sqlite`` in the miner's workdir, WAL), and returns: no network on
that path, so a validator's ``collect`` never waits on S3. A worker task
uploads pending files through an ``UploadTarget`` with exponential backoff
and jitter, at most ``upload_max_attempts`` times (then ``failed``; the
records stay in the miner's store). After a crash or ``kill -9`` the next
``start`` picks up every ``pending`` row: the spool file is written
atomically before its row, and S3 puts are idempotent (the key is the
content hash), so an upload cut in the middle is simply done again.

    uploader = await Uploader.open(workdir, target, hotkey, settings)
    await uploader.start()
    await uploader.enqueue("epoch-12", "ZILLOW_SOLD", "77494", records, nonce)  # after storing
    files = await uploader.manifest_files("epoch-12", [("ZILLOW_SOLD", "77494")])  # on collect
    await uploader.close()

``manifest_files`` lists a zipcode's file only once the latest file enqueued
for it is uploaded, so a manifest never points at an object that is not
there yet or at an older content than its records.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path

import aiohttp

from common.backoff import backoff_s
from common.manifest import ManifestFile
from common.s3_files import EncodedFile, encode_zipcode_file
from common.s3_layout import ObjectKey, build_key, parse_epoch_id
from common.waits import wait_event
from config.storage import S3Settings
from scraping.upload_ledger import PENDING, UploadLedger, UploadRow
from scraping.upload_targets import UploadError, UploadTarget

logger = logging.getLogger(__name__)

LEDGER_FILE = "uploads.sqlite"
SPOOL_DIR = "upload-spool"
IDLE_POLL_S = 30.0  # the worker looks at the ledger at least this often
RETENTION_S = 14 * 24 * 3600.0  # ledger rows older than this are pruned at start


class Uploader:
    """Background uploads of a miner's zipcode files; see the module docstring."""

    def __init__(
        self,
        ledger: UploadLedger,
        target: UploadTarget,
        hotkey: str,
        settings: S3Settings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger = ledger
        self.target = target
        self.hotkey = hotkey
        self.settings = settings
        self._rng = rng or random.Random()
        self._worker: asyncio.Task | None = None
        self._inflight: dict[int, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()

    @classmethod
    async def open(
        cls, workdir: Path, target: UploadTarget, hotkey: str, settings: S3Settings
    ) -> Uploader:
        """An uploader whose ledger and spool live in ``workdir``."""
        ledger = await UploadLedger.open(Path(workdir) / LEDGER_FILE, Path(workdir) / SPOOL_DIR)
        return cls(ledger, target, hotkey, settings)

    async def start(self) -> None:
        """Tidy the ledger and start the worker; every pending upload resumes."""
        if self._worker is not None and not self._worker.done():
            return
        pruned, removed = await self.ledger.tidy(time.time() - RETENTION_S)
        counts = await self.ledger.counts()
        logger.info(
            "uploads of %s: %s in the ledger (%d old rows pruned, %d stray spool files removed)",
            self.hotkey,
            counts or "nothing",
            pruned,
            removed,
        )
        self._worker = asyncio.create_task(self._run(), name="s3-uploads")

    async def stop(self) -> None:
        """Stop uploading; uploads cut short stay pending and resume at the next start."""
        tasks = [t for t in (self._worker, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None

    async def close(self) -> None:
        await self.stop()
        await self.ledger.close()

    async def enqueue(
        self,
        epoch_id: str | int,
        source: str,
        zipcode: str,
        records: Iterable[Mapping],
        nonce: str | None = None,
    ) -> EncodedFile | None:
        """Encode and spool one zipcode's records for upload; returns the file, or None.

        Local disk only, never the network. None (with a warning) when the
        epoch, source, zipcode or nonce is malformed or the file is over
        ``max_file_bytes``: validators would reject it anyway.
        """
        try:
            epoch = parse_epoch_id(epoch_id)
            encoded = await asyncio.to_thread(
                encode_zipcode_file, zipcode, list(records), epoch_nonce=nonce
            )
            build_key("", self.hotkey, epoch, source, zipcode, encoded.content_hash)
        except ValueError as exc:
            logger.warning("not uploading %s/%s of %s: %s", source, zipcode, epoch_id, exc)
            return None
        if len(encoded.body) > self.settings.max_file_bytes:
            logger.warning(
                "not uploading %s/%s of epoch %d: %d bytes over the %d cap",
                source,
                zipcode,
                epoch,
                len(encoded.body),
                self.settings.max_file_bytes,
            )
            return None
        await self.ledger.add(epoch, source, zipcode, encoded)
        self._idle.clear()
        self._wake.set()
        return encoded

    async def manifest_files(
        self, epoch_id: str | int, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[ManifestFile]]:
        """The uploaded file of each (source, zipcode), for the manifest's ``files``."""
        try:
            epoch = parse_epoch_id(epoch_id)
        except ValueError:
            return {}
        found = await self.ledger.files(epoch, pairs)
        return {pair: [file] for pair, file in found.items()}

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` passes (False)."""
        return await wait_event(self._idle, timeout)

    def _backoff(self, attempts: int) -> float:
        return backoff_s(
            attempts - 1,
            base_s=self.settings.upload_backoff_base_s,
            cap_s=self.settings.upload_backoff_cap_s,
            jitter=self._rng.random(),
        )

    async def _run(self) -> None:
        concurrency = self.settings.upload_concurrency
        while True:
            self._wake.clear()
            delay = IDLE_POLL_S
            if len(self._inflight) < concurrency:
                rows = await self.ledger.due(
                    time.time(), concurrency - len(self._inflight), self._inflight
                )
                for row in rows:
                    task = asyncio.create_task(self._upload(row), name=f"upload-{row.id}")
                    self._inflight[row.id] = task
                    task.add_done_callback(partial(self._done, row.id))
                if rows:
                    continue
                if not self._inflight and (await self.ledger.counts()).get(PENDING, 0) == 0:
                    self._idle.set()
                next_at = await self.ledger.next_due(self._inflight)
                if next_at is not None:
                    delay = min(IDLE_POLL_S, max(0.01, next_at - time.time()))
            await wait_event(self._wake, delay)  # keeps stop()'s cancellation (common/waits.py)

    def _done(self, row_id: int, task: asyncio.Task) -> None:
        self._inflight.pop(row_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("upload row %d: ledger update failed", row_id, exc_info=task.exception())
        self._wake.set()

    async def _upload(self, row: UploadRow) -> None:
        body = await self.ledger.read_spool(row.content_hash)
        if body is None:
            logger.error("upload %s: spool file missing or corrupt; giving up", row.content_hash)
            await self.ledger.mark_failed(row, "spool file missing or corrupt")
            return
        parts = ObjectKey(self.hotkey, row.epoch, row.source, row.zipcode, row.content_hash)
        try:
            key = await asyncio.wait_for(self.target.put(parts, body), self.settings.call_timeout_s)
        except UploadError as exc:
            await self._retry(row, str(exc), permanent=exc.permanent)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            await self._retry(row, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a target bug must not kill the worker: retry, bounded
            logger.exception("upload of %s/%s: unexpected error", row.source, row.zipcode)
            await self._retry(row, f"{type(exc).__name__}: {exc}")
        else:
            await self.ledger.mark_uploaded(row, key)
            logger.info(
                "uploaded %s (%d bytes, %d records, attempt %d)",
                key,
                row.size,
                row.record_count,
                row.attempts + 1,
            )

    async def _retry(self, row: UploadRow, error: str, *, permanent: bool = False) -> None:
        attempts = row.attempts + 1
        if permanent or attempts >= self.settings.upload_max_attempts:
            logger.error(
                "upload of %s/%s epoch %d failed for good after %d attempts: %s",
                row.source,
                row.zipcode,
                row.epoch,
                attempts,
                error[:300],
            )
            await self.ledger.mark_failed(row, error)
            return
        wait = self._backoff(attempts)
        logger.warning(
            "upload of %s/%s epoch %d failed (attempt %d/%d), retry in %.1fs: %s",
            row.source,
            row.zipcode,
            row.epoch,
            attempts,
            self.settings.upload_max_attempts,
            wait,
            error[:300],
        )
        await self.ledger.mark_retry(row, time.time() + wait, error)
