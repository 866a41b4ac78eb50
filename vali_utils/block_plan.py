"""The block is the plan's contract: a validator plans and times its cycle by the block.

A Data API block carries its batches, its group settings and its times; every
validator builds the plan from those and follows the block's deadlines, so two
validators with different local settings (or an owner changing the batch
size) still agree on the plan of an epoch. A validator whose own settings
disagree says so once (a warning per distinct disagreement), then follows the
block. A block without a layout (``LocalBlockSource``: no Data API) is planned
with the local settings.

    planner = BlockPlanner(ZipcodeAssignmentManager(AssignmentConfig(miners_per_group=6)))
    plan = planner.plan(block, miners)
    collect, tiebreak = planner.deadlines(block, local_collect, local_tiebreak)
"""

from __future__ import annotations

import logging

from consensus.assignment import AssignmentPlan, MinerInfo, ZipcodeAssignmentManager
from vali_utils.blocks import EpochBlock, block_deadlines, config_disagreements

logger = logging.getLogger(__name__)

DEADLINE_TOLERANCE_S = 1.0  # local and block deadlines closer than this agree


class BlockPlanner:
    """Plans and deadlines from the block; holds the local settings and what it has told."""

    def __init__(self, manager: ZipcodeAssignmentManager) -> None:
        self.manager = manager  # its config: the local settings, for blocks without a layout
        self._told: set[tuple[str, object]] = set()

    def plan(self, block: EpochBlock, miners: list[MinerInfo]) -> AssignmentPlan:
        """The block's plan: its batches and settings when it has them, else local settings.

        Raises ValueError for a layout no plan can be built from (see
        ``ZipcodeAssignmentManager.plan_batches``).
        """
        if block.layout is None:
            return self.manager.create_plan(list(block.zipcodes), miners, block.seed)
        local = self.manager.config
        config = block.layout.assignment_config(local)
        disagreements = config_disagreements(local, config)
        if disagreements:
            self._tell_once(
                "settings",
                tuple(sorted(disagreements.items())),
                "epoch %d: local assignment settings disagree with the Data API block's; the"
                " block's are followed (setting: (local, block)): %s",
                block.epoch,
                disagreements,
            )
        return ZipcodeAssignmentManager(config).plan_batches(
            block.layout.batches, miners, block.seed
        )

    def deadlines(
        self, block: EpochBlock, collect_s: float, tiebreak_s: float | None
    ) -> tuple[float, float | None]:
        """The cycle's (collect, tie-break) deadlines: the block's when it can be followed."""
        times = block.times
        if times is not None and not times.holds(collect_s):
            self._tell_once(
                "clock",
                None,
                "epoch %d: the Data API block's epoch does not hold the local collect deadline"
                " (an epoch clock of another length, or times out of order): the local"
                " deadlines are kept",
                block.epoch,
            )
        followed = block_deadlines(block, collect_s, tiebreak_s)
        if abs(followed[0] - collect_s) > DEADLINE_TOLERANCE_S:
            self._tell_once(
                "deadline",
                round(followed[0] - collect_s),
                "epoch %d: the local collect deadline is %+.0fs from the Data API block's; the"
                " block's is followed (miners' data is due then)",
                block.epoch,
                collect_s - followed[0],
            )
        return followed

    def _tell_once(self, kind: str, what: object, message: str, *args: object) -> None:
        """Log a disagreement with the block the first time it is seen (a warning, not noise)."""
        if (kind, what) in self._told:
            return
        self._told.add((kind, what))
        logger.warning(message, *args)
