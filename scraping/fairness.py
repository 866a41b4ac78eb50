"""Serving validators fairly: stake-weighted quotas of open assignments, round-robin scraping.

One validator must not starve a miner for the others (issue 15: 500 assignments
in 8 s filled one global queue and the other validator got nothing for two
epochs). Each validator may hold a quota of open assignments in proportion to
its stake, with a floor so a small validator is still served; and the scraping
itself takes turns between validators, so a long queue of one validator's work
does not run ahead of another's.

    stakes = validator_stakes(snapshot, min_stake=1000.0)
    quota = assignment_quota(stakes.get(hotkey, 0.0), sum(stakes.values()), 500, 50)
    slots = FairSlots(concurrency=4)
    async with slots.lane(key, {"5F..A"}):      # waits for its validator's turn
        result = await source.scrape_zipcode(...)
    slots.share(key, "5G..B")                   # B asked for the same work: B's turns serve it too
    log = RefusalLog(60.0)
    suppressed = log.due(hotkey, now)           # None: logged less than a minute ago
    log.forget_before(now - 3 * 14400)          # validators quiet for 3 epochs
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.chain import MetagraphSnapshot

# Work nobody is known to have asked for (an assignment resumed without its request
# rows) takes its turn under this name.
UNOWNED = ""


def validator_stakes(snapshot: MetagraphSnapshot | None, min_stake: float) -> dict[str, float]:
    """Stake of every hotkey this miner serves: a validator permit and at least ``min_stake``."""
    if snapshot is None:
        return {}
    return {
        n.hotkey: max(0.0, float(n.stake))
        for n in snapshot.neurons
        if n.validator_permit and n.stake >= min_stake
    }


def assignment_quota(stake: float, total_stake: float, capacity: int, floor: int) -> int:
    """Open assignments a validator may hold: its stake's share of ``capacity``, at least ``floor``.

    The quotas of all validators add up to ``capacity`` plus the floors: one
    validator at its quota leaves every other one its own share.
    """
    if not (math.isfinite(stake) and math.isfinite(total_stake)) or total_stake <= 0:
        return floor
    share = min(1.0, max(0.0, stake / total_stake))
    return max(floor, int(capacity * share))


@dataclass
class QuotaPolicy:
    """Each served validator's quota of open assignments, from the latest metagraph."""

    snapshot: Callable[[], MetagraphSnapshot | None]
    min_stake: float
    capacity: int
    floor: int
    _cache: tuple[object, Mapping[str, float], float] | None = field(default=None, repr=False)

    def quota(self, hotkey: str) -> int:
        snapshot = self.snapshot()
        if self._cache is None or self._cache[0] is not snapshot:
            # Stakes are summed once per metagraph refresh, not per request.
            stakes = validator_stakes(snapshot, self.min_stake)
            self._cache = (snapshot, stakes, sum(stakes.values()))
        _, stakes, total = self._cache
        return assignment_quota(stakes.get(hotkey, 0.0), total, self.capacity, self.floor)


class OpenAssignments:
    """Who asked for each open assignment, and how many each validator holds (its quota counts).

    Work asked for by several validators counts once for each of them.
    """

    def __init__(self) -> None:
        self._owners: dict[str, set[str]] = {}  # key -> validators who asked for it
        self._held: dict[str, set[str]] = {}  # validator -> its open keys

    def owners(self, key: str) -> set[str]:
        """The live set of ``key``'s validators (it grows as more ask)."""
        return self._owners.setdefault(key, set())

    def holds(self, validator: str, key: str) -> bool:
        return validator in self._owners.get(key, ())

    def held(self, validator: str) -> int:
        return len(self._held.get(validator, ()))

    def own(self, key: str, validator: str) -> bool:
        """Count ``key`` for ``validator``; False when it already counted."""
        owners = self.owners(key)
        if validator in owners:
            return False
        owners.add(validator)
        self._held.setdefault(validator, set()).add(key)
        return True

    def disown(self, key: str, validator: str) -> None:
        self._owners.get(key, set()).discard(validator)
        held = self._held.get(validator)
        if held is not None:
            held.discard(key)
            if not held:
                del self._held[validator]

    def finish(self, key: str) -> None:
        """``key`` is no longer open: it stops counting for anyone."""
        for validator in list(self._owners.pop(key, ())):
            self.disown(key, validator)
        self._owners.pop(key, None)


