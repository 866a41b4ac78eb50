"""Calls to the Data API that both roles make: retries, refusals, and the miner's upload URL.

    upload = await request_upload_url(client, url, api_hotkey, UploadUrlRequest(...))
    answer = await call_with_retries(send, "GET /v1/epochs/current", RetryPolicy())

Connection failures, timeouts, 5xx and 429 are retried with exponential
backoff and jitter (429 waits its ``Retry-After``, bounded), each retry
signed afresh by ``send``. Then ``DataAPIUnavailable`` says the API could not
be used; any other refusal (401, 403, 404, 409, 422) is ``DataAPIRefused`` at
once, since asking again would not change the answer.

The validator's client (``vali_utils/data_api_client.py``) and the miner's
uploads (``scraping/upload_setup.py``) both build on this module, so neither
role's package imports the other's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from common.backoff import backoff_s
from common.data_api_models import UploadUrl, UploadUrlRequest
from common.protocol import ErrorBody
from common.signed_http import SignedAnswer, SignedClient

logger = logging.getLogger(__name__)


class DataAPIUnavailable(RuntimeError):
    """The Data API did not answer usefully after the retries (down, failing, rate limiting)."""


class DataAPIRefused(RuntimeError):
    """The Data API answered with a refusal that asking again would not change."""

    def __init__(self, status: int, error: ErrorBody) -> None:
        super().__init__(f"HTTP {status} {error.code}: {error.message}")
        self.status = status
        self.code = error.code
        self.error = error


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    base_s: float = 0.5  # first backoff; doubles per attempt
    cap_s: float = 8.0  # longest backoff between two attempts
    max_retry_after_s: float = 30.0  # a server asking for longer is treated as unavailable

    def backoff(self, attempt: int, jitter: float) -> float:
        """Seconds before attempt ``attempt + 1``: full-size half plus a jittered half."""
        return backoff_s(attempt, base_s=self.base_s, cap_s=self.cap_s, jitter=jitter)


def _retryable(status: int) -> bool:
    return status == 0 or status == 429 or status >= 500


async def call_with_retries(
    send: Callable[[], Awaitable[SignedAnswer]],
    what: str,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> SignedAnswer:
    """``send()`` until a 200 or a final refusal; raises DataAPIUnavailable or DataAPIRefused."""
    last: SignedAnswer | None = None
    for attempt in range(retry.attempts):
        answer = await send()
        if answer.status == 200 and not isinstance(answer.answer, ErrorBody):
            return answer
        if answer.status == 200 or not _retryable(answer.status):
            # A 200 we cannot parse is a contract mismatch: retrying will not fix it.
            raise DataAPIRefused(answer.status, answer.answer)
        last = answer
        if attempt + 1 == retry.attempts:
            break
        delay = retry.backoff(attempt, jitter())
        if answer.status == 429 and answer.retry_after_s is not None:
            if answer.retry_after_s > retry.max_retry_after_s:
                break
            delay = max(delay, answer.retry_after_s)
        logger.info(
            "%s: HTTP %s %s; retry %d/%d in %.1fs",
            what,
            answer.status or "-",
            answer.answer.code,
            attempt + 1,
            retry.attempts - 1,
            delay,
        )
        await sleep(delay)
    assert last is not None
    raise DataAPIUnavailable(f"{what}: HTTP {last.status or '-'} {last.answer.message}"[:300])


async def request_upload_url(
    client: SignedClient,
    api_url: str,
    api_hotkey: str,
    request: UploadUrlRequest,
    retry: RetryPolicy = RetryPolicy(),
) -> UploadUrl:
    """A miner's presigned upload for one file (its own prefix, the current epoch).

    Raises DataAPIRefused (e.g. 409 wrong_epoch, 403 zipcode_not_in_block,
    422 too_large) or DataAPIUnavailable.
    """
    raw = request.model_dump_json().encode()

    def send() -> Awaitable[SignedAnswer]:
        return client.send("POST", api_url, api_hotkey, "/v1/s3/upload-url", raw, UploadUrl)

    answer = await call_with_retries(send, "POST /v1/s3/upload-url", retry)
    return answer.answer
