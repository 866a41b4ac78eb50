"""Caps on one zipcode's data, shared by miners, validators and the Data API.

Each cap is defined here once. Whoever writes a zipcode's records (the miner),
hands out the URL to store them (the Data API) and reads them back (the
validator) imports the same number, so no side accepts what another refuses.

    from config.limits import MAX_FILE_BYTES, MAX_RECORDS_PER_ZIPCODE
"""

from __future__ import annotations

# Records in one zipcode's answer, manifest entry or file: 100x the ~50 listings
# an average zipcode has (the largest urban ones hold a few hundred). More is padding.
MAX_RECORDS_PER_ZIPCODE = 5000

# Bytes of one zipcode file (jsonl.gz): ~50 records are ~10 KB gzipped, and
# MAX_RECORDS_PER_ZIPCODE records ~1 MB, so 4 MiB leaves room and anything bigger
# is not a zipcode file. The miner refuses to upload past it, the Data API
# presigns no larger upload (S3_UPLOAD_MAX_BYTES may only lower it) and
# validators read no further (S3_MAX_FILE_BYTES).
MAX_FILE_BYTES = 4 * 1024 * 1024

# Bytes a zipcode file may inflate to: MAX_RECORDS_PER_ZIPCODE records x ~1 KB of
# JSON = 5 MB; 64 MiB leaves room and still stops a gzip bomb after a few tens
# of milliseconds of inflating.
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
