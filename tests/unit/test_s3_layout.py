"""The S3 key layout, the zipcode file format and the manifest's ``files`` list."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pytest
from pydantic import ValidationError

from common.manifest import MAX_FILES_PER_ZIPCODE, Manifest
from common.s3_files import (
    DecodedFile,
    FileCaps,
    Rejection,
    RejectReason,
    ZipcodeFileDecoder,
    decode_zipcode_file,
    encode_zipcode_file,
)
from common.s3_layout import InvalidKey, build_key, miner_prefix, parse_epoch_id, parse_key
from config.storage import S3Settings
from tests.unit.s3_builders import NONCE, encoded, gzip_bomb, hotkey, records, zipcodes

pytestmark = pytest.mark.unit

HK = hotkey(1)
SHA = "ab" * 32
ZIP = zipcodes(1)[0]


def test_key_round_trip():
    key = build_key("data", HK, 12, "ZILLOW_SOLD", "77494", SHA)
    assert key == f"data/hotkey={HK}/epoch=12/source=ZILLOW_SOLD/zipcode=77494/{SHA}.jsonl.gz"
    parts = parse_key(key, "data")
    assert (parts.hotkey, parts.epoch, parts.source, parts.zipcode, parts.content_hash) == (
        HK,
        12,
        "ZILLOW_SOLD",
        "77494",
        SHA,
    )
    assert parts.key("data") == key
    assert parse_key(key) == parts  # any valid prefix when none is required
    assert build_key("", HK, 0, "ZILLOW", "00501", SHA).startswith("hotkey=")
    assert miner_prefix("a/b", HK, 3) == f"a/b/hotkey={HK}/epoch=3/"


@pytest.mark.parametrize(
    "args",
    [
        ("data", "not-a-hotkey", 1, "ZILLOW", "77494", SHA),
        ("data", HK[:-3], 1, "ZILLOW", "77494", SHA),
        ("data", HK, -1, "ZILLOW", "77494", SHA),
        ("data", HK, True, "ZILLOW", "77494", SHA),
        ("data", HK, "1", "ZILLOW", "77494", SHA),
        ("data", HK, 1, "zillow", "77494", SHA),
        ("data", HK, 1, "REDFIN", "77494", SHA),
        ("data", HK, 1, "ZILLOW", "7749", SHA),
        ("data", HK, 1, "ZILLOW", "77494-1234", SHA),
        ("data", HK, 1, "ZILLOW", "77494", SHA.upper()),
        ("data", HK, 1, "ZILLOW", "77494", SHA[:-1]),
        ("/data", HK, 1, "ZILLOW", "77494", SHA),
        ("data/", HK, 1, "ZILLOW", "77494", SHA),
        ("da ta", HK, 1, "ZILLOW", "77494", SHA),
        ("../x", HK, 1, "ZILLOW", "77494", SHA),
    ],
)
def test_build_key_refuses_bad_parts(args):
    with pytest.raises(InvalidKey):
        build_key(*args)


GOOD = f"data/hotkey={HK}/epoch=12/source=ZILLOW_SOLD/zipcode=77494/{SHA}.jsonl.gz"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "x" * 1025,
        GOOD.replace(".jsonl.gz", ".json"),
        GOOD.replace("epoch=12", "epoch=-1"),
        GOOD.replace("epoch=12", "epoch=1x"),
        GOOD.replace("zipcode=77494", "zipcode=../.."),
        GOOD.replace("source=ZILLOW_SOLD", "source=OTHER"),
        GOOD + "/extra",
        GOOD.replace("data/hotkey", "data//hotkey"),
        GOOD.replace("data/hotkey", "datahotkey"),
        GOOD.replace(HK, "0" * 48),  # 0 is not base58
        GOOD.replace(HK, HK + "x"),
        GOOD.replace("zipcode=77494", "zipcode=77494/zipcode=77494"),
        GOOD.replace("data/", "dätä/"),
    ],
)
def test_parse_key_refuses_anything_off_layout(key):
    with pytest.raises(InvalidKey):
        parse_key(key)


def test_parse_key_checks_the_expected_prefix():
    with pytest.raises(InvalidKey):
        parse_key(GOOD, "other")
    with pytest.raises(InvalidKey):
        parse_key(GOOD, "")


@pytest.mark.parametrize(("raw", "number"), [(12, 12), ("12", 12), ("epoch-12", 12), (0, 0)])
def test_epoch_ids(raw, number):
    assert parse_epoch_id(raw) == number


@pytest.mark.parametrize("raw", ["epoch-", "e12", "-3", -3, 10**13, True, None, 1.5, "epoch-1e3"])
def test_bad_epoch_ids(raw):
    with pytest.raises(ValueError):
        parse_epoch_id(raw)


def test_encoding_is_deterministic_and_sorted():
    rows = records(ZIP)
    first = encode_zipcode_file(ZIP, rows, epoch_nonce=NONCE)
    again = encode_zipcode_file(ZIP, list(reversed(rows)), epoch_nonce=NONCE)
    assert first.body == again.body and first.content_hash == again.content_hash
    assert first.body[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    lines = [json.loads(line) for line in gzip.decompress(first.body).splitlines()]
    assert [int(line["zpid"]) for line in lines] == sorted(int(r["zpid"]) for r in rows)
    assert all(line["epoch_nonce"] == NONCE and len(line["record_hash"]) == 32 for line in lines)
    assert [(line["zpid"], line["record_hash"]) for line in lines] == list(first.records)
    other = encode_zipcode_file(ZIP, rows, epoch_nonce="f" * 32)
    assert other.content_hash != first.content_hash


def test_encoding_drops_what_the_store_drops():
    rows = records(ZIP)
    bad = [rows[0], dict(rows[0]), {"zpid": "x"}, dict(rows[1], zipcode="99999")]
    out = encode_zipcode_file(ZIP, bad)
    assert len(out.records) == 1
    assert out.dropped == {"duplicate_zpid": 1, "invalid_record": 1, "wrong_zipcode": 1}
    with pytest.raises(ValueError):
        encode_zipcode_file("1234", rows)
    with pytest.raises(ValueError):
        encode_zipcode_file(ZIP, rows, epoch_nonce="bad nonce!")


def test_round_trip_decodes_every_record():
    file = encoded(ZIP)
    decoded = decode_zipcode_file(file.body, zipcode=ZIP)
    assert isinstance(decoded, DecodedFile)
    assert decoded.content_hash == file.content_hash
    assert decoded.bad_lines == {}
    assert decoded.nonces == {NONCE}
    assert [(str(r.zpid), r.record_hash) for r in decoded.records] == list(file.records)
    assert all(r.scraped_at is not None for r in decoded.records)


def test_decoding_in_odd_chunks_gives_the_same_result():
    body = encoded(ZIP).body
    whole = decode_zipcode_file(body)
    pieces = decode_zipcode_file([body[i : i + 7] for i in range(0, len(body), 7)])
    assert whole == pieces


def test_bad_lines_are_counted_not_fatal():
    good = records(ZIP)
    line = json.loads(gzip.decompress(encoded(ZIP).body).splitlines()[0])
    lies = [
        b"not json",
        b"[1, 2]",
        json.dumps({"zpid": "1"}).encode(),
        json.dumps(line | {"price": line["price"] + 1}).encode(),  # stored hash no longer fits
        json.dumps({k: v for k, v in line.items() if k != "record_hash"}).encode(),
        json.dumps(line | {"epoch_nonce": 7}).encode(),
        json.dumps(line | {"zipcode": "99999", "zpid": "99999001"}).encode(),
        b"\xff\xfe",
        b"[" * 20000 + b"]" * 20000,
    ]
    body = gzip.compress(b"\n".join([*lies, json.dumps(line).encode()]) + b"\n\n")
    decoded = decode_zipcode_file(body, zipcode=ZIP)
    assert isinstance(decoded, DecodedFile)
    assert len(decoded.records) == 1 and decoded.records[0].zpid == int(good[0]["zpid"])
    assert decoded.bad_lines == {
        "bad_json": 3,
        "not_object": 1,
        "invalid_record": 1,
        "stored_hash_mismatch": 1,
        "missing_record_hash": 1,
        "bad_nonce": 1,
        "wrong_zipcode": 1,
        "blank_line": 1,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", RejectReason.TRUNCATED),
        (b"plain text, not gzip", RejectReason.NOT_GZIP),
        (None, RejectReason.TRUNCATED),  # filled below: a file cut in half
        ("trailing", RejectReason.TRAILING_DATA),
        ("two_members", RejectReason.TRAILING_DATA),
    ],
)
def test_broken_files_are_rejected(body, reason):
    good = encoded(ZIP).body
    if body is None:
        body = good[: len(good) // 2]
    elif body == "trailing":
        body = good + b"\x00\x00"
    elif body == "two_members":
        body = good + good
    decoded = decode_zipcode_file(body)
    assert isinstance(decoded, Rejection) and decoded.reason is reason


def test_caps_reject_oversized_long_and_numerous():
    good = encoded(ZIP).body
    assert decode_zipcode_file(good, max_compressed=len(good) - 1).reason is RejectReason.TOO_LARGE
    assert decode_zipcode_file(good, max_records=3).reason is RejectReason.TOO_MANY_RECORDS
    assert decode_zipcode_file(good, max_line_bytes=50).reason is RejectReason.LINE_TOO_LONG
    endless_line = gzip.compress(b"x" * 200_000)
    assert decode_zipcode_file(endless_line).reason is RejectReason.LINE_TOO_LONG
    small = decode_zipcode_file(good, max_decompressed=100)
    assert small.reason is RejectReason.DECOMPRESSED_TOO_LARGE


def test_reading_stops_at_the_compressed_cap():
    """An endless stream costs at most the cap: the decoder says stop and is not fed further."""
    fed = 0

    def endless():
        nonlocal fed
        while True:
            fed += 1
            yield b"\x00" * 65536

    decoded = decode_zipcode_file(endless(), max_compressed=1 << 20)
    assert isinstance(decoded, Rejection)
    assert fed <= (1 << 20) // 65536 + 2


def _decode_traced(body: bytes, cap: int) -> tuple[object, int]:
    tracemalloc.start()
    try:
        decoded = decode_zipcode_file(body, max_decompressed=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return decoded, peak


def test_gzip_bomb_of_zeros_is_rejected_without_inflating_it():
    """A 1 GiB-of-zeros bomb (~1 MB) is one endless line: refused after 128 KiB inflated."""
    bomb = gzip_bomb()
    assert len(bomb) < 2 * 1024 * 1024
    decoded, peak = _decode_traced(bomb, S3Settings().max_decompressed_bytes)
    assert isinstance(decoded, Rejection)
    assert decoded.reason is RejectReason.LINE_TOO_LONG
    assert decoded.decompressed_bytes <= 256 * 1024
    assert peak < 4 * 1024 * 1024, peak


def test_gzip_bomb_of_lines_stops_at_the_decompressed_cap():
    """1 GiB of 32 KiB lines (each under the line cap) stops at the decompressed cap, not 1 GiB."""
    bomb = gzip_bomb(line_bytes=32 * 1024)
    assert len(bomb) < 2 * 1024 * 1024
    cap = S3Settings().max_decompressed_bytes
    decoded, peak = _decode_traced(bomb, cap)
    assert isinstance(decoded, Rejection)
    assert decoded.reason is RejectReason.DECOMPRESSED_TOO_LARGE
    assert cap < decoded.decompressed_bytes <= cap + 65536
    assert peak < 4 * 1024 * 1024, peak  # 64 KiB steps plus one pending line, not 1 GiB


def test_a_file_of_newlines_is_stopped_by_the_line_count():
    decoded = decode_zipcode_file(gzip.compress(b"\n" * 10_000_000), max_records=5000)
    assert isinstance(decoded, Rejection) and decoded.reason is RejectReason.TOO_MANY_RECORDS


def test_decoder_refuses_more_input_after_rejection():
    decoder = ZipcodeFileDecoder(caps=FileCaps(max_compressed=10))
    assert decoder.feed(b"x" * 11) is False
    assert decoder.feed(b"more") is False
    assert isinstance(decoder.finish(), Rejection)


def _manifest(files) -> dict:
    return {
        "miner_hotkey": HK,
        "zipcodes": [
            {
                "zipcode": "77494",
                "source": "ZILLOW_SOLD",
                "record_count": 0,
                "records": [],
                "files": files,
            }
        ],
    }


def test_manifest_files_are_optional_and_bounded():
    file = {"key": GOOD, "content_hash": SHA, "record_count": 3, "size": 100}
    assert Manifest.model_validate(_manifest([file])).zipcodes[0].files[0].key == GOOD
    old = _manifest([])
    del old["zipcodes"][0]["files"]
    assert Manifest.model_validate(old).zipcodes[0].files == []
    for bad in (
        [file] * (MAX_FILES_PER_ZIPCODE + 1),
        [file | {"key": "a b"}],
        [file | {"key": "k" * 1025}],
        [file | {"content_hash": "xyz"}],
        [file | {"record_count": -1}],
        [file | {"size": 0}],
        [file | {"extra": 1}],
    ):
        with pytest.raises(ValidationError):
            Manifest.model_validate(_manifest(bad))


def test_lines_without_the_nonce_show_up_in_the_nonce_set():
    """Guards against a file mixing nonce-less (replayed) lines passing the nonce check."""
    lines = gzip.decompress(encoded(ZIP).body).splitlines()
    stripped = json.loads(lines[0])
    del stripped["epoch_nonce"]
    body = gzip.compress(b"\n".join([json.dumps(stripped).encode(), *lines[1:]]))
    assert decode_zipcode_file(body).nonces == {NONCE, ""}
    assert decode_zipcode_file(encoded(ZIP, nonce=None).body).nonces == {""}
