"""Wire contracts of the Data API (docs/architecture.md §3.3): every request and answer body.

The server, the validator's client and the miner's upload helper all import
these, so a body that parses on one side parses on the other. Every model
forbids unknown fields and bounds every string and list; floats must be finite.

    block = ZipcodeBlock.model_validate_json(raw)           # GET /v1/epochs/current
    body = UploadUrlRequest(epoch_id=..., source="ZILLOW_SOLD", zipcode="77494",
                            content_hash=sha256_hex, size_bytes=len(data))
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.manifest import MAX_RECORDS_PER_ZIPCODE, ContentHash, RecordHash, Zipcode, Zpid
from common.protocol import Source

API_VERSION = "v1"
BLOCK_VERSION = 1
MAX_BATCHES = 5_000
MAX_ZIPCODES_PER_BATCH = 1_000
MAX_READ_KEYS = 1_000
MAX_STATUS_MINERS = 4_096
MAX_EPOCH_ID = 10**12  # about 450 million years of 4 h epochs; keeps ids inside SQLite's int64
SEED_LIMIT = 2**63  # seeds fit a signed 64-bit integer everywhere

# ss58 addresses are base58 (no 0, O, I, l), 47-48 characters for substrate keys.
Hotkey = Annotated[str, StringConstraints(pattern=r"^[1-9A-HJ-NP-Za-km-z]{46,48}$")]
StateCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
BlockId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
EpochNonce = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
EpochId = Annotated[int, Field(ge=0, le=MAX_EPOCH_ID)]
Count = Annotated[int, Field(ge=0, le=10_000_000)]
ReferenceRecords = Annotated[
    list[tuple[Zpid, RecordHash]], Field(max_length=MAX_RECORDS_PER_ZIPCODE)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- blocks -------------------------------------------------------------------------


class BlockZipcode(_Body):
    """One zipcode of a block; honeypots look exactly like this too."""

    zipcode: Zipcode
    state: StateCode
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    expected_properties: int = Field(ge=0, le=100_000)


class BlockBatch(_Body):
    batch_id: int = Field(ge=0, le=MAX_BATCHES)
    zipcodes: list[BlockZipcode] = Field(min_length=1, max_length=MAX_ZIPCODES_PER_BATCH)


class BlockSettings(_Body):
    """How validators split the block: batch size, groups per batch, miners per group,
    and the coldkey rules of a group."""

    zipcodes_per_batch: int = Field(ge=1, le=MAX_ZIPCODES_PER_BATCH)
    groups_per_batch: int = Field(ge=1, le=64)
    miners_per_group: int = Field(ge=1, le=1_000)
    # The coldkey rules of a group; a block from before they were sent means the defaults.
    max_miners_per_coldkey: int = Field(default=1, ge=1, le=1_000)
    min_different_coldkeys: int = Field(default=5, ge=1, le=1_000)


class ZipcodeBlock(_Body):
    """An epoch's zipcode block: the same for every validator, stable for the epoch.

    ``nonce`` is the epoch nonce miners put into their uploads and manifests;
    ``expires_at`` is the deadline for miners' data (honeypots are revealed
    after it); ``ends_at`` is when the next epoch starts.
    """

    version: int = BLOCK_VERSION
    block_id: BlockId
    epoch_id: EpochId
    issued_at: datetime
    expires_at: datetime
    ends_at: datetime
    seed: int = Field(ge=0, lt=SEED_LIMIT)
    nonce: EpochNonce
    batches: list[BlockBatch] = Field(max_length=MAX_BATCHES)
    config: BlockSettings

    def zipcodes(self) -> list[str]:
        """Every zipcode of the block, batch by batch."""
        return [z.zipcode for batch in self.batches for z in batch.zipcodes]


# --- honeypots ----------------------------------------------------------------------


class HoneypotReference(_Body):
    """The owner's reference answer for one zipcode and source: (zpid, record_hash) pairs."""

    zipcode: Zipcode
    source: Source
    records: ReferenceRecords


class ReferenceSummary(_Body):
    zipcode: Zipcode
    source: Source
    record_count: Count
    added_at: datetime


class ReferenceList(_Body):
    references: list[ReferenceSummary] = Field(max_length=100_000)


class RevealedHoneypot(_Body):
    """A honeypot of a past epoch: its kind and, for reference ones, the answer per source."""

    zipcode: Zipcode
    kind: Literal["reference", "no_residential"]
    references: dict[Source, ReferenceRecords] = Field(default_factory=dict, max_length=8)


