"""The simulator's miners: what the real validator lets each of them see and do.

Validators collect by commit, then reveal (``docs/validator.md``): before the
deadline a miner's ``collect`` answer carries a commitment to its answer,
never the answer; after it, only an answer matching the last commitment
counts. So a simulated miner

- sees the answers of its own coalition only (``peer_responses``), never
  those of other miners, whoever asks;
- chooses the commitments it sends (``commits``): the first one marked
  completed binds and is timed when sent (the validator stops polling
  there); without one, the last before the deadline counts, timed at the
  deadline;
- may reveal something else (``reveal``): the validator then drops the answer;
- may withhold its endpoint (``serves``): it is then not in the plan.

    world = MinerWorld(world, miners, noise_free=False)
    settled = settle_commits(commits, timeout_s)   # -> (answer, completed_after_s) | None
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.assignment import AssignmentPlan, MinerInfo
from sim.adversaries import Commit, MinerContext
from sim.world import SyntheticWorld

HONEST_FINISH_S = (900.0, 7200.0)  # an honest miner's time to finish a batch of 20 zipcodes
COPY_DELAY_S = (30.0, 600.0)  # a copier's time after the last answer it copied


@dataclass
class SimMiner:
    info: MinerInfo
    behaviour: object
    kind: str

    @property
    def coalition(self) -> str | None:
        name = getattr(self.behaviour, "coalition", None)
        return str(name) if name else None

    def serves(self, epoch: int) -> bool:
        serves = getattr(self.behaviour, "serves", None)
        return True if serves is None else bool(serves(epoch, self.info))


def settle_commits(
    commits: Sequence[Commit], timeout_s: float
) -> tuple[dict[str, list[dict]], float] | None:
    """What the validator takes from a miner's commitments: (answer, completed_after_s).

    The first commitment marked completed binds (the validator stops polling
    there): it is the answer, timed when it was sent. A miner that never says
    completed is polled until the deadline: its last commitment before it is
    the answer, timed at the deadline. None when nothing (or nothing but an
    empty answer) counts.
    """
    in_time = sorted((c for c in commits if c.at_s <= timeout_s), key=lambda c: c.at_s)
    done = [c for c in in_time if c.completed]
    if done:
        final, completed_after_s = done[0].answer, done[0].at_s
    elif in_time:
        final, completed_after_s = in_time[-1].answer, timeout_s
    else:
        return None
    return (final, completed_after_s) if final else None


class MinerWorld:
    """Builds each miner's context for a cycle: its view, its coalition, what it can see."""

    def __init__(self, world: SyntheticWorld, miners: Sequence[SimMiner], noise_free: bool) -> None:
        self.world = world
        self.noise_free = noise_free
        self.coalitions: dict[str, list[str]] = defaultdict(list)
        for m in miners:
            if m.coalition:
                self.coalitions[m.coalition].append(m.info.hotkey)
        # coalition -> zipcode -> hotkey -> the answer that member committed
        self.shared: dict[str, dict[str, dict[str, list[dict]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self.assigned: dict[str, list[str]] = {}

    def begin_cycle(self, plan: AssignmentPlan) -> None:
        self.shared.clear()
        self.assigned = defaultdict(list)
        for group in plan.groups:
            for miner in group.miners:
                self.assigned[miner.hotkey].extend(group.zipcodes)

    def view(self, zipcode: str, observer: str, epoch: int) -> list[dict]:
        if self.noise_free:
            return self.world.honest_view(zipcode, observer, epoch, miss_rate=0.0, stale_rate=0.0)
        return self.world.honest_view(zipcode, observer, epoch)

    def context(
        self, sim: SimMiner, miner: MinerInfo, zipcodes: list[str], epoch: int, rng: random.Random
    ) -> MinerContext:
        coalition = sim.coalition
        shared = self.shared[coalition] if coalition else None
        members = self.coalitions.get(coalition, []) if coalition else []
        return MinerContext(
            miner=miner,
            zipcodes=zipcodes,
            scrape=lambda z: self.view(z, miner.hotkey, epoch),
            peer_responses=lambda z: (
                {hk: r for hk, r in shared.get(z, {}).items() if hk != miner.hotkey}
                if shared is not None
                else {}
            ),
            rng=rng,
            epoch=epoch,
            stale=self.world.stale,
            fetch=self.world.lookup,
            coalition=coalition,
            coalition_assignments={
                hk: list(self.assigned.get(hk, ())) for hk in members if hk != miner.hotkey
            },
            coalition_view=(
                (lambda z: self.view(z, f"coalition:{coalition}", epoch)) if coalition else None
            ),
        )

    def committed(self, sim: SimMiner, answer: dict[str, list[dict]]) -> None:
        """Share a committed answer with the miner's coalition (nobody else sees it)."""
        if sim.coalition:
            for zipcode, records in answer.items():
                self.shared[sim.coalition][zipcode][sim.info.hotkey] = records
