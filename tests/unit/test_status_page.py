"""The status page's documents and HTML, from a store the real cycle code filled."""

from __future__ import annotations

import asyncio
import html
import json
import re
import sqlite3
from urllib.parse import parse_qs

import pytest

from common.epochs import EpochClock
from sim.validator_history import INVENTED, fill_store
from vali_utils.status_html import miner_page, overview_page
from vali_utils.status_view import (
    CYCLES_SHOWN,
    MINERS_PER_PAGE,
    TEXT_LIMIT,
    StatusReader,
    StatusUnavailable,
    bounded,
    current_phase,
)

pytestmark = pytest.mark.unit

CLOCK = EpochClock(100.0, 0.6)  # deadline at 60 s, tie-breaks until 80 s
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("validator")
    found = asyncio.run(
        fill_store(
            state_dir,
            miners=24,
            cycles=3,
            fabricators=(3,),
            offline=(5,),
            hostile_error=HOSTILE,
            hostile_uid=7,
            honeypot=True,
        )
    )
    return state_dir, found


def last_report(state_dir) -> dict:
    db = sqlite3.connect(state_dir / "validator.sqlite")
    try:
        row = db.execute("SELECT report_json FROM cycles ORDER BY epoch DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return json.loads(row[0])


def test_overview_lists_every_miner_with_the_reports_figures(history):
    state_dir, found = history
    now = CLOCK.end(found.epochs[-1]) - 1
    view = StatusReader(state_dir, CLOCK).overview(now)
    assert view["scored_epoch"] == found.epochs[-1]
    assert [c["epoch"] for c in view["cycles"]] == found.epochs[::-1]
    assert all(c["weights_set"] is True and len(c["plan_hash"]) == 64 for c in view["cycles"])
    rows = {r["uid"]: r for r in view["miners"]["rows"]}
    report = last_report(state_dir)
    assert set(rows) == {m["uid"] for m in report["miners"]} == set(range(24))
    for m in report["miners"]:
        row = rows[m["uid"]]
        assert (row["hotkey"], row["weight"], row["score"], row["quality"], row["recall"]) == (
            m["hotkey"],
            m["weight"],
            m["score"],
            m["quality"],
            m["recall"],
        )
        assert row["coldkey"] == found.coldkeys[m["uid"]][:8]
    assert rows[3]["flags"] == ["fabrication"] and rows[3]["weight"] == 0.0
    assert rows[5]["answered"] == 0 < rows[5]["assigned"]
    assert rows[0]["weight"] > 0 and rows[0]["flags"] == []


def test_overview_filters_and_pages(history):
    state_dir, found = history
    reader = StatusReader(state_dir, CLOCK)
    now = CLOCK.end(found.epochs[-1]) - 1
    by_flag = reader.overview(now, query="fabrication")["miners"]
    assert [r["uid"] for r in by_flag["rows"]] == [3]
    by_hotkey = reader.overview(now, query=found.hotkeys[11][5:20])["miners"]
    assert [r["uid"] for r in by_hotkey["rows"]] == [11]
    huge = reader.overview(now, page=10**6, query="x" * 10_000)["miners"]
    assert len(huge["query"]) == 64 and huge["page"] == huge["pages"] == 1
    assert MINERS_PER_PAGE >= 256  # one page holds a full subnet's table


def test_miner_page_shows_zipcodes_flags_answers_and_s3_rounds(history):
    state_dir, found = history
    now = CLOCK.end(found.epochs[-1]) - 1
    reader = StatusReader(state_dir, CLOCK)
    fabricator = reader.miner(3, now)
    assert fabricator["hotkey"] == found.hotkeys[3]
    assert [c["epoch"] for c in fabricator["cycles"]] == found.epochs[::-1]
    kinds = {f["kind"] for f in fabricator["flags"]}
    assert "fabrication" in kinds
    evidence = next(f["evidence"] for f in fabricator["flags"] if f["kind"] == "fabrication")
    assert evidence["unconfirmed"] > 0 and evidence["judged"] > 0
    assert fabricator["s3_rounds"][0]["reward"] == 0.0 and fabricator["s3_rounds"][0]["reasons"]
    # Which zipcode was a honeypot stays with the validator: the flag shows no
    # evidence at all (its record count alone would name the zipcode to its miner).
    db = sqlite3.connect(state_dir / "validator.sqlite")
    try:
        reports = [json.loads(r) for (r,) in db.execute("SELECT report_json FROM cycles")]
    finally:
        db.close()
    stored = [f for r in reports for f in r["flags"] if f["kind"] == "honeypot"]
    assert stored and stored[0]["evidence"]["records"] == INVENTED  # the validator keeps it
    honeypots = [f for f in fabricator["flags"] if f["kind"] == "honeypot"]
    assert honeypots and all(f["evidence"] is None for f in honeypots)
    html = miner_page(fabricator)
    assert "kept by the validator" in html
    assert "&quot;records&quot;" not in html and "&quot;zipcode&quot;" not in html
    offline = reader.miner(5, now)
    assert set(offline["zipcodes"]["counts"]) == {"not_answered"}
    assert offline["answers"][0]["status"] == "failed"
    honest = reader.miner(0, now)
    assert honest["zipcodes"]["counts"].get("confirmed", 0) == honest["cycles"][0]["assigned"]
    assert reader.miner(999, now) is None


def test_hostile_answer_text_is_escaped_and_bounded(history):
    state_dir, found = history
    now = CLOCK.end(found.epochs[-1]) - 1
    view = StatusReader(state_dir, CLOCK).miner(7, now)
    assert view["answers"][0]["error"] == HOSTILE
    page = miner_page(view)
    assert "<script>window" not in page and "<img" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    # The only script on the page is the page's own.
    assert len(re.findall(r"<script>", page)) == 1
    assert len(bounded({"x": "y" * 10_000})["x"]) == TEXT_LIMIT
    assert len(bounded({"zpids": list(range(1000))})["zpids"]) == 13  # 12 and "... more"


def test_overview_html_carries_every_row(history):
    state_dir, found = history
    now = CLOCK.end(found.epochs[-1]) - 1
    view = StatusReader(state_dir, CLOCK).overview(now)
    page = overview_page(view)
    assert page.count('<tr data-uid="') == 24
    assert 'href="miner/3"' in page and "fabrication" in page


@pytest.mark.parametrize(
    ("stored", "into_epoch", "phase", "left"),
    [
        (None, 10.0, "assign", 50.0),
        ("planned", 10.0, "assign", 50.0),
        ("dispatched", 30.0, "collect", 30.0),
        ("dispatched", 65.0, "reveal", 15.0),
        ("collected", 70.0, "reveal", 10.0),
        ("tiebreaks", 75.0, "consensus", 5.0),
        ("scored", 85.0, "consensus", 0.0),
        ("done", 85.0, "S3 evaluation", 15.0),
        (None, 70.0, "S3 evaluation", 30.0),
    ],
)
def test_phase_and_time_left(stored, into_epoch, phase, left):
    now = CLOCK.start(7) + into_epoch
    assert current_phase(CLOCK, now, stored) == (phase, pytest.approx(left))


def test_no_store_is_unavailable_not_an_error(tmp_path):
    with pytest.raises(StatusUnavailable):
        StatusReader(tmp_path, CLOCK).overview(0.0)


def test_pages_show_only_the_last_cycles(tmp_path):
    found = asyncio.run(fill_store(tmp_path, miners=8, cycles=CYCLES_SHOWN + 2))
    reader = StatusReader(tmp_path, CLOCK)
    now = CLOCK.end(found.epochs[-1]) - 1
    assert [c["epoch"] for c in reader.overview(now)["cycles"]] == found.epochs[:1:-1]
    assert [c["epoch"] for c in reader.miner(0, now)["cycles"]] == found.epochs[:1:-1]
    assert reader.miner(10**9, now) is None


def test_a_honeypot_zipcode_reads_like_any_zipcode_of_its_consensus(tmp_path):
    """Regression: an answered honeypot showed "confirmed" where its siblings showed
    "no evidence", because its verdict took the owner's reference (confidence 1)
    instead of the groups' consensus: the page named the honeypot to every miner.

    Groups of two miners give no consensus (fewer than ``min_group_responders``),
    so every zipcode is "no evidence": the honeypot must be too.
    """
    pages = {}
    for honeypot in (False, True):
        state_dir = tmp_path / f"honeypot-{honeypot}"
        found = asyncio.run(fill_store(state_dir, miners=8, cycles=1, honeypot=honeypot))
        reader = StatusReader(state_dir, CLOCK)
        now = CLOCK.end(found.epochs[-1]) - 1
        pages[honeypot] = {uid: reader.miner(uid, now)["zipcodes"] for uid in range(8)}
    assert {"no_evidence"} == {
        row["outcome"] for zipcodes in pages[True].values() for row in zipcodes["rows"]
    }
    assert pages[True] == pages[False]


def test_pager_links_keep_a_filter_with_url_syntax_in_it(history):
    """Regression: the pager put the filter in its links HTML-escaped but not
    URL-encoded, so a filter with "&" or "#" lost its tail on the next page."""
    state_dir, found = history
    view = StatusReader(state_dir, CLOCK).overview(CLOCK.end(found.epochs[-1]) - 1)
    query = 'a&b=c #d+e%f "<x>'
    view["miners"] = view["miners"] | {"query": query, "page": 1, "pages": 3}
    hrefs = re.findall(r'<a href="\?([^"]*)">[23]</a>', overview_page(view))
    assert len(hrefs) == 2
    for n, href in zip((2, 3), hrefs, strict=True):
        assert parse_qs(html.unescape(href), keep_blank_values=True) == {
            "q": [query],
            "page": [str(n)],
        }
