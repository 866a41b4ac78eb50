"""Where a miner's zipcode files go: presigned URLs from the Data API, or its own bucket.

``UploadTarget.put(parts, body)`` stores one file and returns its key; it
raises ``UploadError`` (``permanent`` when trying again cannot help) or lets
a timeout or connection error through, which the uploader retries.

- ``PresignedTarget``: asks ``get_url`` (e.g. the Data API's
  ``POST /v1/s3/upload-url``) for a presigned POST or PUT and sends the
  file with aiohttp. The key comes from the server; it must be exactly the
  file's key in the layout (this miner, epoch, source, zipcode, hash).
- ``DirectS3Target``: boto3 with the owner's credentials (``S3_UPLOAD_MODE=direct``),
  calls on a small thread pool, with botocore connect/read timeouts and
  bounded retries.

    target = PresignedTarget(session, data_api.upload_url)
    key = await target.put(ObjectKey(hotkey, 12, "ZILLOW_SOLD", "77494", sha), body)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

import aiohttp

from common.s3_client import make_client
from common.s3_layout import InvalidKey, ObjectKey, parse_key
from config.storage import S3Settings

CONTENT_TYPE = "application/gzip"  # never Content-Encoding: readers must not inflate for us
_PERMANENT_STATUSES = frozenset({400, 411, 413})  # the request itself is wrong or too big


class UploadError(Exception):
    """An upload that failed; ``permanent`` when another attempt would fail the same way."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class UploadTarget(Protocol):
    async def put(self, parts: ObjectKey, body: bytes) -> str: ...


# get_url(request) -> {"url", "key", "fields"?: {...}, "method"?: "POST"|"PUT",
#                      "headers"?: {...}, "max_bytes"?: int}
GetUploadUrl = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


class PresignedTarget:
    """Uploads through a presigned POST (form fields + file) or PUT URL."""

    def __init__(
        self, session: aiohttp.ClientSession, get_url: GetUploadUrl, *, timeout_s: float = 60.0
    ) -> None:
        self.session = session
        self.get_url = get_url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def put(self, parts: ObjectKey, body: bytes) -> str:
        request = {
            "epoch_id": parts.epoch,
            "source": parts.source,
            "zipcode": parts.zipcode,
            "content_hash": parts.content_hash,
            "size_bytes": len(body),
        }
        try:
            grant = await self.get_url(request)
        except UploadError:
            raise
        except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
            raise UploadError(f"no upload URL: {type(exc).__name__}: {str(exc)[:200]}") from exc
        url, key = grant.get("url"), grant.get("key")
        if not isinstance(url, str) or not isinstance(key, str):
            raise UploadError("the upload grant has no url or key")
        _check_granted_key(key, parts)
        max_bytes = grant.get("max_bytes")
        if isinstance(max_bytes, int) and len(body) > max_bytes:
            raise UploadError(f"{len(body)} bytes over the grant's {max_bytes}", permanent=True)
        fields = grant.get("fields") or {}
        if fields or str(grant.get("method", "PUT")).upper() == "POST":
            form = aiohttp.FormData()
            for name, value in dict(fields).items():
                form.add_field(str(name), str(value))
            # S3 reads the policy fields first; the file must be the last part.
            form.add_field(
                "file", body, filename=f"{parts.content_hash}.jsonl.gz", content_type=CONTENT_TYPE
            )
            call = self.session.post(url, data=form, timeout=self.timeout)
        else:
            headers = {"Content-Type": CONTENT_TYPE, **dict(grant.get("headers") or {})}
            call = self.session.put(url, data=body, headers=headers, timeout=self.timeout)
        async with call as response:
            if response.status in (200, 201, 204):
                return key
            text = (await response.content.read(500)).decode(errors="replace")
            raise UploadError(
                f"HTTP {response.status}: {text[:200]}",
                permanent=response.status in _PERMANENT_STATUSES,
            )


def _check_granted_key(key: str, parts: ObjectKey) -> None:
    """The server's key must name this very file; anything else is a bug worth stopping on."""
    try:
        granted = parse_key(key)
    except InvalidKey as exc:
        raise UploadError(
            f"granted key does not follow the layout: {exc}", permanent=True
        ) from None
    if granted != parts:
        raise UploadError(f"granted key {key[:200]} is not this file's", permanent=True)


class DirectS3Target:
    """Puts files into the owner's bucket with boto3 (calls off the event loop)."""

    def __init__(
        self, client: Any, bucket: str, prefix: str, *, call_timeout_s: float, threads: int = 4
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.call_timeout_s = call_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3-put")

    @classmethod
    def from_settings(cls, settings: S3Settings) -> DirectS3Target:
        """A target for ``settings``' bucket; raises ValueError when no bucket is set."""
        if not settings.bucket:
            raise ValueError("S3_BUCKET is not set: direct uploads need a bucket")
        threads = max(1, settings.upload_concurrency)
        return cls(
            make_client(settings, pool=threads),
            settings.bucket,
            settings.prefix,
            call_timeout_s=settings.call_timeout_s,
            threads=threads,
        )

    async def put(self, parts: ObjectKey, body: bytes) -> str:
        key = parts.key(self.prefix)
        loop = asyncio.get_running_loop()
        work = partial(self._put, key, body)
        try:
            await asyncio.wait_for(loop.run_in_executor(self._executor, work), self.call_timeout_s)
        except TimeoutError:
            raise UploadError(f"put {key}: no answer in {self.call_timeout_s}s") from None
        return key

    def _put(self, key: str, body: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=CONTENT_TYPE)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code", "")
            raise UploadError(
                f"put {key}: {code or status}", permanent=status in _PERMANENT_STATUSES
            ) from exc
        except BotoCoreError as exc:
            raise UploadError(f"put {key}: {type(exc).__name__}") from exc

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
