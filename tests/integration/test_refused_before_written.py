"""Callers who may not call are refused before the Data API writes anything for them (issue 15).

Incident: the signature was verified (and its nonce stored) before the
caller's registration was looked up, so an unregistered hotkey, refused with
403 every time, left a nonce row per request (one hotkey left 902) and was
never rate-limited. Now registration is settled from the headers, before the
body is read or a nonce stored.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import aiohttp
import pytest

from tests.integration.data_api_harness import call, make_subnet, running

pytestmark = pytest.mark.integration

ATTEMPTS = 50


def rows(db, table: str, hotkey: str) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(
            f"SELECT count(*) FROM {table} WHERE hotkey = ?", (hotkey,)
        ).fetchone()
    return count


def test_unregistered_and_unpermitted_callers_leave_no_rows(tmp_path):
    subnet = make_subnet(tmp_path / "subnet")
    db = tmp_path / "api.sqlite"
    people = subnet.people
    path = "/v1/epochs/current"

    async def scenario() -> float:
        async with running(subnet, db) as api, aiohttp.ClientSession() as session:
            started = time.monotonic()
            for who in ("stranger", "nopermit"):
                for _ in range(ATTEMPTS):
                    status, payload, _ = await call(session, api, people[who], "GET", path)
                    assert status == 403, payload
            refused_s = (time.monotonic() - started) / (2 * ATTEMPTS)
            status, payload, _ = await call(session, api, people["validator"], "GET", path)
            assert status == 200, payload
            return refused_s

    refused_s = asyncio.run(scenario())
    for who in ("stranger", "nopermit"):
        assert rows(db, "nonces", people[who].hotkey) == 0, who
        assert rows(db, "rate_counters", people[who].hotkey) == 0, who
    # The accepted caller's nonce and count were written: the tables are the right ones.
    assert rows(db, "nonces", people["validator"].hotkey) == 1
    assert rows(db, "rate_counters", people["validator"].hotkey) == 1
    assert refused_s < 0.05, refused_s  # a refusal is a lookup, not a signature check and a write