class HoneypotReveal(_Body):
    epoch_id: EpochId
    block_id: BlockId
    honeypots: list[RevealedHoneypot] = Field(max_length=MAX_BATCHES)


# --- S3 -----------------------------------------------------------------------------


class UploadUrlRequest(_Body):
    """A miner asks to upload one file: its epoch, source, zipcode, content hash and size."""

    epoch_id: EpochId
    source: Source
    zipcode: Zipcode
    content_hash: ContentHash  # sha256 of the jsonl.gz; also the object's name
    size_bytes: int = Field(ge=1, le=2**40)


class UploadUrl(_Body):
    """A presigned POST: send ``fields`` plus the file (form field ``file``) to ``url``.

    The key is built by the server from the caller's verified hotkey, and the
    POST policy pins the key, caps the size and carries the epoch nonce as
    object metadata, so the URL cannot write anywhere else.
    """

    method: Literal["POST"] = "POST"
    url: str = Field(max_length=2048)
    fields: dict[str, str] = Field(max_length=32)
    key: str = Field(max_length=1024)
    max_bytes: int = Field(ge=1)
    expires_at: datetime
    epoch_nonce: EpochNonce


class ReadUrlsRequest(_Body):
    """A validator asks for presigned reads of one miner's files, narrowed down the key path."""

    miner_hotkey: Hotkey
    epoch_id: EpochId | None = None
    source: Source | None = None
    zipcode: Zipcode | None = None
    max_keys: int = Field(default=200, ge=1, le=MAX_READ_KEYS)
    continuation_token: str | None = Field(default=None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _narrowing_follows_the_key_layout(self) -> ReadUrlsRequest:
        # Keys are .../epoch=E/source=S/zipcode=Z/..., so a filter needs the levels above it.
        if self.source is not None and self.epoch_id is None:
            raise ValueError("source needs epoch_id")
        if self.zipcode is not None and self.source is None:
            raise ValueError("zipcode needs source")
        return self


class ReadUrl(_Body):
    key: str = Field(max_length=1024)
    url: str = Field(max_length=4096)
    size: int = Field(ge=0)
    last_modified: datetime | None = None


class ReadUrls(_Body):
    objects: list[ReadUrl] = Field(max_length=MAX_READ_KEYS)
    next_token: str | None = Field(default=None, max_length=1024)
    expires_at: datetime


# --- validators' cycle reports --------------------------------------------------------

FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]


class MinerStatus(_Body):
    uid: int = Field(ge=0, le=65_535)
    hotkey: Hotkey
    weight: float = Field(ge=0, le=1)
    score: float = Field(ge=0, le=1e9)
    flags: list[FlagName] = Field(default_factory=list, max_length=16)


class StatusReport(_Body):
    """A validator's summary of one consensus cycle (``POST /v1/epochs/{id}/status``)."""

    block_id: BlockId | None = None
    plan_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{8,128}$")
    groups: Count = 0
    assignments: Count = 0
    acknowledged: Count = 0
    completed: Count = 0
    batches: Count = 0
    confident_batches: Count = 0
    mean_batch_confidence: float | None = Field(default=None, ge=0, le=1)
    flagged_miners: Count = 0
    honeypot_flags: Count = 0
    # Spot checks through the validator's own source: how many were asked, and
    # how many gave no verdict (source down, timeout, a verifier's bug). A cycle
    # whose checks mostly failed judged on consensus alone.
    spot_checks: Count = 0
    spot_checks_failed: Count = 0
    spot_checks_mostly_failed: bool = False
    weights_set: bool = False
    miners: list[MinerStatus] = Field(default_factory=list, max_length=MAX_STATUS_MINERS)
    notes: str | None = Field(default=None, max_length=1000)


class StatusAccepted(_Body):
    epoch_id: EpochId
    validator_hotkey: Hotkey
    received_at: datetime


class Health(_Body):
    status: Literal["ok"] = "ok"
    hotkey: str = Field(max_length=64)
    epoch_id: EpochId
    metagraph_block: int | None = None
    # Whether the bucket answers (None: this Data API serves no S3). Validators
    # watch it through each upload window (vali_utils/storage_watch.py).
    storage: Literal["ok", "failing"] | None = None
    # The Data API's own database (docs/data_api.md, operations): when it fails,
    # every signed call answers 503 with Retry-After until it is back.
    store: Literal["sqlite", "postgresql"] | None = None
    store_status: Literal["ok", "failing"] | None = None
