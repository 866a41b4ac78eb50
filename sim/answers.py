"""The local subnet's miners that game: a simulator behaviour answers in place of the source.

``BehaviourAnswers`` is an ``AnswerStrategy`` (``scraping/answering.py``) for
``MinerService``: a behaviour of ``sim/adversaries.py`` (or a plugin) decides
each answer from the miner's honest view of the synthetic market, in the
miner's own process, with no peers to see. ``--behaviour NAME`` on a miner of
the local subnet asks for it (``scraping.registry.build_answering``).

    answering = BehaviourAnswers.from_spec("fabricate", source, hotkey)
    service = MinerService(store, source, hotkey, answering=answering)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from typing import Any

from scraping.answering import Work
from scraping.lookups import NOT_ANSWERED, Wanted
from sim.adversaries import MinerContext, load_behaviour, properties_from_respond
from sim.source import SyntheticSource


class BehaviourAnswers:
    """A simulator behaviour decides the answers of one miner of the local subnet."""

    def __init__(self, behaviour: Any, source: SyntheticSource, hotkey: str) -> None:
        self.behaviour = behaviour
        self.source = source
        self.hotkey = hotkey
        self.name = behaviour.name

    @classmethod
    def from_spec(cls, spec: str, source: object, hotkey: str) -> BehaviourAnswers:
        """The behaviour ``spec`` names, answering from ``source``'s view.

        Raises ValueError (one line) for a behaviour that cannot be loaded, or
        a source that is not the synthetic market (a behaviour answers from
        the world's truth and its honest views).
        """
        if not isinstance(source, SyntheticSource):
            raise ValueError(f"{spec!r} (local subnet only) needs --scraper synthetic")
        return cls(load_behaviour(spec), source, hotkey)

    def looks_up(self, source: object) -> bool:
        return True  # the behaviour answers lookups from the world (an offline one: none)

    async def answer_zipcodes(self, work: Work) -> None:
        ctx = self.context(work, sorted({zipcode for _, zipcode in work.todo}))
        answer = await asyncio.to_thread(self.behaviour.respond, ctx)
        if not answer:
            return
        for source_name, zipcode in work.todo:
            if zipcode in answer:
                await work.store(source_name, zipcode, answer[zipcode])

    async def answer_lookups(self, work: Work) -> dict[Wanted, Any]:
        assigned = work.request.get("zipcode_assignments", {}).values()
        ctx = self.context(work, sorted({z for zipcodes in assigned for z in zipcodes}))
        return await asyncio.to_thread(lookup_with_behaviour, self.behaviour, ctx, work.todo)

    def context(self, work: Work, zipcodes: list[str]) -> MinerContext:
        coalition = getattr(self.behaviour, "coalition", None)
        # A coalition's one shared scrape: the same observer in every member's process.
        shared = (
            SyntheticSource(self.source.world, f"coalition:{coalition}").view if coalition else None
        )
        return behaviour_context(
            self.hotkey,
            work.key,
            zipcodes,
            work.epoch,
            self.source.view,
            self.source.world,
            coalition,
            shared,
        )


def lookup_with_behaviour(
    behaviour: Any, ctx: MinerContext, wanted: Iterable[Wanted]
) -> dict[Wanted, Any]:
    """Local subnet: a simulator behaviour answers the lookups (an offline one answers nothing)."""
    wanted = list(wanted)
    found = properties_from_respond(behaviour, ctx, sorted({int(zpid) for _, zpid in wanted}))
    if found is None:
        return {item: NOT_ANSWERED for item in wanted}
    return {item: found.get(int(item[1]), NOT_ANSWERED) for item in wanted}


def behaviour_context(
    hotkey: str,
    key: str,
    zipcodes: list[str],
    epoch: int,
    scrape: Callable[[str], list[dict]] | None,
    world: Any,
    coalition: str | None = None,
    coalition_view: Callable[[str], list[dict]] | None = None,
) -> MinerContext:
    """A behaviour's context in the local subnet: its own process, no peers to see.

    A coalition's members run in separate processes; ``coalition_view`` (the
    coalition's one shared scrape) is what makes them serve the same answer.
    """
    return MinerContext(
        miner=None,  # type: ignore[arg-type]
        zipcodes=zipcodes,
        scrape=scrape or (lambda z: []),
        peer_responses=lambda z: {},
        rng=random.Random(f"{hotkey}:{key}"),
        epoch=epoch,
        stale=getattr(world, "stale", lambda r: None),
        fetch=getattr(world, "lookup", None),
        coalition=coalition,
        coalition_view=coalition_view,
    )
