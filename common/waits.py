"""Waiting for an event with a time limit, without losing a cancellation.

``asyncio.wait_for(event.wait(), t)`` on Python 3.11 returns normally when
the task is cancelled in the same loop turn as the event is set, swallowing
the cancellation: a worker loop around it then never stops, and whoever
awaits the cancelled worker waits for ever. That hung the test suite (a miner
uploader's ``stop()`` while its last uploads finished). ``asyncio.timeout``
keeps the cancellation.

    if await wait_event(stop, 5.0): ...   # True: set; False: the time ran out
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait up to ``timeout`` seconds (None: no limit); True when ``event`` was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
