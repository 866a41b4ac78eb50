"""The dataset's rows and files: history from epoch to epoch, partitions, fixed bytes, docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.records import PropertyRecord
from consensus.answers import hash_to_int
from consensus.provenance import ConfirmedRecord
from vali_utils.dataset.rows import UNKNOWN_STATE, build_epoch, partition_state, states_from_rows
from vali_utils.dataset.schema import TABLES

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dataset.md"


def record(zpid: int, price: int, status: str = "FOR_SALE", **extra) -> PropertyRecord:
    return PropertyRecord.model_validate(
        {
            "zpid": str(zpid),
            "address": f"{zpid} Main St",
            "zipcode": "77494",
            "price": price,
            "listing_status": status,
            **extra,
        }
    )


def found(*records: PropertyRecord) -> list[tuple[ConfirmedRecord, PropertyRecord, str]]:
    return [
        (
            ConfirmedRecord(r.zipcode, int(r.zpid), hash_to_int(r.record_hash), 0.9, 4, 3, False),
            r,
            r.record_hash,
        )
        for r in records
    ]


def test_history_records_new_listings_then_only_changes():
    states = {"77494": "TX"}
    first = build_epoch(5, found(record(2, 300_000), record(1, 100_000)), states, {})
    assert [r["zpid"] for r in first.listings["TX"]] == [1, 2]
    assert [(r["zpid"], r["change"]) for r in first.history] == [(1, "new"), (2, "new")]

    previous = states_from_rows(first.state)
    second = build_epoch(
        7,
        found(record(1, 90_000), record(2, 300_000, "SOLD"), record(3, 50_000)),
        states,
        previous,
    )
    changes = {r["zpid"]: r for r in second.history}
    assert changes[1]["change"] == "price" and changes[1]["previous_price"] == 100_000
    assert changes[1]["previous_epoch"] == 5
    assert changes[2]["change"] == "status" and changes[2]["previous_status"] == "FOR_SALE"
    assert changes[3]["change"] == "new" and changes[3]["previous_price"] is None
    rows = {r["zpid"]: r for r in second.listings["TX"]}
    assert rows[1]["first_seen_epoch"] == 5 and rows[1]["last_seen_epoch"] == 7
    assert rows[3]["first_seen_epoch"] == 7

    # A zpid not confirmed this epoch keeps its last state; an unchanged one gives no row.
    third = build_epoch(8, found(record(1, 90_000)), states, states_from_rows(second.state))
    assert third.history == []
    kept = {r["zpid"]: r for r in third.state}
    assert kept[2]["last_seen_epoch"] == 7 and kept[1]["last_seen_epoch"] == 8


def test_partition_state_trusts_the_block_then_a_well_formed_record():
    assert partition_state("77494", {"77494": "TX"}, record(1, 1, state="CA")) == "TX"
    assert partition_state("77494", {}, record(1, 1, state="ca")) == "CA"  # normalised upper
    assert partition_state("77494", {}, record(1, 1, state="C/")) == UNKNOWN_STATE
    assert partition_state("77494", {}, record(1, 1)) == UNKNOWN_STATE


def test_same_rows_same_bytes_and_the_schema_round_trips():
    parquet = pytest.importorskip("vali_utils.dataset.parquet")
    pytest.importorskip("pyarrow", reason="the dataset extra (pyarrow) is not installed")
    tables = build_epoch(
        1,
        found(
            record(1, 100_000, scraped_at="2026-01-02T03:04:05Z", list_date="2025-12-01"),
            record(2, 200_000, "SOLD", sold_date="2026-01-01", bathrooms=2.5),
        ),
        {},
        {},
    )
    rows = tables.listings[UNKNOWN_STATE]
    first = parquet.table_bytes("listings", rows)
    assert parquet.table_bytes("listings", [dict(r) for r in rows]) == first
    back = parquet.read_rows(first)
    assert [r["zpid"] for r in back] == [1, 2]
    assert back[0]["scraped_at"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert str(back[1]["sold_date"]) == "2026-01-01" and back[1]["bathrooms"] == 2.5


def test_docs_list_every_column_with_its_type():
    text = DOCS.read_text()
    for table, (columns, partitions) in TABLES.items():
        section = text.split(f"### {table} ")[1].split("###")[0]
        for name, kind, _ in columns:
            assert re.search(rf"\| `{name}` \| {kind} \|", section), (table, name)
        for partition in partitions:
            assert f"`{partition}`" in section.splitlines()[0]
