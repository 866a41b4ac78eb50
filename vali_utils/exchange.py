"""Talking to miners during a cycle: send assignments, collect answers, survive restarts.

``MinerExchange`` sends each ``Assignment`` over signed HTTP, polls the
accepted ones until the deadline, and writes what changed to the
validator's store after each round, so a restarted validator resumes
without sending anything twice. A miner that gave no answer at all
(timeout, unreachable) is sent its assignment again, up to
``DISPATCH_ATTEMPTS`` sends; one that refused is not.

Commit, then reveal (docs/architecture.md §3.7): before the deadline a miner's collect
answer carries a commitment to its manifest, never the manifest. The
exchange keeps the last commitment received before the deadline, when it
was first seen and whether it came with status completed (the completion
time); after the deadline ``reveal`` asks each miner for the manifest and
salt of that commitment and keeps only a manifest that hashes to it.
Tie-break lookups (``property_ids``) are answered in collect as before.

What a miner sends is bounded by what it was asked: a reveal is read up to
``reveal_cap`` of its assignment's record bounds, and the manifest kept (and
stored) holds only the zipcodes assigned, each within its bound; a lookup
answer is read up to ``lookup_cap`` and keeps only the zpids asked. The
commitment is checked on the manifest as received (it covers what the miner
built), then the manifest is trimmed.

    exchange = MinerExchange(client, concurrency=64, poll_s=5, store=store)
    await exchange.dispatch(assignments)
    await exchange.collect(assignments, deadline_wall, epoch)
    dropped = await exchange.reveal(assignments, deadline_wall, epoch)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from bittensor import sp_core

from common.manifest import manifest_commitment
from common.protocol import (
    PROTOCOL_VERSION,
    ROUTE,
    AssignmentStatus,
    DataAssignmentRequest,
    commitment_message,
)
from common.signed_http import SignedClient
from vali_utils.assignments import (
    Assignment,
    describe_answer,
    lookup_cap,
    protocol_refusal,
    reveal_cap,
    trim_lookups,
    trim_manifest,
)
from vali_utils.store import ValidatorStore

logger = logging.getLogger(__name__)

PROGRESS_S = 10.0  # seconds between progress lines of a long phase
DISPATCH_ATTEMPTS = 3  # sends of an assignment a miner did not answer (timeout, unreachable)
# Reveals are asked this long after the deadline: a miner whose clock is a little
# behind ours would refuse a reveal "before the deadline".
REVEAL_MARGIN_S = 1.0
REVEAL_ATTEMPTS = 3  # sends of a reveal that got no answer or "before the deadline"
REVEAL_RETRY_S = 1.0  # between those sends
# A zipcode collect answer holds status, progress and a commitment (about 1 KB):
# read no more than this of it, whatever the miner sends.
COLLECT_ANSWER_BYTES = 64 * 1024


def _drop(assignment: Assignment, error: str, dropped: Counter, kind: str, reason: str) -> None:
    """An assignment whose reveal cannot be used: marked, counted under ``kind``, logged."""
    assignment.error = error
    assignment.dirty = True
    dropped[kind] += 1
    miner = assignment.miner
    logger.warning(
        "uid %d (%s), %s: %s", miner.uid, miner.hotkey, assignment.request.request_id, reason
    )


@dataclass(eq=False)
class MinerExchange:
    client: SignedClient
    concurrency: int = 64
    poll_s: float = 5.0
    request_timeout_s: float = 5.0
    store: ValidatorStore | None = None

    async def restore(self, epoch: int, assignments: list[Assignment]) -> None:
        if self.store is None:
            return
        stored = await self.store.progress(epoch)
        for a in assignments:
            progress = stored.get((a.request.request_id, a.miner.hotkey))
            if progress is not None:
                a.restore(progress)

    async def save(
        self,
        epoch: int,
        assignments: list[Assignment],
        phase: str | None = None,
        plan_hash: str | None = None,
        force: bool = False,
    ) -> None:
        """Write the assignments that changed (all of them with ``force``), then the phase."""
        if self.store is None:
            return
        for kind in ("zipcodes", "tiebreak"):
            changed = [
                a for a in assignments if a.kind == kind and (a.dirty or force) and not a.released
            ]
            await self.store.save_progress(
                epoch, kind, ((a.request.request_id, a.miner.hotkey, a.progress()) for a in changed)
            )
            for a in changed:
                a.dirty = False
        if phase is not None:
            await self.store.set_phase(epoch, phase, plan_hash)

    async def bounded(self, jobs, what: str | None = None) -> None:
        """Run the jobs, ``concurrency`` at a time; with ``what``, a progress line every
        ``PROGRESS_S`` seconds while they run (dispatch to dead miners can take a while)."""
        semaphore = asyncio.Semaphore(self.concurrency)
        jobs = list(jobs)
        done = 0

        async def one(job):
            nonlocal done
            async with semaphore:
                await job
            done += 1

        async def report() -> None:
            while True:
                await asyncio.sleep(PROGRESS_S)
                logger.info("%s: %d/%d", what, done, len(jobs))

        ticker = asyncio.create_task(report()) if what else None
        try:
            await asyncio.gather(*(one(job) for job in jobs))
        finally:
            if ticker is not None:
                ticker.cancel()

    async def dispatch(self, assignments: list[Assignment]) -> None:
        """Send every assignment not acknowledged yet.

        One restored from the store without an acknowledgement may still have
        reached the miner before the restart: it is asked for by collect first,
        and sent only when the miner does not know it.
        """

        async def send(assignment: Assignment) -> None:
            if assignment.accepted:
                return
            if assignment.resumed:
                await self.poll(assignment)
                if assignment.status not in (None, AssignmentStatus.REJECTED.value):
                    assignment.accepted = True
                    assignment.dispatched_wall = assignment.dispatched_wall or time.time()
                    assignment.dirty = True
                    return
                assignment.status = None
            assignment.attempts += 1
            status, answer = await self.client.post(
                assignment.endpoint,
                assignment.miner.hotkey,
                ROUTE,
                assignment.request,
                DataAssignmentRequest,
                self.request_timeout_s,
            )
            assignment.dirty = True
            # No answer at all may be a passing hiccup: collect sends it again.
            assignment.retryable = status == 0
            if status == 200 and isinstance(answer, DataAssignmentRequest) and answer.accepted:
                assignment.accepted = True
                assignment.dispatched_wall = time.time()
                assignment.status = answer.status.value if answer.status else None
            else:
                assignment.error = describe_answer(status, answer)
                mismatch = protocol_refusal(status, answer, PROTOCOL_VERSION)
                if mismatch is not None:
                    assignment.error = f"protocol: {mismatch}"
                    logger.warning(
                        "uid %d (%s) refused %s over the protocol version: %s",
                        assignment.miner.uid,
                        assignment.miner.hotkey,
                        assignment.request.request_id,
                        mismatch,
                    )
                    return
                logger.info(
                    "uid %d (%s) did not accept %s: %s",
                    assignment.miner.uid,
                    assignment.miner.hotkey[:10],
                    assignment.request.request_id,
                    assignment.error,
                )

        await self.bounded((send(a) for a in assignments), "dispatch")

    async def collect(
        self,
        assignments: list[Assignment],
        deadline_wall: float,
        epoch: int,
        what: str = "assignments",
    ) -> Counter:
        """Poll until each assignment is done or the deadline passes; returns lookup drops.

        A zipcode assignment is done once its commitment comes with status
        completed: the miner is bound to that commitment (its reveal must match
        it) and its completion time is set, so polling it on would only load
        the miner. One that never completes is polled until the deadline, and
        its last commitment counts. A tie-break lookup's answers to zpids it was
        not asked are dropped (counted, one line per miner at the end).
        """
        pending = [a for a in assignments if a.accepted and not _done(a)]
        retry = self.to_retry(assignments)
        while (pending or retry) and time.time() < deadline_wall:
            if retry:
                await self.dispatch(retry)
                pending += [a for a in retry if a.accepted]
            await self.bounded(self.poll(a) for a in pending)
            await self.save(epoch, assignments)  # what was collected survives a restart
            pending = [a for a in pending if not _done(a)]
            retry = self.to_retry(assignments)
            done = sum(_completed(a) for a in assignments)
            logger.info("epoch %d: collect %d/%d %s completed", epoch, done, len(assignments), what)
            if pending or retry:
                await asyncio.sleep(min(self.poll_s, max(0.0, deadline_wall - time.time())))
        lookups = [a for a in pending if a.tiebreak is not None]
        if lookups and time.time() >= deadline_wall:
            # A last look at the deadline: partial lookups count for what they cover.
            await self.bounded(self.poll(a) for a in lookups)
        dropped: Counter = Counter()
        for a in assignments:
            if a.tiebreak is not None and a.dropped:
                _log_drops(a, "lookup answers")
                dropped.update(a.dropped)
        return dropped

    async def reveal(
        self, assignments: list[Assignment], deadline_wall: float, epoch: int
    ) -> Counter:
        """After the deadline, each miner's manifest for the commitment held; returns drops.

        A manifest that does not hash (with the revealed salt) to the commitment
        is dropped ("reveal_mismatch"), as is one the miner would not reveal
        ("not_revealed"). A miner that never reported completion with its final
        commitment is timed at the deadline.
        """
        dropped: Counter = Counter()
        todo = [
            a
            for a in assignments
            if a.tiebreak is None and a.commitment is not None and not a.collected
        ]
        wait = deadline_wall + REVEAL_MARGIN_S - time.time()
        if todo and wait > 0:
            logger.info("epoch %d: waiting %.1fs for the deadline to ask reveals", epoch, wait)
            await asyncio.sleep(wait)
        await self.bounded((self._reveal(a, dropped) for a in todo), "reveal")
        for a in todo:
            if a.manifest is not None and a.completed_after_s is None and a.dispatched_wall:
                a.completed_after_s = max(0.0, deadline_wall - a.dispatched_wall)
        await self.save(epoch, assignments)
        if todo:
            logger.info(
                "epoch %d: %d of %d commitments revealed%s",
                epoch,
                sum(a.manifest is not None for a in todo),
                len(todo),
                f", dropped {dict(dropped)}" if dropped else "",
            )
        return dropped

    async def _reveal(self, assignment: Assignment, dropped: Counter) -> None:
        request = assignment.request.model_copy(
            update={
                "phase": "reveal",
                "zipcode_assignments": {},
                "commitment": assignment.commitment,
            }
        )
        miner = assignment.miner
        bounds = assignment.bounds()
        for attempt in range(1, REVEAL_ATTEMPTS + 1):
            status, answer = await self.client.post(
                assignment.endpoint,
                miner.hotkey,
                ROUTE,
                request,
                DataAssignmentRequest,
                self.request_timeout_s,
                max_bytes=reveal_cap(bounds),
            )
            if status == 200 and isinstance(answer, DataAssignmentRequest):
                break
            too_early = status == 403 and getattr(answer, "code", "") == "reveal_before_deadline"
            if attempt == REVEAL_ATTEMPTS or not (status == 0 or too_early):
                error = f"reveal {describe_answer(status, answer)}"[:500]
                _drop(assignment, error, dropped, "not_revealed", f"did not reveal: {error}")
                return
            await asyncio.sleep(REVEAL_RETRY_S)
        manifest, salt = answer.manifest, answer.salt
        if (
            manifest is None
            or salt is None
            or manifest_commitment(manifest, salt) != assignment.commitment
        ):
            commitment = (assignment.commitment or "")[:16]
            reason = f"the manifest revealed does not match commitment {commitment}: dropped"
            _drop(assignment, "reveal_mismatch", dropped, "reveal_mismatch", reason)
            return
        # Checked as received (the commitment covers what the miner built); kept trimmed.
        manifest, trimmed = trim_manifest(manifest, assignment.request, bounds)
        if trimmed:
            assignment.dropped = trimmed
            dropped.update(trimmed)
            _log_drops(assignment, "revealed manifest entries")
        assignment.manifest = manifest
        assignment.dirty = True

    @staticmethod
    def to_retry(assignments: list[Assignment]) -> list[Assignment]:
        return [
            a
            for a in assignments
            if not a.accepted and a.retryable and a.attempts < DISPATCH_ATTEMPTS
        ]

    async def poll(self, assignment: Assignment) -> None:
        request = assignment.request.model_copy(
            update={"phase": "collect", "zipcode_assignments": {}}
        )
        status, answer = await self.client.post(
            assignment.endpoint,
            assignment.miner.hotkey,
            ROUTE,
            request,
            DataAssignmentRequest,
            self.request_timeout_s,
            max_bytes=COLLECT_ANSWER_BYTES
            if assignment.tiebreak is None
            else lookup_cap(sum(len(z) for z in assignment.request.property_ids.values())),
        )
        now = time.time()  # when the answer was seen: the validator's clock, never the miner's
        if status != 200 or not isinstance(answer, DataAssignmentRequest):
            assignment.error = f"collect {status}"
            return
        status_before = assignment.status
        assignment.status = answer.status.value if answer.status else None
        if assignment.tiebreak is None:
            self._see_commitment(assignment, answer, now)
        else:
            if answer.property_answers is not None:
                kept, assignment.dropped = trim_lookups(answer.property_answers, assignment.request)
                assignment.property_answers = kept
            if (
                assignment.status == AssignmentStatus.COMPLETED.value
                and assignment.completed_after_s is None
                and assignment.dispatched_wall is not None
            ):
                assignment.completed_after_s = max(0.0, now - assignment.dispatched_wall)
        # Partial answers are written at the end of the phase; a status change now.
        if assignment.status != status_before:
            assignment.dirty = True

    @staticmethod
    def _see_commitment(assignment: Assignment, answer: DataAssignmentRequest, now: float) -> None:
        """Keep a commitment received before the deadline (a manifest sent early is not read)."""
        if answer.commitment is None:
            return
        deadline = assignment.deadline_wall
        if deadline is not None and now >= deadline:
            return  # after the deadline: only what was committed before it counts
        if answer.commitment != assignment.commitment and not _signature_ok(assignment, answer):
            assignment.error = "bad commitment signature"
            logger.warning(
                "uid %d (%s): commitment for %s is unsigned or its signature is bad: not kept",
                assignment.miner.uid,
                assignment.miner.hotkey,
                assignment.request.request_id,
            )
            return
        completed = assignment.status == AssignmentStatus.COMPLETED.value
        if assignment.see_commitment(
            answer.commitment, answer.commitment_signature, completed, now
        ):
            logger.debug(
                "uid %d (%s): %s commitment %s%s",
                assignment.miner.uid,
                assignment.miner.hotkey[:10],
                assignment.request.request_id,
                answer.commitment[:12],
                " (completed)" if assignment.commitment_completed else "",
            )


def _log_drops(assignment: Assignment, what: str) -> None:
    logger.warning(
        "uid %d (%s): %s for %s dropped: %s",
        assignment.miner.uid,
        assignment.miner.hotkey,
        what,
        assignment.request.request_id,
        dict(assignment.dropped),
    )


def _done(assignment: Assignment) -> bool:
    """Nothing more to poll for: collected, or a zipcode commitment marked completed."""
    return assignment.collected or (assignment.tiebreak is None and assignment.commitment_completed)


def _completed(assignment: Assignment) -> bool:
    if assignment.tiebreak is None:
        return assignment.commitment_completed
    return assignment.status == AssignmentStatus.COMPLETED.value


def _signature_ok(assignment: Assignment, answer: DataAssignmentRequest) -> bool:
    """The miner's hotkey signed this commitment for this assignment.

    Every protocol-2 miner signs its commitments, so an unsigned one is
    refused like a forged one: the validator keeps only commitments it can
    show the miner made.
    """
    if answer.commitment is None:
        return True
    if answer.commitment_signature is None:
        return False
    message = commitment_message(
        assignment.request.assignment_key(), assignment.request.epoch_id, answer.commitment
    )
    signature = bytes.fromhex(answer.commitment_signature.removeprefix("0x"))
    try:
        return bool(sp_core.verify(message, signature, assignment.miner.hotkey))
    except ValueError:
        return False
