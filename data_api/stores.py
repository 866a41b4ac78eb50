"""The Data API's store, as the service sees it: one async interface, two databases.

SQLite (``data_api/store.py``) is the embedded default: one file that the
worker processes of one machine share. PostgreSQL (``data_api/store_pg.py``)
is for several instances on several hosts behind one address. Both hold the
same tables (numbered migrations in ``migrations.py`` and ``migrations_pg.py``)
and everything the instances must agree on: issued blocks, owner references,
status reports, upload grants, accepted nonces and rate counters.

    store = await open_store(Path("api.sqlite"))              # or "postgresql://..."
    raw, stored = await store.save_block(IssuedBlock(epoch_id, block_id, raw, zipcodes, honeypots))
    wait = await store.admit(hotkey, nonce_ns)   # ReplayedRequest, or seconds to wait
    await store.close()

A store that cannot reach its database raises ``StoreUnavailable``: a handler
it escapes from answers 503 with ``Retry-After``, and the next request tries
again (no restart).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from bittensor import http_auth

from common.data_api_models import HoneypotReference
from common.signed_http import RequestRefused
from config.data_api import UploadLimits
from config.settings import SettingsError
from data_api.guards import SqliteNonceStore, SqliteRateLimiter, guard_connection
from data_api.store import ApiStore, IssuedBlock, IssuedHoneypot, ReferenceRow, UploadGrant

logger = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
RETRY_AFTER_S = 5  # what a 503 tells callers: a database restart or fail-over takes seconds


class StoreUnavailable(RequestRefused):
    """The database did not answer: a 503 with ``Retry-After`` for whoever asked."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            503,
            "store_unavailable",
            "the Data API's database is unreachable; retry later",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
        self.detail = detail  # for the log; never sent (it may name hosts)


class DataStore(Protocol):
    """What the service keeps, shared by every process and instance that opens the database."""

    kind: str  # "sqlite" or "postgresql", for /v1/health and logs

    async def admit(self, hotkey: str, nonce_ns: int) -> float:
        """Store the nonce and count the call (``common.signed_http.Admission``)."""
        ...

    async def block_json(self, epoch_id: int) -> bytes | None: ...

    async def recent_zipcodes(self, epoch_id: int, epochs: int) -> list[frozenset[str]]: ...

    async def save_block(self, block: IssuedBlock, now: float | None = None) -> tuple[bytes, bool]:
        """(the epoch's block bytes, whether this call stored them): the first write wins."""
        ...

    async def honeypots(self, epoch_id: int) -> tuple[str, list[IssuedHoneypot]] | None: ...

    async def upsert_reference(
        self, reference: HoneypotReference, added_by: str, now: float | None = None
    ) -> None: ...

    async def delete_reference(self, zipcode: str, source: str | None = None) -> int: ...

    async def references(self) -> list[ReferenceRow]: ...

    async def reference_zipcodes(self) -> list[str]: ...

    async def reference_records(self, zipcodes: Iterable[str]) -> dict[str, dict[str, list]]: ...

    async def grant_upload(
        self, grant: UploadGrant, limits: UploadLimits, now: float | None = None
    ) -> int | None:
        """Files the zipcode then has, or None past the cap (``ApiStore.grant_upload``)."""
        ...

    async def save_status(
        self, epoch_id: int, hotkey: str, report_json: str, now: float | None = None
    ) -> float: ...

    async def status_reports(self, epoch_id: int) -> dict[str, dict]: ...

    async def reachable(self) -> bool:
        """Whether the database answers (``/v1/health``, so cheap however often asked)."""
        ...

    async def maintain(self) -> None:
        """Periodic upkeep, every ``MAINTENANCE_INTERVAL_S`` (WAL checkpoint, old rows)."""
        ...

    async def close(self) -> None: ...


