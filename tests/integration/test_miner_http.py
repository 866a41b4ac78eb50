"""A real miner process on loopback, answering signed requests from every kind of caller.

Each refused request gets its own status code and a JSON error, and the miner
keeps serving registered validators afterwards. Before an assignment's
deadline a collect answer carries a commitment, never the manifest, whoever
asks; the manifest is revealed after the deadline and hashes to the
commitment.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from common.manifest import Manifest, manifest_commitment
from common.protocol import PROTOCOL_VERSION, DataAssignmentRequest
from sim.processes import LoopbackMiner, start_miner
from tests.integration.neurons import (
    ZIPCODES,
    assign_body,
    collect_body,
    post_signed,
    reveal_body,
    sign_body,
)

pytestmark = pytest.mark.integration

DEADLINE_S = 6.0  # assignments whose reveal a test waits for: scraped in well under this
HEX64 = re.compile(r"[0-9a-f]{64}")


def wait_past(deadline: datetime) -> None:
    """Let the wall clock pass an assignment's deadline (a time, not an event to await)."""
    time.sleep(max(0.0, deadline.timestamp() - time.time()) + 0.05)


@pytest.fixture(scope="module")
def subnet(tmp_path_factory):
    root = tmp_path_factory.mktemp("miner-http")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    callers = {
        "validator": (1000.0, True),
        "validator2": (1000.0, True),
        "poor": (1.0, True),
        "nopermit": (1000.0, False),
        "stranger": None,  # a wallet, not on the chain
    }
    flags = ("--min.validator.stake", "10", "--max.body.bytes", "65536", "--rate.limit", "200")
    miner: LoopbackMiner = start_miner(root, callers, *flags, "--metrics.port", str(metrics_port))
    try:
        yield {
            "endpoint": miner.endpoint,
            "people": miner.people,
            "process": miner.process,
            "root": root,
            "metrics_port": metrics_port,
        }
    finally:
        miner.stop()


def run(coro):
    return asyncio.run(coro)


async def _session_call(subnet, signer_name, body, **kwargs):
    people = subnet["people"]
    async with aiohttp.ClientSession() as session:
        return await post_signed(
            session,
            subnet["endpoint"],
            people[signer_name].keypair,
            kwargs.pop("receiver", people["miner"].hotkey),
            body,
            **kwargs,
        )


def test_collect_commits_before_the_deadline_and_reveal_shows_the_manifest_after(subnet):
    expires = datetime.now(UTC) + timedelta(seconds=DEADLINE_S)
    status, answer, headers = run(
        _session_call(subnet, "validator", assign_body("ok-1", expires_at=expires))
    )
    assert status == 200, answer
    assert answer["accepted"] is True
    assert answer["status"] in ("accepted", "in_progress", "completed")
    assert "x-request-id" in {k.lower() for k in headers}
    deadline = time.monotonic() + 20
    while True:
        status, answer, _ = run(_session_call(subnet, "validator", collect_body("ok-1")))
        assert status == 200
        assert "manifest" not in answer and "salt" not in answer  # never before the deadline
        if answer["status"] == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer["status"] == "completed"
    assert answer["protocol_version"] == PROTOCOL_VERSION
    commitment = answer["commitment"]
    assert HEX64.fullmatch(commitment)
    assert answer["progress"]["zipcodes_done"] == 4
    # The same work gives the same commitment on every poll: completion time stays put.
    again = run(_session_call(subnet, "validator", collect_body("ok-1")))[1]
    assert again["commitment"] == commitment and "manifest" not in again

    status, refused, _ = run(_session_call(subnet, "validator", reveal_body("ok-1", commitment)))
    assert status == 403, refused
    assert refused["error"]["code"] == "reveal_before_deadline"
    assert "deadline" in refused["error"]["message"]

    wait_past(expires)
    status, revealed, _ = run(_session_call(subnet, "validator", reveal_body("ok-1", commitment)))
    assert status == 200, revealed
    manifest = Manifest.model_validate(revealed["manifest"])
    assert manifest_commitment(manifest, revealed["salt"]) == commitment
    assert manifest.miner_hotkey == subnet["people"]["miner"].hotkey
    assert sorted(z.zipcode for z in manifest.zipcodes) == list(ZIPCODES)
    assert all(z.record_count == len(z.records) for z in manifest.zipcodes)
    assert answer["progress"] == {
        "zipcodes_done": 4,
        "zipcodes_total": 4,
        "records": sum(z.record_count for z in manifest.zipcodes),
    }
    status, unknown, _ = run(_session_call(subnet, "validator", reveal_body("ok-1", "0" * 64)))
    assert status == 404 and unknown["error"]["code"] == "unknown_commitment"


