"""The S3 evaluation between cycles against a real S3 protocol server (moto).

Honest data scores near 1; duplicated, stale, thin, fabricated and bomb
uploads score lower for the reason named; a miner with more keys than the cap
is listed in pages and stopped at the cap; an outage gives no evidence and
leaves the scoring state as it was.
"""

from __future__ import annotations

import time

import pytest

from common.s3_files import encode_zipcode_file
from config.storage import S3EvalConfig
from consensus.s3_evaluation import evaluation_seed
from consensus.scoring import MinerScore, ScoringState, apply_s3_evaluation
from sim.source import SyntheticVerifier
from tests.integration.s3_scenarios import evaluate_round, honest_consensus, pad_folder, put_file
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import NONCE, WORLD, encoded, gzip_bomb, hotkey, records, zipcodes
from vali_utils.s3_reader import DirectS3Reader

pytestmark = pytest.mark.integration

EPOCH = 7
ZIPS = zipcodes(6)
SEED = evaluation_seed(b"block-seed-of-epoch-8", 0)
CFG = S3EvalConfig(spot_checks_per_miner=3)


def put(server: S3Server, bucket: str, miner: str, zipcode: str, rows, *, body=None) -> str:
    """``rows`` as ``miner``'s file of ``zipcode``; ``body`` stands in for its bytes."""
    file = encode_zipcode_file(zipcode, rows, epoch_nonce=NONCE)
    return put_file(server.client(), bucket, miner, EPOCH, zipcode, file, body=body)


def fabricated(rows: list[dict]) -> list[dict]:
    return [r | {"price": r["price"] + 12_345} for r in rows]


@pytest.mark.asyncio
async def test_evaluation_ranks_honest_data_first_and_names_the_faults(s3):
    bucket = s3.create_bucket()
    settings = s3.settings(bucket, eval_files_per_miner=6, eval_concurrency=8)
    now = time.time()
    fresh = now - 1800
    miners = {name: hotkey(50 + i) for i, name in enumerate(
        ["honest", "duplicator", "stale", "thin", "fabricator", "bomber"]
    )}  # fmt: skip
    for z in ZIPS:
        put(s3, bucket, miners["honest"], z, records(z, scraped_at=fresh))
        put(s3, bucket, miners["stale"], z, records(z, scraped_at=now - 5 * 86400))
        put(s3, bucket, miners["fabricator"], z, fabricated(records(z, scraped_at=fresh)))
    for z in ZIPS[:2]:
        put(s3, bucket, miners["thin"], z, records(z, scraped_at=fresh))
    # The duplicator pads: one zipcode's listings uploaded under every zipcode of its batch.
    padding = records(ZIPS[0], scraped_at=fresh)
    for z in ZIPS:
        rows = [r | {"zipcode": z} for r in padding]
        put(s3, bucket, miners["duplicator"], z, rows)
    for z in ZIPS:
        body = gzip_bomb() if z == ZIPS[0] else None
        put(s3, bucket, miners["bomber"], z, records(z, scraped_at=fresh), body=body)

    reader = DirectS3Reader.from_settings(settings)
    try:
        results = await evaluate_round(
            reader, miners.values(), epoch=EPOCH, seed=SEED, settings=settings, assigned=ZIPS,
            now=now, last_consensus=honest_consensus(ZIPS), config=CFG,
            verifier=SyntheticVerifier(WORLD), expected_nonce=NONCE,
        )  # fmt: skip
    finally:
        await reader.close()
    reward = {name: results[m].reward for name, m in miners.items()}
    components = {name: results[m].components for name, m in miners.items()}
    assert reward["honest"] == pytest.approx(1.0)
    assert components["honest"]["spot_check"] == 1.0
    assert components["duplicator"]["duplicates"] == pytest.approx(1 / 6)
    assert components["stale"]["freshness"] == 0.0 and reward["stale"] == 0.0
    assert components["thin"]["coverage"] == pytest.approx(2 / 6)
    assert components["fabricator"]["agreement"] == 0.0
    assert components["fabricator"]["spot_check"] == 0.0
    assert components["bomber"]["integrity"] == pytest.approx(5 / 6)
    assert any("rejected_line_too_long" in r for r in results[miners["bomber"]].reasons)
    assert all(reward["honest"] > r for name, r in reward.items() if name != "honest")


@pytest.mark.asyncio
async def test_sampling_is_reproducible_by_another_validator(s3):
    bucket = s3.create_bucket()
    settings = s3.settings(bucket, eval_files_per_miner=2)
    miner = hotkey(60)
    for z in ZIPS:
        put(s3, bucket, miner, z, records(z, scraped_at=time.time() - 60))
    kwargs = dict(
        epoch=EPOCH, seed=SEED, settings=settings, assigned=ZIPS, now=time.time(),
        last_consensus=honest_consensus(ZIPS),
    )  # fmt: skip
    one, other = DirectS3Reader.from_settings(settings), DirectS3Reader.from_settings(settings)
    try:
        first = await evaluate_round(one, [miner], **kwargs)
        second = await evaluate_round(other, [miner], **kwargs)
    finally:
        await one.close()
        await other.close()
    assert first == second and first[miner].files_checked == 2


@pytest.mark.asyncio
async def test_a_miner_with_too_many_keys_is_listed_in_pages_and_capped(s3):
    bucket = s3.create_bucket()
    settings = s3.settings(bucket, max_keys_per_miner=25, eval_files_per_miner=3)
    miner = hotkey(61)
    client = s3.client()
    pad_folder(client, bucket, miner, EPOCH, 60, encoded(ZIPS[0]).body)
    reader = DirectS3Reader.from_settings(settings, page_size=10)
    try:
        listing = await reader.list_miner(miner, EPOCH, max_keys=settings.max_keys_per_miner)
        results = await evaluate_round(reader, [miner], epoch=EPOCH, seed=SEED, settings=settings)
    finally:
        await reader.close()
    assert len(listing.objects) == 25 and listing.truncated and listing.pages == 3
    assert results[miner].files_listed == 25
    assert "listing_capped: 1" in results[miner].reasons
    assert results[miner].components["integrity"] == 0.0  # names do not match the content


@pytest.mark.asyncio
async def test_outage_gives_no_evidence_and_leaves_the_state_alone():
    server = S3Server.start()
    try:
        bucket = server.create_bucket()
        settings = server.settings(bucket, connect_timeout_s=0.2, call_timeout_s=3.0)
        miners = [hotkey(70 + i) for i in range(3)]
        for m in miners:
            put(server, bucket, m, ZIPS[0], records(ZIPS[0], scraped_at=time.time() - 60))
        state = ScoringState(
            miners={m: MinerScore(uid=i, score=0.5, s3_quality=0.9, s3_credibility=0.5)
                    for i, m in enumerate(miners)}
        )  # fmt: skip
        reader = DirectS3Reader.from_settings(settings)
        server.kill()
        try:
            results = await evaluate_round(
                reader, miners, epoch=EPOCH, seed=SEED, settings=settings, assigned=ZIPS[:1],
                last_consensus=honest_consensus(ZIPS),
            )  # fmt: skip
        finally:
            await reader.close()
        assert {r.reward for r in results.values()} == {None}
        assert all(r.reasons[0].startswith("s3_unavailable") for r in results.values())
        after = apply_s3_evaluation(state, "s3-7-0", results, CFG)
        assert after.miners == state.miners
    finally:
        server.stop()
