"""Operator checks for property sources: scrape one zipcode, or fetch one listing.

    python -m scraping scrape --source rapidapi_zillow --zipcode 77494 --status sold --json out.json
    python -m scraping scrape --source synthetic --zipcode 77494        # offline
    python -m scraping property --source rapidapi_zillow --zpid 27837052

Settings come from the environment and a dotenv file (``--env-file``, default
``.env``; the environment wins). Prints a one-screen summary; with ``--json``
also writes the records and the call statistics. Exit status: 0 when the
source answered without error, 1 when it failed (one ``error:`` line on
stderr), 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.zipcodes import ZIPCODE
from config.sections import read_environment
from config.sources import ENVIRONMENT_VARIABLES
from scraping.registry import BUILTIN_SOURCES, SourceContext, build_source
from scraping.source import KeyRejected, ScrapeResult, SourceUnavailable

# --status value -> the protocol's Source
STATUSES = {
    "sale": "ZILLOW",
    "sold": "ZILLOW_SOLD",
    "ZILLOW": "ZILLOW",
    "ZILLOW_SOLD": "ZILLOW_SOLD",
}
DEFAULT_TIMEOUT_S = 120.0  # one zipcode of a few pages takes seconds; retries take longer
SAMPLE_ROWS = 5


class _Failure(Exception):
    """The check failed; the message is the one line printed (exit status 1)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scraping",
        description="Check a property source by hand: scrape one zipcode or fetch one listing "
        "with the source a miner or validator would use.",
        epilog="Sources: "
        + ", ".join(sorted(BUILTIN_SOURCES))
        + ", or module.path:Class / file.py:Class for your own (see docs/miner.md). "
        "RapidAPI settings (environment or --env-file): "
        + ", ".join(ENVIRONMENT_VARIABLES)
        + ". Exit status: 0 ok, 1 source failed (e.g. key rejected), 2 usage or settings error.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--source",
        help="source name [SCRAPER]; default synthetic",
    )
    common.add_argument(
        "--env-file", type=Path, default=Path(".env"), help="dotenv file to load (default .env)"
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds before giving up, keeping what was scraped (default {DEFAULT_TIMEOUT_S:g})",
    )
    common.add_argument("--json", type=Path, help="write the result and call statistics here")
    common.add_argument("--verbose", action="store_true", help="log every call to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    scrape = commands.add_parser(
        "scrape", parents=[common], help="scrape one zipcode and summarise what came back"
    )
    scrape.add_argument("--zipcode", required=True, help="5-digit zipcode, e.g. 77494")
    scrape.add_argument(
        "--status",
        choices=sorted(STATUSES),
        default="sold",
        help="sale (ZILLOW: for sale) or sold (ZILLOW_SOLD: recently sold); default sold",
    )
    lookup = commands.add_parser(
        "property", parents=[common], help="fetch one listing by zpid (the validators' spot check)"
    )
    lookup.add_argument("--zpid", required=True, help="Zillow property id, digits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "scrape" and not ZIPCODE.fullmatch(args.zipcode):
        parser.error(f"--zipcode {args.zipcode!r} is not 5 digits")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.CRITICAL + 1,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    environ = read_environment(args.env_file)
    spec = args.source or environ.get("SCRAPER") or "synthetic"
    context = SourceContext(environ=environ, synthetic_seed=environ.get("SYNTHETIC_SEED") or 7)
    try:
        source = build_source(spec, context)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, source))
    except _Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, source: Any) -> int:
    deadline = time.monotonic() + args.timeout
    started = time.monotonic()
    try:
        if args.command == "scrape":
            status = STATUSES[args.status]
            result = await source.scrape_zipcode(args.zipcode, status, deadline=deadline)
            report = _scrape_report(source, args.zipcode, status, result, started)
        else:
            report = await _property_report(source, args.zpid, deadline, started)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            await close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    rejected = getattr(source, "unusable_reason", None)
    if rejected:
        raise _Failure(rejected)
    print(_summary(report, args.json))
    if report["errors"]:
        raise _Failure(report["errors"][0])
    return 0


def _scrape_report(
    source: Any, zipcode: str, status: str, result: ScrapeResult, started: float
) -> dict:
    return {
        "command": "scrape",
        "source": source.name,
        "zipcode": zipcode,
        "status": status,
        "elapsed_s": round(time.monotonic() - started, 3),
        "records_count": len(result.records),
        "pages": result.pages,
        "calls": result.calls,
        "dropped": result.dropped,
        "errors": result.errors,
        "stats": _stats(source),
        "records": result.records,
    }


async def _property_report(source: Any, zpid: str, deadline: float, started: float) -> dict:
    fetch = getattr(source, "fetch_property", None)
    if fetch is None:
        raise _Failure(f"source {source.name!r} cannot fetch a single listing")
    errors: list[str] = []
    record = None
    try:
        record = await fetch(zpid, deadline=deadline)
    except KeyRejected:
        pass  # reported through unusable_reason
    except SourceUnavailable as exc:
        errors.append(f"no evidence: {exc}")
    return {
        "command": "property",
        "source": source.name,
        "zpid": zpid,
        "elapsed_s": round(time.monotonic() - started, 3),
        "found": record is not None,
        "errors": errors,
        "stats": _stats(source),
        "records": [record] if record else [],
    }


def _stats(source: Any) -> dict:
    stats = getattr(source, "stats", None)
    return stats() if callable(stats) else {}


def _summary(report: dict, json_path: Path | None) -> str:
    """One screen: what was asked, what came back, what it cost, a few sample rows."""
    stats = report["stats"]
    if report["command"] == "scrape":
        lines = [
            f"source   {report['source']}  zipcode {report['zipcode']}  {report['status']}",
            f"records  {report['records_count']}  (pages {report['pages']}, "
            f"calls {report['calls']}, {report['elapsed_s']:.2f} s)",
        ]
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(report["dropped"].items())) or "none"
        lines.append(f"dropped  {dropped}")
    else:
        lines = [
            f"source   {report['source']}  zpid {report['zpid']}",
            f"found    {'yes' if report['found'] else 'no (the source has no such listing)'}"
            f"  ({report['elapsed_s']:.2f} s)",
        ]
    lines.append(f"errors   {'; '.join(report['errors']) or 'none'}")
    if stats.get("calls") is not None:
        lines.append(
            f"cost     {stats['calls']} calls ~ ${stats.get('estimated_cost_usd', 0):.4f}; "
            f"this month {stats.get('calls_this_month', '?')} of "
            f"{stats.get('monthly_budget', '?')}; retries {stats.get('retries', 0)}, "
            f"429s {stats.get('rate_limited', 0)}"
        )
    for record in report["records"][:SAMPLE_ROWS]:
        lines.append(
            f"  {record.get('zpid', '?'):>12}  {str(record.get('address', ''))[:34]:<34} "
            f"{record.get('zipcode', '')}  ${record.get('price', 0):>11,}  "
            f"{record.get('listing_status', '')} {record.get('sold_date') or ''}".rstrip()
        )
    if len(report["records"]) > SAMPLE_ROWS:
        lines.append(f"  ... {len(report['records']) - SAMPLE_ROWS} more")
    if json_path:
        lines.append(f"wrote    {json_path}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
