"""The seeded order in which S3 files are sampled, for the manifest audit and the evaluation.

A keyed blake2b of the parts (hotkey, key or source/zipcode/position): every
validator with the seed gets the same order, and a miner, who did not know
the seed when it uploaded, cannot aim its good files at the sample.

    chosen = sorted(files, key=lambda f: (sample_rank(seed, hotkey, f.key), f.key))[:k]
"""

from __future__ import annotations

import hashlib


def sample_rank(seed: bytes, *parts: str) -> int:
    """The rank of ``parts`` under ``seed`` (its first 64 bytes key the hash)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), key=seed[:64], digest_size=8)
    return int.from_bytes(digest.digest())
