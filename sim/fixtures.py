"""Deterministic data the benchmarks and the tests share: ss58-shaped hotkeys, busy zipcodes.

hotkey(3)                  # "5..." (48 base58 characters), the same on every run
zipcodes(20)               # zipcodes of WORLD that have listings
"""

from __future__ import annotations

import hashlib

from sim.world import SyntheticWorld

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
NONCE = "0123456789abcdef0123456789abcdef"  # an epoch nonce
SOURCE = "ZILLOW_SOLD"
WORLD = SyntheticWorld(seed=11)


def hotkey(n: int) -> str:
    """A deterministic 48-character base58 string starting with 5, like an ss58 hotkey."""
    digest = hashlib.blake2b(f"hotkey-{n}".encode(), digest_size=47).digest()
    return "5" + "".join(BASE58[b % 58] for b in digest)


def zipcodes(count: int, start: int = 0) -> list[str]:
    """Zipcodes of the synthetic world that have listings."""
    universe = [z for z in WORLD.universe(2000) if WORLD.listing_count(z) > 0]
    return universe[start : start + count]
