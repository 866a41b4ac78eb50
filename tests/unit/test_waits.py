"""wait_event keeps a cancellation that arrives as the event is set.

A miner uploader's worker looped on ``asyncio.wait_for(wake.wait(), t)``;
its ``stop()`` cancelled it in the same loop turn as finishing uploads set
``wake``, Python 3.11's ``wait_for`` returned normally, the loop went on, and
``stop()`` waited for ever (a test hung for 600 s in a full run).
"""

from __future__ import annotations

import asyncio

import pytest

from common.waits import wait_event

pytestmark = pytest.mark.unit


async def cancelled_as_the_event_is_set(wait) -> bool:
    """Whether a worker looping on ``wait`` stops when cancelled as its event is set."""
    event = asyncio.Event()

    async def worker() -> None:
        while True:
            await wait(event)
            event.clear()

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)  # the worker is waiting
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()  # tidy up the runaway worker
        await asyncio.gather(task, return_exceptions=True)
    return bool(done) and task.cancelled()


def test_the_race_that_wait_for_loses_on_this_python_is_kept():
    assert asyncio.run(cancelled_as_the_event_is_set(lambda e: wait_event(e, 10)))


def test_set_and_timeout():
    async def scenario() -> tuple[bool, bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.01)
        asyncio.get_running_loop().call_later(0.01, event.set)
        was_set = await wait_event(event, 5)
        return timed_out, was_set, await wait_event(event, None)

    assert asyncio.run(scenario()) == (False, True, True)
