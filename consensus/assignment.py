"""Zipcode assignment: an epoch's zipcodes and the metagraph become an ``AssignmentPlan``.

The plan is a pure function of (zipcodes, miners, seed, config): every
validator computes the same plan, and anyone can recompute it to check. The
order in which zipcodes and miners are passed in does not matter; ordering
comes only from seeded digests.

    manager = ZipcodeAssignmentManager(AssignmentConfig())
    plan = manager.create_plan(zipcodes, miners, seed=epoch_seed)
    plan = manager.plan_batches(block_batches, miners, seed=epoch_seed)  # batches given
    for group in plan.groups: ...     # batch_id, overlap_group, zipcodes, miners
    plan.relaxations                   # [] when every rule held

Rules, in the order they are protected:

1. Hard, never relaxed: at most ``max_miners_per_coldkey`` miners of one
   coldkey in a group; the groups of one batch share no miner and no coldkey.
2. Relaxed only when the metagraph cannot meet them, and then reported in
   ``plan.relaxations`` with the shortfall: ``miners_per_group`` (a group is
   smaller), ``min_different_coldkeys`` (a group has fewer coldkeys),
   ``overlap_factor`` (a batch has fewer non-empty groups), ``load_balance``
   (max - min assignments per miner above 1).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from common.zipcodes import ZIPCODE
from config.consensus import AssignmentConfig

__all__ = [
    "AssignmentConfig",
    "AssignmentPlan",
    "MinerGroup",
    "MinerInfo",
    "Relaxation",
    "ZipcodeAssignmentManager",
]


@dataclass(frozen=True, slots=True, order=True)
class MinerInfo:
    uid: int
    hotkey: str
    coldkey: str


@dataclass(frozen=True, slots=True)
class MinerGroup:
    batch_id: int
    overlap_group: int
    zipcodes: tuple[str, ...]
    miners: tuple[MinerInfo, ...]

    @property
    def coldkeys(self) -> set[str]:
        return {miner.coldkey for miner in self.miners}


@dataclass(frozen=True, slots=True)
class Relaxation:
    """A rule that gave way: which, where (batch/group or None for the plan), by how much."""

    rule: str
    required: float
    achieved: float
    batch_id: int | None = None
    overlap_group: int | None = None

    @property
    def shortfall(self) -> float:
        return abs(self.required - self.achieved)


@dataclass(frozen=True, slots=True)
class AssignmentPlan:
    seed_hex: str
    config: AssignmentConfig
    groups: tuple[MinerGroup, ...]
    relaxations: tuple[Relaxation, ...]
    unassigned_zipcodes: tuple[str, ...]
    plan_hash: str
    assignments_per_miner: dict[str, int] = field(compare=False, hash=False)

    @property
    def batches(self) -> dict[int, list[MinerGroup]]:
        out: dict[int, list[MinerGroup]] = {}
        for group in self.groups:
            out.setdefault(group.batch_id, []).append(group)
        return out

    def groups_of(self, hotkey: str) -> list[MinerGroup]:
        return [g for g in self.groups if any(m.hotkey == hotkey for m in g.miners)]


def _digest(seed: bytes, *parts: str) -> bytes:
    h = hashlib.blake2b(seed, digest_size=8)
    for part in parts:
        h.update(b"\x00")
        h.update(part.encode())
    return h.digest()


def _unique_miners(miners: Iterable[MinerInfo]) -> list[MinerInfo]:
    """One entry per hotkey and per uid; raises on contradictory duplicates."""
    by_hotkey: dict[str, MinerInfo] = {}
    by_uid: dict[int, MinerInfo] = {}
    for miner in miners:
        if not isinstance(miner, MinerInfo):
            raise TypeError(f"expected MinerInfo, got {type(miner).__name__}")
        seen = by_hotkey.get(miner.hotkey) or by_uid.get(miner.uid)
        if seen is not None and seen != miner:
            raise ValueError(f"conflicting entries for uid {miner.uid} / hotkey {miner.hotkey}")
        by_hotkey[miner.hotkey] = miner
        by_uid[miner.uid] = miner
    return sorted(by_hotkey.values())


def _checked_seed(seed: bytes) -> bytes:
    if not isinstance(seed, bytes | bytearray) or not seed:
        raise ValueError("seed must be non-empty bytes")
    return bytes(seed)


def _unique_zipcodes(zipcodes: Iterable[str]) -> list[str]:
    unique = set()
    for zipcode in zipcodes:
        if not isinstance(zipcode, str) or not ZIPCODE.fullmatch(zipcode):
            raise ValueError(f"zipcode {zipcode!r} is not 5 digits")
        unique.add(zipcode)
    return sorted(unique)


class ZipcodeAssignmentManager:
    """Builds assignment plans; holds only its configuration."""

    def __init__(self, config: AssignmentConfig | None = None) -> None:
        self.config = config or AssignmentConfig()

    def create_plan(
        self, zipcodes: list[str], miners: list[MinerInfo], seed: bytes
    ) -> AssignmentPlan:
        """Split zipcodes into batches and give each batch ``overlap_factor`` disjoint groups.

        Takes the epoch's zipcodes, the eligible miners and the epoch seed (bytes
        every validator knows). Returns the plan. Raises ValueError for a
        malformed zipcode, an empty seed or contradictory miner entries.
        """
        seed = _checked_seed(seed)
        cfg = self.config
        ordered_zips = sorted(_unique_zipcodes(zipcodes), key=lambda z: _digest(seed, "zip", z))
        capacity = cfg.zipcodes_per_batch * cfg.max_batches_per_cycle
        chosen, unassigned = ordered_zips[:capacity], ordered_zips[capacity:]
        batch_zips = [
            tuple(sorted(chosen[i : i + cfg.zipcodes_per_batch]))
            for i in range(0, len(chosen), cfg.zipcodes_per_batch)
        ]
        return self._plan(batch_zips, unassigned, miners, seed)

    def plan_batches(
        self, batches: Sequence[Sequence[str]], miners: list[MinerInfo], seed: bytes
    ) -> AssignmentPlan:
        """Give each of the given batches ``overlap_factor`` disjoint groups.

        Takes batches already made (a Data API block's, in its order: batch
        ``i`` of the plan is ``batches[i]``), the eligible miners and the epoch
        seed. Batches past ``max_batches_per_cycle`` are left unassigned.
        Returns the plan. Raises ValueError for a malformed or repeated
        zipcode, an empty batch, an empty seed or contradictory miner entries.
        """
        seed = _checked_seed(seed)
        seen: set[str] = set()
        batch_zips: list[tuple[str, ...]] = []
        for index, batch in enumerate(batches):
            zips = _unique_zipcodes(batch)
            if not zips:
                raise ValueError(f"batch {index} has no zipcode")
            if len(zips) != len(batch) or seen.intersection(zips):
                raise ValueError(f"batch {index} repeats a zipcode")
            seen.update(zips)
            batch_zips.append(tuple(zips))
        cap = self.config.max_batches_per_cycle
        unassigned = sorted(z for zips in batch_zips[cap:] for z in zips)
        return self._plan(batch_zips[:cap], unassigned, miners, seed)

    def _plan(
        self,
        batch_zips: list[tuple[str, ...]],
        unassigned: list[str],
        miners: list[MinerInfo],
        seed: bytes,
    ) -> AssignmentPlan:
        cfg = self.config
        pool = _unique_miners(miners)
        load = np.zeros(len(pool), dtype=np.int64)
        # One digest per miner, mixed with a per-batch mask: a fresh seeded order
        # for every batch at the cost of a vector XOR (the plan must take < 20 ms).
        rank = np.array(
            [int.from_bytes(_digest(seed, "miner", m.hotkey)) for m in pool], dtype=np.uint64
        )
        hotkey_index = {m.hotkey: i for i, m in enumerate(pool)}
        groups: list[MinerGroup] = []
        relaxations: list[Relaxation] = []
        for batch_id, zips in enumerate(batch_zips):
            mask = np.uint64(int.from_bytes(_digest(seed, "batch", str(batch_id))))
            order = np.lexsort((rank ^ mask, load))
            members = [[pool[i] for i in group] for group in self._fill_batch(order, pool)]
            for overlap_group, group_miners in enumerate(members):
                load[[hotkey_index[m.hotkey] for m in group_miners]] += 1
                groups.append(MinerGroup(batch_id, overlap_group, zips, tuple(group_miners)))
            relaxations.extend(self._batch_relaxations(batch_id, members))

        if pool and batch_zips:
            spread = int(load.max() - load.min())
            if spread > 1:
                relaxations.append(Relaxation("load_balance", required=1, achieved=spread))

        plan_hash = _plan_hash(seed, cfg, groups)
        return AssignmentPlan(
            seed_hex=seed.hex(),
            config=cfg,
            groups=tuple(groups),
            relaxations=tuple(relaxations),
            unassigned_zipcodes=tuple(sorted(unassigned)),
            plan_hash=plan_hash,
            assignments_per_miner={m.hotkey: int(n) for m, n in zip(pool, load, strict=True)},
        )

    def _fill_batch(self, order: np.ndarray, pool: list[MinerInfo]) -> list[list[int]]:
        """Pick a batch's groups (as pool indexes) from ``order``, least-loaded first.

        A coldkey is tied to one group of the batch (groups stay independent);
        the first pass gives each group distinct coldkeys, a second pass (only
        when ``max_miners_per_coldkey`` > 1) tops groups up from their own
        coldkeys.
        """
        cfg = self.config
        groups: list[list[int]] = [[] for _ in range(cfg.overlap_factor)]
        coldkey_group: dict[str, int] = {}
        coldkey_count: dict[str, int] = {}
        leftovers: list[int] = []
        open_groups = list(range(cfg.overlap_factor))
        for index in order.tolist():
            if not open_groups:
                break
            coldkey = pool[index].coldkey
            if coldkey in coldkey_group:
                leftovers.append(index)
                continue
            # Fill groups round-robin by size so they stay equal in strength.
            target = min(open_groups, key=lambda g: (len(groups[g]), g))
            groups[target].append(index)
            coldkey_group[coldkey] = target
            coldkey_count[coldkey] = 1
            if len(groups[target]) >= cfg.miners_per_group:
                open_groups.remove(target)
        if cfg.max_miners_per_coldkey > 1:
            for index in leftovers:
                coldkey = pool[index].coldkey
                target = coldkey_group[coldkey]
                if (
                    coldkey_count[coldkey] < cfg.max_miners_per_coldkey
                    and len(groups[target]) < cfg.miners_per_group
                ):
                    groups[target].append(index)
                    coldkey_count[coldkey] += 1
        return [sorted(group) for group in groups]

    def _batch_relaxations(self, batch_id: int, members: list[list[MinerInfo]]) -> list[Relaxation]:
        cfg = self.config
        out: list[Relaxation] = []
        non_empty = sum(1 for g in members if g)
        if non_empty < cfg.overlap_factor:
            out.append(
                Relaxation("overlap_factor", cfg.overlap_factor, non_empty, batch_id=batch_id)
            )
        for overlap_group, group in enumerate(members):
            if not group:
                continue
            if len(group) < cfg.miners_per_group:
                out.append(
                    Relaxation(
                        "miners_per_group",
                        cfg.miners_per_group,
                        len(group),
                        batch_id,
                        overlap_group,
                    )
                )
            coldkeys = len({m.coldkey for m in group})
            if coldkeys < cfg.min_different_coldkeys:
                out.append(
                    Relaxation(
                        "min_different_coldkeys",
                        cfg.min_different_coldkeys,
                        coldkeys,
                        batch_id,
                        overlap_group,
                    )
                )
        return out


def _plan_hash(seed: bytes, cfg: AssignmentConfig, groups: list[MinerGroup]) -> str:
    document = {
        "seed": seed.hex(),
        "config": [
            cfg.zipcodes_per_batch,
            cfg.miners_per_group,
            cfg.overlap_factor,
            cfg.max_batches_per_cycle,
            cfg.max_miners_per_coldkey,
            cfg.min_different_coldkeys,
        ],
        "groups": [
            [
                g.batch_id,
                g.overlap_group,
                list(g.zipcodes),
                [[m.uid, m.hotkey, m.coldkey] for m in g.miners],
            ]
            for g in groups
        ],
    }
    return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()


def group_rules_hold(group: MinerGroup, cfg: AssignmentConfig) -> bool:
    """True when a group meets the coldkey rules (per-coldkey cap and coldkey diversity)."""
    counts: dict[str, int] = {}
    for miner in group.miners:
        counts[miner.coldkey] = counts.get(miner.coldkey, 0) + 1
    return (
        bool(counts)
        and max(counts.values()) <= cfg.max_miners_per_coldkey
        and len(counts) >= cfg.min_different_coldkeys
    )


def batch_is_independent(groups: list[MinerGroup], cfg: AssignmentConfig) -> bool:
    """True when a batch has ``overlap_factor`` non-empty groups sharing no miner or coldkey."""
    non_empty = [g for g in groups if g.miners]
    if len(non_empty) < cfg.overlap_factor:
        return False
    seen_hotkeys: set[str] = set()
    seen_coldkeys: set[str] = set()
    for group in non_empty:
        hotkeys = {m.hotkey for m in group.miners}
        if hotkeys & seen_hotkeys or group.coldkeys & seen_coldkeys:
            return False
        seen_hotkeys |= hotkeys
        seen_coldkeys |= group.coldkeys
    return True