def test_the_same_assignment_from_two_validators_is_scraped_once_and_shows_no_manifest(subnet):
    """A second permit holder re-sending the same content learns a hash, not the work."""
    expires = datetime.now(UTC) + timedelta(seconds=DEADLINE_S)
    for who, request_id in (("validator", "shared-1"), ("validator2", "snoop-1")):
        status, answer, _ = run(
            _session_call(subnet, who, assign_body(request_id, epoch="epoch-9", expires_at=expires))
        )
        assert status == 200 and answer["accepted"]
    deadline = time.monotonic() + 20
    while True:
        answers = [
            run(_session_call(subnet, who, collect_body(request_id)))[1]
            for who, request_id in (("validator", "shared-1"), ("validator2", "snoop-1"))
        ]
        if all(a["status"] == "completed" for a in answers) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for answer in answers:
        assert "manifest" not in answer and "salt" not in answer
        assert answer["status"] == "completed"
    assert answers[0]["commitment"] == answers[1]["commitment"]
    status, refused, _ = run(
        _session_call(subnet, "validator2", reveal_body("snoop-1", answers[1]["commitment"]))
    )
    assert status == 403 and refused["error"]["code"] == "reveal_before_deadline"
    log = (subnet["root"] / "miner.log").read_text()
    assert log.count("assignment shared-1 from validator") == 1
    assert "snoop-1 from validator" not in log


@pytest.mark.parametrize("version", [None, PROTOCOL_VERSION + 1])
def test_another_protocol_version_gets_a_clear_refusal(subnet, version):
    """An old validator (no protocol_version) or a newer one: 426 naming both versions."""
    document = json.loads(assign_body(f"proto-{version}"))
    if version is None:
        del document["protocol_version"]
    else:
        document["protocol_version"] = version
    status, answer, _ = run(_session_call(subnet, "validator", json.dumps(document).encode()))
    assert status == 426, answer
    assert answer["error"]["code"] == "unsupported_protocol"
    message = answer["error"]["message"]
    assert f"v{version or 1}" in message and f"v{PROTOCOL_VERSION}" in message
    assert ("validator must upgrade" if version is None else "miner must upgrade") in message


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unsigned", 401),
        ("wrong_receiver", 401),
        ("stale", 401),
        ("tampered", 401),
        ("unregistered", 403),
        ("no_permit", 403),
        ("under_staked", 403),
        ("oversized", 413),
        ("bad_json", 400),
        ("bad_zipcode", 422),
        ("unknown_source", 422),
        ("unknown_field", 422),
    ],
)
def test_bad_requests_get_their_status_and_the_miner_keeps_serving(subnet, case, expected):
    people = subnet["people"]
    body = assign_body(f"bad-{case}")
    kwargs: dict = {}
    signer = "validator"
    if case == "unsigned":
        kwargs["headers"] = {}
    elif case == "wrong_receiver":
        kwargs["receiver"] = people["validator2"].hotkey
    elif case == "stale":
        kwargs["nonce_ns"] = time.time_ns() - 11_000_000_000
    elif case == "tampered":
        headers = sign_body(people["validator"].keypair, people["miner"].hotkey, body)
        kwargs["headers"] = headers
        body = body.replace(b"bad-tampered", b"bad-tampereD")
    elif case == "unregistered":
        signer = "stranger"
    elif case == "no_permit":
        signer = "nopermit"
    elif case == "under_staked":
        signer = "poor"
    elif case == "oversized":
        body = assign_body("big") + b" " * 70_000
    elif case == "bad_json":
        body = b'{"request_id": "x", "phase": '
    elif case == "bad_zipcode":
        body = body.replace(b"10001", b"1000A")
    elif case == "unknown_source":
        body = body.replace(b"ZILLOW_SOLD", b"REDFIN")
    elif case == "unknown_field":
        body = body[:-1] + b', "surprise": 1}'
    status, answer, _ = run(_session_call(subnet, signer, body, **kwargs))
    assert status == expected, answer
    assert set(answer["error"]) == {"code", "message", "request_id"}
    assert "Traceback" not in json.dumps(answer)
    # ...and the miner still serves a good request.
    status, answer, _ = run(_session_call(subnet, "validator", collect_body("ok-1")))
    assert status == 200


