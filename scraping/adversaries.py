"""Miner behaviours for the attack simulator and the local subnet: honest and gaming.

A behaviour is any class with a ``name`` attribute and a method
``respond(self, ctx) -> dict[str, list[dict]] | None``: zipcode -> records
(dicts in the record schema of ``common.records``); ``None`` means no answer.
``ctx`` (a ``MinerContext``) offers:

- ``miner``: the ``MinerInfo`` (uid, hotkey, coldkey) answering;
- ``zipcodes``: the zipcodes of this assignment (list[str]);
- ``scrape(zipcode) -> list[dict]``: this miner's honest view of a zipcode;
- ``peer_responses(zipcode) -> dict[str, list[dict]]``: answers already given
  by other miners of the same batch, by hotkey;
- ``rng``: a ``random.Random`` seeded for this miner and epoch;
- ``epoch``: the epoch number;
- ``stale(record) -> dict | None``: the record as an old snapshot shows it
  (built-ins only need it; a plugin may ignore it);
- ``fetch(zpid) -> dict | None``: this miner's source looked up by property id
  (None: no such listing), for property-id (tie-break) assignments.

Property-id assignments (tie-breaks) call ``properties(ctx, zpids)`` when a
behaviour has it: zpid -> record dict, or None for "does not exist"; a zpid
left out is unanswered; returning None is no answer at all. Without it,
``properties_from_respond`` answers from what ``respond`` gives for
``ctx.zipcodes``: the behaviour vouches for its own records and for nothing else.

Optional class attributes: ``copies_peers = True`` makes the simulator let a
behaviour answer after the other miners of its batch (so it has something to
copy); ``shares_coldkey = True`` puts all its miners under one coldkey.

Plugins are loaded with ``load_behaviour("path/to/file.py:ClassName")`` or
``"package.module:ClassName"``; the built-ins are looked up by name.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
from collections.abc import Callable
from dataclasses import dataclass
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
    """Copies one other miner's answers (a peer it picks at random), errors included."""

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


BUILTIN_BEHAVIOURS: dict[str, type] = {
    cls.name: cls
    for cls in (Honest, Offline, Lazy, Fabricate, Inflate, Copycat, Cartel, Sybil, Stale)
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
