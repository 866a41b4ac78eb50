"""The manifest: a miner's compact account of what it scraped for one assignment.

The consensus cycle works on manifests, not on full records: per zipcode the
record count, the ``(zpid, record_hash)`` list, and where the full records
sit in S3 (``files``: key, content hash, record count and size of each
uploaded jsonl.gz, see ``common/s3_layout.py``). Validation here is
structural (types, formats, sizes); whether the manifest tells the truth
about S3 is checked against the objects themselves
(``vali_utils/s3_verify.py``). ``s3_key``/``content_hash`` are the older
single-file form, still accepted.

    manifest = Manifest.model_validate_json(body)      # ValidationError -> 422
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.records import MAX_ZPID_DIGITS, RECORD_HASH_HEX_CHARS

MANIFEST_VERSION = 1
MAX_RECORDS_PER_ZIPCODE = 5000  # 100x the expected 50 listings; more is padding
MAX_ZIPCODES_PER_MANIFEST = 200  # 10x a batch of 20
MAX_FILES_PER_ZIPCODE = 4  # one upload per zipcode and epoch; a few re-scrapes at most
MAX_FILE_BYTES = 2**40  # structural bound only; readers enforce their own (much lower) cap

Zipcode = Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")]
SourceName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]
Zpid = Annotated[str, StringConstraints(pattern=rf"^[0-9]{{1,{MAX_ZPID_DIGITS}}}$")]
RecordHash = Annotated[str, StringConstraints(pattern=rf"^[0-9a-f]{{{RECORD_HASH_HEX_CHARS}}}$")]
ContentHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# Characters the S3 layout can produce; anything else cannot be one of our keys.
ObjectKeyText = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9/=._\-]{1,1024}$", max_length=1024)
]


class ManifestFile(BaseModel):
    """One uploaded zipcode file: where it is and what it holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: ObjectKeyText
    content_hash: ContentHash  # sha256 of the jsonl.gz bytes (also the object's name)
    record_count: int = Field(ge=0, le=MAX_RECORDS_PER_ZIPCODE)
    size: int = Field(ge=1, le=MAX_FILE_BYTES)  # bytes of the jsonl.gz


class ZipcodeManifest(BaseModel):
    """What a miner found in one zipcode for one source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    zipcode: Zipcode
    source: SourceName
    record_count: int = Field(ge=0, le=MAX_RECORDS_PER_ZIPCODE)
    records: list[tuple[Zpid, RecordHash]] = Field(max_length=MAX_RECORDS_PER_ZIPCODE)
    s3_key: str | None = Field(default=None, max_length=1024)
    content_hash: ContentHash | None = None  # sha256 of the uploaded jsonl.gz
    files: list[ManifestFile] = Field(default_factory=list, max_length=MAX_FILES_PER_ZIPCODE)

    @model_validator(mode="after")
    def _count_matches(self) -> ZipcodeManifest:
        if self.record_count != len(self.records):
            raise ValueError(
                f"record_count {self.record_count} but {len(self.records)} records listed"
            )
        return self


class Manifest(BaseModel):
    """A miner's manifest for one assignment (one batch, one epoch)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = MANIFEST_VERSION
    epoch_id: str | None = Field(default=None, max_length=64)
    epoch_nonce: str | None = Field(default=None, max_length=128)
    miner_hotkey: str = Field(min_length=1, max_length=64)
    zipcodes: list[ZipcodeManifest] = Field(max_length=MAX_ZIPCODES_PER_MANIFEST)

    @model_validator(mode="after")
    def _known_version(self) -> Manifest:
        if self.version != MANIFEST_VERSION:
            raise ValueError(f"manifest version {self.version} is not {MANIFEST_VERSION}")
        return self
