"""The miner's side of ``DataAssignmentRequest``: accept at once, scrape in the background.

``assign`` records the assignment and the asking validator, starts the work
if nobody asked for it before (the same work from several validators is
scraped once: it is keyed by its content, not by who sent it) and answers
immediately. ``collect`` answers from the store: status, progress and a
commitment to the manifest of the zipcodes done so far, signed by the
miner's hotkey when the service has its signer; ``reveal``, after the
deadline, the manifest of a commitment it issued and the assignment's salt
(``scraping/collect.py``). A request of another protocol version is refused
with 426. Work survives a restart: unfinished assignments resume when the
service starts.

Validators are served fairly (``scraping/fairness.py``): ``assign`` refuses
work of another epoch (``scraping/epoch_gate.py``) and a validator over its
stake-weighted quota of open assignments (``rejected``, error "quota ..."),
and the scraping takes turns between validators within the source's
concurrency budget, so one validator's flood does not queue ahead of the
others. Work several validators asked for counts for each of them once.

Finished work is pruned once an epoch (``scraping/retention.py``): its rows,
and the service's memory of it, go once its deadline is ``retention.keep_s``
in the past, so a miner's disk and memory stay flat however long it runs.

The batch scraper runs every zipcode through the ``PropertySource``, stores
each zipcode's records as soon as it is scraped (a crash loses at most the
zipcodes in flight) and stops at the assignment's deadline keeping what it has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import Counter

from common.chain import NeuronInfo
from common.manifest import new_salt
from common.protocol import PROTOCOL_VERSION, AssignmentStatus, DataAssignmentRequest
from common.records import RecordDigester
from common.signed_http import RequestRefused
from common.sqlite_tx import transaction
from config.settings import MAX_OPEN_ASSIGNMENTS, REFUSAL_LOG_INTERVAL_S
from scraping.answering import AnswerStrategy, HonestAnswers, Work
from scraping.answers import StoredAnswers
from scraping.collect import reply
from scraping.epoch_gate import EpochGate
from scraping.fairness import FairSlots, Lane, OpenAssignments, QuotaPolicy, RefusalLog
from scraping.lookups import lookup_rows, lookup_with_source
from scraping.retention import FALLBACK_EPOCH_S, Pruned, Retention, prune_finished
from scraping.source import PropertySource
from scraping.store import MinerStore
from scraping.uploads import Uploader

logger = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 3 * 3600.0
OPEN = (AssignmentStatus.ACCEPTED.value, AssignmentStatus.IN_PROGRESS.value)


class MinerService:
    """Serves assign, collect and reveal from a store; owns the background scraping tasks."""

    def __init__(
        self,
        store: MinerStore,
        source: PropertySource,
        hotkey: str,
        concurrency: int = 4,
        answering: AnswerStrategy | None = None,
        uploader: Uploader | None = None,
        signer: object | None = None,
        quotas: QuotaPolicy | None = None,
        epochs: EpochGate | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.hotkey = hotkey
        # What decides the answers: the source, honestly (the local subnet injects others).
        self.answering: AnswerStrategy = answering or HonestAnswers()
        self.uploader = uploader  # S3 uploads of every zipcode stored (None: off)
        self._epochs: dict[str, tuple[str | None, str | None]] = {}  # key -> (epoch_id, nonce)
        self.digester = RecordDigester()
        # The source's concurrency budget, in turns between validators.
        self._slots = FairSlots(concurrency)
        # None: no metagraph (tests, benches): every validator may hold MAX_OPEN_ASSIGNMENTS.
        self.quotas = quotas
        self.epochs = epochs  # None: assignments of any epoch are taken
        # None: keep RETENTION_EPOCHS of the epoch length the gate's clock knows.
        self.retention = retention or Retention.epochs(
            epochs.clock.epoch_seconds
            if epochs is not None and epochs.clock is not None
            else FALLBACK_EPOCH_S
        )
        self._pruner: asyncio.Task | None = None
        self._refusals = RefusalLog(REFUSAL_LOG_INTERVAL_S)
        self._open = OpenAssignments()  # who asked for what is open: the quotas count it
        self._tasks: dict[str, asyncio.Task] = {}
        self._status: dict[str, str] = {}  # assignment key -> status, for stored assignments
        self._pending_writes: set[asyncio.Future] = set()
        # collect and reveal; signer: the hotkey's keypair, so commitments go out signed.
        self.answers = StoredAnswers(store, hotkey, signer, uploader)

    async def start(self) -> None:
        """Resume every assignment a previous run left unfinished."""
        keys = await self.store.run(
            lambda db: [
                r[0] for r in db.execute("SELECT key FROM assignments WHERE status IN (?, ?)", OPEN)
            ]
        )
        owners = await self.store.run(
            lambda db: db.execute(
                "SELECT r.validator, r.key FROM requests r JOIN assignments a ON a.key = r.key"
                " WHERE a.status IN (?, ?)",
                OPEN,
            ).fetchall()
        )
        for validator, key in owners:
            self._own(key, validator)
        for key in keys:
            logger.info("resuming assignment %s", key)
            self._launch(key)
        self._pruner = asyncio.create_task(self._prune_every(), name="miner-prune")

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        # Requests acknowledged a moment ago are written before the store closes.
        await asyncio.gather(*self._pending_writes, return_exceptions=True)

    async def prune(self, now: float | None = None) -> Pruned:
        """Forget finished work whose deadline is ``retention.keep_s`` before ``now``.

        One write transaction deletes its rows; the in-memory maps drop the
        same keys, the refusal log its quiet validators, and the record memo
        starts over (it holds one epoch's listings, not every listing ever
        seen). Returns what was deleted.
        """
        now = time.time() if now is None else now
        cutoff = now - self.retention.keep_s
        pruned = await self.store.write(lambda db: prune_finished(db, cutoff))
        for key in pruned.keys:
            self._status.pop(key, None)
            self._open.finish(key)
        self._refusals.forget_before(cutoff)
        self.digester = RecordDigester()
        if pruned.keys:
            logger.info(
                "pruned %d finished assignments older than %.0fs past their deadline: %s",
                len(pruned.keys),
                self.retention.keep_s,
                pruned.rows,
            )
        return pruned

    async def _prune_every(self) -> None:
        # At start (a miner that was down long has the most to prune), then once an epoch.
        every = self.retention.every_s
        while True:
            try:
                await self.prune()
            except sqlite3.Error:  # disk full, or the file went read-only: try next time
                logger.exception("pruning failed; next try in %.0fs", every)
            except Exception:  # a bug: said with its traceback, and pruning goes on next epoch
                logger.exception("pruning failed unexpectedly; next try in %.0fs", every)
            # On the wall clock's grid, as epochs are: the same point of every epoch, so
            # what is kept between two prunings does not drift from epoch to epoch.
            await asyncio.sleep(every - time.time() % every)

    async def handle(
        self, caller: NeuronInfo, request: DataAssignmentRequest
    ) -> DataAssignmentRequest:
        """Answer one request; raises ``RequestRefused`` (a 4xx) for what cannot be answered."""
        version = request.sent_protocol_version()
        if version != PROTOCOL_VERSION:
            who = "validator" if version < PROTOCOL_VERSION else "miner"
            logger.warning(
                "refused %s from validator uid %s: protocol v%d, this miner speaks v%d",
                request.request_id,
                caller.uid,
                version,
                PROTOCOL_VERSION,
            )
            raise RequestRefused(
                426,
                "unsupported_protocol",
                f"request speaks protocol v{version}; this miner speaks v{PROTOCOL_VERSION}:"
                f" the {who} must upgrade",
            )
        if request.phase == "assign":
            return await self._assign(caller, request)
        return await self.answers.answer(caller, request)  # collect or reveal

    async def _assign(
        self, caller: NeuronInfo, request: DataAssignmentRequest
    ) -> DataAssignmentRequest:
        lookups = request.assignment_mode == "property_ids"
        if lookups and not self.answering.looks_up(self.source):
            return reply(
                request, AssignmentStatus.REJECTED, error="this source cannot look up properties"
            )
        now = time.time()
        expires = request.expires_at.timestamp() if request.expires_at is not None else None
        if expires is not None and expires <= now:
            return reply(request, AssignmentStatus.REJECTED, error="assignment already expired")
        if self.epochs is not None:
            why = self.epochs.refusal(request.epoch_id, request.epoch_nonce, expires, now)
            if why is not None:
                self._log_refusal(caller, request, "not current", why, now)
                return reply(request, AssignmentStatus.REJECTED, error=why)
        key = request.assignment_key()
        known = self._status.get(key)
        if known not in (None, *OPEN) or self._open.holds(caller.hotkey, key):
            # Finished work, or open work this validator already holds: nothing new to count.
            self._remember_request(caller.hotkey, request.request_id, key)
            status = AssignmentStatus(known or AssignmentStatus.ACCEPTED.value)
            return reply(request, status, accepted=True)
        held, quota = self._open.held(caller.hotkey), self._quota(caller.hotkey)
        if held >= quota:
            why = (
                f"quota: validator uid {caller.uid} holds {held} open assignments,"
                f" its quota is {quota} (by stake); retry when some finish"
            )
            self._log_refusal(caller, request, "over quota", why, now)
            return reply(request, AssignmentStatus.REJECTED, error=why)
        # Counted before the store write: concurrent requests see it at once.
        self._own(key, caller.hotkey)
        if known is not None:
            # The work is already stored: only "this validator asked too" is new.
            # That row is written behind the answer (group commit, milliseconds
            # later), so a burst of validators is not serialised on the disk.
            self._remember_request(caller.hotkey, request.request_id, key)
            return reply(request, AssignmentStatus(known), accepted=True)
        deadline = expires if expires is not None else now + DEFAULT_DEADLINE_S
        # Zipcode work is (source, zipcode) pairs; lookup work (source, zpid) pairs.
        # In property_ids mode zipcode_assignments only says where the listings are.
        items = request.property_ids if lookups else request.zipcode_assignments
        pairs = sorted({(s.value, item) for s, values in items.items() for item in values})
        table = "properties (key, source, zpid)" if lookups else "zipcodes (key, source, zipcode)"
        stored = request.model_dump_json(
            include={
                "request_id",
                "assignment_mode",
                "property_ids",
                "zipcode_assignments",
                "batch_id",
                "overlap_group",
                "epoch_id",
                "epoch_nonce",
                "expected_properties_per_zipcode",
            }
        )

        def work(db) -> tuple[str, bool]:
            row = db.execute("SELECT status FROM assignments WHERE key=?", (key,)).fetchone()
            created = row is None
            if created:
                db.execute(
                    "INSERT INTO assignments (key, request_json, status, zipcodes_total,"
                    " created_at, deadline_at, salt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        stored,
                        AssignmentStatus.ACCEPTED.value,
                        len(pairs),
                        time.time(),
                        deadline,
                        new_salt(),
                    ),
                )
                db.executemany(
                    f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?)",
                    [(key, s, item) for s, item in pairs],
                )
            status = row[0] if row else AssignmentStatus.ACCEPTED.value
            db.execute(
                "INSERT OR REPLACE INTO requests (validator, request_id, key, received_at)"
                " VALUES (?, ?, ?, ?)",
                (caller.hotkey, request.request_id, key, time.time()),
            )
            return status, created

        try:
            status, created = await self.store.write(work)
        except BaseException:
            self._open.disown(key, caller.hotkey)
            raise
        self._status.setdefault(key, status)
        if status not in OPEN:
            self._open.disown(key, caller.hotkey)  # finished before a restart: holds no quota
        if created:
            logger.info(
                "assignment %s from validator uid %s: %d %s (key %s)",
                request.request_id,
                caller.uid,
                len(pairs),
                "property lookups" if lookups else "zipcodes",
                key,
            )
            self._launch(key)
        return reply(request, AssignmentStatus(status), accepted=True)

    def _remember_request(self, validator: str, request_id: str, key: str) -> None:
        def work(db) -> None:
            db.execute(
                "INSERT OR REPLACE INTO requests (validator, request_id, key, received_at)"
                " VALUES (?, ?, ?, ?)",
                (validator, request_id, key, time.time()),
            )

        task = asyncio.ensure_future(self.store.write(work))
        self._pending_writes.add(task)
        task.add_done_callback(self._write_done)

    def _quota(self, hotkey: str) -> int:
        return MAX_OPEN_ASSIGNMENTS if self.quotas is None else self.quotas.quota(hotkey)

    def _own(self, key: str, validator: str) -> None:
        if self._open.own(key, validator):
            self._slots.share(key, validator)  # its turns serve the key's waiting zipcodes too

    def _lane(self, key: str) -> Lane:
        return self._slots.lane(key, self._open.owners(key))

    def _log_refusal(
        self, caller: NeuronInfo, request: DataAssignmentRequest, what: str, why: str, now: float
    ) -> None:
        # A flood is thousands of refusals: one line per validator per interval.
        unlogged = self._refusals.due(f"{what}:{caller.hotkey}", now)
        if unlogged is None:
            return
        logger.warning(
            "refused %s from validator uid %s (%s): %s (%d more like it since the last line)",
            request.request_id,
            caller.uid,
            caller.hotkey,
            why,
            unlogged,
        )

    def _write_done(self, task: asyncio.Future) -> None:
        self._pending_writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("could not record a request: %s", task.exception())

    def _launch(self, key: str) -> None:
        if key in self._tasks and not self._tasks[key].done():
            return
        task = asyncio.create_task(self._work(key), name=f"assignment-{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda t, key=key: self._tasks.pop(key, None))

    async def _work(self, key: str) -> None:
        try:
            await self._scrape_assignment(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._open.finish(key)
            logger.exception("assignment %s failed", key)
            reason = str(exc)[:300]
            await self.store.run(
                lambda db: db.execute(
                    "UPDATE assignments SET status=?, error=? WHERE key=?",
                    (AssignmentStatus.FAILED.value, reason, key),
                )
            )
            self._status[key] = AssignmentStatus.FAILED.value
        finally:
            self._epochs.pop(key, None)  # needed while zipcodes are uploaded, not after

    async def _scrape_assignment(self, key: str) -> None:
        row = await self.store.run(
            lambda db: db.execute(
                "SELECT deadline_at, request_json FROM assignments WHERE key=?", (key,)
            ).fetchone()
        )
        request = json.loads(row[1])
        self._epochs[key] = (request.get("epoch_id"), request.get("epoch_nonce"))
        lookups = request.get("assignment_mode") == "property_ids"
        todo = await self.store.run(
            lambda db: db.execute(
                (
                    "SELECT source, zpid FROM properties WHERE key=? AND done=0 ORDER BY zpid"
                    if lookups
                    else "SELECT source, zipcode FROM zipcodes WHERE key=? AND done=0"
                    " ORDER BY zipcode"
                ),
                (key,),
            ).fetchall()
        )
        await self._set_status(key, AssignmentStatus.IN_PROGRESS)
        deadline_at = row[0] or time.time() + DEFAULT_DEADLINE_S
        deadline = time.monotonic() + max(0.0, deadline_at - time.time())
        work = Work(
            key,
            request,
            [tuple(item) for item in todo],
            _epoch_number(request.get("epoch_id")),
            scrape=lambda source, zipcode: self._scrape_zipcode(key, source, zipcode, deadline),
            store=lambda source, zipcode, records: self._store_zipcode(
                key, source, zipcode, records
            ),
            look_up=lambda: lookup_with_source(self.source, todo, deadline, self._lane(key)),
        )
        if lookups:
            await self._look_up(work)
        else:
            await self.answering.answer_zipcodes(work)
        await self.store.run(
            lambda db: db.execute(
                "UPDATE assignments SET status=?, completed_at=? WHERE key=?",
                (AssignmentStatus.COMPLETED.value, time.time(), key),
            )
        )
        self._status[key] = AssignmentStatus.COMPLETED.value
        self._open.finish(key)
        logger.info("assignment %s completed", key)

    async def _scrape_zipcode(
        self, key: str, source_name: str, zipcode: str, deadline: float
    ) -> None:
        async with self._lane(key):
            if time.monotonic() >= deadline:
                return
            result = await self.source.scrape_zipcode(zipcode, source_name, deadline=deadline)
        if result.errors and not result.records:
            logger.warning("zipcode %s (%s): %s", zipcode, key, "; ".join(result.errors)[:200])
            return
        await self._store_zipcode(key, source_name, zipcode, result.records)

    async def _look_up(self, work: Work) -> None:
        """Tie-break lookups: each zpid as the strategy answers it (honestly: the source)."""
        key, todo = work.key, work.todo
        results = await self.answering.answer_lookups(work)
        rows, rejected = lookup_rows(key, results, self.digester)

        def write(db) -> None:
            db.executemany(
                "UPDATE properties SET done=1, found=?, zipcode=?, record_hash=?, record_json=?"
                " WHERE key=? AND source=? AND zpid=?",
                [(found, z, h, j, k, s, zpid) for k, s, zpid, found, z, h, j in rows],
            )

        await self.store.write(write)
        logger.info(
            "lookups %s: %d answered (%d found), %d not answered, %d invalid records",
            key,
            len(rows),
            sum(r[3] for r in rows),
            len(todo) - len(rows) - rejected,
            rejected,
        )

    async def _store_zipcode(
        self, key: str, source_name: str, zipcode: str, raw_records: list
    ) -> None:
        rows, dropped, kept = [], Counter(), []
        seen: set[str] = set()
        for raw in raw_records:
            digest = self.digester.digest(raw)
            if isinstance(digest, str):
                dropped[digest] += 1
                continue
            zpid, record_hash, fields = digest
            if fields[2] != zipcode:
                dropped["wrong_zipcode"] += 1
                continue
            if str(zpid) in seen:
                dropped["duplicate_zpid"] += 1
                continue
            seen.add(str(zpid))
            kept.append(raw)
            rows.append(
                (key, source_name, zipcode, str(zpid), record_hash, json.dumps(raw, default=str))
            )

        def write(db) -> None:
            def work(db):
                done = db.execute(
                    "SELECT done FROM zipcodes WHERE key=? AND source=? AND zipcode=?",
                    (key, source_name, zipcode),
                ).fetchone()
                if done is None or done[0]:
                    # Finished zipcodes never change: commitments issued cover them.
                    return
                db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
                # done_order numbers zipcodes as they finish: a commitment covering n
                # zipcodes is rebuilt from the first n (scraping/collect.py).
                db.execute(
                    "UPDATE zipcodes SET done=1, record_count=?, dropped=?, done_order="
                    "(SELECT COALESCE(MAX(done_order), 0) + 1 FROM zipcodes WHERE key=?)"
                    " WHERE key=? AND source=? AND zipcode=?",
                    (len(rows), sum(dropped.values()), key, key, source_name, zipcode),
                )

            transaction(db, work)

        await self.store.run(write)
        if dropped:
            logger.info("zipcode %s: dropped %s", zipcode, dict(dropped))
        epoch_id, nonce = self._epochs.get(key, (None, None))
        if self.uploader is not None and epoch_id:
            # Spooled to disk and uploaded in the background: never waits on S3.
            await self.uploader.enqueue(epoch_id, source_name, zipcode, kept, nonce)

    async def _set_status(self, key: str, status: AssignmentStatus) -> None:
        self._status[key] = status.value
        await self.store.run(
            lambda db: db.execute(
                "UPDATE assignments SET status=? WHERE key=? AND status IN (?, ?)",
                (
                    status.value,
                    key,
                    AssignmentStatus.ACCEPTED.value,
                    AssignmentStatus.IN_PROGRESS.value,
                ),
            )
        )


def _epoch_number(epoch_id: object) -> int:
    """The trailing number of an epoch id such as "epoch-1234" (0 when there is none)."""
    tail = str(epoch_id or "").rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
