"""The Data API's store in PostgreSQL, shared by every instance (``DataStore``).

psycopg 3 in async mode behind a connection pool (the ``postgres`` extra), so
the event loop never waits on the database. Every statement is
parameterised. What must hold across instances holds in the database:

- a nonce is one ``INSERT ... ON CONFLICT DO NOTHING``, and the caller's rate
  counter is bumped in the same statement only when the nonce was new: one
  round trip admits a request, and a replay never spends its victim's limit.
  These go through a pool of their own with ``synchronous_commit=off``: a
  crash of the database may forget the last instants of nonces and counters
  (the trade SQLite's ``synchronous=NORMAL`` makes), and no request waits for
  a WAL flush to be admitted. Everything else commits durably;
- a block is ``INSERT ... ON CONFLICT DO NOTHING`` then read back: the first
  instance's bytes are every instance's bytes;
- an upload grant counts and inserts under a transaction-scoped advisory lock
  on the (miner, epoch, source, zipcode), so the cap holds across instances.

    store = await PostgresStore.open("postgresql://api@db/data_api", requests_per_minute=600)
    wait = await store.admit(hotkey, nonce_ns)
    await store.close()

Any failure to reach the database (refused, reset, pool exhausted, read-only
after a fail-over, or an operation past ``OPERATION_TIMEOUT_S``) is
``StoreUnavailable``; the pool replaces broken connections, so the service
recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

import psycopg
from bittensor import http_auth
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.data_api_models import HoneypotReference
from config.data_api import UploadLimits
from data_api import migrations_pg
from data_api.guards import NONCE_RETENTION_S, RATE_WINDOW_S, SWEEP_INTERVAL_S
from data_api.health_probe import HealthProbe
from data_api.store import IssuedBlock, IssuedHoneypot, ReferenceRow, UploadGrant
from data_api.stores import StoreUnavailable

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3  # libpq's connect_timeout: a host that is gone fails fast
POOL_WAIT_S = 3.0  # a request waits this long for a free connection, then 503
DOWN_POOL_WAIT_S = 0.5  # ... and this long once the database is known to be down
OPERATION_TIMEOUT_S = 5.0  # one store call, end to end (a partition must not hang requests)
HEALTH_TIMEOUT_S = 2.0  # /v1/health answers within this even when the database is gone
OPEN_TIMEOUT_S = 10.0  # at start: the first connections

# What a database that is gone, restarting, failing over or read-only raises: a 503
# with Retry-After. Any other psycopg error is a bug or a misconfiguration (a 500).
UNAVAILABLE = (
    psycopg.OperationalError,  # refused, reset, admin shutdown, pool timeout, lock timeout
    psycopg.InterfaceError,  # a connection closed under us
    psycopg.errors.ReadOnlySqlTransaction,  # a standby, or a primary demoted by a fail-over
    TimeoutError,  # OPERATION_TIMEOUT_S
)

# The nonce first; the counter only when the nonce was new (``fresh`` is empty for a replay).
ADMIT = """
WITH fresh AS (
    INSERT INTO nonces (hotkey, nonce_ns, expires_at) VALUES (%(hotkey)s, %(nonce)s, %(expires)s)
    ON CONFLICT DO NOTHING RETURNING hotkey
), counted AS (
    INSERT INTO rate_counters (hotkey, window_id, count)
    SELECT hotkey, %(window)s, 1 FROM fresh
    ON CONFLICT (hotkey, window_id) DO UPDATE SET count = rate_counters.count + 1
    RETURNING count
)
SELECT count FROM counted
"""


def _pool(url: str, size: int, name: str, options: str = "") -> AsyncConnectionPool:
    """A pool of autocommit connections, opened by the caller."""
    settings: dict = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S}
    if options:
        settings["options"] = options
    return AsyncConnectionPool(
        url,
        min_size=min(2, size),
        max_size=size,
        kwargs=settings,
        timeout=POOL_WAIT_S,
        open=False,
        name=name,
    )


class PostgresStore:
    kind = "postgresql"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        guards: AsyncConnectionPool,
        requests_per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be >= 1")
        self._pool = pool  # durable commits: blocks, grants, reports, references
        self._guards = guards  # nonces and rate counters (module doc)
        self._per_window = requests_per_minute * RATE_WINDOW_S // 60 or 1
        self._clock = clock
        self._pruned_before = -1  # upload grants of epochs up to this one are pruned
        self._next_sweep = 0.0
        self._down = False  # logged once per outage, not once per request
        self._checks: set[asyncio.Task] = set()
        # /v1/health is unsigned: at most one SELECT 1 per PROBE_TTL_S however often it is
        # asked, so a flood of it cannot take the connections signed requests need.
        self._health = HealthProbe(self._answers)

    @classmethod
    async def open(
        cls, url: str, requests_per_minute: int = 600, pool_size: int = 10
    ) -> PostgresStore:
        """Connect, migrate (once across instances), and return the store.

        Raises ``StoreUnavailable`` when the database cannot be reached within
        ``OPEN_TIMEOUT_S``, the migration lock is not had within
        ``migrations_pg.LOCK_TIMEOUT_S``, or the database refuses the migration (a role
        without the privileges); ``SchemaTooNew`` for a database newer than this code.
        """
        pool = _pool(url, pool_size, "data-api")
        guards = _pool(url, pool_size, "data-api-guards", "-c synchronous_commit=off")
        try:
            await pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
            # The server bounds the lock wait; this bounds a server that stops answering.
            async with (
                asyncio.timeout(OPEN_TIMEOUT_S + migrations_pg.LOCK_TIMEOUT_S),
                pool.connection() as conn,
            ):
                await migrations_pg.migrate(conn)
            await guards.open(wait=True, timeout=OPEN_TIMEOUT_S)
        except (psycopg.Error, TimeoutError) as exc:  # also a role that may not create tables
            await asyncio.gather(pool.close(), guards.close())
            raise StoreUnavailable(str(exc).strip() or type(exc).__name__) from exc
        except BaseException:
            await asyncio.gather(pool.close(), guards.close())
            raise
        return cls(pool, guards, requests_per_minute)

    async def close(self) -> None:
        checks = list(self._checks)
        for task in checks:
            task.cancel()
        # Awaited, so none outlives the pools (or the loop) it would check.
        await asyncio.gather(*checks, return_exceptions=True)
        await asyncio.gather(self._pool.close(), self._guards.close())

    @contextlib.asynccontextmanager
    async def _connection(self, guards: bool = False) -> AsyncIterator[AsyncConnection]:
        """A pooled connection (the guards' pool when ``guards``); a failure to reach
        the database becomes StoreUnavailable."""
        wait = DOWN_POOL_WAIT_S if self._down else POOL_WAIT_S  # fail fast in an outage
        pool = self._guards if guards else self._pool
        try:
            async with (
                asyncio.timeout(OPERATION_TIMEOUT_S),
                pool.connection(timeout=wait) as conn,
            ):
                try:
                    yield conn
                except psycopg.errors.ReadOnlySqlTransaction:
                    # A primary demoted by a fail-over keeps this session read-only for
                    # good: closed, the pool replaces it (with the new primary, if the
                    # URL's target_session_attrs=read-write picks it).
                    await conn.close()
                    raise
        except UNAVAILABLE as exc:
            self._failed(exc)
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        if self._down:
            self._down = False
            self._health.forget()
            logger.info("PostgreSQL reachable again")

    def _failed(self, exc: BaseException) -> None:
        if self._down:
            return
        self._down = True
        self._health.forget()
        logger.warning("PostgreSQL unreachable, answering 503 until it is back: %s", exc)
        # The idle connections are likely broken too (a restart, a fail-over): have the
        # pool test and replace them now rather than fail one request each.
        for pool in (self._pool, self._guards):
            task = asyncio.create_task(pool.check(), name=f"{pool.name}-check")
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    # --- guards --------------------------------------------------------------------------

    async def admit(self, hotkey: str, nonce_ns: int) -> float:
        """0.0 when the call may go on, else seconds to the caller's next window.

        Raises ``http_auth.ReplayedRequest`` when any instance accepted the nonce before.
        """
        now = self._clock()
        window = int(now // RATE_WINDOW_S)
        params = {
            "hotkey": hotkey,
            "nonce": int(nonce_ns),
            "expires": now + NONCE_RETENTION_S,
            "window": window,
        }
        async with self._connection(guards=True) as conn:
            row = await (await conn.execute(ADMIT, params)).fetchone()
        if row is None:
            raise http_auth.ReplayedRequest("this nonce was already accepted from this hotkey")
        if row[0] <= self._per_window:
            return 0.0
        return (window + 1) * RATE_WINDOW_S - now

    async def maintain(self) -> None:
        """Drop expired nonces and past rate windows (each instance, every SWEEP_INTERVAL_S)."""
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        async with self._connection(guards=True) as conn:
            await conn.execute("DELETE FROM nonces WHERE expires_at < %s", (now,))
            await conn.execute(
                "DELETE FROM rate_counters WHERE window_id < %s",
                (int(now // RATE_WINDOW_S) - 1,),
            )

    async def reachable(self) -> bool:
        """Whether the database answers (/v1/health): a probe kept ``PROBE_TTL_S``, or
        until a request finds otherwise."""
        return await self._health.reachable()

    async def _answers(self) -> bool:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S), self._connection() as conn:
                await conn.execute("SELECT 1")
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    # --- blocks ----------------------------------------------------------------------------

    async def block_json(self, epoch_id: int) -> bytes | None:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT block_json FROM epochs WHERE epoch_id = %s", (epoch_id,)
            )
            row = await cursor.fetchone()
        return bytes(row[0]) if row else None

    async def recent_zipcodes(self, epoch_id: int, epochs: int) -> list[frozenset[str]]:
        if epochs <= 0:
            return []
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT epoch_id, zipcode FROM block_zipcodes "
                "WHERE epoch_id >= %s AND epoch_id < %s",
                (epoch_id - epochs, epoch_id),
            )
            rows = await cursor.fetchall()
        by_epoch: dict[int, set[str]] = {}
        for epoch, zipcode in rows:
            by_epoch.setdefault(epoch, set()).add(zipcode)
        return [frozenset(by_epoch[e]) for e in sorted(by_epoch, reverse=True)]

    async def save_block(self, block: IssuedBlock, now: float | None = None) -> tuple[bytes, bool]:
        created = self._clock() if now is None else now
        epoch_id, block_id, block_json = block.epoch_id, block.block_id, block.block_json
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO epochs (epoch_id, block_id, block_json, created_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING epoch_id",
                (epoch_id, block_id, block_json, created),
            )
            if await cursor.fetchone() is None:  # another instance issued it first
                cursor = await conn.execute(
                    "SELECT block_json FROM epochs WHERE epoch_id = %s", (epoch_id,)
                )
                row = await cursor.fetchone()
                if row is None:  # the block id is taken by another epoch: never by design
                    raise RuntimeError(f"block id {block_id} already issued for another epoch")
                return bytes(row[0]), False
            async with conn.cursor() as many:
                await many.executemany(
                    "INSERT INTO block_zipcodes (epoch_id, zipcode) VALUES (%s, %s)",
                    block.zipcode_rows(),
                )
                await many.executemany(
                    "INSERT INTO block_honeypots (epoch_id, zipcode, kind, references_json) "
                    "VALUES (%s, %s, %s, %s)",
                    block.honeypot_rows(),
                )
        return block_json, True

    async def honeypots(self, epoch_id: int) -> tuple[str, list[IssuedHoneypot]] | None:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT block_id FROM epochs WHERE epoch_id = %s", (epoch_id,)
            )
            epoch = await cursor.fetchone()
            if epoch is None:
                return None
            cursor = await conn.execute(
                "SELECT zipcode, kind, references_json FROM block_honeypots "
                "WHERE epoch_id = %s ORDER BY zipcode",
                (epoch_id,),
            )
            rows = await cursor.fetchall()
        return epoch[0], [IssuedHoneypot(z, k, json.loads(r)) for z, k, r in rows]

    # --- owner references ---------------------------------------------------------------

    async def upsert_reference(
        self, reference: HoneypotReference, added_by: str, now: float | None = None
    ) -> None:
        zipcode, source, records = reference.zipcode, reference.source.value, reference.records
        records_json = json.dumps([list(r) for r in records])
        added = self._clock() if now is None else now
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO honeypot_references "
                "(zipcode, source, records_json, record_count, added_at, added_by) "
                "VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (zipcode, source) DO UPDATE SET records_json = excluded.records_json,"
                " record_count = excluded.record_count, added_at = excluded.added_at,"
                " added_by = excluded.added_by",
                (zipcode, source, records_json, len(records), added, added_by),
            )

    async def delete_reference(self, zipcode: str, source: str | None = None) -> int:
        async with self._connection() as conn:
            if source is None:
                cursor = await conn.execute(
                    "DELETE FROM honeypot_references WHERE zipcode = %s", (zipcode,)
                )
            else:
                cursor = await conn.execute(
                    "DELETE FROM honeypot_references WHERE zipcode = %s AND source = %s",
                    (zipcode, source),
                )
            return cursor.rowcount

    async def references(self) -> list[ReferenceRow]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT zipcode, source, record_count, added_at, added_by "
                "FROM honeypot_references ORDER BY zipcode, source"
            )
            rows = await cursor.fetchall()
        return [ReferenceRow(*row) for row in rows]

    async def reference_zipcodes(self) -> list[str]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT DISTINCT zipcode FROM honeypot_references ORDER BY zipcode"
            )
            rows = await cursor.fetchall()
        return [row[0] for row in rows]

    async def reference_records(self, zipcodes: Iterable[str]) -> dict[str, dict[str, list]]:
        wanted = sorted(set(zipcodes))
        out: dict[str, dict[str, list]] = {}
        if not wanted:
            return out
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT zipcode, source, records_json FROM honeypot_references "
                "WHERE zipcode = ANY(%s) ORDER BY zipcode, source",
                (wanted,),
            )
            rows = await cursor.fetchall()
        for zipcode, source, records_json in rows:
            out.setdefault(zipcode, {})[source] = json.loads(records_json)
        return out

    # --- upload grants ---------------------------------------------------------------------

    async def grant_upload(
        self, grant: UploadGrant, limits: UploadLimits, now: float | None = None
    ) -> int | None:
        """As ``ApiStore.grant_upload``; the advisory lock makes count-then-insert one step."""
        place, content_hash = grant.place, grant.content_hash
        epoch_id, cap, keep_epochs = grant.epoch_id, limits.files_per_zipcode, limits.keep_epochs
        lock_key = "upload-grant:" + ":".join(str(part) for part in place)
        granted_at = self._clock() if now is None else now
        async with self._connection() as conn, conn.transaction():
            if self._pruned_before < epoch_id - keep_epochs:
                await conn.execute(
                    "DELETE FROM upload_grants WHERE epoch_id <= %s", (epoch_id - keep_epochs,)
                )
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key,))
            cursor = await conn.execute(
                "SELECT COUNT(*), COALESCE(SUM((content_hash = %s)::int), 0) FROM upload_grants "
                "WHERE hotkey = %s AND epoch_id = %s AND source = %s AND zipcode = %s",
                (content_hash, *place),
            )
            count, known = await cursor.fetchone()
            if known:
                granted = count  # a retry of a file already granted: not a new file
            elif count >= cap:
                granted = None
            else:
                await conn.execute(
                    "INSERT INTO upload_grants (hotkey, epoch_id, source, zipcode,"
                    " content_hash, granted_at) VALUES (%s, %s, %s, %s, %s, %s)",
                    (*place, content_hash, granted_at),
                )
                granted = count + 1
        # Pruned once per epoch per instance, not on every presign.
        self._pruned_before = max(self._pruned_before, epoch_id - keep_epochs)
        return granted

    # --- validators' status reports ---------------------------------------------------------

    async def save_status(
        self, epoch_id: int, hotkey: str, report_json: str, now: float | None = None
    ) -> float:
        """Store (or replace) a validator's report; committed before this returns."""
        received = self._clock() if now is None else now
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO status_reports (epoch_id, validator_hotkey, received_at, report_json)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (epoch_id, validator_hotkey) DO UPDATE SET"
                " received_at = excluded.received_at, report_json = excluded.report_json",
                (epoch_id, hotkey, received, report_json),
            )
        return received

    async def status_reports(self, epoch_id: int) -> dict[str, dict]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT validator_hotkey, report_json FROM status_reports WHERE epoch_id = %s",
                (epoch_id,),
            )
            rows = await cursor.fetchall()
        return {hotkey: json.loads(report) for hotkey, report in rows}
