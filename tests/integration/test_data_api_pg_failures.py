"""The PostgreSQL store when the database misbehaves short of going away.

Incidents guarded against (issue 19's review): a fail-over left the service on
a read-only primary, or a role lost a privilege, and an admission answered
aiohttp's plain-text 500 instead of a JSON refusal; a flood of unauthenticated
``/v1/health`` calls took every pooled connection, so signed requests timed
out on the pool and the store declared itself down; a hung instance holding
the migration lock kept every other instance from starting, for ever.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from bittensor import http_auth

from common.signed_http import AccessPolicy, SignedCall, signed_route
from data_api.stores import StoreUnavailable
from tests.integration.data_api_harness import (
    Subnet,
    assert_json_error,
    call,
    make_subnet,
    running,
)

psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
from data_api import migrations_pg  # noqa: E402 - needs psycopg
from data_api.store_pg import PostgresStore  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def subnet(tmp_path_factory) -> Subnet:
    return make_subnet(tmp_path_factory.mktemp("data-api-pg-failures"))


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def as_superuser(postgres, *statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres.url(), autocommit=True) as conn:
        for statement in statements:
            await conn.execute(statement)


async def drop_sessions(postgres, url: str) -> None:
    """End every session on the database: what a fail-over does to the old primary's."""
    await as_superuser(
        postgres,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database_name(url)}' AND pid <> pg_backend_pid()",
    )


def test_a_read_only_database_is_a_503_and_writes_resume_once_it_is_writable(postgres):
    url = postgres.create_database("readonly")
    name = database_name(url)

    async def scenario():
        store = await PostgresStore.open(url)
        try:
            assert await store.admit("hotkey", 1) == 0.0
            # A demoted primary: new sessions are read-only, the old ones are gone.
            await as_superuser(
                postgres, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
            )
            await drop_sessions(postgres, url)
            with pytest.raises(StoreUnavailable):  # the dropped session itself
                await store.admit("hotkey", 2)
            await asyncio.gather(*store._checks)  # the pool reconnects: read-only sessions
            for nonce in (3, 4):
                with pytest.raises(StoreUnavailable):  # was psycopg's ReadOnlySqlTransaction
                    await store.admit("hotkey", nonce)
            # Writable again (the new primary): the read-only sessions were let go, so
            # service resumes without a restart.
            await as_superuser(
                postgres, f'ALTER DATABASE "{name}" RESET default_transaction_read_only'
            )
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert await store.admit("hotkey", 5) == 0.0
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline, "read-only sessions were kept"
                    await asyncio.sleep(0.1)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_an_unexpected_admission_error_is_a_json_500(subnet, postgres):
    """A role without INSERT on the nonces: a misconfiguration, a 500 the caller can parse,
    from ``signed_route`` itself (not only where a middleware catches what escapes)."""
    url = postgres.create_database("grants")
    role = f"api_ro_{database_name(url)}"
    limited = url.replace("postgresql://postgres@", f"postgresql://{role}@")
    owner = subnet.owner

    async def ok(_call: SignedCall) -> web.Response:
        return web.json_response({})

    async def scenario():
        store = await PostgresStore.open(url)  # migrated by the owner
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'CREATE ROLE "{role}" LOGIN')
            await conn.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
            await conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
            await conn.execute(f'REVOKE INSERT ON nonces FROM "{role}"')
        store = await PostgresStore.open(limited)
        policy = AccessPolicy(
            self_hotkey=owner.hotkey,
            metagraph=lambda: None,
            admission=store,
            only_hotkeys=frozenset({owner.hotkey}),
        )
        app = web.Application()
        app.router.add_get("/owner", signed_route(policy, ok))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            headers = http_auth.sign(
                owner.keypair, method="GET", path="/owner", body=b"", receiver_ss58=owner.hotkey
            )
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/owner", headers=headers) as response,
            ):
                assert response.status == 500
                assert response.content_type == "application/json"  # was aiohttp's text/plain
                assert_json_error(response.status, await response.json(), "internal")
        finally:
            await runner.cleanup()
            await store.close()

    asyncio.run(scenario())


def test_a_flood_of_health_calls_costs_the_database_one_probe(subnet, postgres):
    url = postgres.create_database("health")
    validator = subnet.people["validator"]

    async def health(session, api) -> str:
        async with session.get(api.url + "/v1/health") as response:
            assert response.status == 200
            return (await response.json())["store_status"]

    async def scenario():
        async with running(subnet, url) as api, aiohttp.ClientSession() as session:
            api.store._pool.pop_stats()
            answers = await asyncio.gather(*(health(session, api) for _ in range(100)))
            assert set(answers) == {"ok"}
            # Each health call took a pooled connection for its SELECT 1 before.
            assert api.store._pool.get_stats().get("requests_num", 0) <= 2
            status, _, _ = await call(session, api, validator, "GET", "/v1/epochs/current")
            assert status == 200

    asyncio.run(scenario())


def test_a_hung_instance_holding_the_migration_lock_is_a_timely_store_unavailable(
    postgres, monkeypatch
):
    url = postgres.create_database("hung")
    monkeypatch.setattr(migrations_pg, "LOCK_TIMEOUT_S", 0.5)

    async def scenario() -> float:
        async with await psycopg.AsyncConnection.connect(url) as hung:
            await hung.execute("SELECT pg_advisory_xact_lock(%s)", (migrations_pg.MIGRATION_LOCK,))
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as refused:  # was: waiting for ever
                await PostgresStore.open(url)
            assert "lock" in refused.value.detail
            return time.monotonic() - started

    async def once_released():
        store = await PostgresStore.open(url)
        await store.close()

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) < 10
    asyncio.run(once_released())  # the lock's holder gone, the same start goes through


def test_a_role_that_may_not_create_the_tables_is_store_unavailable(postgres):
    """Exit 4 and one line at start (``data_api/server.py``), not a traceback."""
    url = postgres.create_database("denied")
    role = f"api_denied_{database_name(url)}"

    async def scenario():
        await as_superuser(postgres, f'CREATE ROLE "{role}" LOGIN')
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{role}"')
        limited = url.replace("postgresql://postgres@", f"postgresql://{role}@")
        with pytest.raises(StoreUnavailable) as refused:  # was: InsufficientPrivilege
            await PostgresStore.open(limited)
        assert "permission denied" in refused.value.detail

    asyncio.run(scenario())
