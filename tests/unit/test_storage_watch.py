"""The storage watch's rule and bookkeeping: what counts as an outage in an upload window."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from consensus.s3_evaluation import S3Evaluation, coverage_excused, outage_in_window
from tests.unit.virtual_clock import VirtualClock
from vali_utils.s3_reader import StorageUnavailable
from vali_utils.storage_watch import StorageWatch

pytestmark = pytest.mark.unit


def probes(*oks: bool, every: float = 10.0, at: float = 0.0) -> list[tuple[float, bool]]:
    return [(at + i * every, ok) for i, ok in enumerate(oks)]


def test_two_failures_in_a_row_inside_the_window_are_an_outage():
    seen = probes(True, True, False, False, True)
    assert outage_in_window(seen, 0, 100, 2) == (20.0, 30.0)


def test_one_failure_or_failures_apart_are_not():
    assert outage_in_window(probes(True, False, True, False, True), 0, 100, 2) is None
    assert outage_in_window(probes(True, False, True), 0, 100, 1) == (10.0, 10.0)


def test_an_outage_running_into_the_window_counts_one_over_before_it_does_not():
    seen = probes(False, False, False, True, True)  # 0..20 failing
    assert outage_in_window(seen, 15, 100, 2) == (0.0, 20.0)
    assert outage_in_window(seen, 25, 100, 2) is None


def test_failures_after_the_window_are_not_counted():
    seen = probes(True, True, True, False, False)  # 30, 40 failing
    assert outage_in_window(seen, 0, 25, 2) is None
    assert outage_in_window(seen, 0, 30, 2) is None  # only one seen by then
    assert outage_in_window(seen, 0, 40, 2) == (30.0, 40.0)


def test_no_probes_no_outage():
    assert outage_in_window([], 0, 100, 2) is None


def test_every_kind_of_failed_probe_is_a_failure_and_old_probes_are_dropped():
    clock = VirtualClock(now=1000.0)
    answers: list = []

    async def probe() -> str | None:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.sleep(60)
        return answer

    watch = StorageWatch([probe], interval_s=1.0, in_a_row=2, keep_s=50.0, clock=clock.time)

    async def scenario() -> list[bool]:
        results = []
        for answer in [
            None,
            "Data API health: HTTP 503",
            StorageUnavailable("list: timeout"),
            aiohttp.ClientConnectionError("refused"),
            OSError("reset"),
            "hang",
            None,
        ]:
            answers.append(answer)
            results.append(await watch.probe_once())
            clock.now += 10
        return results

    assert asyncio.run(scenario()) == [True, False, False, False, False, False, True]
    # Probes from 1000 to 1060, the last 50 s kept: the first one is gone.
    assert [at for at, _ in watch.observations] == [1010.0, 1020.0, 1030.0, 1040.0, 1050.0, 1060.0]
    assert "did not answer" in (watch.outage(1020.0, 1030.0) or "")
    assert watch.outage(1060.0, 1070.0) is None


def test_a_bug_in_a_probe_is_not_an_outage_it_is_raised():
    async def broken() -> str | None:
        raise KeyError("a bug")

    watch = StorageWatch([broken], interval_s=1.0, in_a_row=2, keep_s=50.0)
    with pytest.raises(KeyError):
        asyncio.run(watch.probe_once())


def test_the_watch_outlives_a_bug_in_a_probe(caplog):
    calls = 0

    async def flaky() -> str | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug")
        return None

    watch = StorageWatch([flaky], interval_s=0.01, in_a_row=2, keep_s=50.0)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        while calls < 3:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(scenario())
    assert "failed unexpectedly" in caplog.text
    assert watch.observations and all(ok for _, ok in watch.observations)


def test_an_upload_outage_excuses_coverage_and_nothing_else():
    lost_half = S3Evaluation(
        "hk", 0.5, {"integrity": 1.0, "coverage": 0.5, "agreement": 1.0}, 3, 3, 90,
        ("assigned_zipcodes_without_file: 3",),
    )  # fmt: skip
    excused = coverage_excused(lost_half, "upload_window_outage: ...")
    assert excused.reward == 1.0 and "coverage" not in excused.components
    assert excused.reasons == ("upload_window_outage: ...",)
    # Files that landed and disagree with consensus stay evidence: an outage writes no file.
    invented = S3Evaluation("hk", 0.1, {"coverage": 0.5, "agreement": 0.2}, 3, 3, 90)
    assert coverage_excused(invented, "outage").reward == pytest.approx(0.2)
    # Nothing but coverage to judge: no evidence at all.
    assert coverage_excused(S3Evaluation("hk", 0.5, {"coverage": 0.5}), "outage").reward is None
