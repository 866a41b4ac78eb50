"""Builders for the S3 tests: ss58-shaped hotkeys, synthetic zipcode records, manifests, bombs."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from functools import lru_cache

from common.manifest import Manifest, ManifestFile, ZipcodeManifest
from common.s3_files import EncodedFile, encode_zipcode_file
from common.s3_layout import build_key
from sim.fixtures import NONCE, SOURCE, WORLD, hotkey, zipcodes

__all__ = ["NONCE", "SOURCE", "WORLD", "hotkey", "zipcodes"]  # shared with scripts/bench_s3.py

NOW = 1_800_000_000.0  # a fixed "now" for pure tests


def records(
    zipcode: str, *, scraped_at: float = NOW - 3600, limit: int | None = None
) -> list[dict]:
    stamp = datetime.fromtimestamp(scraped_at, UTC).isoformat()
    out = [dict(r) | {"scraped_at": stamp} for r in WORLD.listings(zipcode)]
    return out[:limit] if limit is not None else out


def encoded(zipcode: str, *, nonce: str | None = NONCE, **kwargs) -> EncodedFile:
    return encode_zipcode_file(zipcode, records(zipcode, **kwargs), epoch_nonce=nonce)


def manifest_entry(
    miner: str, epoch: int, zipcode: str, file: EncodedFile, *, prefix: str = "data"
) -> ZipcodeManifest:
    key = build_key(prefix, miner, epoch, SOURCE, zipcode, file.content_hash)
    return ZipcodeManifest(
        zipcode=zipcode,
        source=SOURCE,
        record_count=len(file.records),
        records=list(file.records),
        files=[
            ManifestFile(
                key=key,
                content_hash=file.content_hash,
                record_count=len(file.records),
                size=len(file.body),
            )
        ],
    )


def manifest(miner: str, epoch: int, entries: list[ZipcodeManifest]) -> Manifest:
    return Manifest(
        epoch_id=f"epoch-{epoch}", epoch_nonce=NONCE, miner_hotkey=miner, zipcodes=entries
    )


@lru_cache(maxsize=2)
def gzip_bomb(gib: int = 1, line_bytes: int | None = None) -> bytes:
    """``gib`` GiB as one valid gzip member of ~1 MB, built without inflating it.

    Zeros by default; with ``line_bytes`` (a power of two up to 1 MiB) lines of
    that many bytes ("x"... and a newline), which pass the line-length cap and
    meet the decompressed-size cap. After a full flush deflate restarts, so
    the same 1 MiB block compresses to the same bytes every time: one block
    repeated 1024 x gib times.
    """
    if line_bytes is None:
        plain = bytes(1 << 20)
    else:
        plain = (b"x" * (line_bytes - 1) + b"\n") * ((1 << 20) // line_bytes)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflate.compress(plain)
    deflate.flush(zlib.Z_FULL_FLUSH)  # the first block may differ (no history yet)
    block = deflate.compress(plain) + deflate.flush(zlib.Z_FULL_FLUSH)
    blocks = 1024 * gib
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(plain, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"
    trailer = struct.pack("<II", crc, (blocks << 20) & 0xFFFFFFFF)
    return header + block * blocks + deflate.flush() + trailer
