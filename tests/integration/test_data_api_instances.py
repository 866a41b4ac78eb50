"""Two Data API processes on different ports, one PostgreSQL: one service, nothing lost.

What a load balancer in front of several instances relies on: an instance
issues a block only when no other has (both serve the very same bytes), a
signed request accepted by one is a replay at the other, a caller's rate
limit is one limit however its requests are spread, and an instance killed
with SIGKILL in the middle of load leaves the other serving, with every
status report it acknowledged in the database.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from bittensor import http_auth

from common.data_api_models import StatusReport
from tests.integration.data_api_harness import (
    Subnet,
    assert_json_error,
    call,
    make_subnet,
    model,
)
from tests.integration.test_data_api_process import spawn, wait_for_endpoint

psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "instances-share-this-block-secret-0123456789"  # every instance needs the same one
RATE_PER_MINUTE = 100
REPORTS = 40  # per validator in the kill test; well under the rate limit
KILL_AFTER_ACKS = 20


@dataclass
class Instance:
    """What ``call`` needs of a running service, for one process."""

    url: str
    owner_hotkey: str
    process: object
    log: Path


@pytest.fixture(scope="module")
def subnet(tmp_path_factory) -> Subnet:
    return make_subnet(tmp_path_factory.mktemp("instances"))


@pytest.fixture(scope="module")
def database(postgres) -> str:
    return postgres.create_database("instances")


@pytest.fixture(scope="module")
def instances(subnet, database, tmp_path_factory):
    flags = (
        "--api.database.url",
        database,
        "--api.secret",
        SECRET,
        "--api.rate.limit",
        str(RATE_PER_MINUTE),
    )
    started = []
    for name in ("a", "b"):
        workdir = tmp_path_factory.mktemp(f"instance-{name}")
        started.append((workdir, spawn(subnet, workdir, *flags)))
    running = []
    try:
        for workdir, process in started:
            endpoint = wait_for_endpoint(workdir, process)
            running.append(
                Instance(endpoint["url"], endpoint["hotkey"], process, workdir / "data_api.log")
            )
        assert running[0].url != running[1].url
        yield running
    finally:
        for _, process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)


def stored_reports(database: str, epoch: int) -> dict[str, dict]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT validator_hotkey, report_json FROM status_reports WHERE epoch_id = %s",
            (epoch,),
        ).fetchall()
    return {hotkey: json.loads(report) for hotkey, report in rows}


def test_both_instances_serve_the_same_bytes_issued_once(subnet, instances):
    a, b = instances

    async def ask_both(path: str) -> list[tuple[int, dict]]:
        async with aiohttp.ClientSession() as s:
            answers = await asyncio.gather(
                *(
                    call(s, api, subnet.people[who], "GET", path)
                    for api in (a, b)
                    for who in ("validator", "validator2")
                )
            )
        return [(status, payload) for status, payload, _ in answers]

    # The first asks reach both at once: both derive, one issues.
    current = asyncio.run(ask_both("/v1/epochs/current"))
    # The epoch as the service sees it (the test may start as an hour ends).
    epoch = current[0][1]["epoch_id"]
    by_epoch = asyncio.run(ask_both(f"/v1/epochs/{epoch}/block"))
    assert [status for status, _ in current + by_epoch] == [200] * 8
    bodies = {json.dumps(payload, sort_keys=True) for _, payload in current + by_epoch}
    assert len(bodies) == 1
    logs = a.log.read_text() + b.log.read_text()
    assert logs.count("issued block") == 1, "two instances issued a block for one epoch"


def test_a_request_accepted_by_one_instance_is_a_replay_at_the_other(subnet, instances):
    path = "/v1/epochs/current"

    async def scenario():
        async with aiohttp.ClientSession() as s:
            for first, second in (instances, instances[::-1]):
                headers = http_auth.sign(
                    subnet.people["validator"].keypair,
                    method="GET",
                    path=path,
                    receiver_ss58=subnet.owner.hotkey,
                )
                status, _, _ = await call(s, first, None, "GET", path, headers=headers)
                assert status == 200
                status, payload, _ = await call(s, second, None, "GET", path, headers=headers)
                assert status == 401
                assert_json_error(status, payload, "ReplayedRequest")

    asyncio.run(scenario())


def test_a_callers_rate_limit_holds_across_instances(subnet, instances):
    # The limit counts in wall-clock minutes: start where all requests fit in one.
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.1)
    extra = 20

    async def scenario():
        async with aiohttp.ClientSession() as s:
            return await asyncio.gather(
                *(
                    call(s, instances[i % 2], subnet.people["poor"], "GET", "/v1/epochs/current")
                    for i in range(RATE_PER_MINUTE + extra)
                )
            )

    answers = asyncio.run(scenario())
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == RATE_PER_MINUTE
    assert statuses.count(429) == extra
    assert all(int(headers["Retry-After"]) >= 1 for status, _, headers in answers if status == 429)


def test_one_instance_killed_mid_load_the_other_serves_and_no_report_is_lost(
    subnet, instances, database
):
    a, b = instances
    acked = {"validator": 0, "validator2": 0}
    served_after_kill = 0
    killed = asyncio.Event()

    async def report(s, who: str) -> None:
        nonlocal served_after_kill
        path = f"/v1/epochs/{subnet.epoch}/status"
        for completed in range(1, REPORTS + 1):
            body = model(StatusReport(assignments=REPORTS, completed=completed))
            # Round robin, as a load balancer would; a dead instance is skipped.
            targets = [a, b] if completed % 2 else [b, a]
            for api in targets:
                try:
                    status, payload, _ = await call(s, api, subnet.people[who], "POST", path, body)
                except aiohttp.ClientError:
                    continue  # connection refused or reset: the next instance
                assert status == 200, payload
                acked[who] = completed
                served_after_kill += killed.is_set()
                break
            else:
                raise AssertionError(f"no instance took report {completed} of {who}")
            if sum(acked.values()) >= KILL_AFTER_ACKS and not killed.is_set():
                a.process.send_signal(signal.SIGKILL)
                killed.set()
                # Whatever was acknowledged before the kill is in the database already.
                stored = await asyncio.to_thread(stored_reports, database, subnet.epoch)
                for name, last in acked.items():
                    if last:
                        hotkey = subnet.people[name].hotkey
                        assert stored[hotkey]["completed"] >= last, name

    async def scenario():
        async with aiohttp.ClientSession() as s:
            await asyncio.gather(report(s, "validator"), report(s, "validator2"))

    asyncio.run(scenario())
    assert a.process.wait(timeout=10) == -signal.SIGKILL
    assert served_after_kill > 0
    assert acked == {"validator": REPORTS, "validator2": REPORTS}
    stored = stored_reports(database, subnet.epoch)
    for name in acked:
        assert stored[subnet.people[name].hotkey]["completed"] == REPORTS, name
