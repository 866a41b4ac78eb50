"""Miner behaviours for the attack simulator and the local subnet: honest and gaming.

A behaviour is any class with a ``name`` attribute and a method
``respond(self, ctx) -> dict[str, list[dict]] | None``: zipcode -> records
(dicts in the record schema of ``common.records``); ``None`` means no answer.
``ctx`` (a ``MinerContext``) offers:

- ``miner``: the ``MinerInfo`` (uid, hotkey, coldkey) answering;
- ``zipcodes``: the zipcodes of this assignment (list[str]);
- ``scrape(zipcode) -> list[dict]``: this miner's honest view of a zipcode;
- ``peer_responses(zipcode) -> dict[str, list[dict]]``: what this miner can
  really see of other miners' answers at the time it answers. Validators
  collect by commit, then reveal (nobody reads an answer before the
  deadline), so this is only the answers already given by the other hotkeys
  of its own coalition, by hotkey; ``{}`` outside a coalition;
- ``rng``: a ``random.Random`` seeded for this miner and epoch;
- ``epoch``: the epoch number;
- ``stale(record) -> dict | None``: the record as an old snapshot shows it
  (built-ins only need it; a plugin may ignore it);
- ``fetch(zpid) -> dict | None``: this miner's source looked up by property id
  (None: no such listing), for property-id (tie-break) assignments;
- ``coalition``: the name of its coalition, or None;
- ``coalition_assignments``: hotkey -> zipcodes assigned this cycle to the
  other hotkeys of its coalition (empty outside one);
- ``coalition_view(zipcode) -> list[dict]``: the coalition's one shared scrape
  of a zipcode (a coalition pays for each zipcode once); None outside one.

Property-id assignments (tie-breaks) call ``properties(ctx, zpids)`` when a
behaviour has it: zpid -> record dict, or None for "does not exist"; a zpid
left out is unanswered; returning None is no answer at all. Without it,
``properties_from_respond`` answers from what ``respond`` gives for
``ctx.zipcodes``: the behaviour vouches for its own records and for nothing else.

Optional class attributes and methods, each modelling what the real
validator lets a miner do:

- ``copies_peers = True``: the simulator lets the behaviour answer after the
  other miners of its batch (so a coalition member has something to copy);
- ``shares_coldkey = True``: all its miners sit under one coldkey;
- ``coalition = "name"``: its hotkeys (on different coldkeys) form a named
  coalition that shares answers and assignments;
- ``serves(epoch, miner) -> bool``: whether it publishes its endpoint this
  cycle; a miner that does not serve is not in the cycle's plan;
- ``commits(ctx, answer, finish_s) -> list[Commit]``: the commitments it sends
  while the epoch runs: (seconds after dispatch, the answer committed to,
  whether it says "completed"). The default is one ``Commit(finish_s, answer,
  True)``. The first commitment marked completed binds: the validator stops
  polling there and times completion then. Without one, the last commitment
  before the deadline counts, timed at the deadline;
- ``reveal(ctx, committed) -> dict | None``: what it reveals after the
  deadline (default: what it committed to). A reveal that does not match the
  commitment is dropped: the miner gets nothing for that assignment.

Plugins are loaded with ``load_behaviour("path/to/file.py:ClassName")`` or
``"package.module:ClassName"``; the built-ins are looked up by name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from consensus.assignment import MinerInfo


@dataclass
class MinerContext:
    miner: MinerInfo
    zipcodes: list[str]
    scrape: Callable[[str], list[dict]]
    peer_responses: Callable[[str], dict[str, list[dict]]]
    rng: random.Random
    epoch: int
    stale: Callable[[dict], dict | None]
    fetch: Callable[[int], dict | None] | None = None
    coalition: str | None = None
    coalition_assignments: Mapping[str, Sequence[str]] = field(default_factory=dict)
    coalition_view: Callable[[str], list[dict]] | None = None


@dataclass(frozen=True)
class Commit:
    """One commitment a miner sends while the epoch runs (what ``collect`` carries)."""

    at_s: float  # seconds after the assignment was acknowledged
    answer: dict[str, list[dict]] | None  # the answer committed to
    completed: bool  # whether the miner says it is done


def properties_from_respond(
    behaviour: Any, ctx: MinerContext, zpids: list[int]
) -> dict[int, dict | None] | None:
    """A property-id answer from a behaviour's zipcode answer (or its ``properties``)."""
    if hasattr(behaviour, "properties"):
        return behaviour.properties(ctx, zpids)
    answer = behaviour.respond(ctx)
    if answer is None:
        return None
    found: dict[int, dict] = {}
    for records in answer.values():
        for record in records:
            try:
                found[int(record["zpid"])] = record
            except (KeyError, TypeError, ValueError):
                continue
    return {zpid: found.get(zpid) for zpid in zpids}


