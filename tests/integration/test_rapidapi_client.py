"""The RapidAPI Zillow source against a fake zillow-com1 on loopback, and the operator CLI.

Every failure the real API has (429 with and without Retry-After, 403, 5xx,
slow answers, truncated JSON, a spent budget) must end as a clean one-line
error in the result, with the limits held: arrival times are measured at the
fake server, not trusted from the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from config.sources import RapidApiConfig
from scraping.rapidapi import RapidApiZillowSource
from scraping.ratelimit import MonthlyBudget
from scraping.source import BadAnswer, BudgetExhausted, KeyRejected, SourceUnavailable
from sim.fake_rapidapi import SEARCH_PATH, VALID_KEY, FakeRapidApi, Reply
from tests.unit.cli_runs import run_module
from tests.unit.rapidapi_fixtures import fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOLD_ZIPCODE = "77021"  # search_recently_sold.json
SALE_ZIPCODE = "77494"  # search_for_sale_page1/2.json


def listings(zipcode: str, count: int) -> list[dict]:
    return [
        {
            "zpid": int(zipcode) * 1000 + n,
            "address": f"{n} Test St, Katy, TX {zipcode}",
            "price": 100_000 + n,
            "listingStatus": "RECENTLY_SOLD",
            "dateSold": 1704182400000,
        }
        for n in range(1, count + 1)
    ]


@pytest_asyncio.fixture
async def fake():
    server = FakeRapidApi()
    server.set_page(SOLD_ZIPCODE, "RecentlySold", 1, fixture("search_recently_sold"))
    server.set_page(SALE_ZIPCODE, "ForSale", 1, fixture("search_for_sale_page1"))
    server.set_page(SALE_ZIPCODE, "ForSale", 2, fixture("search_for_sale_page2"))
    server.set_property("27837052", fixture("property_detail"))
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def make_source(fake):
    """Sources on the fake with fast test settings; closed after the test."""
    made: list[RapidApiZillowSource] = []

    def build(**overrides) -> RapidApiZillowSource:
        settings = {
            "api_key": VALID_KEY,
            "base_url": fake.base_url,
            "calls_per_second": 1000.0,
            "max_retries": 2,
            "backoff_base_s": 0.01,
            "backoff_cap_s": 0.05,
            "call_timeout_s": 2.0,
        } | overrides
        source = RapidApiZillowSource(RapidApiConfig(**settings), rng=random.Random(0))
        made.append(source)
        return source

    yield build
    for source in made:
        await source.close()


async def scrape(source, zipcode=SOLD_ZIPCODE, status="ZILLOW_SOLD", within_s=10.0):
    return await source.scrape_zipcode(zipcode, status, deadline=time.monotonic() + within_s)


def assert_one_line(result, *fragments: str) -> str:
    (error,) = result.errors
    assert "\n" not in error
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    return error


# -- answers and pagination -------------------------------------------------


@pytest.mark.asyncio
async def test_for_sale_pages_are_read_and_parsed(fake, make_source):
    source = make_source()
    result = await scrape(source, SALE_ZIPCODE, "ZILLOW")
    assert result.errors == []
    assert (result.pages, result.calls) == (2, 2)
    assert sorted(r["zpid"] for r in result.records) == [
        "2061234501",
        "2061234502",
        "2061234503",
        "2061234509",
        "2061234510",
    ]
    assert result.dropped == {
        "missing_zpid": 1,
        "missing_address": 1,
        "missing_price": 1,
        "wrong_zipcode": 1,
        "invalid_record": 1,
        "duplicate_zpid": 1,  # 2061234501 again on page 2
    }
    assert [r.query for r in fake.requests] == [
        {"location": SALE_ZIPCODE, "status_type": "ForSale", "page": "1"},
        {"location": SALE_ZIPCODE, "status_type": "ForSale", "page": "2"},
    ]
    assert {(r.key, r.host) for r in fake.requests} == {(VALID_KEY, "zillow-com1.p.rapidapi.com")}
    assert all(r["scraped_at"] for r in result.records)


@pytest.mark.asyncio
async def test_sold_searches_recently_sold(fake, make_source):
    result = await scrape(make_source())
    assert fake.requests[0].query["status_type"] == "RecentlySold"
    assert {r["listing_status"] for r in result.records} == {"SOLD"}
    assert {r["sold_date"] for r in result.records} == {"2024-01-02", "2024-03-01"}
    assert result.dropped == {"wrong_zipcode": 1}


@pytest.mark.asyncio
async def test_pages_stop_at_the_cap(fake, make_source):
    fake.set_listings("77001", "RecentlySold", listings("77001", 100), per_page=10)
    result = await scrape(make_source(max_pages_per_zipcode=3), "77001")
    assert (result.pages, result.calls, len(result.records)) == (3, 3, 30)
    assert result.errors == []


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", ["search_empty_props", "search_no_props", None])
async def test_empty_zipcodes_are_empty_not_errors(fake, make_source, answer):
    if answer is not None:
        fake.set_page("99999", "RecentlySold", 1, fixture(answer))
    result = await scrape(make_source(), "99999")  # None: the fake's default empty page
    assert (result.records, result.errors, result.calls, result.pages) == ([], [], 1, 1)


@pytest.mark.asyncio
async def test_single_property_answer(fake, make_source):
    fake.set_page(SALE_ZIPCODE, "ForSale", 1, fixture("search_single_property"))
    result = await scrape(make_source(), SALE_ZIPCODE, "ZILLOW")
    assert [r["zpid"] for r in result.records] == ["2061234501"]
    assert result.calls == 1


@pytest.mark.asyncio
async def test_unknown_source_is_an_error_without_a_call(fake, make_source):
    result = await scrape(make_source(), SOLD_ZIPCODE, "REDFIN")
    assert_one_line(result, "unknown source 'REDFIN'")
    assert fake.requests == []


# -- rate limits, 429 and the budget ------------------------------------------


@pytest.mark.asyncio
async def test_rate_limit_holds_across_concurrent_zipcodes(fake, make_source):
    rate = 20.0
    source = make_source(calls_per_second=rate)
    zipcodes = [f"{77100 + i}" for i in range(10)]
    for zipcode in zipcodes:
        fake.set_listings(zipcode, "RecentlySold", listings(zipcode, 100))  # 3 pages
    fake.latency_s = 0.02
    semaphore = asyncio.Semaphore(8)  # as the miner runs them

    async def one(zipcode):
        async with semaphore:
            return await scrape(source, zipcode)

    results = await asyncio.gather(*(one(z) for z in zipcodes))
    assert all(not r.errors and len(r.records) == 100 for r in results)
    arrivals = sorted(fake.arrivals(SEARCH_PATH))
    assert len(arrivals) == 30
    achieved = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert rate * 0.9 <= achieved <= rate * 1.05, achieved
    # Burst 1: no bunching. Counted over quarter-second windows rather than
    # single gaps, since the fake stamps an arrival when its handler runs and
    # a loaded machine can run two spaced requests' handlers back to back.
    for window in (0.25, 1.0):
        for i, start in enumerate(arrivals):
            within = sum(1 for t in arrivals[i:] if t < start + window)
            assert within <= rate * window + 1, (window, within)


@pytest.mark.asyncio
async def test_429_waits_for_retry_after(fake, make_source):
    fake.script(Reply(429, body={"message": "Too many requests"}, headers={"Retry-After": "1"}))
    source = make_source()
    result = await scrape(source)
    assert result.errors == [] and len(result.records) == 2
    first, second = fake.arrivals()
    assert second - first >= 0.99
    assert result.calls == 2
    stats = source.stats()
    assert (stats["rate_limited"], stats["retries"], stats["calls"]) == (1, 1, 2)


@pytest.mark.asyncio
async def test_429_holds_every_zipcode_not_only_the_one_refused(fake, make_source):
    source = make_source()
    for zipcode in ("77201", "77202"):
        fake.set_listings(zipcode, "RecentlySold", listings(zipcode, 50))  # 2 pages
    fake.latency_s = 0.05
    fake.script(Reply(429, headers={"Retry-After": "0.5"}))  # the first request to arrive
    results = await asyncio.gather(scrape(source, "77201"), scrape(source, "77202"))
    assert all(not r.errors and len(r.records) == 50 for r in results)
    arrivals = sorted(fake.arrivals())
    assert len(arrivals) == 5  # 2 zipcodes x 2 pages + the refused call
    assert all(t >= arrivals[0] + 0.49 for t in arrivals[2:]), arrivals


@pytest.mark.asyncio
async def test_429_without_retry_after_backs_off_exponentially(fake, make_source):
    fake.script(Reply(429), Reply(429))
    source = make_source(backoff_base_s=0.1, backoff_cap_s=1.0)
    result = await scrape(source)
    assert result.errors == [] and result.calls == 3
    first, second, third = fake.arrivals()
    assert second - first >= 0.05  # attempt 0: 0.1 s jittered to [0.05, 0.1]
    assert third - second >= 0.1  # attempt 1: 0.2 s jittered to [0.1, 0.2]


@pytest.mark.asyncio
async def test_429_every_time_is_a_clean_error(fake, make_source):
    fake.script(*[Reply(429)] * 3)
    result = await scrape(make_source())
    assert_one_line(result, "page 1", "rate limited (HTTP 429)", "gave up after 3 attempts")
    assert result.records == [] and result.calls == 3


@pytest.mark.asyncio
async def test_monthly_budget_refuses_calls_once_spent(fake, make_source):
    fake.set_listings("77001", "RecentlySold", listings("77001", 5), per_page=1)
    source = make_source(calls_per_month=3, cost_per_call_usd=0.25)
    result = await scrape(source, "77001")
    assert len(result.records) == 3  # the pages read before the budget ran out are kept
    assert_one_line(
        result, "page 4", "monthly call budget spent (3 of 3", "RAPIDAPI_CALLS_PER_MONTH"
    )
    again = await scrape(source, SOLD_ZIPCODE)
    assert_one_line(again, "monthly call budget spent")
    assert len(fake.requests) == 3
    with pytest.raises(BudgetExhausted):
        await source.fetch_property("27837052", deadline=time.monotonic() + 5)
    stats = source.stats()
    assert (stats["calls"], stats["budget_remaining"], stats["estimated_cost_usd"]) == (3, 0, 0.75)


def test_monthly_budget_starts_again_with_the_month():
    now = [datetime(2026, 1, 31, 23, 59, tzinfo=UTC)]
    budget = MonthlyBudget(limit=2, now=lambda: now[0])
    budget.take()
    budget.take()
    with pytest.raises(BudgetExhausted, match="2026-01"):
        budget.take()
    now[0] = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    assert budget.remaining == 2
    budget.take()
    assert budget.used == 1


# -- key, server and transport failures -------------------------------------


@pytest.mark.asyncio
async def test_403_disables_the_source_after_one_call(fake, make_source):
    source = make_source(api_key="bad-key")
    result = await scrape(source)
    error = assert_one_line(result, "HTTP 403", "not subscribed", "RAPIDAPI_KEY")
    for zipcode in ("77001", "77002", "77003"):
        later = await scrape(source, zipcode)
        assert_one_line(later, "source disabled")
    assert len(fake.requests) == 1  # never retried, never called again
    assert source.unusable_reason in error
    assert source.stats()["usable"] is False
    with pytest.raises(KeyRejected):
        await source.fetch_property("27837052", deadline=time.monotonic() + 5)


@pytest.mark.asyncio
async def test_server_errors_are_retried_then_succeed(fake, make_source):
    fake.script(Reply(500, text="Internal Server Error"), Reply(503))
    source = make_source()
    result = await scrape(source)
    assert result.errors == [] and len(result.records) == 2
    assert result.calls == 3 and source.stats()["server_errors"] == 2


@pytest.mark.asyncio
async def test_server_errors_every_time_are_a_clean_error(fake, make_source):
    fake.script(*[Reply(502)] * 3)
    result = await scrape(make_source())
    assert_one_line(result, "server error (HTTP 502); gave up after 3 attempts")
    assert len(fake.requests) == 3


@pytest.mark.asyncio
async def test_other_client_errors_are_not_retried(fake, make_source):
    fake.script(Reply(400, body={"message": "location is required"}))
    result = await scrape(make_source())
    assert_one_line(result, "HTTP 400: location is required")
    assert len(fake.requests) == 1


@pytest.mark.asyncio
async def test_slow_answer_times_out_and_is_retried(fake, make_source):
    fake.script(Reply(delay_s=0.6))
    source = make_source(call_timeout_s=0.2)
    result = await scrape(source)
    assert result.errors == [] and len(result.records) == 2
    assert result.calls == 2 and source.stats()["timeouts"] == 1


@pytest.mark.asyncio
async def test_slow_every_time_is_a_clean_error(fake, make_source):
    fake.script(*[Reply(delay_s=0.6)] * 2)
    started = time.monotonic()
    result = await scrape(make_source(call_timeout_s=0.15, max_retries=1))
    assert_one_line(result, "timed out; gave up after 2 attempts")
    assert time.monotonic() - started < 0.6


@pytest.mark.asyncio
async def test_truncated_json_is_a_clean_error(fake, make_source):
    text = json.dumps(fixture("search_recently_sold"))
    fake.script(Reply(text=text[: len(text) // 2]))
    result = await scrape(make_source())
    assert_one_line(result, "page 1", "invalid JSON", "truncated")
    assert len(fake.requests) == 1  # a broken answer is not paid for twice


@pytest.mark.asyncio
async def test_answer_of_the_wrong_shape_is_a_clean_error(fake, make_source):
    fake.script(Reply(body=[1, 2, 3]))
    result = await scrape(make_source())
    assert_one_line(result, "expected a JSON object, got list")


@pytest.mark.asyncio
async def test_unreachable_api_is_a_clean_error(make_source):
    source = make_source(base_url="http://127.0.0.1:9", max_retries=1)  # nothing listens
    result = await scrape(source)
    assert_one_line(result, "connection failed", "gave up after 2 attempts")


@pytest.mark.asyncio
async def test_deadline_keeps_the_pages_already_read(fake, make_source):
    fake.set_listings("77001", "RecentlySold", listings("77001", 50))  # 2 pages
    fake.script(Reply(), Reply(delay_s=1.0))  # page 1 at once, page 2 too slow
    started = time.monotonic()
    result = await scrape(make_source(), "77001", within_s=0.5)
    assert time.monotonic() - started < 1.0
    assert len(result.records) == 41 and result.pages == 1
    assert_one_line(result, "page 2", "deadline")


@pytest.mark.asyncio
async def test_session_is_shared_closed_and_reopened(fake, make_source):
    source = make_source()
    await asyncio.gather(scrape(source), scrape(source, SALE_ZIPCODE, "ZILLOW"))
    session = source._session
    assert session is not None
    await source.close()
    assert session.closed and source._session is None
    result = await scrape(source)
    assert result.errors == [] and source.stats()["calls"] == 4


# -- fetch_property (validators' spot checks) ---------------------------------


@pytest.mark.asyncio
async def test_fetch_property(fake, make_source):
    source = make_source()
    record = await source.fetch_property("27837052", deadline=time.monotonic() + 5)
    assert record is not None
    assert (record["zpid"], record["zipcode"], record["price"]) == ("27837052", "77021", 189000)
    assert fake.requests[0].path == "/property" and fake.requests[0].query == {"zpid": "27837052"}
    # 404: the API says there is no such listing
    assert await source.fetch_property("1", deadline=time.monotonic() + 5) is None
    # not a zpid: nothing to ask
    assert await source.fetch_property("abc", deadline=time.monotonic() + 5) is None
    assert len(fake.requests) == 2


@pytest.mark.asyncio
async def test_fetch_property_failures_are_no_evidence(fake, make_source):
    source = make_source(max_retries=0)
    fake.script(Reply(500))
    with pytest.raises(SourceUnavailable, match="server error"):
        await source.fetch_property("27837052", deadline=time.monotonic() + 5)
    fake.set_property("5", {"zpid": 5, "address": {"streetAddress": "5 A St"}, "price": None})
    with pytest.raises(BadAnswer, match="missing_price"):
        await source.fetch_property("5", deadline=time.monotonic() + 5)
    fake.set_property("6", fixture("property_detail"))  # answers for another zpid
    with pytest.raises(BadAnswer, match="answer is for zpid 27837052"):
        await source.fetch_property("6", deadline=time.monotonic() + 5)


# -- the operator CLI, as a subprocess ----------------------------------------


def cli_environment(**variables: str) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("RAPIDAPI_") and k != "SCRAPER"
    }
    return environ | {"PYTHONPATH": str(ROOT)} | variables


async def run_cli(cwd: Path, environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scraping",
        *args,
        cwd=cwd,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.asyncio
async def test_cli_scrapes_one_zipcode_through_the_fake(fake, tmp_path):
    env_file = tmp_path / "miner.env"
    env_file.write_text(
        f"RAPIDAPI_KEY={VALID_KEY}\nRAPIDAPI_ZILLOW_BASE_URL={fake.base_url}\n"
        "RAPIDAPI_COST_PER_CALL_USD=0.5\n"
    )
    out = tmp_path / "out.json"
    code, stdout, stderr = await run_cli(
        tmp_path,
        cli_environment(),
        "scrape",
        "--source",
        "rapidapi_zillow",
        "--zipcode",
        SOLD_ZIPCODE,
        "--status",
        "sold",
        "--json",
        str(out),
        "--env-file",
        str(env_file),
    )
    assert (code, stderr) == (0, "")
    assert "records  2" in stdout and "wrong_zipcode 1" in stdout and "$0.5000" in stdout
    assert len(stdout.splitlines()) <= 24  # one screen
    report = json.loads(out.read_text())
    assert report["status"] == "ZILLOW_SOLD"
    assert [r["zpid"] for r in report["records"]] == ["27837052", "27838001"]
    assert (report["calls"], report["dropped"], report["errors"]) == (1, {"wrong_zipcode": 1}, [])
    assert report["stats"]["calls"] == 1 and report["stats"]["estimated_cost_usd"] == 0.5
    assert fake.requests[0].query["status_type"] == "RecentlySold"


@pytest.mark.asyncio
async def test_cli_bad_key_exits_with_one_line(fake, tmp_path):
    environ = cli_environment(RAPIDAPI_KEY="bad-key", RAPIDAPI_ZILLOW_BASE_URL=fake.base_url)
    code, stdout, stderr = await run_cli(
        tmp_path, environ, "scrape", "--source", "rapidapi_zillow", "--zipcode", "77494"
    )
    assert code == 1 and stdout == ""
    (line,) = stderr.splitlines()
    assert line.startswith("error: RapidAPI refused the key (HTTP 403") and "RAPIDAPI_KEY" in line
    assert len(fake.requests) == 1


def test_cli_synthetic_works_offline(tmp_path):
    out = tmp_path / "out.json"
    argv = ["scrape", "--source", "synthetic", "--zipcode", "77494", "--status", "sale"]
    result = run_module(
        "scraping", *argv, "--json", str(out), cwd=tmp_path, env=cli_environment(), timeout=30
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["source"] == "synthetic" and report["records"]
    assert f"records  {len(report['records'])}" in result.stdout


def test_cli_help_and_configuration_errors(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return run_module("scraping", *args, cwd=tmp_path, env=cli_environment(), timeout=30)

    shown = run("--help")
    assert shown.returncode == 0
    for word in ("scrape", "property", "rapidapi_zillow", "synthetic", "RAPIDAPI_KEY"):
        assert word in shown.stdout
    assert "--status" in run("scrape", "--help").stdout
    missing_key = run("scrape", "--source", "rapidapi_zillow", "--zipcode", "77494")
    assert missing_key.returncode == 2
    assert missing_key.stderr.strip().splitlines() == [
        "error: RAPIDAPI_KEY is not set: subscribe to the zillow-com1 API on rapidapi.com "
        "and put the key in .env"
    ]
    assert run("scrape", "--zipcode", "7749").returncode == 2
