"""The Data API's PostgreSQL store on a real cluster: schema, migrations, outages.

The same schema as SQLite, migrated once when instances start together, and
a database that drops off the network: clear 503s with ``Retry-After``,
``/v1/health`` saying so, and service again once it is back, without a
restart. (Every other Data API test runs on both stores: the ``database``
fixture; several instances as processes: ``test_data_api_instances.py``.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import aiohttp
import pytest

from common.data_api_models import StatusReport
from common.sqlite_db import SchemaTooNew
from data_api.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from data_api.store import ApiStore
from tests.integration.data_api_harness import (
    Subnet,
    assert_json_error,
    call,
    make_subnet,
    model,
    running,
)
from tests.integration.tcp_relay import TcpRelay

psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
from data_api.migrations_pg import MIGRATIONS, schema_version  # noqa: E402 - needs psycopg
from data_api.store_pg import PostgresStore  # noqa: E402

pytestmark = pytest.mark.integration

# SQLite's declared types and the PostgreSQL types that hold the same values.
SAME_TYPE = {
    "INTEGER": {"bigint", "integer"},
    "TEXT": {"text"},
    "BLOB": {"bytea"},
    "REAL": {"double precision"},
}
RECOVERY_TIMEOUT_S = 30.0  # the pool reconnects with backoff; seconds, not minutes


@pytest.fixture(scope="module")
def subnet(tmp_path_factory) -> Subnet:
    return make_subnet(tmp_path_factory.mktemp("data-api-pg"))


def sqlite_columns(tmp_path) -> dict[str, dict[str, str]]:
    path = tmp_path / "schema.sqlite"
    ApiStore.open(path).close()
    db = sqlite3.connect(path)
    tables = [
        row[0]
        for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    ]
    out = {t: {c[1]: c[2] for c in db.execute(f"PRAGMA table_info({t})")} for t in tables}
    db.close()
    return out


def test_both_stores_have_the_same_tables_and_columns(postgres, tmp_path):
    url = postgres.create_database("schema")

    async def pg_columns() -> dict[str, dict[str, str]]:
        store = await PostgresStore.open(url)
        await store.close()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cursor = await conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name <> 'schema_version'"
            )
            rows = await cursor.fetchall()
        out: dict[str, dict[str, str]] = {}
        for table, column, kind in rows:
            out.setdefault(table, {})[column] = kind
        return out

    lite, pg = sqlite_columns(tmp_path), asyncio.run(pg_columns())
    assert len(MIGRATIONS) == len(SQLITE_MIGRATIONS)
    assert set(pg) == set(lite)
    for table, columns in lite.items():
        assert set(pg[table]) == set(columns), table
        for column, declared in columns.items():
            assert pg[table][column] in SAME_TYPE[declared], (table, column, pg[table][column])


def test_instances_starting_together_migrate_once(postgres):
    url = postgres.create_database("migrate")

    async def scenario():
        stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(6)))
        for store in stores:
            await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await schema_version(conn) == len(MIGRATIONS)
            cursor = await conn.execute("SELECT count(*) FROM schema_version")
            assert (await cursor.fetchone())[0] == 1
            # A database written by a newer release is refused, untouched.
            await conn.execute("UPDATE schema_version SET version = %s", (len(MIGRATIONS) + 1,))
        with pytest.raises(SchemaTooNew):
            await PostgresStore.open(url)

    asyncio.run(scenario())


def test_an_unreachable_database_gives_503s_then_service_again_without_a_restart(subnet, postgres):
    url = postgres.create_database("outage")
    validator = subnet.people["validator"]
    path = "/v1/epochs/current"

    async def health(session, api) -> dict:
        async with session.get(api.url + "/v1/health") as response:
            assert response.status == 200
            return await response.json()

    async def scenario():
        relay = await TcpRelay.start("127.0.0.1", postgres.port)
        relayed = url.replace(f":{postgres.port}/", f":{relay.port}/")
        try:
            async with running(subnet, relayed) as api, aiohttp.ClientSession() as s:
                status, block, _ = await call(s, api, validator, "GET", path)
                assert status == 200
                assert (await health(s, api))["store_status"] == "ok"

                await relay.cut()
                status, payload, headers = await call(s, api, validator, "GET", path)
                assert status == 503
                assert_json_error(status, payload, "store_unavailable")
                assert headers["Retry-After"] == "5"
                assert str(relay.port) not in payload["error"]["message"]
                report = model(StatusReport(completed=1, assignments=1))
                status, payload, _ = await call(
                    s, api, validator, "POST", f"/v1/epochs/{subnet.epoch}/status", report
                )
                assert (status, payload["error"]["code"]) == (503, "store_unavailable")
                assert (await health(s, api))["store_status"] == "failing"

                await relay.restore()
                started = time.monotonic()
                while True:  # PostgreSQL's return cannot be awaited: ask as a client would
                    status, again, _ = await call(s, api, validator, "GET", path)
                    if status == 200 or time.monotonic() - started > RECOVERY_TIMEOUT_S:
                        break
                    assert status == 503
                    await asyncio.sleep(0.2)
                assert (status, again) == (200, block)
                status, _, _ = await call(
                    s, api, validator, "POST", f"/v1/epochs/{subnet.epoch}/status", report
                )
                assert status == 200
                assert (await health(s, api))["store_status"] == "ok"
                assert validator.hotkey in await api.store.status_reports(subnet.epoch)
        finally:
            await relay.stop()

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_process_exits_4_when_its_database_is_unreachable_at_start(subnet, tmp_path):
    from tests.integration.data_api_harness import free_port
    from tests.integration.test_data_api_process import spawn

    url = f"postgresql://api:do-not-log-me@127.0.0.1:{free_port()}/data_api"  # nobody listens
    process = spawn(subnet, tmp_path, "--api.database.url", url)
    assert process.wait(timeout=60) == 4
    log = (tmp_path / "data_api.log").read_text()
    assert "database unreachable at start" in log
    assert "do-not-log-me" not in log
