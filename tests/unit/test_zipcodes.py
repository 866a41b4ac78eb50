"""One zipcode pattern: five ASCII digits everywhere, ZIP+4 only where a source's text is read.

Regression: six regexes once said what a zipcode is, and the records' one
took ZIP+4 where the keys' one meant five digits.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from common.records import PropertyRecord
from common.zipcodes import ZIP_PLUS_4, ZIPCODE, Zipcode
from consensus.assignment import _unique_zipcodes
from scraping.parsing import split_address

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("common", "config", "consensus", "data_api", "neurons", "scraping", "vali_utils")


@pytest.mark.parametrize("text", ["77494", "00501"])
def test_five_digits_are_a_zipcode(text: str) -> None:
    assert ZIPCODE.fullmatch(text) and ZIP_PLUS_4.fullmatch(text)


@pytest.mark.parametrize("text", ["7749", "774941", "77494\n", "७७४९४", "77494-1234", " 77494"])
def test_anything_else_is_not(text: str) -> None:
    assert not ZIPCODE.fullmatch(text)


def test_zip_plus_4_only_where_named_so() -> None:
    assert ZIP_PLUS_4.fullmatch("77494-1234") and not ZIP_PLUS_4.fullmatch("77494-12")


def test_the_pydantic_type_is_the_same_pattern() -> None:
    class Entry(BaseModel):
        zipcode: Zipcode

    assert Entry(zipcode="77494").zipcode == "77494"
    for bad in ("77494-1234", "77494\n", "७७४९४"):
        with pytest.raises(ValidationError):
            Entry(zipcode=bad)


def test_sources_may_send_zip_plus_4_and_everything_else_keeps_five_digits() -> None:
    assert split_address("5920 Conley St, Houston, TX 77021-1234")[3] == "77021-1234"
    assert PropertyRecord._zipcode_format("77021-1234") == "77021"
    with pytest.raises(ValueError, match="5 digits"):
        _unique_zipcodes(["77021-1234"])  # an assignment names five digits


def test_no_other_zipcode_pattern_in_production_code() -> None:
    """A second definition is how the ZIP+4 / five-digit split came about."""
    pattern = re.compile(r"\[0-9\]\{5\}|\\d\{5\}")
    found = [
        str(path.relative_to(ROOT))
        for folder in PRODUCTION
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "zipcodes.py" and pattern.search(path.read_text())
    ]
    assert found == []
