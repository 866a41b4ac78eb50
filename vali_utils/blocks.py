"""An epoch's block in the shape the validator's cycle takes, and where it comes from.

A Data API block (``vali_utils.data_api_client.epoch_block``) carries its
``layout`` (the batches and the group settings) and its deadlines: the block
is the plan's contract, so every validator follows them whatever its own
settings say (``vali_utils/cycle.py`` logs a disagreement once).

    block = epoch_block(zipcode_block)                  # from the Data API
    config = block.layout.assignment_config(local)      # what the plan is built with
    collect, tiebreak = block_deadlines(block, local_collect, local_tiebreak)  # the block's

``LocalBlockSource`` derives a block from (netuid, epoch) alone, for a
validator with no Data API: a seeded sample of a zipcode universe it is
given (the validator gives the Data API's residential zipcodes), so every
validator gets the same zipcodes and seed, and batches them with its own
settings (there is no owner to follow).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

from common.epochs import EpochClock
from config.consensus import AssignmentConfig


@dataclass(frozen=True, slots=True)
class BlockLayout:
    """How the Data API split its block: batches in order, and the group settings."""

    batches: tuple[tuple[str, ...], ...]
    zipcodes_per_batch: int
    groups_per_batch: int
    miners_per_group: int
    max_miners_per_coldkey: int = 1
    min_different_coldkeys: int = 5

    def assignment_config(self, local: AssignmentConfig) -> AssignmentConfig:
        """The plan's configuration: the block's settings over ``local``'s.

        The batch count and the coldkey rules are the block's too, so a
        validator's own cap on batches cannot cut the plan short, nor its own
        coldkey rules let one owner into a group twice.
        """
        return replace(
            local,
            zipcodes_per_batch=self.zipcodes_per_batch,
            miners_per_group=self.miners_per_group,
            overlap_factor=self.groups_per_batch,
            max_batches_per_cycle=max(1, len(self.batches)),
            max_miners_per_coldkey=self.max_miners_per_coldkey,
            min_different_coldkeys=self.min_different_coldkeys,
        )


@dataclass(frozen=True, slots=True)
class BlockTimes:
    """The Data API's times of an epoch, unix seconds: start, miners' data due, end."""

    issued_at: float
    expires_at: float  # the Data API refuses uploads and reveals honeypots from here on
    ends_at: float  # the next epoch starts

    def holds(self, unix_time: float) -> bool:
        """True when these are the times of a well-formed epoch that holds ``unix_time``."""
        return self.issued_at < self.expires_at <= self.ends_at and (
            self.issued_at <= unix_time <= self.ends_at
        )

    def tiebreak_deadline(self) -> float:
        """When tie-break lookups end: the epoch clock's rule on this epoch's times."""
        length = self.ends_at - self.issued_at
        clock = EpochClock(length, (self.expires_at - self.issued_at) / length)
        return self.issued_at + clock.tiebreak_deadline(0)


@dataclass(frozen=True, slots=True)
class EpochBlock:
    epoch: int
    block_id: str
    zipcodes: tuple[str, ...]
    seed: bytes
    expected_properties_per_zipcode: int = 50
    nonce: str | None = None  # the Data API's epoch nonce; miners' data must carry it
    expected: Mapping[str, int] = field(default_factory=dict)  # per zipcode, when known
    states: Mapping[str, str] = field(default_factory=dict)  # per zipcode, when known
    layout: BlockLayout | None = None  # the Data API's batches and settings; None: local
    times: BlockTimes | None = None  # the Data API's epoch times; None: local

    def expected_counts(self) -> dict[str, int]:
        return {
            z: self.expected.get(z, self.expected_properties_per_zipcode) for z in self.zipcodes
        }


def config_disagreements(
    local: AssignmentConfig, followed: AssignmentConfig
) -> dict[str, tuple[int, int]]:
    """Settings where ``local`` differs from what the plan follows: name -> (local, followed)."""
    names = (f.name for f in fields(AssignmentConfig))  # every one the block may set
    return {
        name: (getattr(local, name), getattr(followed, name))
        for name in names
        if getattr(local, name) != getattr(followed, name)
    }


def block_deadlines(
    block: EpochBlock, collect_s: float, tiebreak_s: float | None
) -> tuple[float, float | None]:
    """The (collect, tie-break) deadlines of the cycle: the block's when it carries them.

    ``collect_s`` and ``tiebreak_s`` are the validator's own (its schedule).
    A block whose epoch holds the local collect deadline is followed: miners'
    data is due at its ``expires_at`` (when the Data API stops handing out
    upload URLs and reveals the honeypots), and tie-breaks end half-way
    through what is left of its epoch after that (``common/epochs.py``'s
    rule). A block whose epoch does not hold the local deadline was issued on
    an epoch clock of another length (or its times are out of order): it
    cannot be followed, and the local deadlines stay.
    """
    times = block.times
    if times is None or not times.holds(collect_s):
        return collect_s, tiebreak_s
    return times.expires_at, None if tiebreak_s is None else times.tiebreak_deadline()


class LocalBlockSource:
    """Blocks from (netuid, epoch) alone: a seeded sample of ``universe`` per epoch."""

    def __init__(self, netuid: int, universe: Iterable[str], zipcodes_per_cycle: int) -> None:
        self.netuid = netuid
        self.universe = sorted(set(universe))  # sorted: the sample cannot depend on the order
        if not self.universe:
            raise ValueError("a local block needs a zipcode universe to draw from")
        self.zipcodes_per_cycle = zipcodes_per_cycle

    def block(self, epoch: int) -> EpochBlock:
        block_id = f"local-{self.netuid}-{epoch}"
        digest = hashlib.sha256(f"{block_id}:sample".encode()).digest()
        count = min(self.zipcodes_per_cycle, len(self.universe))
        zipcodes = tuple(sorted(random.Random(digest).sample(self.universe, count)))
        seed = hashlib.sha256(f"{block_id}:{','.join(zipcodes)}".encode()).digest()
        return EpochBlock(epoch, block_id, zipcodes, seed)
