"""The owner's honeypot references from the command line (on the Data API's host).

    python -m data_api honeypot add reference.json     # a HoneypotReference document
    python -m data_api honeypot add --zipcode 77494 --source ZILLOW_SOLD --records listings.jsonl
    python -m data_api honeypot list
    python -m data_api honeypot remove 77494 [--source ZILLOW_SOLD]

``--records`` takes property records (one JSON object a line, the miners'
record format) and computes their record hashes the way validators do. The
database is ``--api.database.url`` or ``DATA_API_DATABASE_URL`` (PostgreSQL,
shared by every instance), else ``--api.db``, else ``DATA_API_DB``, else under
``WORKDIR`` (read from ``--env-file``). A remote owner uses ``POST /v1/owner/references``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from common.data_api_models import HoneypotReference
from common.protocol import Source
from common.records import RecordDigester
from config.sections import read_environment
from config.settings import DEFAULT_WORKDIR, setting_from_environment
from data_api.store import default_db_path
from data_api.stores import StoreUnavailable, open_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_api honeypot", description="the owner's honeypot references"
    )
    parser.add_argument("--api.db", dest="db", type=Path, help="database [DATA_API_DB]")
    parser.add_argument(
        "--api.database.url", dest="url", help="PostgreSQL URL [DATA_API_DATABASE_URL]"
    )
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="dotenv file to load")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="store (or replace) a zipcode's reference for a source")
    add.add_argument("file", nargs="?", type=Path, help="a reference JSON document")
    add.add_argument("--zipcode")
    add.add_argument("--source", choices=[s.value for s in Source])
    add.add_argument("--records", type=Path, help="property records, one JSON object a line")
    actions.add_parser("list", help="list stored references")
    remove = actions.add_parser("remove", help="remove a zipcode's references")
    remove.add_argument("zipcode")
    remove.add_argument("--source", choices=[s.value for s in Source])
    return parser


def _database(args: argparse.Namespace) -> Path | str:
    """The Data API's database, chosen as the service chooses it: a PostgreSQL URL
    (flag, then DATA_API_DATABASE_URL), else ``--api.db``, DATA_API_DB, the default."""
    if args.url is not None:
        return args.url
    if args.db is not None:
        return args.db
    environ = read_environment(args.env_file)
    url = setting_from_environment("api_database_url", environ)
    if url is not None:
        return url
    database = setting_from_environment("api_db", environ)
    if database is not None:
        return database
    return default_db_path(setting_from_environment("workdir", environ) or DEFAULT_WORKDIR)


def _reference_from_records(zipcode: str, source: str, path: Path) -> HoneypotReference:
    digester = RecordDigester()
    pairs: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest = digester.digest(json.loads(line))
        if isinstance(digest, str):
            raise ValueError(f"{path}:{number}: {digest}")
        zpid, record_hash, _ = digest
        pairs[str(zpid)] = record_hash
    return HoneypotReference.model_validate(
        {"zipcode": zipcode, "source": source, "records": sorted(pairs.items())}
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from data_api.universe import load_universe

    try:
        database = _database(args)  # SettingsError (a ValueError) names a bad variable
        if args.action == "add":
            if args.records is not None:
                if not (args.zipcode and args.source):
                    raise ValueError("--records needs --zipcode and --source")
                reference = _reference_from_records(args.zipcode, args.source, args.records)
            elif args.file is not None:
                reference = HoneypotReference.model_validate_json(args.file.read_bytes())
            else:
                raise ValueError("give a reference file or --records")
            if reference.zipcode not in load_universe().by_zipcode:
                raise ValueError(f"zipcode {reference.zipcode} is not in the universe")
            zpids = [zpid for zpid, _ in reference.records]
            if len(set(zpids)) != len(zpids):
                raise ValueError("a zpid appears twice in records")
    except (OSError, ValueError, ValidationError) as exc:
        print(f"honeypot: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_apply(args, database, reference if args.action == "add" else None))
    except StoreUnavailable as exc:
        print(f"honeypot: database unreachable: {exc.detail.splitlines()[0]}", file=sys.stderr)
        return 3
    return 0


async def _apply(
    args: argparse.Namespace, database: Path | str, reference: HoneypotReference | None
) -> None:
    store = await open_store(database)
    try:
        if reference is not None:
            await store.upsert_reference(reference, "cli")
            count, where = len(reference.records), f"{reference.zipcode}/{reference.source}"
            print(f"stored {count} records for {where}")
        elif args.action == "list":
            for row in await store.references():
                print(f"{row.zipcode}\t{row.source}\t{row.record_count} records\tby {row.added_by}")
        else:
            removed = await store.delete_reference(args.zipcode, args.source)
            print(f"removed {removed} reference(s) for {args.zipcode}")
    finally:
        await store.close()
