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


def test_a_timed_out_pass_cancelled_while_it_cleans_up_stays_cancelled():
    """vali_utils.evaluator.within: a cancel that lands while the timed-out work is
    cancelled and awaited is the caller's, never turned into a TimeoutError."""
    from vali_utils.evaluator import within

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # cleanup after the timeout
            raise

    async def scenario() -> str:
        outer = asyncio.create_task(within(slow_to_stop(), 0.05, asyncio.sleep))
        await asyncio.sleep(0.1)  # the time ran out; the work is cleaning up
        outer.cancel()
        try:
            await outer
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            return "timeout"
        return "returned"

    assert asyncio.run(scenario()) == "cancelled"