class Behaviour(Protocol):
    name: str

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None: ...


def _invented(zipcode: str, rng: random.Random, count: int) -> list[dict]:
    """Plausible listings that do not exist (zpids outside the real range)."""
    out = []
    for _ in range(count):
        out.append(
            {
                "zpid": str(rng.randrange(3 * 10**9, 4 * 10**9)),
                "address": f"{rng.randrange(1, 9999)} Phantom {rng.choice(('St', 'Ave', 'Dr'))}",
                "zipcode": zipcode,
                "price": rng.randrange(100, 900) * 1000,
                "listing_status": rng.choice(("FOR_SALE", "SOLD", "PENDING")),
                "property_type": "SINGLE_FAMILY",
                "bedrooms": rng.randrange(1, 6),
                "bathrooms": 2.0,
                "living_area_sqft": rng.randrange(700, 4000),
                "year_built": rng.randrange(1950, 2024),
            }
        )
    return out


class Honest:
    name = "honest"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        return {z: ctx.scrape(z) for z in ctx.zipcodes}

    def properties(self, ctx: MinerContext, zpids: list[int]) -> dict[int, dict | None] | None:
        if ctx.fetch is None:
            return None
        return {zpid: ctx.fetch(zpid) for zpid in zpids}


class Offline:
    name = "offline"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        return None


