"""The Data API on loopback: real wallets, a local chain file, the service's rules, each
test once on SQLite and once on PostgreSQL (the ``database`` fixture).

Guards against the seed's mock, which never checked a signature, let any
40-character string act as a validator, kept tokens in memory and reshuffled
zipcodes on every call so validators never agreed.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from bittensor import http_auth

from common.data_api_models import StatusReport, ZipcodeBlock
from tests.integration.data_api_harness import (
    EPOCH_S,
    Subnet,
    assert_json_error,
    call,
    make_subnet,
    model,
    running,
    upload_request,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def subnet(tmp_path_factory) -> Subnet:
    return make_subnet(tmp_path_factory.mktemp("data-api"))


# --- blocks -----------------------------------------------------------------------------


def test_registered_validator_gets_the_current_block(subnet, database):
    async def scenario():
        async with running(subnet, database) as api, aiohttp.ClientSession() as s:
            status, payload, headers = await call(
                s, api, subnet.people["validator"], "GET", "/v1/epochs/current"
            )
            assert status == 200, payload
            assert "X-Request-Id" in headers
            block = ZipcodeBlock.model_validate(payload)
            assert block.epoch_id == subnet.epoch
            assert len(block.batches) == 50
            assert all(len(b.zipcodes) == 20 for b in block.batches)
            assert len(set(block.zipcodes())) == 1000
            assert block.config.model_dump() == {
                "zipcodes_per_batch": 20,
                "groups_per_batch": 2,
                "miners_per_group": 10,
                "max_miners_per_coldkey": 1,
                "min_different_coldkeys": 5,
            }
            assert block.issued_at.timestamp() == subnet.epoch * EPOCH_S
            assert block.expires_at.timestamp() == (subnet.epoch + 0.5) * EPOCH_S
            assert block.ends_at.timestamp() == (subnet.epoch + 1) * EPOCH_S
            assert 0 <= block.seed < 2**63 and len(block.nonce) == 32
            status, same, _ = await call(
                s, api, subnet.people["validator"], "GET", f"/v1/epochs/{subnet.epoch}/block"
            )
            assert (status, same) == (200, payload)

    asyncio.run(scenario())


def test_every_validator_and_every_restart_get_the_same_bytes(subnet, database):
    db = database

    async def fetch(api, who: str, path: str = "/v1/epochs/current") -> bytes:
        async with aiohttp.ClientSession() as s:
            headers = http_auth.sign(
                subnet.people[who].keypair,
                method="GET",
                path=path,
                receiver_ss58=api.owner_hotkey,
            )
            async with s.get(api.url + path, headers=headers) as response:
                assert response.status == 200
                return await response.read()

    async def scenario():
        clock = subnet.clock()
        async with running(subnet, db, clock) as api:
            first = await fetch(api, "validator")
            assert await fetch(api, "validator2") == first
        # Restarted, even with another secret: the persisted block is what is served.
        async with running(subnet, db, clock, secret=b"a-different-secret-after-a-restart!") as api:
            assert await fetch(api, "validator2") == first
            assert await fetch(api, "validator", f"/v1/epochs/{subnet.epoch}/block") == first
            # The next epoch: a new block, none of whose zipcodes were just served.
            clock.now += EPOCH_S
            second = await fetch(api, "validator")
        one = ZipcodeBlock.model_validate_json(first)
        two = ZipcodeBlock.model_validate_json(second)
        assert two.epoch_id == one.epoch_id + 1
        assert set(one.zipcodes()).isdisjoint(two.zipcodes())
        assert (one.nonce, one.seed) != (two.nonce, two.seed)

    asyncio.run(scenario())


def test_no_block_before_its_epoch_starts_nor_for_unserved_past_epochs(subnet, database):
    async def scenario():
        async with running(subnet, database) as api, aiohttp.ClientSession() as s:
            for epoch in (subnet.epoch + 1, subnet.epoch + 1000, 10**12, 10**13 - 1):
                for what in ("block", "honeypots"):
                    status, payload, _ = await call(
                        s, api, subnet.people["validator"], "GET", f"/v1/epochs/{epoch}/{what}"
                    )
                    assert status == 403, (epoch, what, payload)
                    assert_json_error(status, payload, "epoch_not_started")
            # A past epoch nobody asked about had no block, and none is made for it now.
            status, payload, _ = await call(
                s, api, subnet.people["validator"], "GET", f"/v1/epochs/{subnet.epoch - 3}/block"
            )
            assert status == 404
            assert_json_error(status, payload, "no_block")
            assert await api.store.block_json(subnet.epoch - 3) is None

    asyncio.run(scenario())


def test_a_replay_is_refused_by_every_instance_sharing_the_database(subnet, database):
    db = database

    async def scenario():
        async with (
            running(subnet, db) as worker_a,
            running(subnet, db) as worker_b,
            aiohttp.ClientSession() as s,
        ):
            path = "/v1/epochs/current"
            headers = http_auth.sign(
                subnet.people["validator"].keypair,
                method="GET",
                path=path,
                receiver_ss58=subnet.owner.hotkey,
            )
            status_a, block_a, _ = await call(s, worker_a, None, "GET", path, headers=headers)
            status_b, payload, _ = await call(s, worker_b, None, "GET", path, headers=headers)
            assert status_a == 200
            assert status_b == 401
            assert_json_error(status_b, payload, "ReplayedRequest")
            status, block_b, _ = await call(s, worker_b, subnet.people["validator2"], "GET", path)
            assert (status, block_b) == (200, block_a)

    asyncio.run(scenario())


# --- who may call ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected", "code", "reason"),
    [
        ("unsigned", 401, "MalformedAuth", "MalformedAuth"),
        ("replayed", 401, "ReplayedRequest", "ReplayedRequest"),
        ("stale", 401, "StaleRequest", "StaleRequest"),
        ("future", 401, "StaleRequest", "StaleRequest"),
        ("wrong_receiver", 401, "WrongReceiver", "WrongReceiver"),
        ("tampered_path", 401, "BadSignature", "BadSignature"),
        ("unregistered", 403, "forbidden", "not_registered"),
        ("no_permit", 403, "forbidden", "no_permit"),
        ("under_staked", 403, "forbidden", "low_stake"),
        ("miner_on_validator_route", 403, "forbidden", "no_permit"),
    ],
)
def test_callers_who_may_not_are_refused_with_the_right_code(
    subnet, database, case, expected, code, reason
):
    people = subnet.people
    path = "/v1/epochs/current"

    async def scenario():
        async with running(subnet, database) as api, aiohttp.ClientSession() as s:
            signer, kwargs = people["validator"], {}
            if case == "unsigned":
                signer = None
            elif case == "replayed":
                headers = http_auth.sign(
                    signer.keypair, method="GET", path=path, receiver_ss58=api.owner_hotkey
                )
                assert (await call(s, api, None, "GET", path, headers=headers))[0] == 200
                kwargs["headers"] = headers
            elif case == "stale":
                kwargs["nonce_ns"] = time.time_ns() - 11_000_000_000
            elif case == "future":
                kwargs["nonce_ns"] = time.time_ns() + 5_000_000_000
            elif case == "wrong_receiver":
                kwargs["receiver"] = people["validator2"].hotkey
            elif case == "tampered_path":
                kwargs["headers"] = http_auth.sign(
                    signer.keypair,
                    method="GET",
                    path=f"/v1/epochs/{subnet.epoch - 1}/block",
                    receiver_ss58=api.owner_hotkey,
                )
            elif case == "unregistered":
                signer = people["stranger"]
            elif case == "no_permit":
                signer = people["nopermit"]
            elif case == "under_staked":
                signer = people["poor"]
            elif case == "miner_on_validator_route":
                signer = people["miner"]
            status, payload, _ = await call(s, api, signer, "GET", path, **kwargs)
            assert status == expected, payload
            assert_json_error(status, payload, code)
            async with s.get(api.url + "/metrics") as response:
                metrics = await response.text()
            assert f'data_api_auth_failures_total{{reason="{reason}"}} 1.0' in metrics
            # ...and the service goes on serving a registered validator.
            assert (await call(s, api, people["validator2"], "GET", path))[0] == 200

    asyncio.run(scenario())


def test_owner_routes_take_only_the_owners_signature(subnet, database):
    reference = {"zipcode": "77494", "source": "ZILLOW_SOLD", "records": [["1", "a" * 32]]}
    body = json.dumps(reference).encode()

    async def scenario():
        async with running(subnet, database) as api, aiohttp.ClientSession() as s:
            for who in ("validator", "miner", "stranger"):
                status, payload, _ = await call(
                    s, api, subnet.people[who], "POST", "/v1/owner/references", body
                )
                assert status == 403
                assert_json_error(status, payload, "forbidden")
            status, payload, _ = await call(
                s, api, subnet.owner, "POST", "/v1/owner/references", body
            )
            assert status == 200, payload
            assert payload["record_count"] == 1
            status, payload, _ = await call(s, api, subnet.owner, "GET", "/v1/owner/references")
            assert [r["zipcode"] for r in payload["references"]] == ["77494"]
            # The owner is no validator: blocks are not for it.
            status, _, _ = await call(s, api, subnet.owner, "GET", "/v1/epochs/current")
            assert status == 403
            bad = dict(reference, zipcode="00000")
            status, payload, _ = await call(
                s, api, subnet.owner, "POST", "/v1/owner/references", json.dumps(bad).encode()
            )
            assert status == 422
            assert_json_error(status, payload, "unknown_zipcode")

    asyncio.run(scenario())


# --- honeypots ----------------------------------------------------------------------------


def test_honeypots_are_hidden_before_the_deadline_and_revealed_after(subnet, database):
    records = [[str(1000 + i), f"{i:032x}"] for i in range(12)]
    reference = {"zipcode": "77494", "source": "ZILLOW_SOLD", "records": records}
    clock = subnet.clock(into_epoch_s=60)

    async def scenario():
        async with (
            running(subnet, database, clock) as api,
            aiohttp.ClientSession() as s,
        ):
            status, _, _ = await call(
                s, api, subnet.owner, "POST", "/v1/owner/references", json.dumps(reference).encode()
            )
            assert status == 200
            validator = subnet.people["validator"]
            status, payload, _ = await call(s, api, validator, "GET", "/v1/epochs/current")
            block = ZipcodeBlock.model_validate(payload)
            entries = {z.zipcode: z for b in block.batches for z in b.zipcodes}
            assert "77494" in entries  # the one reference fits the reference share
            path = f"/v1/epochs/{subnet.epoch}/honeypots"
            status, payload, _ = await call(s, api, validator, "GET", path)
            assert status == 403
            assert_json_error(status, payload, "honeypots_hidden")
            clock.now = (subnet.epoch + 0.5) * EPOCH_S - 1  # one second before the deadline
            assert (await call(s, api, validator, "GET", path))[0] == 403
            clock.now += 1
            status, reveal, _ = await call(s, api, validator, "GET", path)
            assert status == 200, reveal
            assert reveal["block_id"] == block.block_id
            honeypots = {h["zipcode"]: h for h in reveal["honeypots"]}
            assert len(honeypots) == 10
            assert set(honeypots) <= set(entries)
            assert honeypots["77494"] == {
                "zipcode": "77494",
                "kind": "reference",
                "references": {"ZILLOW_SOLD": records},
            }
            others = [h for z, h in honeypots.items() if z != "77494"]
            assert all(h["kind"] == "no_residential" and h["references"] == {} for h in others)
            # Only validators learn them, even after the deadline.
            for who in ("miner", "stranger", "nopermit"):
                assert (await call(s, api, subnet.people[who], "GET", path))[0] == 403
            # An epoch nobody asked a block for has no honeypots.
            status, payload, _ = await call(
                s, api, validator, "GET", f"/v1/epochs/{subnet.epoch - 5}/honeypots"
            )
            assert status == 404
            assert_json_error(status, payload, "no_block")

    asyncio.run(scenario())


# --- limits and malformed input ------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(subnet, database):
    async def scenario():
        async with (
            running(subnet, database, requests_per_minute=5) as api,
            aiohttp.ClientSession() as s,
        ):
            validator = subnet.people["validator"]
            # 11 calls: at most 5 per minute window, so at least one is refused
            # even if a window boundary falls in the middle.
            answers = [
                await call(s, api, validator, "GET", "/v1/epochs/current") for _ in range(11)
            ]
            statuses = [status for status, _, _ in answers]
            assert statuses[0] == 200 and 429 in statuses
            status, payload, headers = next(a for a in answers if a[0] == 429)
            assert_json_error(status, payload, "rate_limited")
            assert 1 <= int(headers["Retry-After"]) <= 60
            # Another validator has its own budget.
            assert (await call(s, api, subnet.people["validator2"], "GET", "/v1/epochs/current"))[
                0
            ] == 200

    asyncio.run(scenario())


def test_malformed_and_oversized_requests_get_json_errors(subnet, database):
    validator = subnet.people["validator"]
    status_path = f"/v1/epochs/{subnet.epoch}/status"
    upload = model(upload_request(subnet.epoch, "77494", b"data"))
    cases = [
        ("POST", status_path, b'{"groups": ', validator, 400, "bad_json"),
        ("POST", status_path, b"\xff\xfe\x00", validator, 400, "bad_json"),
        ("POST", status_path, b'{"groups": -1}', validator, 422, "invalid_body"),
        ("POST", status_path, b'{"surprise": 1}', validator, 422, "invalid_body"),
        ("POST", status_path, b'{"mean_batch_confidence": NaN}', validator, 422, "invalid_body"),
        ("POST", status_path, b"[1, 2]", validator, 422, "invalid_body"),
        ("POST", status_path, b" " * (64 * 1024 + 1), validator, 413, "body_too_large"),
        ("POST", status_path, b" " * (64 * 1024 + 1), None, 413, "body_too_large"),
        ("GET", "/v1/epochs/current", b"{}", validator, 400, "unexpected_body"),
        ("GET", "/v1/epochs/current?x=1", b"", validator, 400, "unexpected_query"),
        ("GET", "/v1/epochs/abc/block", b"", validator, 404, "http_404"),
        ("GET", "/v1/epochs/-1/block", b"", validator, 404, "http_404"),
        ("GET", f"/v1/epochs/{10**14}/block", b"", validator, 404, "http_404"),
        ("DELETE", "/v1/epochs/current", b"", validator, 405, "http_405"),
        ("GET", "/v1/nothing-here", b"", None, 404, "http_404"),
        ("POST", "/v1/s3/upload-url", upload, subnet.people["miner"], 503, "s3_not_configured"),
    ]

    async def scenario():
        async with running(subnet, database) as api, aiohttp.ClientSession() as s:
            for method, path, body, signer, expected, code in cases:
                status, payload, _ = await call(s, api, signer, method, path, body)
                assert status == expected, (path, body[:40], payload)
                assert_json_error(status, payload, code)

    asyncio.run(scenario())


# --- status reports, metrics, health --------------------------------------------------------


def test_validators_report_their_cycle(subnet, database):
    report = StatusReport(
        block_id="e1-abc",
        plan_hash="ab" * 8,
        groups=100,
        assignments=2000,
        completed=1900,
        mean_batch_confidence=0.9,
        weights_set=True,
    )

    async def scenario():
        async with running(subnet, database) as api, aiohttp.ClientSession() as s:
            path = f"/v1/epochs/{subnet.epoch}/status"
            status, payload, _ = await call(
                s, api, subnet.people["validator"], "POST", path, model(report)
            )
            assert status == 200, payload
            assert payload["epoch_id"] == subnet.epoch
            assert payload["validator_hotkey"] == subnet.people["validator"].hotkey
            stored = await api.store.status_reports(subnet.epoch)
            assert stored[subnet.people["validator"].hotkey]["completed"] == 1900
            future = f"/v1/epochs/{subnet.epoch + 1}/status"
            status, payload, _ = await call(
                s, api, subnet.people["validator"], "POST", future, model(report)
            )
            assert status == 403
            assert_json_error(status, payload, "epoch_not_started")
            status, _, _ = await call(s, api, subnet.people["miner"], "POST", path, model(report))
            assert status == 403
            old = f"/v1/epochs/{subnet.epoch - 2}/status"
            status, payload, _ = await call(
                s, api, subnet.people["validator"], "POST", old, model(report)
            )
            assert status == 409
            assert_json_error(status, payload, "epoch_too_old")

    asyncio.run(scenario())


def test_metrics_and_health_are_open_and_count_what_happened(subnet, database):
    async def scenario():
        async with running(subnet, database) as api, aiohttp.ClientSession() as s:
            for _ in range(3):
                await call(s, api, subnet.people["validator"], "GET", "/v1/epochs/current")
            await call(s, api, subnet.people["stranger"], "GET", "/v1/epochs/current")
            await call(s, api, None, "GET", "/v1/epochs/current")
            async with s.get(api.url + "/v1/health") as response:
                assert response.status == 200
                health = await response.json()
            assert health["status"] == "ok" and health["hotkey"] == subnet.owner.hotkey
            assert health["epoch_id"] == subnet.epoch
            assert health["store"] == api.store.kind
            assert health["store"] == ("sqlite" if isinstance(database, Path) else "postgresql")
            assert health["store_status"] == "ok"
            async with s.get(api.url + "/metrics") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                text = await response.text()
        assert (
            'data_api_requests_total{method="GET",route="/v1/epochs/current",status="200"} 3.0'
            in text
        )
        assert (
            'data_api_requests_total{method="GET",route="/v1/epochs/current",status="403"} 1.0'
            in text
        )
        assert 'data_api_auth_failures_total{reason="not_registered"} 1.0' in text
        assert 'data_api_auth_failures_total{reason="MalformedAuth"} 1.0' in text
        assert (
            'data_api_request_duration_seconds_bucket{le="0.05",route="/v1/epochs/current"}' in text
        )
        assert "data_api_blocks_served_total 3.0" in text
        assert "data_api_blocks_issued_total 1.0" in text

    asyncio.run(scenario())
