"""Talking to miners during a cycle: send assignments, collect answers, survive restarts.

``MinerExchange`` sends each ``Assignment`` over signed HTTP, polls the
accepted ones until they complete or the deadline passes, and writes what
changed to the validator's store after each round, so a restarted validator
resumes without sending anything twice. A miner that gave no answer at all
(timeout, unreachable) is sent its assignment again, up to
``DISPATCH_ATTEMPTS`` sends; one that refused is not.

    exchange = MinerExchange(client, concurrency=64, poll_s=5, store=store)
    await exchange.dispatch(assignments)
    await exchange.collect(assignments, deadline_wall, epoch)
"""

from __future__ import annotations

import asyncio
import logging
import time

from common.protocol import ROUTE, AssignmentStatus, DataAssignmentRequest
from common.signed_http import SignedClient
from vali_utils.assignments import Assignment, describe_answer
from vali_utils.store import ValidatorStore

logger = logging.getLogger(__name__)

PROGRESS_S = 10.0  # seconds between progress lines of a long phase
DISPATCH_ATTEMPTS = 3  # sends of an assignment a miner did not answer (timeout, unreachable)


class MinerExchange:
    def __init__(
        self,
        client: SignedClient,
        concurrency: int = 64,
        poll_s: float = 5.0,
        request_timeout_s: float = 5.0,
        store: ValidatorStore | None = None,
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.request_timeout_s = request_timeout_s
        self.store = store

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
    ) -> None:
        # Done means completed *and* collected: an acknowledgement can already say
        # "completed" (another validator asked first), with nothing collected yet.
        pending = [a for a in assignments if a.accepted and not a.collected]
        retry = self.to_retry(assignments)
        while (pending or retry) and time.time() < deadline_wall:
            if retry:
                await self.dispatch(retry)
                pending += [a for a in retry if a.accepted]
            await self.bounded(self.poll(a) for a in pending)
            await self.save(epoch, assignments)  # what was collected survives a restart
            pending = [a for a in pending if not a.collected]
            retry = self.to_retry(assignments)
            done = sum(a.status == AssignmentStatus.COMPLETED.value for a in assignments)
            logger.info("epoch %d: collect %d/%d %s completed", epoch, done, len(assignments), what)
            if pending or retry:
                await asyncio.sleep(min(self.poll_s, max(0.0, deadline_wall - time.time())))
        if pending and time.time() >= deadline_wall:
            # A last look at the deadline: partial work counts for what it covers.
            await self.bounded(self.poll(a) for a in pending)

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
        )
        if status != 200 or not isinstance(answer, DataAssignmentRequest):
            assignment.error = f"collect {status}"
            return
        status_before = assignment.status
        assignment.status = answer.status.value if answer.status else None
        if answer.manifest is not None:
            assignment.manifest = answer.manifest
        if answer.property_answers is not None:
            assignment.property_answers = answer.property_answers
        if (
            assignment.status == AssignmentStatus.COMPLETED.value
            and assignment.completed_after_s is None
            and assignment.dispatched_wall is not None
        ):
            assignment.completed_after_s = max(0.0, time.time() - assignment.dispatched_wall)
        # Partial manifests are written at the end of the phase; a status change now.
        if assignment.status != status_before:
            assignment.dirty = True
