"""The Data API's look at S3 for /v1/health: one probe at a time, kept ttl_s, never stale."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from data_api.s3 import StorageProbe
from tests.unit.virtual_clock import VirtualClock

pytestmark = pytest.mark.unit


class Gateway:
    def __init__(self) -> None:
        self.calls = 0
        self.answer = True
        self.release = threading.Event()

    def reachable(self) -> bool:
        self.calls += 1
        self.release.wait(5)
        return self.answer


def test_callers_share_one_probe_and_its_answer_is_kept_ttl_s():
    gateway, clock = Gateway(), VirtualClock(now=100.0)
    probe = StorageProbe(gateway, ttl_s=2.0, clock=clock.time)  # type: ignore[arg-type]

    async def scenario() -> list[bool]:
        many = [asyncio.create_task(probe.reachable()) for _ in range(20)]
        await asyncio.sleep(0.05)
        gateway.release.set()
        answers = await asyncio.gather(*many)
        gateway.answer = False
        answers.append(await probe.reachable())  # within ttl_s: the kept answer
        clock.now += 2.5
        answers.append(await probe.reachable())  # stale: asked again
        return answers

    answers = asyncio.run(scenario())
    assert answers == [True] * 21 + [False]
    assert gateway.calls == 2


def test_a_caller_that_hangs_up_leaves_no_stale_answer_behind():
    gateway, clock = Gateway(), VirtualClock(now=100.0)
    probe = StorageProbe(gateway, ttl_s=2.0, clock=clock.time)  # type: ignore[arg-type]

    async def scenario() -> bool:
        caller = asyncio.create_task(probe.reachable())
        await asyncio.sleep(0.05)
        caller.cancel()  # the health request's client went away mid-probe
        gateway.release.set()
        deadline = time.monotonic() + 5
        while probe._probing is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        clock.now += 10  # long after: the answer kept then is stale now
        gateway.answer = False
        return await probe.reachable()

    assert asyncio.run(scenario()) is False
    assert gateway.calls == 2
