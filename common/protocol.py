"""Wire contracts between validators and miners (docs/architecture.md §3.2).

``DataAssignmentRequest`` is sent as JSON in a ``btauth/1``-signed
``POST /DataAssignmentRequest``; the miner answers with the same model, the
response fields filled. Every list and string is bounded, so a body that
parses is also a body of sane size.

    request = DataAssignmentRequest(request_id=..., phase="assign", ...)
    body = request.model_dump_json().encode()

Phases (protocol version 2): ``assign`` (acknowledged at once), ``collect``
(status, progress and a ``commitment`` to the manifest, never the manifest,
until the deadline), ``reveal`` (after the deadline: the manifest and the
``salt`` of the ``commitment`` the validator names). ``protocol_version`` is
sent by every sender; a body without it is a version 1 sender, refused with
426 by a version 2 miner. A version 1 miner refuses the unknown field with
422 naming ``protocol_version``, which the validator reports as "the miner
must upgrade".
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.manifest import SALT_BYTES, Manifest
from common.records import RECORD_HASH_HEX_CHARS
from common.zipcodes import Zipcode

ROUTE = "/DataAssignmentRequest"
PROTOCOL_VERSION = 2  # 2: commit before the deadline, reveal after it
LEGACY_PROTOCOL_VERSION = 1  # what a body without protocol_version speaks
MAX_ZIPCODES_PER_SOURCE = 200
MAX_PROPERTY_IDS_PER_SOURCE = 1000


class Source(StrEnum):
    """Data sources a validator may ask for; anything else is rejected with a 422."""

    ZILLOW = "ZILLOW"  # for sale
    ZILLOW_SOLD = "ZILLOW_SOLD"  # recently sold


class AssignmentStatus(StrEnum):
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"


Zpid = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}$")]
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]


class Progress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zipcodes_done: int = Field(ge=0)
    zipcodes_total: int = Field(ge=0)
    records: int = Field(ge=0)


RecordHash = Annotated[str, StringConstraints(pattern=rf"^[0-9a-f]{{{RECORD_HASH_HEX_CHARS}}}$")]
Commitment = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]  # sha256 hex
Salt = Annotated[str, StringConstraints(pattern=rf"^[0-9a-f]{{{2 * SALT_BYTES}}}$")]
# sr25519/ed25519 signatures are 64 bytes: "0x" and 128 hex digits.
HotkeySignature = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{128}$")]


class PropertyAnswer(BaseModel):
    """A miner's lookup of one property id (``property_ids`` mode).

    ``found=False`` says the source has no such listing; a zpid the miner
    could not look up (source down, deadline) is left out of the answer, so
    "does not exist" and "not answered" never look alike.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Source
    zpid: Zpid
    found: bool
    zipcode: Zipcode | None = None
    record_hash: RecordHash | None = None

    @model_validator(mode="after")
    def _found_has_record(self) -> PropertyAnswer:
        if self.found != (self.record_hash is not None and self.zipcode is not None):
            raise ValueError("found needs zipcode and record_hash; not found carries neither")
        return self


class DataAssignmentRequest(BaseModel):
    """One assignment (``assign``), a poll for its commitment (``collect``), or its reveal."""

    model_config = ConfigDict(extra="forbid")

    # Sent by every sender; see sent_protocol_version for a body without it.
    protocol_version: int = Field(default=PROTOCOL_VERSION, ge=1, le=1_000_000)
    request_id: RequestId
    phase: Literal["assign", "collect", "reveal"]
    assignment_mode: Literal["zipcodes", "property_ids"] = "zipcodes"
    zipcode_assignments: dict[
        Source, Annotated[list[Zipcode], Field(max_length=MAX_ZIPCODES_PER_SOURCE)]
    ] = Field(default_factory=dict, max_length=len(Source))
    property_ids: dict[
        Source, Annotated[list[Zpid], Field(max_length=MAX_PROPERTY_IDS_PER_SOURCE)]
    ] = Field(default_factory=dict, max_length=len(Source))
    expected_properties_per_zipcode: int | None = Field(default=None, ge=0, le=100_000)
    batch_id: int | None = Field(default=None, ge=0, le=1_000_000)
    overlap_group: int | None = Field(default=None, ge=0, le=64)
    epoch_id: str | None = Field(default=None, max_length=64)
    # The epoch block's nonce (Data API): miners put it in their uploads and
    # manifests, and data without the right one does not count.
    epoch_nonce: str | None = Field(default=None, pattern=r"^[0-9a-f]{8,128}$")
    expires_at: datetime | None = None
    # Response side, filled by the miner.
    accepted: bool | None = None
    status: AssignmentStatus | None = None
    progress: Progress | None = None
    manifest: Manifest | None = None  # only in a reveal answer (zipcodes mode)
    # collect answers: the commitment to the manifest of the zipcodes done so far,
    # signed by the miner's hotkey (commitment_message); a reveal request names
    # the commitment the validator holds, and its answer carries the salt.
    commitment: Commitment | None = None
    commitment_signature: HotkeySignature | None = None
    salt: Salt | None = None
    property_answers: list[PropertyAnswer] | None = Field(
        default=None, max_length=MAX_PROPERTY_IDS_PER_SOURCE * len(Source)
    )
    error: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _assignment_present(self) -> DataAssignmentRequest:
        if self.phase == "assign":
            if self.assignment_mode == "zipcodes" and not any(self.zipcode_assignments.values()):
                raise ValueError("an assign request in zipcodes mode needs zipcode_assignments")
            if self.assignment_mode == "property_ids" and not any(self.property_ids.values()):
                raise ValueError("an assign request in property_ids mode needs property_ids")
        if self.phase == "reveal" and self.commitment is None:
            raise ValueError("a reveal request names the commitment it holds")
        return self

    def sent_protocol_version(self) -> int:
        """The protocol version the sender spoke: 1 when the body did not say."""
        if "protocol_version" not in self.model_fields_set:
            return LEGACY_PROTOCOL_VERSION
        return self.protocol_version

    def assignment_key(self) -> str:
        """Identity of the work itself: the same for every validator sending it."""
        parts = [
            self.epoch_id or "",
            self.epoch_nonce or "",
            str(self.batch_id),
            str(self.overlap_group),
            self.assignment_mode,
            repr(sorted((s.value, sorted(z)) for s, z in self.zipcode_assignments.items())),
            repr(sorted((s.value, sorted(p)) for s, p in self.property_ids.items())),
        ]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def commitment_message(assignment_key: str, epoch_id: str | None, commitment: str) -> bytes:
    """What a miner's hotkey signs for a commitment: proof of what it committed, and to what."""
    return f"zsubnet/commitment/v1|{assignment_key}|{epoch_id or ''}|{commitment}".encode()


class ErrorBody(BaseModel):
    """JSON error answer: ``{"error": {"code", "message", "request_id"}}``."""

    code: str
    message: str
    request_id: str | None = None
