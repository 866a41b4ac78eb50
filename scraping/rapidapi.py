"""The Zillow API on RapidAPI (host zillow-com1) as a ``PropertySource``.

One instance serves every zipcode a miner scrapes at once: it owns one
``aiohttp.ClientSession`` (opened on the first call, released by ``close``),
one token bucket (calls per second) and one monthly call budget, so the
limits hold for the key, not per task. Every call has a timeout; 429 waits
for Retry-After (or a jittered, capped exponential backoff) and holds the
other zipcodes too; 5xx, timeouts and dropped connections are retried a
bounded number of times; a 401/403 disables the source at once (the key is
wrong: retrying only costs money). Failures end up as one-line errors in the
``ScrapeResult``, never as exceptions out of ``scrape_zipcode``.

    source = RapidApiZillowSource(RapidApiConfig.from_environ(os.environ))
    result = await source.scrape_zipcode("77494", "ZILLOW_SOLD", deadline=time.monotonic() + 120)
    record = await source.fetch_property("27837052", deadline=time.monotonic() + 30)
    source.stats()        # calls, estimated cost, retries, ...
    await source.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from common.backoff import backoff_s
from config.sources import RapidApiConfig
from scraping.parsing import DropReason, parse_property, parse_search_page
from scraping.ratelimit import MonthlyBudget, TokenBucket
from scraping.source import BadAnswer, KeyRejected, ScrapeResult, SourceUnavailable

logger = logging.getLogger(__name__)

SEARCH_PATH = "/propertyExtendedSearch"
PROPERTY_PATH = "/property"
# Source (common.protocol.Source) -> (status_type of the search, status of a listing without one)
SEARCH_STATUS: dict[str, tuple[str, str]] = {
    "ZILLOW": ("ForSale", "FOR_SALE"),
    "ZILLOW_SOLD": ("RecentlySold", "SOLD"),
}
_ERROR_SNIPPET_CHARS = 120  # of an error body quoted in a message


class RapidApiZillowSource:
    """Scrapes zipcodes and fetches single listings through zillow-com1 on RapidAPI."""

    name = "rapidapi_zillow"

    def __init__(self, config: RapidApiConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._bucket = TokenBucket(config.calls_per_second, config.burst)
        self._budget = MonthlyBudget(config.calls_per_month)
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._rejected: KeyRejected | None = None
        self._counts: Counter[str] = Counter()

    @property
    def unusable_reason(self) -> str | None:
        """Why the source refuses to call (the key was rejected), or None while usable."""
        return str(self._rejected) if self._rejected else None

    async def scrape_zipcode(self, zipcode: str, source: str, *, deadline: float) -> ScrapeResult:
        """Every listing of ``zipcode`` for ``source`` (ZILLOW or ZILLOW_SOLD), page by page.

        Reads pages up to the answer's ``totalPages`` or the configured cap.
        Stops at the first page that fails or at ``deadline``, keeping the
        records read so far; the reason is in ``errors``. Never raises for a
        source failure.
        """
        result = ScrapeResult()
        if source not in SEARCH_STATUS:
            expected = " or ".join(SEARCH_STATUS)
            result.errors.append(f"unknown source {source!r}: expected {expected}")
            return result
        status_type, default_status = SEARCH_STATUS[source]
        scraped_at = datetime.now(UTC)
        dropped: Counter[str] = Counter()
        seen: set[str] = set()
        page, total_pages = 1, 1
        while page <= min(total_pages, self.config.max_pages_per_zipcode):
            params = {"location": zipcode, "status_type": status_type, "page": str(page)}
            try:
                payload = await self._get(SEARCH_PATH, params, deadline=deadline, spent=result)
                parsed = parse_search_page(
                    payload, zipcode=zipcode, default_status=default_status, scraped_at=scraped_at
                )
            except SourceUnavailable as exc:
                result.errors.append(f"page {page}: {exc}")
                break
            result.pages += 1
            total_pages = parsed.total_pages
            dropped.update(parsed.dropped)
            for record in parsed.records:
                if record["zpid"] in seen:  # a listing that moved up a page between calls
                    dropped[DropReason.DUPLICATE_ZPID.value] += 1
                    continue
                seen.add(record["zpid"])
                result.records.append(record)
            page += 1
        result.dropped = dict(dropped)
        self._counts.update(
            zipcodes=1,
            pages=result.pages,
            records=len(result.records),
            failed_zipcodes=int(bool(result.errors)),
        )
        logger.log(
            logging.INFO if result.dropped or result.errors else logging.DEBUG,
            "zipcode %s %s: %d records, %d pages, %d calls, dropped %s, errors %s",
            zipcode,
            source,
            len(result.records),
            result.pages,
            result.calls,
            result.dropped,
            result.errors,
        )
        return result

    async def fetch_property(self, zpid: str, *, deadline: float) -> dict | None:
        """The listing ``zpid`` as a record dict; None when the API says it does not exist (404).

        Raises SourceUnavailable (or a subclass) when the source cannot tell:
        network, limits, key, deadline, or an answer that is not a valid
        record. For a spot check that is no evidence, never a miner's failure.
        """
        zpid = str(zpid).strip()
        if not zpid.isascii() or not zpid.isdigit():
            return None
        payload = await self._get(
            PROPERTY_PATH, {"zpid": zpid}, deadline=deadline, spent=ScrapeResult(), missing_ok=True
        )
        if payload is None:
            return None
        outcome = parse_property(payload, scraped_at=datetime.now(UTC))
        if isinstance(outcome, DropReason):
            raise BadAnswer(f"property {zpid}: answer is not a usable record ({outcome.value})")
        if outcome["zpid"] != str(int(zpid)):
            raise BadAnswer(f"property {zpid}: answer is for zpid {outcome['zpid']}")
        return outcome

    def stats(self) -> dict[str, Any]:
        """Running counts since start: calls (retries included), estimated cost, outcomes."""
        calls = self._counts["calls"]
        return {
            "source": self.name,
            "calls": calls,
            "estimated_cost_usd": round(calls * self.config.cost_per_call_usd, 4),
            "calls_this_month": self._budget.used,
            "monthly_budget": self._budget.limit,
            "budget_remaining": self._budget.remaining,
            "calls_per_second_limit": self.config.calls_per_second,
            "retries": self._counts["retries"],
            "rate_limited": self._counts["rate_limited"],
            "timeouts": self._counts["timeouts"],
            "server_errors": self._counts["server_errors"],
            "zipcodes": self._counts["zipcodes"],
            "failed_zipcodes": self._counts["failed_zipcodes"],
            "pages": self._counts["pages"],
            "records": self._counts["records"],
            "usable": self._rejected is None,
            "unusable_reason": self.unusable_reason,
        }

    async def close(self) -> None:
        """Release the HTTP session (a later call opens a new one)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={
                    "X-RapidAPI-Key": self.config.api_key,
                    "X-RapidAPI-Host": self.config.host,
                    "Accept": "application/json",
                }
            )
        return self._session

    async def _get(
        self,
        path: str,
        params: dict[str, str],
        *,
        deadline: float,
        spent: ScrapeResult,
        missing_ok: bool = False,
    ) -> Any:
        """One API answer, decoded, with retries; None for a 404 when ``missing_ok``.

        Counts every call made in ``spent.calls``. Raises SourceUnavailable
        (KeyRejected, BudgetExhausted, BadAnswer) with a one-line reason.
        """
        if self._rejected is not None:
            raise KeyRejected(f"source disabled: {self._rejected}")
        url = self.config.base_url.rstrip("/") + path
        for attempt in range(self.config.max_retries + 1):
            await self._take_slot(deadline)
            spent.calls += 1
            self._counts["calls"] += 1
            rate_limited, retry_after = False, None
            try:
                status, headers, body = await self._request(url, params, deadline)
            except TimeoutError:
                self._counts["timeouts"] += 1
                failure = "timed out"
            except aiohttp.ClientError as exc:
                failure = f"connection failed ({type(exc).__name__}: {str(exc)[:80]})"
            else:
                if status == 200:
                    return _decode(body)
                if status in (401, 403):
                    raise self._reject(status, body)
                if status == 404 and missing_ok:
                    return None
                if status == 429:
                    self._counts["rate_limited"] += 1
                    rate_limited = True
                    retry_after = _retry_after_s(headers.get("Retry-After"))
                    failure = "rate limited (HTTP 429)"
                elif status >= 500:
                    self._counts["server_errors"] += 1
                    failure = f"server error (HTTP {status})"
                else:
                    raise SourceUnavailable(f"HTTP {status}: {_snippet(body)}")
            if attempt == self.config.max_retries:
                break
            wait = retry_after if retry_after is not None else self._backoff_s(attempt)
            if rate_limited:
                # The key is over its limit: every zipcode waits, through the bucket.
                self._bucket.pause(wait)
            if time.monotonic() + wait >= deadline:
                raise SourceUnavailable(f"{failure}; a retry in {wait:.1f} s passes the deadline")
            self._counts["retries"] += 1
            logger.debug("%s %s: %s; retry %d in %.2f s", path, params, failure, attempt + 1, wait)
            if not rate_limited:
                await asyncio.sleep(wait)
        raise SourceUnavailable(f"{failure}; gave up after {self.config.max_retries + 1} attempts")

    async def _take_slot(self, deadline: float) -> None:
        """Wait for the rate limit, then count the call against the monthly budget."""
        self._budget.check()
        if not await self._bucket.acquire(deadline) or time.monotonic() >= deadline:
            raise SourceUnavailable("deadline reached before the call could start (rate limit)")
        self._budget.take()

    async def _request(
        self, url: str, params: dict[str, str], deadline: float
    ) -> tuple[int, Any, bytes]:
        # _take_slot left time before the deadline; a floor keeps total > 0 (0 means "no timeout")
        remaining = max(deadline - time.monotonic(), 0.001)
        timeout = aiohttp.ClientTimeout(total=min(self.config.call_timeout_s, remaining))
        async with self._client().get(url, params=params, timeout=timeout) as response:
            body = await response.read()
            return response.status, response.headers, body

    def _reject(self, status: int, body: bytes) -> KeyRejected:
        error = KeyRejected(
            f"RapidAPI refused the key (HTTP {status}: {_snippet(body)}); check RAPIDAPI_KEY "
            "and that the key is subscribed to the zillow-com1 API"
        )
        if self._rejected is None:
            self._rejected = error
            logger.error("%s; the source is disabled until restart", error)
        return error

    def _backoff_s(self, attempt: int) -> float:
        """Exponential, capped, with jitter so concurrent retries do not line up."""
        return backoff_s(
            attempt,
            base_s=self.config.backoff_base_s,
            cap_s=self.config.backoff_cap_s,
            jitter=self._rng.random(),
        )


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise BadAnswer(f"answer is not UTF-8 text ({len(body)} bytes)") from None
    except json.JSONDecodeError as exc:
        raise BadAnswer(
            f"invalid JSON ({exc.msg} at byte {exc.pos} of {len(body)}): truncated or not JSON"
        ) from None


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _snippet(body: bytes) -> str:
    """The readable part of an error body: its "message" when JSON, else the text, one line."""
    text = body.decode("utf-8", "replace")
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        text = decoded["message"]
    text = " ".join(text.split())
    return text[:_ERROR_SNIPPET_CHARS] or "empty body"