class Lazy:
    """Scrapes only half of its zipcodes and answers those."""

    name = "lazy"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        chosen = ctx.rng.sample(ctx.zipcodes, len(ctx.zipcodes) // 2)
        return {z: ctx.scrape(z) for z in sorted(chosen)}


class Fabricate:
    """Invents every listing it returns."""

    name = "fabricate"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        return {z: _invented(z, ctx.rng, ctx.rng.randrange(30, 70)) for z in ctx.zipcodes}


class Inflate:
    """Honest records padded with about 40% invented ones, to look more productive."""

    name = "inflate"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        out = {}
        for z in ctx.zipcodes:
            real = ctx.scrape(z)
            out[z] = real + _invented(z, ctx.rng, max(3, int(len(real) * 0.4)))
        return out


class Copycat:
    """Copies one other miner's answers (a peer it picks at random), errors included.

    It copies only what it can really see (``peer_responses``): under commit,
    then reveal, that is nothing unless it is in a coalition with the miner.
    """

    name = "copycat"
    copies_peers = True

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        answered: dict[str, int] = {}
        for z in ctx.zipcodes:
            for hotkey in ctx.peer_responses(z):
                answered[hotkey] = answered.get(hotkey, 0) + 1
        if not answered:
            return None
        most = max(answered.values())
        source = ctx.rng.choice(sorted(hk for hk, n in answered.items() if n == most))
        out = {}
        for z in ctx.zipcodes:
            records = ctx.peer_responses(z).get(source)
            if records is not None:
                out[z] = [dict(r) for r in records]
        return out


class Cartel:
    """Miners of different coldkeys returning the same invented data (shared secret)."""

    name = "cartel"
    secret = "cartel"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        out = {}
        for z in ctx.zipcodes:
            shared = random.Random(f"{self.secret}:{ctx.epoch}:{z}")
            out[z] = _invented(z, shared, shared.randrange(30, 70))
        return out


class Sybil(Honest):
    """Many hotkeys under one coldkey, each scraping honestly."""

    name = "sybil"
    shares_coldkey = True


class Stale:
    """Serves an old cache: every listing that changed shows its old price and status."""

    name = "stale"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        out = {}
        for z in ctx.zipcodes:
            out[z] = [ctx.stale(r) or r for r in ctx.scrape(z)]
        return out


class Pool:
    """A coalition on many coldkeys: each zipcode is scraped once, every member serves it.

    One scrape paid per zipcode, the same answer (same records, same misses,
    same stale values) from every member of the coalition.
    """

    name = "pool"
    coalition = "pool"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        view = ctx.coalition_view or ctx.scrape
        return {z: [dict(r) for r in view(z)] for z in ctx.zipcodes}


class PoolOmit(Pool):
    """A pool that also leaves out the same fifth of the listings everywhere.

    Its members outvote independent miners on those listings where they can,
    hoping the honest miners who report them look like fabricators.
    """

    name = "pool_omit"
    coalition = "pool_omit"
    omit_share = 0.2

    def omitted(self, zpid: object) -> bool:
        digest = hashlib.blake2b(f"{self.coalition}:{zpid}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) % 1000 < self.omit_share * 1000

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        answer = super().respond(ctx) or {}
        return {
            z: [r for r in records if not self.omitted(r.get("zpid"))]
            for z, records in answer.items()
        }


class EarlyClaim(Honest):
    """Says "completed" with an empty answer at once, then commits its real answer late.

    Without commit, then reveal, the validator timed its completion at the
    early claim and took the answer of a later poll: the fast bonus for work
    finished late. Now the claim binds it to the empty answer.
    """

    name = "early_claim"

    def commits(self, ctx: MinerContext, answer: dict | None, finish_s: float) -> list[Commit]:
        late = max(finish_s, ctx.rng.uniform(5400.0, 10000.0))
        return [Commit(5.0, {}, True), Commit(late, answer, True)]


class Silent:
    """Copies the majority of what its peers answered and never reports completion.

    Copy detection orders a copying pair by completion time; a miner that
    never completes used to be skipped. It can copy only what it sees.
    """

    name = "silent"
    copies_peers = True

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        out = {}
        for z in ctx.zipcodes:
            peers = ctx.peer_responses(z)
            if not peers:
                continue
            counts: dict[str, int] = {}
            record_of: dict[str, dict] = {}
            for records in peers.values():
                for record in records:
                    zpid = str(record.get("zpid"))
                    counts[zpid] = counts.get(zpid, 0) + 1
                    record_of.setdefault(zpid, record)
            out[z] = [dict(record_of[k]) for k, n in sorted(counts.items()) if 2 * n > len(peers)]
        return out or None

    def commits(self, ctx: MinerContext, answer: dict | None, finish_s: float) -> list[Commit]:
        return [Commit(finish_s, answer, False)]


class Unserve(Honest):
    """Publishes its endpoint one cycle in three and answers honestly then.

    A score frozen while away would pay every cycle for the work of one.
    """

    name = "unserve"

    def serves(self, epoch: int, miner: MinerInfo) -> bool:
        return (epoch + miner.uid) % 3 == 0


class Empty:
    """Scrapes half of its zipcodes and answers the other half with empty lists."""

    name = "empty"

    def respond(self, ctx: MinerContext) -> dict[str, list[dict]] | None:
        chosen = set(ctx.rng.sample(ctx.zipcodes, len(ctx.zipcodes) // 2))
        return {z: ctx.scrape(z) if z in chosen else [] for z in ctx.zipcodes}


BUILTIN_BEHAVIOURS: dict[str, type] = {
    cls.name: cls
    for cls in (
        Honest,
        Offline,
        Lazy,
        Fabricate,
        Inflate,
        Copycat,
        Cartel,
        Sybil,
        Stale,
        Pool,
        PoolOmit,
        EarlyClaim,
        Silent,
        Unserve,
        Empty,
    )
}


def load_behaviour(spec: str) -> Any:
    """A behaviour instance from a built-in name, ``file.py:Class`` or ``module:Class``.

    Raises ValueError with a one-line reason when the spec cannot be loaded or
    the class lacks ``name`` or ``respond``.
    """
    if spec in BUILTIN_BEHAVIOURS:
        return BUILTIN_BEHAVIOURS[spec]()
    if ":" not in spec:
        known = ", ".join(sorted(BUILTIN_BEHAVIOURS))
        raise ValueError(f"unknown behaviour {spec!r}: use one of {known} or path.py:Class")
    target, class_name = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            path = Path(target)
            module_spec = importlib.util.spec_from_file_location(f"behaviour_{path.stem}", path)
            if module_spec is None or module_spec.loader is None or not path.is_file():
                raise ValueError(f"no such file {target}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot load behaviour {spec!r}: {exc}") from exc
    instance = cls()
    if not isinstance(getattr(instance, "name", None), str) or not callable(
        getattr(instance, "respond", None)
    ):
        raise ValueError(f"behaviour {spec!r} needs a 'name' attribute and a respond(ctx) method")
    return instance


def parse_adversary(text: str) -> tuple[str, float]:
    """``NAME=FRACTION`` from the command line; ValueError with a one-line reason.

    The behaviour must load (a built-in name or a plugin spec) and the
    fraction must be in [0, 1].
    """
    name, sep, fraction = text.rpartition("=")
    if not sep or not name:
        raise ValueError(f"--adversary wants NAME=FRACTION, got {text!r}")
    try:
        value = float(fraction)
    except ValueError:
        raise ValueError(f"fraction {fraction!r} is not a number") from None
    if not 0 <= value <= 1:
        raise ValueError(f"fraction {value} is not in [0, 1]")
    load_behaviour(name)
    return name, value
