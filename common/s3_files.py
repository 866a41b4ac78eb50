"""The zipcode file format: deterministic jsonl.gz out, bounded streaming decode in. Pure.

A zipcode file is gzip (mtime 0, one member) of JSON lines sorted by zpid,
one record per line: the record's normalised fields
(``PropertyRecord.model_dump(mode="json", exclude_none=True)``) plus
``record_hash`` and, when the epoch has one, ``epoch_nonce`` (the Data API's
per-epoch nonce, in every line: it proves the file was made for this epoch,
not replayed from an older one). The same records give the same bytes, so
``content_hash`` (sha256 of the gzip bytes, also the object's name in
``common/s3_layout.py``) is a fingerprint of the content.

    encoded = encode_zipcode_file("77494", records, epoch_nonce=nonce)
    decoded = decode_zipcode_file(body, zipcode="77494")    # DecodedFile | Rejection

Decoding streams: the gzip stream is inflated at most 64 KiB at a time and
parsed line by line, so a gzip bomb is rejected once it passes
``max_decompressed`` bytes, never expanded in memory; compressed bytes are
hashed and dropped as they arrive.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum

from pydantic import ValidationError

from common.records import PropertyRecord, hash_consensus_fields
from common.zipcodes import ZIPCODE
from config.limits import MAX_DECOMPRESSED_BYTES, MAX_FILE_BYTES, MAX_RECORDS_PER_ZIPCODE

NONCE_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,128}")
# Decoding bounds (defaults, from config/limits.py; callers pass S3Settings values).
DEFAULT_MAX_COMPRESSED = MAX_FILE_BYTES
DEFAULT_MAX_DECOMPRESSED = MAX_DECOMPRESSED_BYTES
DEFAULT_MAX_RECORDS = MAX_RECORDS_PER_ZIPCODE
DEFAULT_MAX_LINE_BYTES = 64 * 1024  # a record is ~1 KB of JSON
_INFLATE_STEP = 64 * 1024  # bytes inflated per step: the most a bomb gets at once
_MAX_NONCES = 16  # distinct nonces remembered per file (one is honest)


@dataclass(frozen=True, slots=True)
class EncodedFile:
    """A zipcode file ready to upload, with what it holds."""

    body: bytes
    content_hash: str  # sha256 hex of body
    records: tuple[tuple[str, str], ...]  # (zpid, record_hash), zpid order
    dropped: Mapping[str, int]  # reason -> records left out (invalid, wrong zipcode, duplicate)


def encode_zipcode_file(
    zipcode: str, records: Iterable[Mapping | PropertyRecord], *, epoch_nonce: str | None = None
) -> EncodedFile:
    """Deterministic jsonl.gz of one zipcode's records.

    Records that do not validate, belong to another zipcode, or repeat a zpid
    (the first copy wins, as in the miner's store) are left out and counted.
    Raises ValueError for a bad zipcode or nonce (the caller's bug, not data).
    """
    if not ZIPCODE.fullmatch(zipcode):
        raise ValueError(f"zipcode {zipcode[:16]!r} is not 5 digits")
    if epoch_nonce is not None and not NONCE_PATTERN.fullmatch(epoch_nonce):
        raise ValueError("epoch nonce must be 1-128 characters of [A-Za-z0-9_-]")
    dropped: Counter[str] = Counter()
    lines: dict[int, tuple[str, bytes]] = {}
    for raw in records:
        try:
            record = raw if isinstance(raw, PropertyRecord) else PropertyRecord.model_validate(raw)
        except (ValidationError, TypeError, ValueError):
            dropped["invalid_record"] += 1
            continue
        if record.zipcode != zipcode:
            dropped["wrong_zipcode"] += 1
            continue
        zpid = int(record.zpid)
        if zpid in lines:
            dropped["duplicate_zpid"] += 1
            continue
        line = record.model_dump(mode="json", exclude_none=True)
        line["record_hash"] = record.record_hash
        if epoch_nonce is not None:
            line["epoch_nonce"] = epoch_nonce
        text = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        lines[zpid] = (record.record_hash, text.encode() + b"\n")
    ordered = sorted(lines.items())
    body = gzip.compress(b"".join(text for _, (_, text) in ordered), compresslevel=6, mtime=0)
    return EncodedFile(
        body=body,
        content_hash=hashlib.sha256(body).hexdigest(),
        records=tuple((str(zpid), record_hash) for zpid, (record_hash, _) in ordered),
        dropped=dict(dropped),
    )


class RejectReason(StrEnum):
    TOO_LARGE = "too_large"  # more compressed bytes than the cap
    DECOMPRESSED_TOO_LARGE = "decompressed_too_large"  # a gzip bomb, or padding
    TOO_MANY_RECORDS = "too_many_records"
    LINE_TOO_LONG = "line_too_long"
    NOT_GZIP = "not_gzip"
    TRUNCATED = "truncated"  # the gzip stream ends early
    TRAILING_DATA = "trailing_data"  # bytes after the gzip member


@dataclass(frozen=True, slots=True)
class Rejection:
    """A file refused as a whole, with how far reading got."""

    reason: RejectReason
    detail: str
    compressed_bytes: int
    decompressed_bytes: int


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    zpid: int
    zipcode: str
    record_hash: str  # recomputed from the fields, never the line's claim
    scraped_at: float | None  # unix seconds, as the miner claims
    fields: tuple  # consensus fields (CONSENSUS_FIELDS order), for spot checks
    record: PropertyRecord | None = None  # the whole record, when the decoder keeps them


@dataclass(frozen=True, slots=True)
class DecodedFile:
    content_hash: str  # sha256 hex of the compressed bytes read
    compressed_bytes: int
    decompressed_bytes: int
    records: tuple[DecodedRecord, ...]  # in file order, duplicates kept (checks count them)
    bad_lines: Mapping[str, int]  # reason -> lines that did not give a record
    # Distinct epoch_nonce values of the records ("" for records without one), at most 16.
    nonces: frozenset[str]

    @property
    def lines(self) -> int:
        return len(self.records) + sum(self.bad_lines.values())


class _Rejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileCaps:
    """How much of one file a reader takes before it rejects the file."""

    max_compressed: int = DEFAULT_MAX_COMPRESSED
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
    max_records: int = DEFAULT_MAX_RECORDS
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES


DEFAULT_CAPS = FileCaps()


class ZipcodeFileDecoder:
    """Incremental decoder: ``feed`` chunks as they arrive, then ``finish``.

    Memory stays bounded by the caps whatever the input: compressed bytes are
    hashed and dropped, output is inflated in 64 KiB steps, a line longer than
    ``max_line_bytes`` rejects the file, and so does a record past
    ``max_records``. Never raises on content.
    """

    def __init__(
        self,
        *,
        zipcode: str | None = None,
        caps: FileCaps = DEFAULT_CAPS,
        keep_records: bool = False,
    ) -> None:
        self.zipcode = zipcode
        self.caps = caps
        self.keep_records = keep_records  # the dataset wants every field, checks only the hash
        self._inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # gzip framing only
        self._sha = hashlib.sha256()
        self._compressed = 0
        self._decompressed = 0
        self._pending = b""  # the start of a line whose end has not arrived yet
        self._records: list[DecodedRecord] = []
        self._bad: Counter[str] = Counter()
        self._nonces: set[str] = set()
        self._rejection: Rejection | None = None

    @property
    def rejected(self) -> bool:
        return self._rejection is not None

    def feed(self, chunk: bytes) -> bool:
        """Take the next compressed bytes; False once the file is rejected (stop sending)."""
        if self._rejection is not None:
            return False
        try:
            self._feed(chunk)
        except _Rejected as exc:
            self._reject(exc.reason, str(exc))
        return self._rejection is None

    def finish(self) -> DecodedFile | Rejection:
        """The decoded file, or why it was refused."""
        if self._rejection is None:
            try:
                self._finish()
            except _Rejected as exc:
                self._reject(exc.reason, str(exc))
        if self._rejection is not None:
            return self._rejection
        return DecodedFile(
            content_hash=self._sha.hexdigest(),
            compressed_bytes=self._compressed,
            decompressed_bytes=self._decompressed,
            records=tuple(self._records),
            bad_lines=dict(self._bad),
            nonces=frozenset(self._nonces),
        )

    def _reject(self, reason: RejectReason, detail: str) -> None:
        self._rejection = Rejection(reason, detail, self._compressed, self._decompressed)
        self._records.clear()
        self._pending = b""

    def _feed(self, chunk: bytes) -> None:
        self._compressed += len(chunk)
        if self._compressed > self.caps.max_compressed:
            raise _Rejected(RejectReason.TOO_LARGE, f"over {self.caps.max_compressed} bytes")
        self._sha.update(chunk)
        data = chunk
        while True:
            if self._inflate.eof:
                if data or self._inflate.unused_data:
                    raise _Rejected(RejectReason.TRAILING_DATA, "bytes after the gzip stream")
                return
            try:
                out = self._inflate.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise _Rejected(RejectReason.NOT_GZIP, str(exc)[:200]) from None
            self._decompressed += len(out)
            if self._decompressed > self.caps.max_decompressed:
                raise _Rejected(
                    RejectReason.DECOMPRESSED_TOO_LARGE,
                    f"inflates past {self.caps.max_decompressed} bytes",
                )
            self._take(out)
            data = self._inflate.unconsumed_tail
            # A full step may leave output inside zlib with no input left: ask again.
            if not data and len(out) < _INFLATE_STEP and not self._inflate.eof:
                return

    def _finish(self) -> None:
        if self._compressed == 0:
            raise _Rejected(RejectReason.TRUNCATED, "empty object")
        if not self._inflate.eof:
            raise _Rejected(RejectReason.TRUNCATED, "the gzip stream ends early")
        if self._pending:
            line, self._pending = self._pending, b""
            self._line(line)

    def _take(self, out: bytes) -> None:
        if not out:
            return
        parts = (self._pending + out).split(b"\n")
        self._pending = parts.pop()
        if len(self._pending) > self.caps.max_line_bytes:
            raise _Rejected(
                RejectReason.LINE_TOO_LONG, f"a line over {self.caps.max_line_bytes} bytes"
            )
        for line in parts:
            if len(line) > self.caps.max_line_bytes:
                raise _Rejected(
                    RejectReason.LINE_TOO_LONG, f"a line over {self.caps.max_line_bytes} bytes"
                )
            self._line(line)

    def _line(self, raw: bytes) -> None:
        # Every line counts towards max_records, blank ones too: a file of
        # newlines must not cost millions of loop turns before a cap stops it.
        if len(self._records) + sum(self._bad.values()) >= self.caps.max_records:
            raise _Rejected(RejectReason.TOO_MANY_RECORDS, f"over {self.caps.max_records} lines")
        outcome = _parse_line(raw, self.zipcode, self.keep_records) if raw.strip() else "blank_line"
        if isinstance(outcome, str):
            self._bad[outcome] += 1
            return
        record, nonce = outcome
        self._records.append(record)
        if len(self._nonces) < _MAX_NONCES:
            self._nonces.add(nonce if nonce is not None else "")


def _parse_line(
    raw: bytes, zipcode: str | None, keep: bool = False
) -> tuple[DecodedRecord, str | None] | str:
    """A record and its nonce from one line, or the reason the line gives none."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting or digits
        return "bad_json"
    if not isinstance(obj, dict):
        return "not_object"
    claimed = obj.get("record_hash")
    nonce = obj.get("epoch_nonce")
    if nonce is not None and not (isinstance(nonce, str) and NONCE_PATTERN.fullmatch(nonce)):
        return "bad_nonce"
    try:
        record = PropertyRecord.model_validate(obj)
    except (ValidationError, TypeError, ValueError):
        return "invalid_record"
    if zipcode is not None and record.zipcode != zipcode:
        return "wrong_zipcode"
    fields = record.consensus_fields()
    computed = hash_consensus_fields(fields)  # record.record_hash, without the fields twice
    if claimed is None:
        return "missing_record_hash"
    if claimed != computed:
        return "stored_hash_mismatch"  # the line's own hash does not cover its fields
    scraped = record.scraped_at
    if scraped is not None and scraped.tzinfo is None:
        scraped = scraped.replace(tzinfo=UTC)
    return (
        DecodedRecord(
            zpid=int(record.zpid),
            zipcode=record.zipcode,
            record_hash=computed,
            scraped_at=scraped.timestamp() if scraped is not None else None,
            fields=fields,
            record=record if keep else None,
        ),
        nonce,
    )


def decode_zipcode_file(
    data: bytes | Iterable[bytes],
    *,
    zipcode: str | None = None,
    max_compressed: int = DEFAULT_MAX_COMPRESSED,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    keep_records: bool = False,
) -> DecodedFile | Rejection:
    """Decode a whole file from bytes or an iterable of chunks; never raises on content.

    Reading stops at the first chunk past a cap: an endless iterable costs at
    most ``max_compressed`` bytes.
    """
    caps = FileCaps(max_compressed, max_decompressed, max_records, max_line_bytes)
    decoder = ZipcodeFileDecoder(zipcode=zipcode, caps=caps, keep_records=keep_records)
    chunks = (
        (data[i : i + _INFLATE_STEP] for i in range(0, len(data), _INFLATE_STEP))
        if isinstance(data, bytes | bytearray | memoryview)
        else data
    )
    for chunk in chunks:
        if not decoder.feed(bytes(chunk)):
            break
    return decoder.finish()
