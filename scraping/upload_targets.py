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

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Protocol

import aiohttp

from common.s3_client import REFUSED_STATUSES, BucketCalls, S3Outcome, classify
from common.s3_layout import InvalidKey, ObjectKey, parse_key
from config.storage import S3Settings

CONTENT_TYPE = "application/gzip"  # never Content-Encoding: readers must not inflate for us


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
                permanent=response.status in REFUSED_STATUSES,
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

    def __init__(self, calls: BucketCalls) -> None:
        self.calls = calls

    @classmethod
    def from_settings(cls, settings: S3Settings) -> DirectS3Target:
        """A target for ``settings``' bucket; raises ValueError when no bucket is set."""
        return cls(
            BucketCalls.from_settings(
                settings,
                threads=settings.upload_concurrency,
                name="s3-put",
                purpose="direct uploads",
            )
        )

    async def put(self, parts: ObjectKey, body: bytes) -> str:
        key = parts.key(self.calls.prefix)
        try:
            await self.calls.run(partial(self._put, key, body))
        except TimeoutError:
            raise UploadError(f"put {key}: no answer in {self.calls.call_timeout_s}s") from None
        return key

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.calls.client.put_object(
                Bucket=self.calls.bucket, Key=key, Body=body, ContentType=CONTENT_TYPE
            )
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            refused = failure.outcome is S3Outcome.REFUSED
            raise UploadError(f"put {key}: {failure.detail}", permanent=refused) from exc

    async def close(self) -> None:
        await self.calls.close()
