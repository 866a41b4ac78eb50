"""The Data API's store upkeep loop (``data_api/app.py``) outlives any one failed round.

Incident guarded against: an error the loop did not expect (a PostgreSQL
privilege error, a read-only session after a fail-over) ended the task
silently, and expired nonces and old rate counters were never pruned again.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from data_api.app import _maintain_forever

pytestmark = pytest.mark.unit


class FailingOnceStore:
    """A store whose first upkeep fails with an error no one planned for."""

    def __init__(self) -> None:
        self.rounds = 0
        self.recovered = asyncio.Event()

    async def maintain(self) -> None:
        self.rounds += 1
        if self.rounds == 1:
            raise PermissionError("permission denied for table nonces")
        self.recovered.set()


def test_an_unexpected_error_is_logged_with_its_traceback_and_the_next_round_runs(caplog):
    async def scenario() -> int:
        store = FailingOnceStore()
        loop = asyncio.create_task(_maintain_forever(store, interval_s=0.01))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(store.recovered.wait(), timeout=5)
            assert not loop.done()
        finally:
            loop.cancel()
        return store.rounds

    with caplog.at_level(logging.ERROR, logger="data_api.app"):
        assert asyncio.run(scenario()) >= 2
    failed = [r for r in caplog.records if "store maintenance failed" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
