"""Reading miners' files from S3, bounded: every call timed out, every listing and body capped.

Two small interfaces, so the validator can read with its own credentials
(``DirectS3Reader``) or through presigned URLs from the Data API
(``PresignedReader``) without the callers knowing which:

- ``ObjectFetcher.fetch(key, max_bytes)`` -> ``FetchedObject``; raises
  ``ObjectMissing`` (a 404: evidence only once corroborated, see
  ``vali_utils/s3_audit.fetch_corroborated``), ``FolderPadded`` (the key is
  not among the first ``max_keys_per_miner`` keys of its miner's folder:
  the miner padded it, evidence against it),
  ``ObjectTooLarge`` (over the cap, known from Content-Length or seen while
  streaming: evidence too) or ``StorageUnavailable`` (outage, timeout,
  refused: no evidence about anyone).
- ``MinerLister.list_miner(hotkey, epoch, max_keys)`` -> ``Listing``: paged,
  stopped at ``max_keys`` (``truncated`` says so), ``StorageUnavailable``
  on failure.

    reader = DirectS3Reader.from_settings(settings)
    listing = await reader.list_miner(hotkey, 12, max_keys=settings.max_keys_per_miner)
    body = (await reader.fetch(listing.objects[0].key, max_bytes=settings.max_file_bytes)).body
    await reader.close()

A 403 on a direct read is the validator's own credentials or bucket policy,
so it is ``StorageUnavailable``, never counted against a miner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import aiohttp

from common.s3_client import (
    BucketCalls,
    ListedObject,
    S3Outcome,
    classify,
    listed_objects,
    next_token,
    timestamp,
)
from common.s3_layout import InvalidKey, miner_prefix, parse_key
from config.storage import S3Settings

logger = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
MAX_PAGE_KEYS = 1000  # S3's own page size limit


class StorageUnavailable(Exception):
    """S3 (or the way to it) failed: says nothing about the miner."""


class ObjectMissing(Exception):
    """The object does not exist."""


class ObjectTooLarge(Exception):
    """The object is bigger than the cap; it was not (fully) downloaded."""


class FolderPadded(Exception):
    """The miner's folder holds more keys than the listing cap, and the key is not in it.

    An honest miner uploads a few files per assigned zipcode (the Data API
    caps it), far under ``max_keys_per_miner``: a folder past the cap was
    padded to hide a file, which is evidence against its miner.
    """


@dataclass(frozen=True, slots=True)
class Listing:
    objects: tuple[ListedObject, ...]
    truncated: bool  # stopped at max_keys with more keys left
    pages: int


@dataclass(frozen=True, slots=True)
class FetchedObject:
    key: str
    body: bytes
    last_modified: float | None


class ObjectFetcher(Protocol):
    async def fetch(self, key: str, *, max_bytes: int) -> FetchedObject: ...


class MinerLister(Protocol):
    async def list_miner(self, hotkey: str, epoch: int, *, max_keys: int) -> Listing: ...


class BucketReader(ObjectFetcher, MinerLister, Protocol):
    """Both: what the S3 evaluation needs."""


class DirectS3Reader:
    """boto3 with the validator's credentials; calls run on a bounded thread pool."""

    def __init__(self, calls: BucketCalls, *, page_size: int = MAX_PAGE_KEYS) -> None:
        self.calls = calls
        self.page_size = max(1, min(MAX_PAGE_KEYS, page_size))

    @classmethod
    def from_settings(
        cls, settings: S3Settings, *, page_size: int = MAX_PAGE_KEYS
    ) -> DirectS3Reader:
        """A reader for ``settings``' bucket; raises ValueError when no bucket is set."""
        calls = BucketCalls.from_settings(
            settings,
            threads=settings.eval_concurrency,
            name="s3-read",
            purpose="validators reading miners' files directly",
        )
        return cls(calls, page_size=page_size)

    async def close(self) -> None:
        await self.calls.close()

    async def _call(self, what: str, work: Callable[[], Any]) -> Any:
        try:
            return await self.calls.run(work)
        except TimeoutError:
            raise StorageUnavailable(f"{what}: no answer in {self.calls.call_timeout_s}s") from None

    async def list_miner(self, hotkey: str, epoch: int, *, max_keys: int) -> Listing:
        prefix = miner_prefix(self.calls.prefix, hotkey, epoch)
        objects: list[ListedObject] = []
        token: str | None = None
        pages = 0
        truncated = False
        while len(objects) < max_keys:
            want = min(self.page_size, max_keys - len(objects))
            page = await self._call(f"list {prefix}", partial(self._list_page, prefix, want, token))
            pages += 1
            objects += listed_objects(page, want)
            token = next_token(page)
            truncated = token is not None
            if not truncated:
                break
        return Listing(tuple(objects), truncated, pages)

    async def probe(self) -> None:
        """One key's listing of the bucket: raises StorageUnavailable when S3 does not answer."""
        await self._call("probe", partial(self._list_page, f"{self.calls.prefix}/", 1, None))

    def _list_page(self, prefix: str, max_keys: int, token: str | None) -> dict:
        kwargs = {"Bucket": self.calls.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if token:
            kwargs["ContinuationToken"] = token
        try:
            return self.calls.client.list_objects_v2(**kwargs)
        except Exception as exc:
            raise _translate(exc, f"list {prefix}") from exc

    async def fetch(self, key: str, *, max_bytes: int) -> FetchedObject:
        deadline = time.monotonic() + self.calls.call_timeout_s
        return await self._call(f"get {key}", partial(self._fetch, key, max_bytes, deadline))

    def _fetch(self, key: str, max_bytes: int, deadline: float) -> FetchedObject:
        try:
            response = self.calls.client.get_object(Bucket=self.calls.bucket, Key=key)
        except Exception as exc:
            raise _translate(exc, f"get {key}") from exc
        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if isinstance(length, int) and length > max_bytes:
                raise ObjectTooLarge(f"{key}: {length} bytes, cap {max_bytes}")
            chunks, total = [], 0
            while True:
                try:
                    chunk = body.read(READ_CHUNK)
                except Exception as exc:
                    raise _translate(exc, f"read {key}") from exc
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:  # Content-Length lied or was absent
                    raise ObjectTooLarge(f"{key}: over {max_bytes} bytes while streaming")
                if time.monotonic() > deadline:  # a server dribbling bytes
                    raise StorageUnavailable(f"{key}: body not read before the deadline")
                chunks.append(chunk)
        finally:
            body.close()
        return FetchedObject(key, b"".join(chunks), timestamp(response.get("LastModified")))


def _translate(exc: Exception, what: str) -> Exception:
    """boto3/botocore errors -> ObjectMissing or StorageUnavailable (never the raw error)."""
    failure = classify(exc)
    if failure is None:
        return exc
    if failure.outcome is S3Outcome.MISSING:
        return ObjectMissing(what)
    # A refused request (400) is ours to fix, and a 403 our credentials: never the miner's.
    return StorageUnavailable(f"{what}: {failure.detail}")


# A page of presigned reads: (objects with key, url, size, last_modified; next token).
ReadUrlPage = tuple[list[Mapping[str, Any]], str | None]
ReadUrlLister = Callable[[str, int, int, str | None], Awaitable[ReadUrlPage]]


class PresignedReader:
    """Reads through presigned GET URLs, e.g. from the Data API's ``POST /v1/s3/read-urls``.

    ``read_urls(hotkey, epoch, max_keys, token)`` returns one page of
    ``{"key", "url", "size", "last_modified"}`` and the next token. URLs
    learnt from listings are remembered (bounded); fetching a key not yet
    seen lists its miner's epoch first.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        read_urls: ReadUrlLister,
        settings: S3Settings,
        *,
        max_remembered: int = 100_000,
    ) -> None:
        self.session = session
        self.read_urls = read_urls
        self.settings = settings
        self.max_remembered = max_remembered
        self._urls: dict[str, str] = {}
        self._timeout = aiohttp.ClientTimeout(
            total=settings.call_timeout_s,
            sock_connect=settings.connect_timeout_s,
            sock_read=settings.read_timeout_s,
        )

    async def list_miner(self, hotkey: str, epoch: int, *, max_keys: int) -> Listing:
        objects: list[ListedObject] = []
        token: str | None = None
        pages, truncated = 0, False
        while len(objects) < max_keys:
            want = min(MAX_PAGE_KEYS, max_keys - len(objects))
            try:
                page, token = await asyncio.wait_for(
                    self.read_urls(hotkey, epoch, want, token), self.settings.call_timeout_s
                )
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                raise StorageUnavailable(f"read urls of {hotkey}/{epoch}: {exc!r}"[:300]) from exc
            pages += 1
            for item in page[:want]:
                key, url, size = item.get("key"), item.get("url"), item.get("size")
                if not (isinstance(key, str) and isinstance(url, str) and isinstance(size, int)):
                    continue
                objects.append(ListedObject(key, size, timestamp(item.get("last_modified"))))
                if len(self._urls) < self.max_remembered:
                    self._urls[key] = url
            truncated = token is not None
            if not truncated:
                break
        return Listing(tuple(objects), truncated, pages)

    async def fetch(self, key: str, *, max_bytes: int) -> FetchedObject:
        url = self._urls.get(key)
        if url is None:
            try:
                parts = parse_key(key)
            except InvalidKey as exc:
                raise ObjectMissing(f"{key[:120]}: {exc}") from None
            listing = await self.list_miner(
                parts.hotkey, parts.epoch, max_keys=self.settings.max_keys_per_miner
            )
            url = self._urls.get(key)
            if url is None:
                if listing.truncated:
                    raise FolderPadded(f"{key}: not in the first {len(listing.objects)} keys")
                raise ObjectMissing(key)
        try:
            # auto_decompress off: a Content-Encoding header must not inflate a bomb for us.
            async with self.session.get(
                url, timeout=self._timeout, auto_decompress=False
            ) as response:
                if response.status == 404:
                    raise ObjectMissing(key)
                if response.status != 200:
                    raise StorageUnavailable(f"{key}: HTTP {response.status}")
                if response.content_length is not None and response.content_length > max_bytes:
                    raise ObjectTooLarge(f"{key}: {response.content_length} bytes, cap {max_bytes}")
                chunks, total = [], 0
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ObjectTooLarge(f"{key}: over {max_bytes} bytes while streaming")
                    chunks.append(chunk)
                modified = response.headers.get("Last-Modified")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StorageUnavailable(f"{key}: {type(exc).__name__}") from exc
        return FetchedObject(key, b"".join(chunks), _http_date(modified))


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