def test_replayed_request_is_refused(subnet):
    people = subnet["people"]
    body = assign_body("replay-1")
    headers = sign_body(people["validator"].keypair, people["miner"].hotkey, body)
    first = run(_session_call(subnet, "validator", body, headers=headers))
    second = run(_session_call(subnet, "validator", body, headers=headers))
    assert first[0] == 200
    assert second[0] == 401
    assert second[1]["error"]["code"] == "ReplayedRequest"


def test_rate_limit_answers_429_with_retry_after(subnet):
    async def burst():
        people = subnet["people"]
        async with aiohttp.ClientSession() as session:
            results = []
            for i in range(230):
                results.append(
                    await post_signed(
                        session,
                        subnet["endpoint"],
                        people["validator2"].keypair,
                        people["miner"].hotkey,
                        collect_body(f"rl-{i}"),
                    )
                )
            return results

    results = run(burst())
    statuses = [status for status, _, _ in results]
    assert 429 in statuses
    limited = next(r for r in results if r[0] == 429)
    assert int(limited[2]["Retry-After"]) >= 1
    # The other validator has its own budget.
    assert run(_session_call(subnet, "validator", collect_body("ok-1")))[0] == 200


def test_property_lookups_say_found_and_not_found_apart(subnet):
    from common.records import RecordDigester
    from sim.world import SyntheticWorld

    world = SyntheticWorld(7)  # the miner's default --synthetic.seed
    listing = world.listings("10001")[0]
    missing = "999999999"  # the synthetic world has no zpid this large
    assert world.lookup(int(missing)) is None
    body = (
        DataAssignmentRequest(
            request_id="lookup-1",
            phase="assign",
            assignment_mode="property_ids",
            property_ids={"ZILLOW_SOLD": [str(listing["zpid"]), missing]},
            zipcode_assignments={"ZILLOW_SOLD": ["10001"]},
            batch_id=3,
            epoch_id="epoch-1",
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )
    status, answer, _ = run(_session_call(subnet, "validator", body))
    assert status == 200 and answer["accepted"] is True, answer
    deadline = time.monotonic() + 20
    while True:
        status, answer, _ = run(_session_call(subnet, "validator", collect_body("lookup-1")))
        assert status == 200
        if answer["status"] == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer["status"] == "completed"
    assert "manifest" not in answer
    by_zpid = {a["zpid"]: a for a in answer["property_answers"]}
    _, record_hash, _ = RecordDigester().digest(listing)
    assert by_zpid[str(listing["zpid"])] == {
        "source": "ZILLOW_SOLD",
        "zpid": str(listing["zpid"]),
        "found": True,
        "zipcode": "10001",
        "record_hash": record_hash,
    }
    assert by_zpid[missing] == {"source": "ZILLOW_SOLD", "zpid": missing, "found": False}
    assert answer["progress"] == {"zipcodes_done": 2, "zipcodes_total": 2, "records": 1}


def test_metrics_endpoint_counts_assignments(subnet):
    run(_session_call(subnet, "validator", assign_body("metrics-1", epoch="epoch-77")))

    async def scrape() -> str:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{subnet['metrics_port']}/metrics"
            async with session.get(url) as response:
                assert response.status == 200
                return await response.text()

    text = run(scrape())
    totals = [
        line for line in text.splitlines() if line.startswith('miner_assignments{status="total"}')
    ]
    assert totals and float(totals[0].split()[-1]) >= 1
    assert "miner_assignments_running" in text
