"""Epoch arithmetic on the wall clock, shared by the Data API and validators.

Epoch ``e`` covers ``[e * epoch_seconds, (e + 1) * epoch_seconds)`` in unix
time; its deadline (miners' data due, honeypots revealed) is
``collect_fraction`` of the way through. Every party computes the same epoch
from its own clock, so nobody has to ask which epoch it is.
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
        """When the epoch's data is due and its honeypots may be revealed."""
        return (epoch_id + self.collect_fraction) * self.epoch_seconds

    def end(self, epoch_id: int) -> float:
        return (epoch_id + 1) * self.epoch_seconds