class RoundRobin:
    """Work waiting to run, taken one item at a time from each validator in turn.

    Work is grouped by assignment key; a validator's keys run oldest first.
    A key shared by several validators sits in each one's line, and any of
    their turns takes its next item: shared work counts for each of them once.
    Pure data, no clock and no event loop.
    """

    def __init__(self) -> None:
        self._ring: deque[str] = deque()  # validators with work waiting, in turn order
        self._keys: dict[str, deque[str]] = {}  # validator -> its keys, oldest first
        self._work: dict[str, deque[Any]] = {}  # key -> items waiting

    def __len__(self) -> int:
        return sum(len(items) for items in self._work.values())

    def add(self, validator: str, key: str, items: Iterable[Any]) -> None:
        """Queue ``items`` of assignment ``key`` in ``validator``'s line."""
        self._work.setdefault(key, deque()).extend(items)
        if not self._work[key]:
            del self._work[key]
            return
        self.share(key, validator)

    def share(self, key: str, validator: str) -> None:
        """``validator`` asked for ``key`` too: its turns serve the key's waiting items."""
        if key not in self._work:
            return
        keys = self._keys.get(validator)
        if keys is None:
            keys = self._keys[validator] = deque()
            self._ring.append(validator)
        if key not in keys:
            keys.append(key)

    def pop(self) -> tuple[str, Any] | None:
        """(key, item) for the next validator in turn with work waiting; None when none waits."""
        for _ in range(len(self._ring)):
            validator = self._ring[0]
            keys = self._keys[validator]
            while keys and not self._work.get(keys[0]):
                keys.popleft()  # finished, or taken by another validator's turns
            if not keys:
                self._ring.popleft()
                del self._keys[validator]
                continue
            self._ring.rotate(-1)
            key = keys[0]
            items = self._work[key]
            item = items.popleft()
            if not items:
                del self._work[key]
            return key, item
        return None


class FairSlots:
    """At most ``concurrency`` jobs at once (the source's budget); waiters start in turn.

    Replaces one semaphore taken in arrival order: a validator's flood of work
    waits in its own line while the others' work takes every other turn.
    """

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._free = concurrency
        self._turns = RoundRobin()

    @property
    def waiting(self) -> int:
        """Jobs queued for a slot (cancelled ones included until their turn comes)."""
        return len(self._turns)

    def share(self, key: str, validator: str) -> None:
        self._turns.share(key, validator)

    def lane(self, key: str, validators: Collection[str]) -> Lane:
        """``async with`` it around each job of assignment ``key``; ``validators`` may grow."""
        return Lane(self, key, validators)

    async def acquire(self, key: str, validators: Collection[str]) -> None:
        """Wait for a slot for one job of ``key``, in the turns of ``validators``."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        first, *others = sorted(validators) or [UNOWNED]
        self._turns.add(first, key, [turn])
        for validator in others:
            self._turns.share(key, validator)
        self._dispatch()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # granted, then cancelled before it ran
            raise

    def release(self) -> None:
        self._free += 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self._free > 0:
            job = self._turns.pop()
            if job is None:
                return
            turn = job[1]
            if turn.done():  # its waiter was cancelled
                continue
            self._free -= 1
            turn.set_result(None)


class Lane:
    """One assignment's way into ``FairSlots``: usable by many jobs at once, like a semaphore."""

    def __init__(self, slots: FairSlots, key: str, validators: Collection[str]) -> None:
        self.slots = slots
        self.key = key
        self.validators = validators

    async def __aenter__(self) -> None:
        await self.slots.acquire(self.key, self.validators)

    async def __aexit__(self, *exc_info: object) -> None:
        self.slots.release()


class RefusalLog:
    """Log a refusal of a validator at most once per ``interval_s``; count the rest."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def due(self, who: str, now: float) -> int | None:
        """None: stay quiet; else how many refusals of ``who`` went unlogged before this one."""
        last = self._last.get(who)
        if last is not None and now - last < self.interval_s:
            self._since[who] = self._since.get(who, 0) + 1
            return None
        self._last[who] = now
        return self._since.pop(who, 0)

    def forget_before(self, cutoff: float) -> None:
        """Drop validators last logged before ``cutoff`` (the miner prunes once an epoch).

        A validator refused once and never again would otherwise stay forever;
        the count of its refusals since that line is lost with it.
        """
        for who in [w for w, last in self._last.items() if last < cutoff]:
            del self._last[who]
            self._since.pop(who, None)
