"""Where an epoch's zipcodes come from, until the Data API serves blocks.

``LocalBlockSource`` derives the block from (netuid, epoch) alone, so every
validator of the local subnet gets the same zipcodes and the same seed for
the same epoch without talking to anyone. The Data API replaces it on real
networks (its own issue).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from scraping.synthetic import SyntheticWorld


@dataclass(frozen=True, slots=True)
class EpochBlock:
    epoch: int
    block_id: str
    zipcodes: tuple[str, ...]
    seed: bytes
    expected_properties_per_zipcode: int = 50
    nonce: str | None = None  # the Data API's epoch nonce; miners' data must carry it
    expected: Mapping[str, int] = field(default_factory=dict)  # per zipcode, when known

    def expected_counts(self) -> dict[str, int]:
        return {
            z: self.expected.get(z, self.expected_properties_per_zipcode) for z in self.zipcodes
        }


class LocalBlockSource:
    def __init__(self, netuid: int, world: SyntheticWorld, zipcodes_per_cycle: int) -> None:
        self.netuid = netuid
        self.world = world
        self.zipcodes_per_cycle = zipcodes_per_cycle

    def block(self, epoch: int) -> EpochBlock:
        zipcodes = tuple(sorted(self.world.iter_zipcodes(self.zipcodes_per_cycle, epoch)))
        block_id = f"local-{self.netuid}-{epoch}"
        seed = hashlib.sha256(f"{block_id}:{','.join(zipcodes)}".encode()).digest()
        return EpochBlock(epoch, block_id, zipcodes, seed)
