"""DuckDB over the published dataset: only epochs with a manifest, only the files it lists.

    with open_dataset(storage, states={"TX"}) as dataset:
        dataset.sql("SELECT count(*) FROM listings").fetchall()
        dataset.stats.files, dataset.stats.bytes

Three views, one per table (``listings``, ``listing_history``,
``listing_state``), with the Hive partition columns ``epoch`` (and ``state``
for listings) added from the paths. A local folder is read by DuckDB itself
(``read_parquet`` over the manifest's files: it prunes partitions by the
query's filters and reads only the row groups and columns it needs). On S3,
DuckDB's ``httpfs`` extension would have to be downloaded, which a validator
(or this test machine) may not be able to do, so the files are fetched with
boto3 (the configured endpoint and credentials), read with pyarrow and
registered in DuckDB as Arrow tables; ``epochs`` and ``states`` choose the
partitions to fetch, and ``stats`` counts what was read.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from vali_utils.dataset.parquet import DatasetUnavailable, arrow_schema, read_table
from vali_utils.dataset.publish import manifest_key, published_epochs
from vali_utils.dataset.schema import TABLES
from vali_utils.dataset.storage import DatasetStorage


class QueryError(ValueError):
    """DuckDB refused the query (syntax, unknown column, ...); the message says why."""


@dataclass
class ReadStats:
    files: int = 0  # part files handed to DuckDB (local) or fetched (S3)
    bytes: int = 0  # their size


@dataclass(frozen=True, slots=True)
class PartFile:
    key: str
    table: str
    epoch: int
    state: str | None
    bytes: int


def manifest_files(
    storage: DatasetStorage,
    epochs: Collection[int] | None = None,
    states: Collection[str] | None = None,
) -> list[PartFile]:
    """The part files of published epochs (manifests only), optionally pruned by partition."""
    out = []
    for epoch in published_epochs(storage):
        if epochs is not None and epoch not in epochs:
            continue
        manifest = json.loads(storage.get(manifest_key(epoch)))
        for entry in manifest["files"]:
            state = _state_of(entry["key"])
            if states is not None and state is not None and state not in states:
                continue
            out.append(PartFile(entry["key"], entry["table"], epoch, state, int(entry["bytes"])))
    return out


def _state_of(key: str) -> str | None:
    for part in key.split("/"):
        if part.startswith("state="):
            return part[len("state=") :]
    return None


class Dataset:
    """A DuckDB connection with the dataset's views; close it (or use ``with``)."""

    def __init__(
        self, connection: Any, stats: ReadStats, epochs: list[int], error: type = Exception
    ) -> None:
        self.connection = connection
        self.error = error  # duckdb.Error
        self.stats = stats
        self.epochs = epochs

    def sql(self, query: str) -> Any:
        """The relation of ``query`` (None for a statement without rows); QueryError if refused."""
        try:
            return self.connection.sql(query)
        except self.error as exc:
            raise QueryError(str(exc)) from None

    def rows(self, query: str) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of ``query``; ([], []) for a statement without rows."""
        try:
            relation = self.connection.sql(query)
            return ([], []) if relation is None else (relation.columns, relation.fetchall())
        except self.error as exc:
            raise QueryError(str(exc)) from None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(
    storage: DatasetStorage,
    *,
    epochs: Collection[int] | None = None,
    states: Collection[str] | None = None,
) -> Dataset:
    """A DuckDB connection over the published epochs (all, or ``epochs``; ``states`` prunes)."""
    try:
        import duckdb
    except ImportError as exc:
        raise DatasetUnavailable("queries need duckdb: pip install -e '.[dataset]'") from exc
    connection = duckdb.connect()
    stats = ReadStats()
    files = manifest_files(storage, epochs, states)
    for table, (_, partitions) in TABLES.items():
        mine = [f for f in files if f.table == table]
        stats.files += len(mine)
        stats.bytes += sum(f.bytes for f in mine)
        local = [storage.local_path(f.key) for f in mine]
        if mine and all(p is not None for p in local):
            paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in local)
            types = ", ".join(f"'{c}': {_HIVE_TYPES[c]}" for c in partitions)
            connection.sql(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{paths}],"
                f" hive_partitioning = true, hive_types = {{{types}}})"
            )
        else:
            connection.register(f"{table}_arrow", _fetched(storage, table, partitions, mine))
            connection.sql(f"CREATE VIEW {table} AS SELECT * FROM {table}_arrow")
    return Dataset(connection, stats, sorted({f.epoch for f in files}), duckdb.Error)


_HIVE_TYPES = {"epoch": "BIGINT", "state": "VARCHAR"}


def _fetched(
    storage: DatasetStorage, table: str, partitions: tuple[str, ...], files: list[PartFile]
) -> Any:
    """One Arrow table of ``files`` (fetched whole), with the partition columns appended."""
    import pyarrow as pa

    schema = arrow_schema(table)
    for column in partitions:
        schema = schema.append(pa.field(column, pa.int64() if column == "epoch" else pa.string()))
    pieces = []
    for part in files:
        piece = read_table(storage.get(part.key))
        piece = piece.append_column("epoch", pa.array([part.epoch] * piece.num_rows, pa.int64()))
        if "state" in partitions:
            piece = piece.append_column("state", pa.array([part.state] * piece.num_rows))
        pieces.append(piece.cast(schema))
    return pa.concat_tables(pieces) if pieces else schema.empty_table()
