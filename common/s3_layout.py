"""The S3 key layout (docs/architecture.md §3.4), pure.

Keys::

    {prefix}/hotkey={hotkey}/epoch={epoch}/source={source}/zipcode={zip}/{content_hash}.jsonl.gz

Every component is validated both ways: ``build_key`` refuses a bad part and
``parse_key`` refuses any key that is not exactly this shape, so a key read
from a listing or a manifest is safe to log and to compare part by part.
``content_hash`` is the sha256 of the object's bytes (``common/s3_files.py``
makes and reads the files). Epochs are integers; ``parse_epoch_id`` also
takes the cycle's "epoch-12" spelling.

    key = build_key("data", hotkey, 12, "ZILLOW_SOLD", "77494", content_hash)
    parts = parse_key(key, "data")            # ObjectKey, or InvalidKey
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.protocol import Source
from common.zipcodes import ZIPCODE
from config.storage import PREFIX_PATTERN

KEY_SUFFIX = ".jsonl.gz"
# ss58 addresses are base58 (no 0, O, I, l), 46-48 characters for substrate keys.
HOTKEY_PATTERN = re.compile(r"[1-9A-HJ-NP-Za-km-z]{46,48}")
CONTENT_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")

MAX_EPOCH = 10**12  # the Data API's bound on epoch ids
MAX_KEY_LENGTH = 1024  # S3's own limit
_KEY_TAIL = re.compile(
    r"hotkey=(?P<hotkey>[^/]+)/epoch=(?P<epoch>[0-9]{1,13})/source=(?P<source>[^/]+)"
    r"/zipcode=(?P<zipcode>[^/]+)/(?P<hash>[^/]+)\.jsonl\.gz"
)
_SOURCES = frozenset(s.value for s in Source)


class InvalidKey(ValueError):
    """A key, or a part of one, that does not follow the layout."""


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """The parts of one zipcode file's key."""

    hotkey: str
    epoch: int
    source: str
    zipcode: str
    content_hash: str

    def key(self, prefix: str) -> str:
        return build_key(
            prefix, self.hotkey, self.epoch, self.source, self.zipcode, self.content_hash
        )


def _check_parts(hotkey: str, epoch: int, source: str, zipcode: str, content_hash: str) -> None:
    if not isinstance(hotkey, str) or not HOTKEY_PATTERN.fullmatch(hotkey):
        raise InvalidKey(f"hotkey {str(hotkey)[:64]!r} is not an ss58 address")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise InvalidKey(f"epoch {str(epoch)[:20]!r} is not an integer in [0, {MAX_EPOCH}]")
    if source not in _SOURCES:
        raise InvalidKey(f"source {str(source)[:32]!r} is not one of {sorted(_SOURCES)}")
    if not isinstance(zipcode, str) or not ZIPCODE.fullmatch(zipcode):
        raise InvalidKey(f"zipcode {str(zipcode)[:16]!r} is not 5 digits")
    if not isinstance(content_hash, str) or not CONTENT_HASH_PATTERN.fullmatch(content_hash):
        raise InvalidKey(f"content hash {str(content_hash)[:70]!r} is not 64 hex digits")


def check_prefix(prefix: str) -> str:
    """The prefix unchanged when valid (empty is the bucket root); InvalidKey otherwise."""
    if prefix and not PREFIX_PATTERN.fullmatch(prefix):
        raise InvalidKey(f"prefix {prefix[:80]!r} is not path segments of [A-Za-z0-9._-]")
    return prefix


def miner_prefix(prefix: str, hotkey: str, epoch: int | None = None) -> str:
    """The folder holding one miner's files (of one epoch when given), ending in '/'."""
    check_prefix(prefix)
    if not HOTKEY_PATTERN.fullmatch(hotkey):
        raise InvalidKey(f"hotkey {hotkey[:64]!r} is not an ss58 address")
    head = f"{prefix}/" if prefix else ""
    tail = "" if epoch is None else f"epoch={int(epoch)}/"
    return f"{head}hotkey={hotkey}/{tail}"


def build_key(
    prefix: str, hotkey: str, epoch: int, source: str, zipcode: str, content_hash: str
) -> str:
    """The object key of one zipcode file; raises InvalidKey for any bad part."""
    _check_parts(hotkey, epoch, source, zipcode, content_hash)
    return (
        f"{miner_prefix(prefix, hotkey, epoch)}source={source}/zipcode={zipcode}/"
        f"{content_hash}{KEY_SUFFIX}"
    )


def parse_key(key: str, prefix: str | None = None) -> ObjectKey:
    """The parts of a key; raises InvalidKey unless it follows the layout exactly.

    With ``prefix`` None any valid prefix is accepted (keys handed out by the
    Data API carry its own); otherwise the key must start with that prefix.
    """
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii():
        raise InvalidKey("key is not 1-1024 ASCII characters")
    start = key.find("hotkey=")
    if start < 0 or (start > 0 and key[start - 1] != "/"):
        raise InvalidKey(f"key {key[:120]!r} has no hotkey= segment")
    found_prefix = key[: max(0, start - 1)]
    check_prefix(found_prefix)
    if prefix is not None and found_prefix != prefix:
        raise InvalidKey(f"key {key[:120]!r} is not under prefix {prefix!r}")
    match = _KEY_TAIL.fullmatch(key, start)
    if match is None:
        raise InvalidKey(f"key {key[:120]!r} does not follow the layout")
    parts = ObjectKey(
        match["hotkey"], int(match["epoch"]), match["source"], match["zipcode"], match["hash"]
    )
    _check_parts(parts.hotkey, parts.epoch, parts.source, parts.zipcode, parts.content_hash)
    return parts


def parse_epoch_id(epoch_id: str | int) -> int:
    """The epoch number of an id such as 12 or "12" or "epoch-12"; ValueError otherwise."""
    if isinstance(epoch_id, int) and not isinstance(epoch_id, bool):
        number = epoch_id
    elif isinstance(epoch_id, str):
        tail = epoch_id.strip().removeprefix("epoch-")
        if not (tail.isascii() and tail.isdigit() and len(tail) <= 13):
            raise ValueError(f"epoch id {epoch_id[:30]!r} is not a number or 'epoch-N'")
        number = int(tail)
    else:
        raise ValueError(f"epoch id of type {type(epoch_id).__name__}")
    if not 0 <= number <= MAX_EPOCH:
        raise ValueError(f"epoch {number} is out of range")
    return number
