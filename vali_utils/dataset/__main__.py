"""Query the published dataset with DuckDB.

    python -m vali_utils.dataset query "SELECT state, count(*) FROM listings GROUP BY 1"
    python -m vali_utils.dataset query --dataset s3://bucket/dataset --state TX "SELECT ..."
    python -m vali_utils.dataset epochs --dataset ./dataset

``--dataset`` defaults to DATASET_URL (environment or .env); an s3:// URL is
read with S3_ENDPOINT_URL, S3_REGION and the S3 (or AWS) credentials. Only
epochs with a manifest are read (docs/dataset.md, "Guarantees").
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from config.sections import read_environment
from config.settings import setting_from_environment
from config.storage import S3Settings
from vali_utils.dataset.parquet import DatasetUnavailable
from vali_utils.dataset.publish import published_epochs
from vali_utils.dataset.query import open_dataset
from vali_utils.dataset.storage import open_storage


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vali_utils.dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", help="s3://bucket/prefix or a folder [DATASET_URL]")
    parser.add_argument("--env-file", type=Path, default=Path(".env"))
    commands = parser.add_subparsers(dest="command", required=True)
    query = commands.add_parser("query", help="run one SQL statement over the dataset")
    query.add_argument("sql")
    query.add_argument("--epoch", type=int, action="append", help="read only this epoch (repeat)")
    query.add_argument("--state", action="append", help="read only this state's listings (repeat)")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.add_argument("--stats", action="store_true", help="print files and bytes read to stderr")
    commands.add_parser("epochs", help="list the published epochs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    environ = read_environment(args.env_file if args.env_file.exists() else None)
    url = args.dataset or setting_from_environment("dataset_url", environ)
    if not url:
        print("no dataset: pass --dataset or set DATASET_URL", file=sys.stderr)
        return 2
    try:
        storage = open_storage(url, S3Settings.from_environ(environ))
        if args.command == "epochs":
            print("\n".join(str(e) for e in published_epochs(storage)))
            return 0
        with open_dataset(
            storage,
            epochs=set(args.epoch) if args.epoch else None,
            states=set(args.state) if args.state else None,
        ) as dataset:
            columns, rows = dataset.rows(args.sql)
            if columns:
                emit(columns, rows, args.format)
            if args.stats:
                print(
                    f"epochs {dataset.epochs}: {dataset.stats.files} files,"
                    f" {dataset.stats.bytes} bytes",
                    file=sys.stderr,
                )
    except (DatasetUnavailable, ValueError) as exc:
        print(f"dataset: {exc}", file=sys.stderr)
        return 2
    return 0


def emit(columns: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print("\t".join(columns))
        for row in rows:
            print("\t".join("" if v is None else str(v) for v in row))


if __name__ == "__main__":
    raise SystemExit(main())
