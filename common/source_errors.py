"""What a property source raises when it cannot answer: no evidence, never a miner's failure.

Miners' sources raise them (``scraping/source.py``, ``scraping/rapidapi.py``);
validators' spot checks catch them (``vali_utils/spot_check.py``), so they
live below both.

    try:
        record = await source.fetch_property(zpid, deadline=deadline)
    except SourceUnavailable:
        ...                                   # neither confirmed nor refuted
"""

from __future__ import annotations


class SourceUnavailable(Exception):
    """The source cannot answer now (network, limits, key, malformed answer).

    For a validator this is no evidence: the record is neither confirmed nor
    refuted, and the miner is not blamed. The message is one line.
    """


class KeyRejected(SourceUnavailable):
    """The source refused the credentials (HTTP 401/403); it stays unusable until restarted."""


class BudgetExhausted(SourceUnavailable):
    """The configured call budget is spent; no call was made."""


class BadAnswer(SourceUnavailable):
    """The source answered with something that is not a usable answer (invalid JSON, shape)."""
