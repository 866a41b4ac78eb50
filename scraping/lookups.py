"""Property-id lookups: the miner's answer to a tie-break (``assignment_mode="property_ids"``).

A validator that saw the two groups of a batch disagree on a listing asks a
few fresh miners to look the listing up by its zpid. Each zpid ends in one of
three states, and the answer keeps them apart:

- found: the source returned the listing; the answer carries its zipcode and
  ``record_hash``;
- not found: the source says there is no such listing (``found=False``);
- not answered: the lookup failed or ran out of time; the zpid is left out.

    results = await lookup_with_source(source, wanted, deadline, semaphore)
    rows = lookup_rows(key, wanted, results, digester)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

from common.protocol import PropertyAnswer
from common.records import RecordDigester
from scraping.source import SourceUnavailable

logger = logging.getLogger(__name__)

NOT_ANSWERED = object()  # a lookup that failed: the zpid stays out of the answer

Wanted = tuple[str, str]  # (source name, zpid)


async def lookup_with_source(
    source: Any,
    wanted: Iterable[Wanted],
    deadline: float,
    semaphore: AbstractAsyncContextManager[Any],
) -> dict[Wanted, Any]:
    """``fetch_property`` per zpid: the record, None (no such listing) or NOT_ANSWERED.

    ``semaphore`` is entered around each call: an ``asyncio.Semaphore`` or the
    miner's fair lane (``scraping.fairness.Lane``), which takes turns between validators.
    """

    async def one(item: Wanted) -> tuple[Wanted, Any]:
        async with semaphore:
            if time.monotonic() >= deadline:
                return item, NOT_ANSWERED
            try:
                return item, await source.fetch_property(item[1], deadline=deadline)
            except SourceUnavailable as exc:
                logger.warning("lookup of zpid %s failed: %s", item[1], exc)
                return item, NOT_ANSWERED

    return dict(await asyncio.gather(*(one(item) for item in wanted)))


def lookup_rows(
    key: str, results: dict[Wanted, Any], digester: RecordDigester
) -> tuple[list[tuple], int]:
    """Store rows (key, source, zpid, found, zipcode, record_hash, record_json) and rejects.

    A record that fails validation, or that describes another zpid, is not an
    answer: reporting "not found" for it would be a claim the miner never made.
    """
    rows, rejected = [], 0
    for (source_name, zpid), record in sorted(results.items()):
        if record is NOT_ANSWERED:
            continue
        if record is None:
            rows.append((key, source_name, zpid, 0, None, None, None))
            continue
        digest = digester.digest(record)
        if isinstance(digest, str) or str(digest[0]) != str(int(zpid)):
            rejected += 1
            continue
        _, record_hash, fields = digest
        rows.append(
            (key, source_name, zpid, 1, fields[2], record_hash, json.dumps(record, default=str))
        )
    return rows, rejected


def property_answers(rows: Iterable[tuple]) -> list[PropertyAnswer]:
    """Answers from stored ``(source, zpid, found, zipcode, record_hash)`` rows."""
    return [
        PropertyAnswer(
            source=source,
            zpid=zpid,
            found=bool(found),
            zipcode=zipcode if found else None,
            record_hash=record_hash if found else None,
        )
        for source, zpid, found, zipcode, record_hash in rows
    ]
