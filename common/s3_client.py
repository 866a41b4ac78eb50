"""The one boto3 boundary: S3 clients from ``S3Settings``, their errors in the project's words.

Every boto3 S3 client of the project is built here (timeouts, bounded
retries, addressing style), every botocore error is sorted here into what it
says about the object, and every ``list_objects_v2`` page is read here.
boto3 is imported lazily: only processes that talk to S3 directly pay for it.

    client = make_client(settings, pool=16)           # miners' direct uploads, validators
    probe = make_probe_client(settings)               # "is S3 there?" within a health request
    calls = BucketCalls.from_settings(settings, threads=4, name="s3-put", purpose="uploads")
    try:
        await calls.run(partial(calls.client.put_object, Bucket=calls.bucket, Key=key, Body=b))
    except Exception as exc:
        failure = classify(exc)  # S3Failure(MISSING | REFUSED | UNAVAILABLE), None: not S3's
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from config.storage import S3Settings

T = TypeVar("T")

# A health probe answers within a health request's time: short timeouts, one attempt.
PROBE_TIMEOUT_S = 2.0
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# The request itself is wrong or too big: the same request will fail the same way.
REFUSED_STATUSES = frozenset({400, 411, 413})


def make_client(settings: S3Settings, *, pool: int = 16) -> Any:
    """A boto3 S3 client with connect/read timeouts and bounded retries from ``settings``.

    ``pool`` is the number of HTTP connections kept (one per worker thread).
    Credentials: ``settings``' pair when set, else boto3's usual chain.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        max_pool_connections=pool,
        signature_version="s3v4",
        # Custom endpoints (MinIO, moto, R2) want path-style keys; AWS picks its own.
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    # A session of its own: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id or None,
        aws_secret_access_key=settings.secret_access_key or None,
        config=config,
    )


def make_probe_client(settings: S3Settings) -> Any:
    """A client that answers "is the bucket there?" fast: short timeouts, no retries."""
    quick = replace(
        settings,
        connect_timeout_s=min(settings.connect_timeout_s, PROBE_TIMEOUT_S),
        read_timeout_s=min(settings.read_timeout_s, PROBE_TIMEOUT_S),
        max_attempts=1,
    )
    return make_client(quick, pool=1)


class S3Outcome(StrEnum):
    MISSING = "missing"  # the object (or key) is not there: a 404
    REFUSED = "refused"  # the request itself is wrong or too big: retrying cannot help
    # Outage, timeout, throttling, our own credentials or bucket policy (403),
    # a missing bucket: says nothing about the object or whoever wrote it.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class S3Failure:
    outcome: S3Outcome
    detail: str  # S3's error code or HTTP status, or the network error's name and message
    status: int | None = None  # HTTP status when S3 answered


def classify(exc: BaseException) -> S3Failure | None:
    """What a boto3/botocore (or socket) error says; None for anything else (a bug: re-raise it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = code or str(status)
        if code in _MISSING_CODES or (status == 404 and code != "NoSuchBucket"):
            return S3Failure(S3Outcome.MISSING, detail, status)
        if status in REFUSED_STATUSES:
            return S3Failure(S3Outcome.REFUSED, detail, status)
        return S3Failure(S3Outcome.UNAVAILABLE, detail, status)
    if isinstance(exc, BotoCoreError | OSError):
        return S3Failure(S3Outcome.UNAVAILABLE, f"{type(exc).__name__}: {str(exc)[:200]}")
    return None


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One object of a listing page; ``url`` is a presigned GET where one was made."""

    key: str
    size: int
    last_modified: float | None  # unix seconds, S3 server's clock
    url: str = ""


def timestamp(value: object) -> float | None:
    """Unix seconds of a datetime or an ISO-8601 string (naive means UTC); None otherwise."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value[:40])
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def listed_objects(page: Mapping[str, Any], limit: int | None = None) -> list[ListedObject]:
    """The well-formed entries of one ``list_objects_v2`` page, at most ``limit`` of them."""
    items = list(page.get("Contents", ()))[:limit]
    return [
        ListedObject(item["Key"], item["Size"], timestamp(item.get("LastModified")))
        for item in items
        if isinstance(item.get("Key"), str) and isinstance(item.get("Size"), int)
    ]


def next_token(page: Mapping[str, Any]) -> str | None:
    """The page's continuation token when the listing goes on, else None."""
    token = page.get("NextContinuationToken")
    return token if page.get("IsTruncated") and isinstance(token, str) else None


class BucketCalls:
    """A bucket's boto3 client on a bounded thread pool; every call timed out as a whole.

    botocore's timeouts bound each socket operation; ``call_timeout_s``
    bounds the call with its retries, so nothing waits on S3 longer.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        *,
        call_timeout_s: float,
        threads: int,
        name: str,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.call_timeout_s = call_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    @classmethod
    def from_settings(
        cls, settings: S3Settings, *, threads: int, name: str, purpose: str
    ) -> BucketCalls:
        """Calls on ``settings``' bucket; raises ValueError naming ``purpose`` when none is set."""
        if not settings.bucket:
            raise ValueError(f"S3_BUCKET is not set: {purpose} need a bucket")
        threads = max(1, threads)
        return cls(
            make_client(settings, pool=threads),
            settings.bucket,
            settings.prefix,
            call_timeout_s=settings.call_timeout_s,
            threads=threads,
            name=name,
        )

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on the pool; raises TimeoutError after ``call_timeout_s``."""
        pending = asyncio.get_running_loop().run_in_executor(self._executor, work)
        return await asyncio.wait_for(pending, self.call_timeout_s)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
