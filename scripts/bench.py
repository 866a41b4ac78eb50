#!/usr/bin/env python3
"""Benchmarks for the figures in docs/architecture.md §8. Medians of repeated runs.

    python scripts/bench.py --json out.json            # every benchmark
    python scripts/bench.py --only plan,consensus      # a subset

Reports:
- ``plan_ms``: median time of ``create_plan`` for 256 miners x 1000 zipcodes on
  a metagraph where 8 coldkeys own half the hotkeys; ``plan_valid_group_rate``
  (groups meeting the coldkey rules) and ``plan_independent_batch_rate``
  (batches with two groups sharing no miner and no coldkey).
- ``consensus_s``: median time of a whole consensus pass (evaluate, spot-check
  selection, finalize with every check answered) for 1000 zipcodes x 2 groups x
  10 miners x 50 records;
  ``consensus_peak_mb``: peak resident memory of a fresh process that builds
  that input and runs it once (input included); ``consensus_scaling``: time at
  twice the records per answer divided by time at the base size.
- ``dispatch_s`` and ``ack_p99_ms``: see ``scripts/bench_net.py``.
- ``scrape_records_per_s``: see ``scripts/bench_scrape.py``.
- ``api_rps``, ``api_p99_ms``: see ``scripts/bench_api.py``; ``api_pg1_*`` and
  ``api_pg2_*``: the same on PostgreSQL with one and two service processes.
- ``s3_eval_files_per_s``: see ``scripts/bench_s3.py``.
- ``status_page_ms`` (the validator's status page, 256 miners, 12 cycles; < 100 ms):
  see ``scripts/bench_status.py``.
- ``dataset_export_s``, ``dataset_export_extra_mb``, ``dataset_query_files_read``:
  see ``scripts/bench_dataset.py``.
- ``validator_rss_growth``, ``validator_rss_idle_growth`` (only with
  ``--only validator_memory``): see
  ``scripts/bench_memory.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from common.records import CONSENSUS_FIELDS  # noqa: E402
from config.consensus import AssignmentConfig  # noqa: E402
from consensus.answers import ZipcodeAnswer  # noqa: E402
from consensus.assignment import (  # noqa: E402
    MinerInfo,
    ZipcodeAssignmentManager,
    batch_is_independent,
    group_rules_hold,
)
from consensus.engine import ConsensusEngine  # noqa: E402
from consensus.types import GroupSubmission, Verdict  # noqa: E402

PLAN_MINERS = 256
PLAN_ZIPCODES = 1000
CONSENSUS_RECORDS = 50


def bench_metagraph(n: int = PLAN_MINERS, big_coldkeys: int = 8) -> list[MinerInfo]:
    """Half the hotkeys under ``big_coldkeys`` coldkeys, the other half one coldkey each."""
    half = n // 2
    return [
        MinerInfo(
            uid,
            f"hotkey-{uid:04d}",
            f"big-{uid % big_coldkeys}" if uid < half else f"cold-{uid:04d}",
        )
        for uid in range(n)
    ]


def bench_zipcodes(n: int = PLAN_ZIPCODES, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    codes: set[str] = set()
    while len(codes) < n:
        codes.add(f"{rng.randrange(1001, 99950):05d}")
    return sorted(codes)


def bench_plan(repeats: int = 21) -> dict:
    manager = ZipcodeAssignmentManager(AssignmentConfig())
    miners, zipcodes = bench_metagraph(), bench_zipcodes()
    times = []
    plan = None
    for i in range(repeats):
        seed = f"bench-{i}".encode()
        started = time.perf_counter()
        plan = manager.create_plan(zipcodes, miners, seed)
        times.append(time.perf_counter() - started)
    cfg = manager.config
    batches = plan.batches
    return {
        "plan_ms": round(statistics.median(times) * 1e3, 3),
        "plan_ms_runs": [round(t * 1e3, 3) for t in times],
        "plan_groups": len(plan.groups),
        "plan_valid_group_rate": sum(group_rules_hold(g, cfg) for g in plan.groups)
        / len(plan.groups),
        "plan_independent_batch_rate": sum(batch_is_independent(g, cfg) for g in batches.values())
        / len(batches),
        "plan_relaxations": sorted({r.rule for r in plan.relaxations}),
        "plan_load_spread": max(plan.assignments_per_miner.values())
        - min(plan.assignments_per_miner.values()),
    }


def consensus_input(records: int, seed: int = 3):
    """A full cycle: plan for 1000 zipcodes and honest answers with 5% misses, 1% wrong values."""
    rng = np.random.default_rng(seed)
    manager = ZipcodeAssignmentManager(AssignmentConfig())
    plan = manager.create_plan(bench_zipcodes(), bench_metagraph(), b"consensus-bench")
    truth_size = int(records / 0.95) + 1
    truth = {}
    for z in sorted({z for g in plan.groups for z in g.zipcodes}):
        zpids = np.arange(truth_size, dtype=np.int64) + int(z) * 10_000
        hashes = rng.integers(-(2**63), 2**63 - 1, truth_size, dtype=np.int64)
        fields = [
            (
                str(zp),
                f"{zp} MAIN ST",
                z,
                100_000 + i,
                "FOR_SALE",
                None,
                3,
                2.0,
                1500,
                None,
                1990,
                None,
            )
            for i, zp in enumerate(zpids.tolist())
        ]
        truth[z] = (zpids, hashes, fields)
    assert len(fields[0]) == len(CONSENSUS_FIELDS)
    submissions = []
    for group in plan.groups:
        for miner in group.miners:
            answers = {}
            for z in group.zipcodes:
                zpids, hashes, fields = truth[z]
                keep = np.sort(rng.choice(truth_size, records, replace=False))
                answer_hashes = hashes[keep].copy()
                answer_fields = [fields[i] for i in keep.tolist()]
                wrong = np.flatnonzero(rng.random(records) < 0.01)
                for i in wrong.tolist():
                    answer_hashes[i] ^= 0x5F5F
                    f = answer_fields[i]
                    answer_fields[i] = (*f[:3], f[3] + 1000, *f[4:])
                answers[z] = ZipcodeAnswer(zpids[keep], answer_hashes, tuple(answer_fields))
            elapsed = float(rng.uniform(600, 9000))
            submissions.append(
                GroupSubmission(miner, group.batch_id, group.overlap_group, answers, elapsed)
            )
    return plan, submissions


def run_consensus(plan, submissions) -> dict:
    engine = ConsensusEngine()
    started = time.perf_counter()
    draft = engine.evaluate(plan, submissions, {})
    requests = engine.spot_check_requests(draft, b"seed")
    # Every check answered (as the validator's source would): the re-tally and
    # the votes on checked records are part of the cost.
    result = engine.finalize(draft, [(r, Verdict.MATCH) for r in requests], {})
    elapsed = time.perf_counter() - started
    confidences = [z.confidence for z in result.zipcodes.values()]
    return {
        "seconds": elapsed,
        "rows": int(draft.row_zpid.size),
        "mean_confidence": statistics.mean(confidences),
        "flags": len(result.flags),
    }


def bench_consensus(repeats: int = 3) -> dict:
    base_plan, base_subs = consensus_input(CONSENSUS_RECORDS)
    base = [run_consensus(base_plan, base_subs) for _ in range(repeats)]
    del base_plan, base_subs
    double_plan, double_subs = consensus_input(CONSENSUS_RECORDS * 2)
    double = [run_consensus(double_plan, double_subs) for _ in range(repeats)]
    del double_plan, double_subs
    base_s = statistics.median(r["seconds"] for r in base)
    double_s = statistics.median(r["seconds"] for r in double)
    peak = subprocess.run(
        [sys.executable, __file__, "--peak-child"], capture_output=True, text=True, check=True
    )
    return {
        "consensus_s": round(base_s, 4),
        "consensus_s_runs": [round(r["seconds"], 4) for r in base],
        "consensus_rows": base[0]["rows"],
        "consensus_mean_confidence": round(base[0]["mean_confidence"], 4),
        "consensus_flags": base[0]["flags"],
        "consensus_peak_mb": json.loads(peak.stdout)["peak_mb"],
        "consensus_double_s": round(double_s, 4),
        "consensus_scaling": round(double_s / base_s, 3),
    }


def _peak_child() -> None:
    plan, submissions = consensus_input(CONSENSUS_RECORDS)
    run_consensus(plan, submissions)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": round(peak_kb / 1024, 1)}))


def bench_dispatch() -> dict:
    from bench_net import bench_dispatch as run

    return run()


def bench_ack() -> dict:
    from bench_net import bench_ack as run

    return run()


def bench_scrape() -> dict:
    from bench_scrape import bench_scrape as run

    return run()


def bench_api() -> dict:
    import asyncio

    from bench_api import bench_api as run

    return asyncio.run(run())


def bench_api_postgres() -> dict:
    """The same load on PostgreSQL, one instance and two (skipped without PostgreSQL)."""
    import asyncio

    from bench_api import bench_api as run

    from sim.pg_cluster import PostgresMissing

    try:
        return {
            **asyncio.run(run(store="postgresql", instances=1)),
            **asyncio.run(run(store="postgresql", instances=2)),
        }
    except (PostgresMissing, ImportError) as exc:  # psycopg (extra) or the server missing
        print(f"api_pg skipped: {exc}", file=sys.stderr)
        return {}


def bench_s3_eval() -> dict:
    from bench_s3 import bench_s3_eval as run

    return run()


def bench_status_page() -> dict:
    import asyncio

    from bench_status import bench_status_page as run

    return asyncio.run(run())


def bench_dataset() -> dict:
    from bench_dataset import bench_dataset as run

    return run()


def bench_validator_memory() -> dict:
    from bench_memory import bench_validator_memory as run

    return run()


BENCHMARKS = {
    "plan": bench_plan,
    "consensus": bench_consensus,
    "dispatch": bench_dispatch,
    "ack": bench_ack,
    "scrape": bench_scrape,
    "api": bench_api,
    "api_pg": bench_api_postgres,
    "s3_eval": bench_s3_eval,
    "status_page": bench_status_page,
    "dataset": bench_dataset,
    # Minutes long (64 miner processes): run it on its own, --only validator_memory.
    "validator_memory": bench_validator_memory,
}
DEFAULT = [name for name in BENCHMARKS if name != "validator_memory"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks for docs/architecture.md §8.")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma-separated subset of {', '.join(BENCHMARKS)} "
        "(default: all but validator_memory)",
    )
    parser.add_argument("--peak-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_child:
        _peak_child()
        return 0
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    report: dict = {}
    for name in chosen:
        report.update(BENCHMARKS[name]())
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
