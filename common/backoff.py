"""The one retry wait of the project: exponential, capped, jittered.

Every retry loop (the miner's uploads, the validator's Data API client and
weight setting, the property source's client) waits this long between
attempts. The loops themselves stay where they are because each ends
differently: an upload's next attempt is a row in its ledger (it survives a
restart), the Data API's 429 waits its ``Retry-After``, the source's rate
limit pauses every zipcode at once. tenacity retries a call in one process
and cannot keep any of these, so the wait is the shared part.

    wait = backoff_s(attempt, base_s=0.5, cap_s=8.0, jitter=rng.random())
"""

from __future__ import annotations


def backoff_s(attempt: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0 for the first failure).

    ``base_s * 2**attempt``, never more than ``cap_s``; ``jitter`` in [0, 1]
    keeps half of that fixed and spreads the other half, so retries that
    failed together do not come back together (1.0: no spread, the full wait).
    """
    ceiling = min(cap_s, base_s * 2 ** min(max(0, attempt), 64))  # 2**64: past any cap
    return ceiling * (0.5 + 0.5 * min(1.0, max(0.0, jitter)))
