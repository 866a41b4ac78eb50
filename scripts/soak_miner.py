#!/usr/bin/env python3
"""Miner soak: many short epochs through the real miner; its RSS and database must stay flat.

    python scripts/soak_miner.py                       # 200 epochs of 2 s, figures as JSON
    python scripts/soak_miner.py --epochs 60 --early 20 --epoch-seconds 1.5

Starts a real miner process (``neurons.miner``, synthetic source, epochs
checked, so its retention is 3 epochs of ``--epoch-seconds``) and drives it
as two validators would, over signed loopback HTTP, one round per epoch:

- validator A sends ``--assignments`` zipcode assignments of ``--zipcodes``
  zipcodes (drawn from a fixed pool, as a real validator draws from the
  zipcode universe); validator B sends the first half of them again (the
  same work, shared) and one tie-break lookup of a few property ids;
- both poll ``collect`` until completed (``vali_utils.exchange.MinerExchange``,
  the validator's own code) and ask ``reveal`` after the deadline; B polls
  its lookup until answered;
- a request of the round before must still be answered, and
  one of ``--keep-epochs`` + 3 rounds ago must be gone ("unknown request_id").

After round ``--early`` and after the last round it reads the miner's
``VmRSS``/``VmHWM`` (``/proc``), the size of its SQLite file plus WAL, and
the rows of its tables. ``rss_ratio`` and ``db_ratio`` are last / early: the
issue asks for both within 10% of 1. Rounds overlap (a reveal waits one
second past the deadline, as validators do), as epochs of a real subnet do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.protocol import ROUTE, AssignmentStatus, DataAssignmentRequest  # noqa: E402
from common.signed_client import SignedClient  # noqa: E402
from consensus.assignment import MinerInfo  # noqa: E402
from scraping.retention import RETENTION_EPOCHS  # noqa: E402
from sim.processes import start_miner  # noqa: E402
from vali_utils.assignments import SOURCE, Assignment  # noqa: E402
from vali_utils.exchange import MinerExchange  # noqa: E402

POOL_ZIPCODES = 600  # the zipcodes validators draw from: the miner's working set
POOL_SEED = 16
LOOKUP_ZPIDS = 5
DEADLINE_FRACTION = 0.5  # of the epoch: the assignments' deadline
POLL_S = 0.1
TABLES = ("assignments", "requests", "zipcodes", "records", "properties", "commitments")


@dataclass
class RoundPlan:
    """What the validators send each round."""

    assignments: int = 4
    zipcodes: int = 10
    epoch_s: float = 2.0
    keep_epochs: int = RETENTION_EPOCHS
    pool: list[str] = field(
        default_factory=lambda: [
            f"{z:05d}" for z in random.Random(POOL_SEED).sample(range(1001, 99950), POOL_ZIPCODES)
        ]
    )


@dataclass
class RoundResult:
    epoch: int
    sent: int = 0
    accepted: int = 0
    revealed: int = 0
    lookups_answered: int = 0
    recent_answered: bool | None = None  # a request within the retention: still answered
    old_forgotten: bool | None = None  # a request long past it: gone
    dropped: Counter = field(default_factory=Counter)  # assignments not revealed, by reason


@dataclass
class Validator:
    name: str
    client: SignedClient


def request_id(validator: str, epoch: int, n: int) -> str:
    return f"soak-{validator}-{epoch}-{n}"


def zipcode_request(validator: str, epoch: int, n: int, zipcodes: list[str], deadline: float):
    return DataAssignmentRequest(
        request_id=request_id(validator, epoch, n),
        phase="assign",
        zipcode_assignments={SOURCE: zipcodes},
        batch_id=n,
        overlap_group=0,
        epoch_id=f"epoch-{epoch}",
        expires_at=datetime.fromtimestamp(deadline, UTC),
    )


def lookup_request(validator: str, epoch: int, zipcode: str, deadline: float):
    zpids = [str(int(zipcode) * 1000 + n) for n in range(1, LOOKUP_ZPIDS + 1)]
    return DataAssignmentRequest(
        request_id=request_id(validator, epoch, 999),
        phase="assign",
        assignment_mode="property_ids",
        property_ids={SOURCE: zpids},
        zipcode_assignments={SOURCE: [zipcode]},
        batch_id=999,
        overlap_group=0,
        epoch_id=f"epoch-{epoch}",
        expires_at=datetime.fromtimestamp(deadline, UTC),
    )


async def _post(validator: Validator, miner: MinerInfo, endpoint: str, request):
    return await validator.client.post(
        endpoint, miner.hotkey, ROUTE, request, DataAssignmentRequest, 5.0
    )


async def _known(validator: Validator, miner: MinerInfo, endpoint: str, rid: str) -> bool:
    """Whether the miner still answers ``collect`` for request ``rid`` of this validator."""
    status, answer = await _post(
        validator, miner, endpoint, DataAssignmentRequest(request_id=rid, phase="collect")
    )
    if status != 200 or not isinstance(answer, DataAssignmentRequest):
        raise RuntimeError(f"collect {rid}: HTTP {status} {answer}")
    return answer.status != AssignmentStatus.REJECTED


async def _look_up(validator: Validator, miner: MinerInfo, endpoint: str, request) -> bool:
    status, answer = await _post(validator, miner, endpoint, request)
    if status != 200 or not getattr(answer, "accepted", False):
        return False
    deadline = request.expires_at.timestamp()
    collect = DataAssignmentRequest(request_id=request.request_id, phase="collect")
    while time.time() < deadline:
        status, answer = await _post(validator, miner, endpoint, collect)
        if status == 200 and answer.status == AssignmentStatus.COMPLETED:
            return bool(answer.property_answers)
        await asyncio.sleep(POLL_S)
    return False


async def run_round(
    a: Validator, b: Validator, miner: MinerInfo, endpoint: str, epoch: int, plan: RoundPlan
) -> RoundResult:
    """One epoch of work for the miner, from two validators; see the module docstring."""
    start = epoch * plan.epoch_s
    deadline = start + DEADLINE_FRACTION * plan.epoch_s
    drawn = random.Random(epoch).sample(plan.pool, plan.assignments * plan.zipcodes)
    groups = [drawn[i :: plan.assignments] for i in range(plan.assignments)]
    result = RoundResult(epoch)

    def batch(validator: Validator, count: int) -> list[Assignment]:
        return [
            Assignment(
                None,
                miner,
                endpoint,
                zipcode_request(validator.name, epoch, n, sorted(groups[n]), deadline),
            )
            for n in range(count)
        ]

    async def serve(validator: Validator, assignments: list[Assignment]) -> None:
        exchange = MinerExchange(validator.client, poll_s=POLL_S)
        await exchange.dispatch(assignments)
        await exchange.collect(assignments, deadline, epoch)
        result.dropped.update(await exchange.reveal(assignments, deadline, epoch))
        result.dropped["no_commitment"] += sum(x.commitment is None for x in assignments)
        result.sent += len(assignments)
        result.accepted += sum(x.accepted for x in assignments)
        result.revealed += sum(x.manifest is not None for x in assignments)

    async def look_up() -> None:
        request = lookup_request(b.name, epoch, groups[0][0], deadline)
        result.lookups_answered += await _look_up(b, miner, endpoint, request)

    await asyncio.gather(
        serve(a, batch(a, plan.assignments)),
        serve(b, batch(b, max(1, plan.assignments // 2))),
        look_up(),
    )
    # Checked after this round's reveals, one epoch or more past the older rounds' deadlines.
    recent, old = epoch - (plan.keep_epochs - 2), epoch - (plan.keep_epochs + 3)
    result.recent_answered = await _known(a, miner, endpoint, request_id(a.name, recent, 0))
    result.old_forgotten = not await _known(a, miner, endpoint, request_id(a.name, old, 0))
    return result


async def drive(
    a: Validator,
    b: Validator,
    miner: MinerInfo,
    endpoint: str,
    plan: RoundPlan,
    rounds: int,
    on_round=None,
) -> list[RoundResult]:
    """Start one round at the start of each of the next ``rounds`` epochs; all their results.

    ``on_round(n, result)`` is awaited as round ``n`` (1-based) finishes, in order.
    """
    first = int(time.time() // plan.epoch_s) + 1
    started: asyncio.Queue[asyncio.Task] = asyncio.Queue()

    async def launch() -> None:
        for epoch in range(first, first + rounds):
            await asyncio.sleep(max(0.0, epoch * plan.epoch_s - time.time()))
            started.put_nowait(asyncio.create_task(run_round(a, b, miner, endpoint, epoch, plan)))

    # Rounds are started on time while finished ones are looked at, so the
    # figures after round n are taken then, not at the end.
    launcher = asyncio.create_task(launch())
    results = []
    try:
        for n in range(1, rounds + 1):
            results.append(await (await started.get()))
            if on_round is not None:
                await on_round(n, results[-1])
        await launcher
    finally:
        launcher.cancel()
        while not started.empty():
            started.get_nowait().cancel()
    return results


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (its peak since start) of ``pid``, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line[:5].lower()] = round(int(line.split()[1]) / 1024, 1)
    return found


def database_figures(path: Path) -> dict:
    """Size of the SQLite file and its WAL (MB), and the rows of each table."""
    sizes = {
        name: (path.parent / name).stat().st_size if (path.parent / name).exists() else 0
        for name in (path.name, path.name + "-wal")
    }
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        db.close()
    return {
        "db_mb": round(sizes[path.name] / 2**20, 2),
        "wal_mb": round(sizes[path.name + "-wal"] / 2**20, 2),
        "db_and_wal_mb": round(sum(sizes.values()) / 2**20, 2),
        "rows": rows,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=200, help="rounds, one per epoch")
    parser.add_argument("--early", type=int, default=20, help="the round compared with the last")
    parser.add_argument("--epoch-seconds", type=float, default=2.0, help="the miner's epoch")
    parser.add_argument("--assignments", type=int, default=4, help="A's assignments a round")
    parser.add_argument("--zipcodes", type=int, default=10, help="zipcodes per assignment")
    args = parser.parse_args(argv)
    if not 1 <= args.early < args.epochs:
        parser.error("need 1 <= --early < --epochs")
    return args


async def soak(args: argparse.Namespace, workdir: Path) -> dict:
    flags = ("--epoch.check", "--cycle.seconds", str(args.epoch_seconds), "--rate.limit", "100000")
    loopback = start_miner(workdir, {"alice": (1000.0, True), "bob": (1000.0, True)}, *flags)
    people, process, endpoint = loopback.people, loopback.process, loopback.endpoint
    plan = RoundPlan(args.assignments, args.zipcodes, args.epoch_seconds)
    database = workdir / "miner-miner-default" / "miner.sqlite"
    samples: dict[int, dict] = {}
    series: dict[int, dict] = {}  # every 20 rounds: the curve between the two samples
    try:
        miner = MinerInfo(2, people["miner"].hotkey, people["miner"].coldkey)

        async def on_round(n: int, result: RoundResult) -> None:
            if n in (args.early, args.epochs):
                samples[n] = {**memory_mb(process.pid), **database_figures(database)}
            if n % 20 == 0 or n == args.early:
                series[n] = {**memory_mb(process.pid), **database_figures(database)}
                series[n].pop("rows")
                print(f"round {n}: {series[n]}", file=sys.stderr, flush=True)

        async with aiohttp.ClientSession() as session:
            a = Validator("alice", SignedClient(people["alice"].keypair, session))
            b = Validator("bob", SignedClient(people["bob"].keypair, session))
            results = await drive(a, b, miner, endpoint, plan, args.epochs, on_round)
    finally:
        loopback.stop()
    early, last = samples[args.early], samples[args.epochs]
    checked = results[plan.keep_epochs + 3 :]  # rounds whose "old" request existed
    return {
        "epochs": args.epochs,
        "epoch_seconds": args.epoch_seconds,
        "retention_epochs": plan.keep_epochs,
        "assignments_sent": sum(r.sent for r in results),
        "assignments_revealed": sum(r.revealed for r in results),
        "lookups_answered": sum(r.lookups_answered for r in results),
        "not_revealed": dict(sum((r.dropped for r in results), Counter())),
        "rounds_recent_request_answered": sum(bool(r.recent_answered) for r in checked),
        "rounds_old_request_forgotten": sum(bool(r.old_forgotten) for r in checked),
        "rounds_checked": len(checked),
        f"after_{args.early}": early,
        f"after_{args.epochs}": last,
        "rss_ratio": round(last["vmrss"] / early["vmrss"], 3),
        "db_ratio": round(last["db_and_wal_mb"] / early["db_and_wal_mb"], 3),
        "series": series,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-miner-") as tmp:
        figures = asyncio.run(soak(args, Path(tmp)))
    print(json.dumps(figures, indent=2))
    flat = abs(figures["rss_ratio"] - 1) <= 0.10 and abs(figures["db_ratio"] - 1) <= 0.10
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
