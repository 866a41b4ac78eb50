"""Client-side call limits for a paid API: a token bucket and a monthly budget.

Both are shared by every zipcode a source scrapes at once, so the limits hold
for the source as a whole, not per task. Neither holds a lock across an
``await``: a call's slot is reserved synchronously, then waited for.

    bucket = TokenBucket(rate=2.0, burst=1)
    if not await bucket.acquire(deadline):     # False: the slot comes after the deadline
        ...
    budget = MonthlyBudget(limit=50_000)
    budget.take()                              # counts a call; BudgetExhausted when spent
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from scraping.source import BudgetExhausted


class TokenBucket:
    """``rate`` calls per second on average, at most ``burst`` back to back.

    Kept in its virtual-scheduling form (GCRA): ``_tat`` is when the bucket
    would next be full-minus-one. Each reservation is given its own start
    time, so waiting callers are served in order, evenly spaced, and a sleep
    that overshoots does not lower the achieved rate.
    """

    def __init__(
        self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._tat = clock()

    def _reserve(self, deadline: float | None) -> float | None:
        """Take a slot; the seconds to wait for it, or None when it comes after ``deadline``."""
        now = self._clock()
        ready = max(now, self._tat - self._tolerance)
        if deadline is not None and ready > deadline:
            return None
        self._tat = max(self._tat, ready) + self._interval
        return ready - now

    async def acquire(self, deadline: float | None = None) -> bool:
        """Wait for a call slot; False (nothing taken) when it would come after ``deadline``."""
        wait = self._reserve(deadline)
        if wait is None:
            return False
        if wait > 0:
            await asyncio.sleep(wait)
        return True

    def pause(self, seconds: float) -> None:
        """Start no call for ``seconds`` (the server said Retry-After), then resume evenly."""
        self._tat = max(self._tat, self._clock() + seconds + self._tolerance)


class MonthlyBudget:
    """At most ``limit`` calls per calendar month (UTC); the count restarts with the month.

    The count lives in the process: a restart begins it again at zero.
    """

    def __init__(self, limit: int, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.limit = limit
        self._now = now
        self._month = self._month_of(now())
        self.used = 0

    @staticmethod
    def _month_of(moment: datetime) -> tuple[int, int]:
        return moment.year, moment.month

    def _roll(self) -> None:
        month = self._month_of(self._now())
        if month != self._month:
            self._month, self.used = month, 0

    @property
    def remaining(self) -> int:
        self._roll()
        return max(0, self.limit - self.used)

    def check(self) -> None:
        """Raise BudgetExhausted when this month's calls are spent."""
        if self.remaining == 0:
            year, month = self._month
            raise BudgetExhausted(
                f"monthly call budget spent ({self.used} of {self.limit} calls in "
                f"{year}-{month:02d}); raise RAPIDAPI_CALLS_PER_MONTH or wait for next month"
            )

    def take(self) -> None:
        """Count one call; raises BudgetExhausted (and counts nothing) when the month is spent."""
        self.check()
        self.used += 1
