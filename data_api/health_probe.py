"""``/v1/health``'s look at a dependency (S3, the database): one probe at a time, kept a while.

Health is unsigned and validators ask it all through each upload window
(``vali_utils/storage_watch.py``), so however often it is asked, the
dependency sees at most one probe per ``ttl_s``: a flood of health calls
cannot take the connections signed requests need.

    probe = HealthProbe(database_answers)     # any async () -> bool that never raises
    ok = await probe.reachable()
    probe.forget()                            # the owner saw the dependency fail or recover
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

PROBE_TTL_S = 2.0  # /v1/health asks each dependency at most this often


class HealthProbe:
    """A single-flight, cached ``check()``: callers that arrive together share one probe."""

    def __init__(
        self,
        check: Callable[[], Awaitable[bool]],
        ttl_s: float = PROBE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self.ttl_s = ttl_s
        self.clock = clock
        self._answer: tuple[float, bool] | None = None
        self._probing: asyncio.Task[bool] | None = None
        self._generation = 0  # bumped by forget(): a probe begun before keeps no answer

    async def reachable(self) -> bool:
        """The kept answer while fresh, else the (shared) answer of a new probe."""
        if self._answer is not None and self.clock() - self._answer[0] < self.ttl_s:
            return self._answer[1]
        if self._probing is None:
            self._probing = asyncio.ensure_future(self.check())
            generation = self._generation
            self._probing.add_done_callback(lambda probe: self._settle(probe, generation))
        # Shielded: a caller that hangs up does not cancel the probe the others share.
        return await asyncio.shield(self._probing)

    def forget(self) -> None:
        """Drop the kept answer: the owner just learnt otherwise (a request failed or worked)."""
        self._answer = None
        self._probing = None
        self._generation += 1

    def _settle(self, probe: asyncio.Task[bool], generation: int) -> None:
        """The probe's answer is kept from when it came, whether or not anyone still waits."""
        if generation != self._generation:  # forgotten meanwhile: its answer may be stale
            return
        self._probing = None
        if not probe.cancelled() and probe.exception() is None:
            self._answer = (self.clock(), probe.result())
