"""The epoch block as a pure function: (secret, epoch, universe, history, references) -> block.

No I/O, no clock. Every choice is keyed by ``HMAC-SHA256(secret, epoch)``, so
the block of a future epoch cannot be guessed without the secret, and the same
inputs always give the same block. The service persists a block the first
time it is served; ``recent`` (the zipcodes of the previous persisted blocks)
is what makes consecutive blocks rotate.

    block = derive_block(secret, epoch_id, universe, config, recent=[...], references=[...])
    block.batches, block.honeypots, block.seed, block.nonce

What holds (tests/unit/test_data_api_blocks.py):
- a zipcode used in the last ``rotation_epochs`` blocks is not drawn again
  while unused ones remain (least recently used first when they run out);
- no state holds more than ``max_state_share`` of the block, unless the
  universe has too few states to fill it (``relaxed`` says so);
- honeypots carry the same fields as every other zipcode, their expected
  counts follow the universe's tier distribution, and the order of the block
  is a keyed shuffle, so position says nothing either.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from config.data_api import SIZE_TIERS, BlockConfig
from data_api.universe import Universe, ZipcodeInfo

DERIVATION_VERSION = b"zipcode-block/v1"
REFERENCE = "reference"
NO_RESIDENTIAL = "no_residential"


@dataclass(frozen=True, slots=True)
class BlockEntry:
    zipcode: str
    state: str
    lat: float
    lng: float
    expected_properties: int


@dataclass(frozen=True, slots=True)
class DerivedBlock:
    epoch_id: int
    block_id: str
    seed: int  # < 2**63
    nonce: str  # 32 hex characters
    batches: tuple[tuple[BlockEntry, ...], ...]
    honeypots: tuple[tuple[str, str], ...]  # (zipcode, kind), sorted by zipcode
    relaxed: tuple[str, ...] = ()  # rules that gave way: "rotation", "state_share", "size"

    @property
    def zipcodes(self) -> list[str]:
        return [entry.zipcode for batch in self.batches for entry in batch]


def epoch_key(secret: bytes, epoch_id: int) -> bytes:
    """The per-epoch key every choice of the block derives from."""
    return hmac.new(secret, DERIVATION_VERSION + b"/%d" % epoch_id, hashlib.sha256).digest()


def _subkey(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


class _Ranker:
    """A keyed, version-independent order over zipcodes (a keyed hash, not ``random``)."""

    def __init__(self, key: bytes, label: bytes) -> None:
        # Copying a keyed hasher is cheaper than keying one per zipcode.
        self._base = hashlib.blake2b(key=_subkey(key, label), digest_size=8)

    def digest(self, zipcode: str) -> bytes:
        hasher = self._base.copy()
        hasher.update(zipcode.encode())
        return hasher.digest()

    def __call__(self, zipcode: str) -> int:
        return int.from_bytes(self.digest(zipcode), "big")


def _age_order(
    candidates: Iterable[ZipcodeInfo], recent: Sequence[Collection[str]], rank: _Ranker
) -> list[ZipcodeInfo]:
    """Unused zipcodes first (keyed order), then recently used ones, least recent first."""
    last_used: dict[str, int] = {}
    for age, zipcodes in enumerate(recent, start=1):  # recent[0] is the previous epoch
        for zipcode in zipcodes:
            last_used.setdefault(zipcode, age)
    never = len(recent) + 1
    decorated = [
        (-last_used.get(z.zipcode, never), rank.digest(z.zipcode), z.zipcode, z) for z in candidates
    ]
    decorated.sort()  # zipcodes are unique, so the infos themselves are never compared
    return [d[3] for d in decorated]


def _take(
    ordered: Sequence[ZipcodeInfo],
    count: int,
    cap: int,
    per_state: Counter,
    taken: set[str],
) -> list[ZipcodeInfo]:
    """Up to ``count`` zipcodes in order, skipping taken ones and states at ``cap``."""
    picked: list[ZipcodeInfo] = []
    for info in ordered:
        if len(picked) == count:
            break
        if info.zipcode in taken or per_state[info.state] >= cap:
            continue
        picked.append(info)
        taken.add(info.zipcode)
        per_state[info.state] += 1
    return picked


def _drawn_tier(zipcode: str, rank: _Ranker, shares: Sequence[float]) -> int:
    """A tier drawn from the residential distribution, so honeypot counts look like the rest."""
    u = rank(zipcode) / 2.0**64
    cumulative = 0.0
    for tier, share in enumerate(shares):
        cumulative += share
        if u < cumulative:
            return tier
    return len(shares) - 1


def derive_block(
    secret: bytes,
    epoch_id: int,
    universe: Universe,
    config: BlockConfig,
    recent: Sequence[Collection[str]] = (),
    references: Collection[str] = (),
) -> DerivedBlock:
    """The block of ``epoch_id``.

    ``recent`` holds the zipcodes of the previous persisted blocks, most recent
    first (at most ``rotation_epochs`` of them are looked at); ``references``
    the zipcodes the owner holds a reference answer for (must be in
    ``universe.by_zipcode`` to be used). Raises ValueError when the universe
    is empty.
    """
    if not universe.residential:
        raise ValueError("the zipcode universe is empty")
    key = epoch_key(secret, epoch_id)
    seed = int.from_bytes(_subkey(key, b"seed")[:8], "big") >> 1
    nonce = _subkey(key, b"nonce")[:16].hex()
    block_id = f"e{epoch_id}-{_subkey(key, b'block-id')[:6].hex()}"
    recent = list(recent)[: config.rotation_epochs]

    total = config.zipcodes_per_block
    reference_set = set(references)
    # Sorted: the caller's collection order must not change the block.
    reference_infos = [
        universe.by_zipcode[z] for z in sorted(reference_set & universe.by_zipcode.keys())
    ]
    # A reference zipcode only ever appears as a honeypot.
    residential = [z for z in universe.residential if z.zipcode not in reference_set]

    # Zipcodes per state: the share cap, raised only when there are too few states to fill.
    states = {z.state for z in residential} | {z.state for z in universe.no_residential}
    cap = max(1, math.floor(config.max_state_share * total))
    relaxed: list[str] = []
    if cap * len(states) < total:
        cap = math.ceil(total / max(1, len(states)))
        relaxed.append("state_share")
    per_state: Counter = Counter()
    taken: set[str] = set()

    # Honeypots first (they are few and count toward the state cap like any zipcode).
    n_honeypots = min(config.honeypots_per_block, total - 1)
    n_reference = min(len(reference_infos), math.floor(n_honeypots * config.reference_share))
    chosen_references = _take(
        _age_order(reference_infos, recent, _Ranker(key, b"reference")),
        n_reference,
        cap,
        per_state,
        taken,
    )
    tier_rank = _Ranker(key, b"tier")
    empty_order = _age_order(universe.no_residential, recent, _Ranker(key, b"no-residential"))
    wanted_empties = n_honeypots - len(chosen_references)
    empties = _take(empty_order, wanted_empties, cap, per_state, taken)

    ordered = _age_order(residential, recent, _Ranker(key, b"residential"))
    needed = total - len(chosen_references) - len(empties)
    regular = _take(ordered, needed, cap, per_state, taken)
    if len(regular) < needed:  # states ran dry under the cap: fill regardless
        regular += _take(ordered, needed - len(regular), len(ordered), per_state, taken)
        relaxed.append("state_share")
    short = total - len(chosen_references) - len(empties) - len(regular)
    if short > 0 and len(empties) < wanted_empties:
        # Too few residential zipcodes to fill the block: the honeypots the cap held
        # back come in after all (a tiny universe; never on the real one).
        more = min(short, wanted_empties - len(empties))
        empties += _take(empty_order, more, len(empty_order), per_state, taken)
        relaxed.append("state_share")
    honeypots = [(z.zipcode, REFERENCE) for z in chosen_references]
    honeypots += [(z.zipcode, NO_RESIDENTIAL) for z in empties]
    entries = [_entry(z, z.tier) for z in chosen_references]
    entries += [_entry(z, _drawn_tier(z.zipcode, tier_rank, universe.tier_shares)) for z in empties]
    if recent:
        recently_used = set().union(*recent)
        if any(z.zipcode in recently_used for z in regular):
            relaxed.append("rotation")
    entries += [_entry(z, z.tier) for z in regular]
    relaxed = sorted(set(relaxed), key=relaxed.index)
    if len(entries) < total:  # a universe smaller than a block: serve what there is
        relaxed.append("size")

    order = _Ranker(key, b"order")
    entries.sort(key=lambda e: (order.digest(e.zipcode), e.zipcode))
    size = config.zipcodes_per_batch
    batches = tuple(tuple(entries[i : i + size]) for i in range(0, len(entries), size))
    return DerivedBlock(
        epoch_id=epoch_id,
        block_id=block_id,
        seed=seed,
        nonce=nonce,
        batches=batches,
        honeypots=tuple(sorted(honeypots)),
        relaxed=tuple(dict.fromkeys(relaxed)),
    )


def _entry(info: ZipcodeInfo, tier: int) -> BlockEntry:
    return BlockEntry(
        info.zipcode, info.state, info.lat, info.lng, SIZE_TIERS[tier].expected_properties
    )
