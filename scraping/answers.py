"""What a miner answers to ``collect`` and ``reveal`` (commit-reveal: docs/architecture.md §3.7).

``collect`` answers status, progress and the commitment to the work done so
far, signed by the miner's hotkey when a signer is given, never the
manifest; ``reveal``, after the deadline, the manifest of a commitment the
miner issued and the assignment's salt. Everything is read from the store
(``scraping/collect.py`` has the queries), so a restarted miner answers alike.

    answers = StoredAnswers(store, hotkey, signer, uploader)
    answer = await answers.answer(caller, request)   # a collect or a reveal
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from common.chain import NeuronInfo
from common.manifest import manifest_commitment
from common.protocol import AssignmentStatus, DataAssignmentRequest, Progress, commitment_message
from common.signed_http import RequestRefused
from scraping.collect import (
    StoredAssignment,
    answered_lookups,
    commit_work,
    covered_by,
    finished_work,
    manifest_from_rows,
    record_commitment,
    reply,
    stored_assignment,
)
from scraping.lookups import property_answers
from scraping.store import MinerStore
from scraping.uploads import Uploader

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class StoredAnswers:
    """Answers collect and reveal requests from the miner's store."""

    store: MinerStore
    hotkey: str
    # The hotkey's keypair (``sign(bytes) -> bytes``): commitments go out signed,
    # proof for the validator of what this miner committed. None: unsigned.
    signer: object | None = None
    uploader: Uploader | None = None  # the uploaded files a revealed manifest lists (None: off)

    async def answer(
        self, caller: NeuronInfo, request: DataAssignmentRequest
    ) -> DataAssignmentRequest:
        """A ``collect`` or ``reveal`` of an assignment this caller sent."""
        found = await self.store.run(
            lambda db: stored_assignment(db, caller.hotkey, request.request_id)
        )
        if found is None:
            return reply(request, AssignmentStatus.REJECTED, error="unknown request_id")
        if request.phase == "reveal":
            return await self._reveal(found, caller, request)
        return await self._collect(found, caller, request)

    async def _collect(
        self, found: StoredAssignment, caller: NeuronInfo, request: DataAssignmentRequest
    ) -> DataAssignmentRequest:
        """Status, progress and the commitment to the work done so far; never the manifest."""
        status = AssignmentStatus(found.status)
        if found.lookups:
            rows = await self.store.run(lambda db: answered_lookups(db, found.key))
            progress = Progress(
                zipcodes_done=len(rows),
                zipcodes_total=found.zipcodes_total,
                records=sum(r[2] for r in rows),
            )
            return reply(
                request, status, progress=progress, property_answers=property_answers(rows)
            )
        # The status is read before the work: "completed" then means all of it is in.
        work = await self.store.run(lambda db: commit_work(db, found, self.hotkey))
        commitment, covered = work.commitment, work.zipcodes
        if not work.issued:
            # Written before the answer leaves: every commitment a validator holds
            # can be revealed, also after a crash.
            await self.store.write(
                lambda db: record_commitment(db, found.key, commitment, covered, time.time())
            )
            logger.info(
                "assignment %s: commitment %s covers %d zipcodes (validator uid %s, request %s)",
                found.key,
                commitment[:12],
                covered,
                caller.uid,
                request.request_id,
            )
        progress = Progress(
            zipcodes_done=covered,
            zipcodes_total=found.zipcodes_total,
            records=work.records,
        )
        signature = None
        if self.signer is not None:
            message = commitment_message(found.key, found.epoch_id, commitment)
            signature = "0x" + bytes(self.signer.sign(message)).hex()  # type: ignore[attr-defined]
        return reply(
            request,
            status,
            progress=progress,
            commitment=commitment,
            commitment_signature=signature,
        )

    async def _reveal(
        self, found: StoredAssignment, caller: NeuronInfo, request: DataAssignmentRequest
    ) -> DataAssignmentRequest:
        """The manifest of a commitment this miner issued, and the salt; after the deadline only."""
        if found.lookups:
            raise RequestRefused(
                400, "nothing_to_reveal", "property lookups are answered in collect"
            )
        now = time.time()
        if found.deadline_at is not None and now < found.deadline_at:
            deadline = datetime.fromtimestamp(found.deadline_at, UTC).isoformat()
            raise RequestRefused(
                403,
                "reveal_before_deadline",
                f"request {request.request_id}: manifests are revealed after the deadline"
                f" {deadline}, {found.deadline_at - now:.1f}s from now",
            )
        commitment = request.commitment or ""
        covered = await self.store.run(lambda db: covered_by(db, found.key, commitment))
        if covered is None:
            raise RequestRefused(
                404,
                "unknown_commitment",
                f"request {request.request_id}: this miner issued no commitment {commitment[:16]}",
            )
        work = await self.store.run(lambda db: finished_work(db, found.key, covered))
        files = (
            await self.uploader.manifest_files(found.epoch_id, work.zipcode_rows)
            if self.uploader is not None and found.epoch_id
            else {}
        )
        manifest = manifest_from_rows(
            self.hotkey,
            found.epoch_id,
            found.epoch_nonce,
            work.zipcode_rows,
            work.record_rows,
            files,
        )
        if manifest_commitment(manifest, found.salt) != commitment:
            # A finished zipcode's records never change: this is a bug, not a peer's doing.
            raise RuntimeError(f"assignment {found.key}: rebuilt manifest misses its commitment")
        logger.info(
            "assignment %s: revealed %d zipcodes of commitment %s to validator uid %s (request %s)",
            found.key,
            covered,
            commitment[:12],
            caller.uid,
            request.request_id,
        )
        progress = Progress(
            zipcodes_done=covered,
            zipcodes_total=found.zipcodes_total,
            records=len(work.record_rows),
        )
        return reply(
            request,
            AssignmentStatus(found.status),
            progress=progress,
            manifest=manifest,
            commitment=commitment,
            salt=found.salt,
        )
