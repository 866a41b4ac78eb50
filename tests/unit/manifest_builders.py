"""Builders for manifests of made-up records: zpids and hashes that nothing fetched.

For the tests that need a manifest's shape and size (commit-reveal, the reveal
bounds), not data that verifies against a source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from common.manifest import Manifest, ZipcodeManifest
from vali_utils.assignments import SOURCE

ZpidOf = Callable[[str, int], str]


def counting_zpid(zipcode: str, i: int) -> str:
    """Zpids 1, 2, 3 ... in every zipcode."""
    return f"{i + 1}"


def zipcode_entry(
    zipcode: str, n_records: int, *, source: str = SOURCE.value, zpid: ZpidOf = counting_zpid
) -> ZipcodeManifest:
    """A manifest entry of ``n_records`` records: the i-th is zpid ``zpid(zipcode, i)``
    with hash i in hex."""
    return ZipcodeManifest(
        zipcode=zipcode,
        source=source,
        record_count=n_records,
        records=[(zpid(zipcode, i), f"{i:032x}") for i in range(n_records)],
    )


def manifest_of(
    zipcodes: Iterable[str], n_records: int, *, zpid: ZpidOf = counting_zpid, **fields
) -> Manifest:
    """A manifest of one ``zipcode_entry`` per zipcode; ``fields`` are the Manifest's own
    (``epoch_id``, ``miner_hotkey``, ...)."""
    entries = [zipcode_entry(z, n_records, zpid=zpid) for z in zipcodes]
    return Manifest(zipcodes=entries, **fields)
