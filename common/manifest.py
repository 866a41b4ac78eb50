"""The manifest: a miner's compact account of what it scraped for one assignment.

The consensus cycle works on manifests, not on full records: per zipcode the
record count, the ``(zpid, record_hash)`` list, and where the full records
sit in S3 (``files``: key, content hash, record count and size of each
uploaded jsonl.gz, see ``common/s3_layout.py``). Validation here is
structural (types, formats, sizes); whether the manifest tells the truth
about S3 is checked against the objects themselves
(``vali_utils/s3_audit.py``). ``s3_key``/``content_hash`` are the older
single-file form, still accepted.

    manifest = Manifest.model_validate_json(body)      # ValidationError -> 422

A miner does not send its manifest before the assignment's deadline: it
sends ``manifest_commitment(manifest, salt)`` (commit), and the manifest
with the salt after it (reveal); the validator keeps the manifest only when
the two match.

    commitment = manifest_commitment(manifest, salt)  # miner, on every collect
    assert manifest_commitment(revealed, revealed_salt) == held  # validator, after
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.records import MAX_ZPID_DIGITS, RECORD_HASH_HEX_CHARS
from common.zipcodes import Zipcode
from config.limits import MAX_RECORDS_PER_ZIPCODE  # re-exported: the manifest's record cap

MANIFEST_VERSION = 1
MAX_ZIPCODES_PER_MANIFEST = 200  # 10x a batch of 20
MAX_FILES_PER_ZIPCODE = 4  # one upload per zipcode and epoch; a few re-scrapes at most
MAX_FILE_BYTES = 2**40  # structural bound only; readers enforce their own (much lower) cap

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


# --- commit, then reveal (docs/architecture.md §3.7) ----------------------------------

COMMITMENT_DOMAIN = b"zsubnet/manifest-commitment/v1\x00"
SALT_BYTES = 32


def committed_content(manifest: Manifest) -> bytes:
    """The canonical bytes a commitment covers: the manifest's records part.

    Epoch id, nonce, hotkey and, per zipcode, source, zipcode, record count
    and the sorted ``(zpid, record_hash)`` list; zipcodes sorted too, so the
    order a miner lists them in does not matter. ``files`` (and the older
    ``s3_key``/``content_hash``) are left out on purpose: background uploads
    keep finishing until the deadline, so the file list may still grow after
    the last commitment, and it needs no commitment, because every file is
    checked against its S3 object, which the Data API only accepts (upload
    URLs) before the deadline.
    """
    zipcodes = sorted(
        [z.source, z.zipcode, z.record_count, sorted([zpid, h] for zpid, h in z.records)]
        for z in manifest.zipcodes
    )
    document = [
        manifest.version,
        manifest.epoch_id,
        manifest.epoch_nonce,
        manifest.miner_hotkey,
        zipcodes,
    ]
    return json.dumps(document, separators=(",", ":")).encode()


def manifest_commitment(manifest: Manifest, salt: str) -> str:
    """sha256 over the domain, the secret salt (hex) and ``committed_content``, as hex.

    Raises ValueError for a salt that is not ``SALT_BYTES`` bytes of hex.
    """
    raw_salt = bytes.fromhex(salt)
    if len(raw_salt) != SALT_BYTES:
        raise ValueError(f"salt must be {SALT_BYTES} bytes")
    digest = hashlib.sha256(COMMITMENT_DOMAIN)
    digest.update(raw_salt)
    digest.update(committed_content(manifest))
    return digest.hexdigest()


def new_salt() -> str:
    """A fresh secret salt (hex): one per assignment, revealed only after its deadline."""
    return secrets.token_hex(SALT_BYTES)
