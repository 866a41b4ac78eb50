#!/usr/bin/env python3
"""S3 evaluation throughput against the loopback S3 server (moto), 256 miners x 20 files.

    python scripts/bench_s3.py                  # prints the figures as JSON
    python scripts/bench_s3.py --miners 32      # a smaller run

Starts ``moto_server`` in a subprocess, uploads ``files_per_miner`` zipcode
files of ~50 synthetic records for each of ``miners`` hotkeys (the same 20
bodies under every miner's prefix: encoding is not what is measured), then
runs ``vali_utils.s3_evaluation.evaluate_miners`` over all miners ``repeats``
times, each with a fresh reader and another round seed. Reports:

- ``s3_eval_files_per_s``: median over the repeats of sampled files fetched,
  decoded and judged per second of wall time (listing included).
- ``s3_eval_miners_per_s``, ``s3_eval_wall_s``: the same runs, per miner and raw.
- ``s3_eval_files_checked``: files per run (miners x ``eval_files_per_miner``).
- ``s3_eval_honest_reward_min``: every miner is honest here, so this must be ~1.

moto answers ~100-150 requests/s on one core whatever the client does, so
this measures the evaluation's overhead on top of a slow server; real S3
serves far more in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.s3_files import encode_zipcode_file  # noqa: E402
from common.s3_layout import build_key  # noqa: E402
from consensus.answers import hash_to_int  # noqa: E402
from consensus.s3_evaluation import evaluation_seed  # noqa: E402
from sim.fixtures import NONCE, SOURCE, WORLD, hotkey, zipcodes  # noqa: E402
from sim.s3_server import S3Server  # noqa: E402
from vali_utils.s3_evaluation import evaluate_miners  # noqa: E402
from vali_utils.s3_reader import DirectS3Reader  # noqa: E402

BENCH_MINERS = 256
BENCH_FILES_PER_MINER = 20
BENCH_RECORDS_PER_FILE = 50
BENCH_REPEATS = 3
UPLOAD_THREADS = 16
EPOCH = 1


def _files(count: int, records_per_file: int, scraped_at: float) -> dict[str, object]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(scraped_at))
    out = {}
    for zipcode in zipcodes(count * 2):
        rows = [dict(r) | {"scraped_at": stamp} for r in WORLD.listings(zipcode)]
        if len(rows) >= records_per_file // 2:
            out[zipcode] = encode_zipcode_file(zipcode, rows[:records_per_file], epoch_nonce=NONCE)
        if len(out) == count:
            break
    return out


async def _evaluate(settings, miners, files, seed: bytes, now: float) -> tuple[float, dict]:
    reader = DirectS3Reader.from_settings(settings)
    consensus = {
        SOURCE: {z: {int(zpid): hash_to_int(h) for zpid, h in f.records} for z, f in files.items()}
    }
    try:
        started = time.perf_counter()
        results = await evaluate_miners(
            reader,
            miners,
            epoch=EPOCH,
            seed=seed,
            now=now,
            assignments={m: {SOURCE: list(files)} for m in miners},
            last_consensus=consensus,
            settings=settings,
            expected_nonce=NONCE,
        )
        return time.perf_counter() - started, results
    finally:
        await reader.close()


def bench_s3_eval(
    miners: int = BENCH_MINERS,
    files_per_miner: int = BENCH_FILES_PER_MINER,
    records_per_file: int = BENCH_RECORDS_PER_FILE,
    repeats: int = BENCH_REPEATS,
) -> dict:
    """Upload once, evaluate ``repeats`` times; the figures as a flat dict."""
    import logging

    logging.getLogger("vali_utils.s3_evaluation").setLevel(logging.WARNING)
    server = S3Server.start()
    try:
        bucket = server.create_bucket("bench-s3-eval")
        settings = server.settings(bucket, read_timeout_s=30.0, call_timeout_s=60.0, max_attempts=3)
        now = time.time()
        files = _files(files_per_miner, records_per_file, now - 600)
        hotkeys = [hotkey(10_000 + i) for i in range(miners)]
        client = server.client()
        puts = [
            (build_key("data", hk, EPOCH, SOURCE, z, f.content_hash), f.body)
            for hk in hotkeys
            for z, f in files.items()
        ]
        started = time.perf_counter()
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(pool.map(lambda kb: client.put_object(Bucket=bucket, Key=kb[0], Body=kb[1]), puts))
        upload_s = time.perf_counter() - started
        runs = []
        for r in range(repeats):
            seed = evaluation_seed(b"bench", r)
            wall, results = asyncio.run(_evaluate(settings, hotkeys, files, seed, time.time()))
            checked = sum(e.files_checked for e in results.values())
            rewards = [e.reward for e in results.values()]
            runs.append((wall, checked, min(x if x is not None else 0.0 for x in rewards)))
    finally:
        server.stop()
    rates = [checked / wall for wall, checked, _ in runs]
    median = statistics.median(rates)
    wall = statistics.median(w for w, _, _ in runs)
    return {
        "s3_eval_files_per_s": round(median, 1),
        "s3_eval_files_per_s_runs": [round(x, 1) for x in rates],
        "s3_eval_miners_per_s": round(miners / wall, 1),
        "s3_eval_wall_s": round(wall, 3),
        "s3_eval_files_checked": runs[0][1],
        "s3_eval_files_stored": len(puts),
        "s3_eval_honest_reward_min": round(min(r for _, _, r in runs), 4),
        "s3_eval_upload_s": round(upload_s, 1),
        "s3_eval_miners": miners,
        "s3_eval_files_per_miner": files_per_miner,
        "s3_eval_sample_per_miner": settings.eval_files_per_miner,
        "s3_eval_concurrency": settings.eval_concurrency,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--miners", type=int, default=BENCH_MINERS)
    parser.add_argument("--files", type=int, default=BENCH_FILES_PER_MINER)
    parser.add_argument("--records", type=int, default=BENCH_RECORDS_PER_FILE)
    parser.add_argument("--repeats", type=int, default=BENCH_REPEATS)
    args = parser.parse_args()
    print(json.dumps(bench_s3_eval(args.miners, args.files, args.records, args.repeats), indent=2))