class SqliteStore:
    """``DataStore`` over one SQLite file: ``ApiStore`` on a thread, the guards on the loop.

    The guards' writes are a few tens of microseconds (``data_api/guards.py``),
    cheaper than a hop to a thread; everything else runs in ``asyncio.to_thread``.
    """

    kind = "sqlite"

    def __init__(
        self, store: ApiStore, guard_conn: sqlite3.Connection, requests_per_minute: int
    ) -> None:
        self.sync = store  # the blocking store, for the CLI and tests that hold a file
        self._guard_conn = guard_conn
        self._nonces = SqliteNonceStore(self._guard_conn)
        self._limiter = SqliteRateLimiter(self._guard_conn, requests_per_minute)

    async def admit(self, hotkey: str, nonce_ns: int) -> float:
        if not self._nonces.check_and_store(hotkey, nonce_ns):
            raise http_auth.ReplayedRequest("this nonce was already accepted from this hotkey")
        return self._limiter.take(hotkey)

    async def block_json(self, epoch_id: int) -> bytes | None:
        return await asyncio.to_thread(self.sync.block_json, epoch_id)

    async def recent_zipcodes(self, epoch_id: int, epochs: int) -> list[frozenset[str]]:
        return await asyncio.to_thread(self.sync.recent_zipcodes, epoch_id, epochs)

    async def save_block(self, block: IssuedBlock, now: float | None = None) -> tuple[bytes, bool]:
        return await asyncio.to_thread(self.sync.save_block, block, now)

    async def honeypots(self, epoch_id: int) -> tuple[str, list[IssuedHoneypot]] | None:
        return await asyncio.to_thread(self.sync.honeypots, epoch_id)

    async def upsert_reference(
        self, reference: HoneypotReference, added_by: str, now: float | None = None
    ) -> None:
        await asyncio.to_thread(self.sync.upsert_reference, reference, added_by, now)

    async def delete_reference(self, zipcode: str, source: str | None = None) -> int:
        return await asyncio.to_thread(self.sync.delete_reference, zipcode, source)

    async def references(self) -> list[ReferenceRow]:
        return await asyncio.to_thread(self.sync.references)

    async def reference_zipcodes(self) -> list[str]:
        return await asyncio.to_thread(self.sync.reference_zipcodes)

    async def reference_records(self, zipcodes: Iterable[str]) -> dict[str, dict[str, list]]:
        return await asyncio.to_thread(self.sync.reference_records, list(zipcodes))

    async def grant_upload(
        self, grant: UploadGrant, limits: UploadLimits, now: float | None = None
    ) -> int | None:
        return await asyncio.to_thread(self.sync.grant_upload, grant, limits, now)

    async def save_status(
        self, epoch_id: int, hotkey: str, report_json: str, now: float | None = None
    ) -> float:
        return await asyncio.to_thread(self.sync.save_status, epoch_id, hotkey, report_json, now)

    async def status_reports(self, epoch_id: int) -> dict[str, dict]:
        return await asyncio.to_thread(self.sync.status_reports, epoch_id)

    async def reachable(self) -> bool:
        return True  # a local file: if it failed, the requests themselves say so

    async def maintain(self) -> None:
        """Checkpoint the WAL on a thread, since the request path never does (see guards)."""
        await asyncio.to_thread(self.sync.checkpoint)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)
        self._guard_conn.close()


def is_postgres(database: Path | str) -> bool:
    return isinstance(database, str) and database.startswith(POSTGRES_SCHEMES)


async def open_store(
    database: Path | str, requests_per_minute: int = 600, pool_size: int = 10
) -> DataStore:
    """The store ``database`` names: a ``postgresql://`` URL, else a SQLite file path.

    Opening migrates the schema (once, also when several instances start
    together). Raises ``StoreUnavailable`` when PostgreSQL cannot be reached, and
    ``SettingsError`` for a PostgreSQL URL without the ``postgres`` extra installed.
    """
    if is_postgres(database):
        try:
            from data_api.store_pg import PostgresStore  # psycopg is an optional extra
        except ImportError as exc:  # a setting this install cannot serve: exit 2, one line
            raise SettingsError(
                "DATA_API_DATABASE_URL names PostgreSQL, but its driver is not installed "
                f"({exc.name or exc}): pip install -e '.[postgres]'"
            ) from None
        return await PostgresStore.open(str(database), requests_per_minute, pool_size)
    path = Path(database)
    store = await asyncio.to_thread(ApiStore.open, path)
    guard_conn = await asyncio.to_thread(guard_connection, path)
    return SqliteStore(store, guard_conn, requests_per_minute)
