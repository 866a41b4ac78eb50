"""The epoch clock: which epoch a unix time is in, and when each epoch's phases end.

Epoch ``e`` covers ``[e * epoch_seconds, (e + 1) * epoch_seconds)`` in unix
time. Its collect deadline (miners' data due, honeypots revealed) is
``collect_fraction`` of the way through; validators' tie-break lookups end
half-way through what is left after it. Every party (Data API, validators,
miners, the local subnet) computes the same epoch from its own clock, so
nobody has to ask which epoch it is. Pure arithmetic: the time is passed in.

    clock = EpochClock(14400, 0.75)
    epoch = clock.epoch_at(time.time())
    due = clock.deadline(epoch)                     # data due, honeypots revealed
    epoch, start = clock.next_cycle(time.time())    # the validator's next cycle
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EpochClock:
    epoch_seconds: float
    collect_fraction: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epoch_seconds) and self.epoch_seconds > 0):
            raise ValueError("epoch_seconds must be a positive number")
        if not 0 < self.collect_fraction <= 1:
            raise ValueError("collect_fraction must be in (0, 1]")

    def epoch_at(self, unix_time: float) -> int:
        return int(unix_time // self.epoch_seconds)

    def start(self, epoch_id: int) -> float:
        return epoch_id * self.epoch_seconds

    def deadline(self, epoch_id: int) -> float:
        """When the epoch's data is due (its collect window ends) and its honeypots may be
        revealed."""
        return (epoch_id + self.collect_fraction) * self.epoch_seconds

    def tiebreak_deadline(self, epoch_id: int) -> float:
        """When validators' tie-break lookups end: half-way through what the epoch has
        left after its collect deadline."""
        return (epoch_id + self.collect_fraction + (1.0 - self.collect_fraction) / 2) * (
            self.epoch_seconds
        )

    def end(self, epoch_id: int) -> float:
        return (epoch_id + 1) * self.epoch_seconds

    def next_cycle(self, unix_time: float) -> tuple[int, float]:
        """(epoch, start) of the next consensus cycle a validator should run at ``unix_time``.

        The current epoch is joined when at least half its collect window is
        left (miners still have time to answer); otherwise the next one.
        """
        epoch = self.epoch_at(unix_time)
        window = self.collect_fraction * self.epoch_seconds
        if self.deadline(epoch) - unix_time >= window / 2:
            return epoch, self.start(epoch)
        return epoch + 1, self.start(epoch + 1)
