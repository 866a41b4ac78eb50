"""What a browser must see on a validator's status page, checked against its JSON twin.

Shared by the test on a store the real cycle code filled and the test on a
validator of the local subnet.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp


async def fetch_json(url: str) -> dict:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as answer:
        assert answer.status == 200, (url, answer.status, await answer.text())
        return await answer.json()


def shown(value: float | int | None, digits: int) -> str:
    """A figure as the page prints it."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


async def table_rows(page) -> list[list[str]]:
    return await page.eval_on_selector_all(
        "#miners tbody tr",
        "rows => rows.filter(r => !r.hidden).map(r => [...r.cells].map(c => c.textContent))",
    )


async def check_overview(browser, base: str, out: Path) -> dict:
    """The miners table lists every miner of the JSON twin with its figures; filter; sort."""
    twin = await fetch_json(f"{base}api/status")
    # Both twins say the same (the time left moves between the two reads).
    assert (await fetch_json(f"{base}?format=json"))["miners"] == twin["miners"]
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(base)
    rows = await table_rows(page)
    expected = twin["miners"]["rows"]
    assert len(rows) == len(expected) == twin["miners"]["total"] > 0
    for cells, m in zip(rows, expected, strict=True):
        assert cells[0] == str(m["uid"])
        assert cells[1] == m["hotkey"]
        assert cells[2] == m["coldkey"]
        assert cells[3] == f"{m['answered']}/{m['assigned']}"
        assert cells[4] == shown(m["quality"], 4)
        assert cells[5] == shown(m["recall"], 4)
        assert cells[6] == shown(m["credibility"], 4)
        assert cells[7] == shown(m["score"], 6)
        assert cells[8] == shown(m["weight"], 6)
        assert cells[9] == ", ".join(m["flags"])
    assert await page.inner_text("#epoch") == str(twin["epoch"])
    await page.screenshot(path=str(out / "status.png"), full_page=True)

    flagged = [m for m in expected if m["flags"]]
    assert flagged, "no flagged miner to filter for"
    await page.fill("#filter", flagged[0]["flags"][0])
    visible = await table_rows(page)
    assert {int(r[0]) for r in visible} == {
        m["uid"] for m in expected if flagged[0]["flags"][0] in m["flags"]
    }
    await page.fill("#filter", expected[-1]["hotkey"][:20])
    assert [int(r[0]) for r in await table_rows(page)] == [expected[-1]["uid"]]
    await page.screenshot(path=str(out / "status-filtered.png"), full_page=True)
    await page.fill("#filter", "")
    weight = page.locator("#miners th", has_text="weight")
    await weight.click()
    await weight.click()  # descending
    weights = [float(r[8]) if r[8] != "-" else 0.0 for r in await table_rows(page)]
    assert weights == sorted(weights, reverse=True) and weights[0] > weights[-1]
    assert not errors, errors
    await page.close()
    return twin


async def check_flagged_miner(browser, base: str, uid: int, out: Path) -> dict:
    """A flagged miner's page shows each flag with its evidence, as in the JSON twin."""
    twin = await fetch_json(f"{base}api/miners/{uid}")
    assert twin == await fetch_json(f"{base}miner/{uid}?format=json")
    assert twin["flags"], twin
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{base}miner/{uid}")
    flags = await page.eval_on_selector_all(
        "#flags tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert len(flags) == len(twin["flags"])
    for (epoch, kind, evidence), flag in zip(flags, twin["flags"], strict=True):
        assert (int(epoch), kind) == (flag["epoch"], flag["kind"])
        if flag["evidence"] is None:  # a honeypot flag: which zipcode stays the validator's
            assert kind == "honeypot" and evidence == "kept by the validator", (kind, evidence)
        else:
            assert json.loads(evidence) == flag["evidence"]
    assert await page.inner_text("#hotkey") == twin["hotkey"]
    assert await page.locator("#chart polyline").count() == 2  # score and weight
    zipcodes = await page.locator("#zipcodes tbody tr").count()
    assert zipcodes == len(twin["zipcodes"]["rows"]) > 0
    await page.screenshot(path=str(out / f"miner-{uid}.png"), full_page=True)
    await page.close()
    return twin
