"""The Data API client's retry rules: what is retried, how long it waits, what it raises."""

from __future__ import annotations

import asyncio

import pytest

from common.data_api_calls import (
    DataAPIRefused,
    DataAPIUnavailable,
    RetryPolicy,
    call_with_retries,
)
from common.protocol import ErrorBody
from common.signed_http import SignedAnswer

pytestmark = pytest.mark.unit


def error(code: str = "x") -> ErrorBody:
    return ErrorBody(code=code, message=code)


def scripted(*answers: SignedAnswer):
    remaining = list(answers)
    calls = []

    async def send() -> SignedAnswer:
        calls.append(1)
        return remaining.pop(0)

    return send, calls


def run(send, retry: RetryPolicy | None = None, jitter=lambda: 0.5):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    result = asyncio.run(call_with_retries(send, "test", retry or RetryPolicy(), sleep, jitter))
    return result, sleeps


def test_5xx_and_connection_failures_are_retried_with_growing_backoff():
    ok = SignedAnswer(200, "the answer")
    send, calls = scripted(SignedAnswer(0, error("unreachable")), SignedAnswer(503, error()), ok)
    result, sleeps = run(send, RetryPolicy(attempts=4, base_s=1.0, cap_s=8.0))
    assert result is ok and len(calls) == 3
    assert sleeps == [0.75, 1.5]  # (0.5 + 0.5 * jitter) of 1 s, then of 2 s


def test_backoff_is_capped_and_jittered():
    policy = RetryPolicy(base_s=1.0, cap_s=4.0)
    assert policy.backoff(10, 0.0) == 2.0
    assert policy.backoff(10, 1.0) == 4.0


def test_429_waits_its_retry_after():
    send, _ = scripted(SignedAnswer(429, error("rate_limited"), 7.0), SignedAnswer(200, "ok"))
    result, sleeps = run(send)
    assert result.answer == "ok"
    assert sleeps == [7.0]


def test_429_asking_for_too_long_is_unavailable_at_once():
    send, calls = scripted(SignedAnswer(429, error("rate_limited"), 3600.0))
    with pytest.raises(DataAPIUnavailable):
        run(send, RetryPolicy(max_retry_after_s=30))
    assert len(calls) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_refusals_are_not_retried(status):
    send, calls = scripted(SignedAnswer(status, error("forbidden")))
    with pytest.raises(DataAPIRefused) as info:
        run(send)
    assert info.value.status == status and info.value.code == "forbidden"
    assert len(calls) == 1


def test_an_unparseable_200_is_a_refusal_not_a_retry():
    send, calls = scripted(SignedAnswer(200, error("bad_answer")))
    with pytest.raises(DataAPIRefused):
        run(send)
    assert len(calls) == 1


def test_gives_up_after_the_attempts():
    send, calls = scripted(*[SignedAnswer(500, error("internal"))] * 3)
    with pytest.raises(DataAPIUnavailable, match="HTTP 500"):
        run(send, RetryPolicy(attempts=3))
    assert len(calls) == 3
