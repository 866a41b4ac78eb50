"""A consensus cycle over the synthetic world, ready to export: the dataset's tests and bench.

The real engine on real records: every miner's answer is the world's
listings of its zipcodes (``edit`` changes them, e.g. a price cut in a later
epoch), its files are the real jsonl.gz encoding, and fabricators add
listings nobody else reports. What comes out is what a validator's cycle
hands the exporter.

    cycle = world_cycle(1, zipcodes(20), fabricators=1)
    await DatasetExporter(storage, cycle.reader, "5F...", max_file_bytes=2**22).export(cycle.job)
    cycle.fabricated        # zpids only a fabricator reported: never in the dataset
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.records import PropertyRecord
from common.s3_files import encode_zipcode_file
from common.s3_layout import build_key
from config.consensus import AssignmentConfig
from consensus.answers import ZipcodeAnswer, hash_to_int
from consensus.assignment import MinerInfo, ZipcodeAssignmentManager
from consensus.engine import ConsensusEngine
from consensus.provenance import confirmed_records
from consensus.types import CycleResult, GroupSubmission, Verdict
from sim.fixtures import NONCE, SOURCE, WORLD, hotkey
from vali_utils.dataset.publish import ExportJob
from vali_utils.s3_reader import FetchedObject, ObjectMissing, ObjectTooLarge

PREFIX = "data"
FABRICATED_ZPIDS = (3 * 10**9, 4 * 10**9)  # outside the world's zpids, like sim/adversaries


class MemoryFetcher:
    """An ``ObjectFetcher`` over a dict of objects; counts what it served."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.fetched = 0

    async def fetch(self, key: str, *, max_bytes: int) -> FetchedObject:
        body = self.objects.get(key)
        if body is None:
            raise ObjectMissing(key)
        if len(body) > max_bytes:
            raise ObjectTooLarge(key)
        self.fetched += 1
        return FetchedObject(key, body, None)


@dataclass
class WorldCycle:
    job: ExportJob
    reader: MemoryFetcher
    result: CycleResult
    fabricated: set[int]  # zpids only fabricators reported
    truth: dict[str, list[PropertyRecord]]


def _invented(zipcode: str, rng: random.Random, count: int) -> list[PropertyRecord]:
    return [
        PropertyRecord.model_validate(
            {
                "zpid": str(rng.randrange(*FABRICATED_ZPIDS)),
                "address": f"{rng.randrange(1, 9999)} Phantom St",
                "zipcode": zipcode,
                "price": rng.randrange(100, 900) * 1000,
                "listing_status": "FOR_SALE",
            }
        )
        for _ in range(count)
    ]


def world_cycle(
    epoch: int,
    zipcodes: Sequence[str],
    *,
    miners_per_group: int = 3,
    fabricators: int = 0,
    edit: Callable[[dict], dict] | None = None,
) -> WorldCycle:
    """One cycle over ``zipcodes`` by 2 x ``miners_per_group`` miners, the first
    ``fabricators`` of them adding invented listings to every answer."""
    truth = {
        z: [PropertyRecord.model_validate(edit(r) if edit else r) for r in WORLD.listings(z)]
        for z in zipcodes
    }
    miners = [MinerInfo(uid, hotkey(uid), f"ck{uid}") for uid in range(2 * miners_per_group)]
    config = AssignmentConfig(
        zipcodes_per_batch=20,
        miners_per_group=miners_per_group,
        overlap_factor=2,
        min_different_coldkeys=2,
    )
    plan = ZipcodeAssignmentManager(config).create_plan(list(zipcodes), miners, b"dataset")
    honest_files = {z: encode_zipcode_file(z, truth[z], epoch_nonce=NONCE) for z in zipcodes}
    honest_answers = {
        z: ZipcodeAnswer.from_pairs(
            [(int(r.zpid), r.record_hash) for r in truth[z]],
            [r.consensus_fields() for r in truth[z]],
        )
        for z in zipcodes
    }
    liars = {m.hotkey for m in miners[:fabricators]}
    objects: dict[str, bytes] = {}
    uploads: dict[tuple[str, str], tuple[str, ...]] = {}
    fabricated: set[int] = set()
    rng = random.Random(epoch)
    submissions = []
    for group in plan.groups:
        for miner in group.miners:
            answers = {}
            for z in group.zipcodes:
                encoded, answer = honest_files[z], honest_answers[z]
                if miner.hotkey in liars:
                    records = truth[z] + _invented(z, rng, 5)
                    fabricated |= {int(r.zpid) for r in records[len(truth[z]) :]}
                    encoded = encode_zipcode_file(z, records, epoch_nonce=NONCE)
                    answer = ZipcodeAnswer.from_pairs(
                        [(int(r.zpid), r.record_hash) for r in records],
                        [r.consensus_fields() for r in records],
                    )
                key = build_key(PREFIX, miner.hotkey, epoch, SOURCE, z, encoded.content_hash)
                objects[key] = encoded.body
                uploads[(miner.hotkey, z)] = (key,)
                answers[z] = answer
            submissions.append(
                GroupSubmission(miner, group.batch_id, group.overlap_group, answers, 600.0)
            )
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, submissions, {}, {z: len(truth[z]) for z in zipcodes})
    real = {(int(r.zpid), hash_to_int(r.record_hash)) for rs in truth.values() for r in rs}
    verdicts = [
        (r, Verdict.MATCH if (r.zpid, r.record_hash) in real else Verdict.NOT_FOUND)
        for r in engine.spot_check_requests(draft, b"dataset-seed")
    ]
    result = engine.finalize(draft, verdicts, {})
    job = ExportJob(
        epoch=epoch,
        plan_hash=plan.plan_hash,
        confirmed=confirmed_records(draft, verdicts, result.zipcodes),
        files=uploads,
        states={z: truth[z][0].state for z in zipcodes if truth[z] and truth[z][0].state},
    )
    return WorldCycle(job, MemoryFetcher(objects), result, fabricated, truth)
