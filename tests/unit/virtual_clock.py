"""Virtual time for code that takes an injected clock and sleep (the validator's loop).

    clock = VirtualClock(now=1_000_000.0)
    evaluator = EnhancedMinerEvaluator(..., clock=clock.time, sleep=clock.sleep)
    await clock.run(evaluator.run(stop), until=clock.now + 3 * EPOCH_S, stop=stop)

Time moves only when the code under test is waiting on the clock: once the
loop has settled (no task touched the clock for ``SETTLE_TURNS`` turns), the
clock jumps to the earliest sleeper's wake time and wakes it; sleepers due at
the same time wake in the order they went to sleep. So hours of schedule run in
milliseconds, and a run is the same every time. Real work the code awaits (its
SQLite store's thread) takes no virtual time while nobody is asleep on the
clock; the driver then waits for that work to finish before moving on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

# Loop turns without any clock activity after which every task is taken to be
# waiting. Pure asyncio code reaches a sleep within a few turns; this is slack.
SETTLE_TURNS = 20


class VirtualClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._activity = 0  # bumped by every sleep and wake, to tell when the loop settled
        self._slept: asyncio.Event | None = None

    def time(self) -> float:
        """The injected clock: the virtual unix time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """The injected sleep: returns when the virtual clock reaches now + ``seconds``."""
        self._activity += 1
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), wake))
        if self._slept is not None:
            self._slept.set()
        await wake

    async def run(
        self,
        main: Awaitable[T],
        *,
        until: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> T:
        """Drive ``main`` in virtual time until it returns; its result.

        With ``until``, ``stop`` is set once nothing is due before ``until``
        (the clock never passes it while ``main`` still sleeps toward it), and
        ``main`` is expected to return soon after.
        """
        task = asyncio.ensure_future(main)
        self._slept = asyncio.Event()
        try:
            while not task.done():
                await self._settle()
                if task.done():
                    break
                wake_at = self._next_wake()
                if wake_at is None:
                    await self._work_or_sleep(task)  # real work in flight (a thread)
                elif until is not None and wake_at > until:
                    if stop is None:
                        raise ValueError("until needs a stop event to end the run")
                    self.now = max(self.now, until)
                    stop.set()
                    until = None
                else:
                    self._wake_next()
            return task.result()
        finally:
            if not task.done():
                task.cancel()
            self._slept = None

    def _next_wake(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled (its sleeper lost a race)
        return self._sleepers[0][0] if self._sleepers else None

    def _wake_next(self) -> None:
        wake_at, _, wake = heapq.heappop(self._sleepers)
        self.now = max(self.now, wake_at)
        self._activity += 1
        wake.set_result(None)

    async def _settle(self) -> None:
        quiet = 0
        while quiet < SETTLE_TURNS:
            seen = self._activity
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._activity == seen else 0

    async def _work_or_sleep(self, task: asyncio.Future) -> None:
        """Nobody sleeps on the clock yet: wait until the task ends or somebody does."""
        assert self._slept is not None
        self._slept.clear()
        slept = asyncio.ensure_future(self._slept.wait())
        try:
            await asyncio.wait((task, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            slept.cancel()
