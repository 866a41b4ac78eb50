"""Tunables of the Data API's epoch blocks: sizes, rotation, spread, honeypots, size tiers.

The operator-facing knobs (block size, rotation, state share, honeypots) come
from settings (``config/settings.py``) into ``BlockConfig``; the size tiers
and the universe's filters are fixed here, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BlockConfig:
    """How an epoch's block is drawn from the zipcode universe."""

    zipcodes_per_block: int = 1000  # honeypots included; 50 batches x 20
    zipcodes_per_batch: int = 20  # one group's workload per cycle (AssignmentConfig)
    groups_per_batch: int = 2  # disjoint groups per batch (AssignmentConfig.overlap_factor)
    miners_per_group: int = 10  # told to validators in the block's config
    max_miners_per_coldkey: int = 1  # per group, told to validators (AssignmentConfig)
    min_different_coldkeys: int = 5  # per group, told to validators (AssignmentConfig)
    rotation_epochs: int = 6  # a zipcode rests this many epochs (one day at 4 h) after use
    max_state_share: float = 0.10  # no state above 10% of a block (TX, the largest, is ~6%)
    honeypots_per_block: int = 10  # 1% of a block: enough to catch blind fabrication
    reference_share: float = 0.5  # of the honeypots, at most this share are reference ones

    def __post_init__(self) -> None:
        if self.zipcodes_per_block < 1 or self.zipcodes_per_batch < 1:
            raise ValueError("BlockConfig sizes must be >= 1")
        if self.max_miners_per_coldkey < 1 or self.min_different_coldkeys < 1:
            raise ValueError("BlockConfig coldkey rules must be >= 1")
        if not 0 < self.max_state_share <= 1:
            raise ValueError("BlockConfig.max_state_share must be in (0, 1]")
        if not 0 <= self.honeypots_per_block < self.zipcodes_per_block:
            raise ValueError("BlockConfig.honeypots_per_block must be below zipcodes_per_block")
        if not 0 <= self.reference_share <= 1:
            raise ValueError("BlockConfig.reference_share must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """What one miner may upload through the Data API's presigned URLs."""

    # Distinct files (content hashes) per miner, epoch, source and zipcode.
    # An honest miner scrapes each assignment it gets, and every validator
    # sends the same plan, so it uploads at most one file per validator that
    # assigned the zipcode: the chain gives at most 64 validator permits. The
    # cap bounds what one miner may store (a block's zipcodes x 64 files) and
    # keeps an honest folder (its assigned zipcodes x 64, a few thousand at
    # most) under the validators' listing cap (S3_MAX_KEYS_PER_MINER, 5000),
    # so a folder past that cap is padding, evidence against its miner.
    files_per_zipcode: int = 64
    # Grants are kept this many epochs (the current one and the one before,
    # whose late retries still arrive), then pruned.
    keep_epochs: int = 2

    def __post_init__(self) -> None:
        if self.files_per_zipcode < 1 or self.keep_epochs < 1:
            raise ValueError("UploadLimits.files_per_zipcode and keep_epochs must be >= 1")


@dataclass(frozen=True, slots=True)
class SizeTier:
    """A zipcode size class: its name, the density from which it starts, its expected listings."""

    name: str
    min_neighbours: int  # standard zipcodes within the 3x3 grid cells around it
    expected_properties: int  # listings a miner is expected to find per source


# Size tiers from a density proxy, because the ``zipcodes`` package carries no
# population: a zipcode's neighbours are the standard zipcodes whose centroids
# fall in the 3x3 block of DENSITY_CELL_DEGREES cells around its own (about
# 65 x 50 km at 40 degrees north). Urban zipcodes are small and packed together,
# rural ones are large and sparse, so the count tracks urbanity. Thresholds cut
# the 2024 universe at about 20% / 32% / 37% / 11%; expected listings average
# ~43, close to the consensus core's default of 50 for a zipcode of unknown size.
DENSITY_CELL_DEGREES = 0.2
SIZE_TIERS: tuple[SizeTier, ...] = (
    SizeTier("rural", 0, 20),
    SizeTier("town", 10, 35),
    SizeTier("suburban", 25, 50),
    SizeTier("urban", 80, 80),
)

# The universe: the 50 states and DC, where the Zillow source lists homes.
# Territories (PR, GU, VI, ...) and military (APO/FPO) codes are left out.
UNIVERSE_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "  # noqa: SIM905
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY".split()
)
RESIDENTIAL_TYPES = frozenset({"STANDARD"})  # street-delivery zipcodes: where people live
# PO-box-only and single-organisation zipcodes have no street addresses, so no
# residential listing can exist in them: the no-residential honeypots.
NO_RESIDENTIAL_TYPES = frozenset({"PO BOX", "UNIQUE"})
