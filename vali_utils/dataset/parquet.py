"""Rows -> Parquet bytes with fixed writer settings, and back.

pyarrow is imported here, lazily (the ``dataset`` extra): a validator that
does not export never needs it. ``DatasetUnavailable`` says it is missing.

Fixed settings make the bytes a function of the rows alone: zstd at a fixed
level, a fixed row-group size, dictionary encoding, statistics, no
timestamps or host names in the metadata (Parquet's footer holds only the
schema and ``created_by``, the pyarrow version: validators that compare
files run the same pinned version).

    data = table_bytes("listings", rows)      # bytes of one part file
    rows = read_rows(data)                    # list of dicts
    state = merged_state(read_table(previous_bytes), updated_rows)   # listing_state, in Arrow
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from vali_utils.dataset.schema import TABLES

COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3
ROW_GROUP_ROWS = 64_000  # a state's epoch is one row group: one footer read, one chunk per column


class DatasetUnavailable(RuntimeError):
    """pyarrow (the ``dataset`` extra) is not installed."""


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetUnavailable("the dataset needs pyarrow: pip install -e '.[dataset]'") from exc
    return pa, pq


def arrow_schema(table: str) -> Any:
    pa, _ = _pyarrow()
    types = {
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "date32": pa.date32(),
        "timestamp": pa.timestamp("ms", tz="UTC"),
    }
    columns, _ = TABLES[table]
    return pa.schema([pa.field(name, types[kind]) for name, kind, _ in columns])


def arrow_table(table: str, rows: Sequence[dict]) -> Any:
    """``table``'s rows (in the order given) as an Arrow table of its schema."""
    pa, _ = _pyarrow()
    schema = arrow_schema(table)
    # Column by column: several times faster than from_pylist on 50,000 rows.
    return pa.Table.from_arrays(
        [pa.array([row[f.name] for row in rows], f.type) for f in schema], schema=schema
    )


def table_bytes(table: str, rows: Sequence[dict]) -> bytes:
    """One Parquet file of ``table``'s rows (in the order given)."""
    return arrow_bytes(arrow_table(table, rows))


def arrow_bytes(arrow: Any) -> bytes:
    """One Parquet file of an Arrow table, with the fixed writer settings."""
    _, pq = _pyarrow()
    # One chunk per column, so the bytes depend on the rows alone, not on how
    # the table was put together.
    arrow = arrow.combine_chunks()
    sink = io.BytesIO()
    pq.write_table(
        arrow,
        sink,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=True,
        write_statistics=True,
        store_schema=False,  # the Arrow schema blob adds nothing the Parquet schema lacks
        write_page_index=False,
    )
    return sink.getvalue()


def read_rows(data: bytes) -> list[dict]:
    """The rows of one Parquet file, as dicts."""
    _, pq = _pyarrow()
    return pq.read_table(io.BytesIO(data)).to_pylist()


def read_table(data: bytes) -> Any:
    """One Parquet file as an Arrow table."""
    _, pq = _pyarrow()
    return pq.read_table(io.BytesIO(data))


def state_rows(previous: Any | None, zpids: Sequence[int]) -> list[dict]:
    """The rows of a ``listing_state`` Arrow table whose zpid is in ``zpids``.

    Only these become Python objects: the state holds every zpid ever
    confirmed, an epoch a few percent of them.
    """
    if previous is None or not zpids:
        return []
    pa, _ = _pyarrow()
    import pyarrow.compute as pc

    wanted = pc.is_in(previous["zpid"], value_set=pa.array(sorted(zpids), pa.int64()))
    return previous.filter(wanted).to_pylist()


def merged_state(previous: Any | None, rows: Sequence[dict]) -> Any:
    """``listing_state`` as an Arrow table: ``previous`` with the zpids of ``rows``
    replaced by ``rows``, sorted by zpid. ``previous`` None: ``rows`` alone."""
    pa, _ = _pyarrow()
    import pyarrow.compute as pc

    current = arrow_table("listing_state", rows)
    if previous is not None and previous.num_rows:
        previous = previous.select(current.schema.names).cast(current.schema)
        kept = previous.filter(pc.invert(pc.is_in(previous["zpid"], value_set=current["zpid"])))
        current = pa.concat_tables([kept, current])
    return current.take(pc.sort_indices(current, sort_keys=[("zpid", "ascending")]))
