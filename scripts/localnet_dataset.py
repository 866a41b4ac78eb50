"""The local subnet's dataset: every validator exports (docs/dataset.md), the report says where.

Each validator publishes to its own prefix of the S3 emulator's bucket
(``s3://subnet-data/datasets/validator-{uid}``); without the Data API and S3
(``--no-data-api``) there are no miners' files and no dataset. After the run the
report copies each S3 dataset to ``<workdir>/dataset/validator-{uid}`` (the
emulator stops with the subnet) and gives its epochs and record counts, so

    python -m vali_utils.dataset --dataset <workdir>/dataset/validator-0 query "SELECT ..."

works after the subnet is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.s3_client import make_client
from config.storage import S3Settings

DATASET_PREFIX = "datasets"


def validator_dataset(subnet: Any, validator: dict) -> tuple[list[str], dict[str, str]]:
    """The validator's export flags and the environment they need (the emulator's address)."""
    if not subnet.s3_endpoint:
        return [], {}  # no S3, no miners' files: nothing to export the records' fields from
    url = f"s3://{subnet.s3_bucket}/{DATASET_PREFIX}/validator-{validator['uid']}"
    env = {
        "S3_ENDPOINT_URL": subnet.s3_endpoint,
        # boto3's own chain: S3_ACCESS_KEY_ID would make the validator read miners'
        # files directly instead of through the Data API's presigned URLs.
        "AWS_ACCESS_KEY_ID": subnet.s3_key,
        "AWS_SECRET_ACCESS_KEY": subnet.s3_key,
    }
    validator["dataset_url"] = url
    return ["--dataset.export", "--dataset.url", url], env


def dataset_report(subnet: Any, validator: dict, cycle_reports: list[dict]) -> dict:
    """Where the validator's dataset is (and its local copy), and records per epoch."""
    url = validator.get("dataset_url")
    if not url:
        return {}
    local = Path(url)
    if url.startswith("s3://"):
        local = subnet.workdir / "dataset" / f"validator-{validator['uid']}"
        _copy(subnet, url, local)
    epochs = {
        str(r["epoch"]): {
            "confirmed_records": r.get("confirmed_records"),
            **{k: v for k, v in r.get("dataset", {}).items() if k in ("status", "records")},
        }
        for r in cycle_reports
    }
    return {"url": url, "copy": str(local), "epochs": epochs}


def _copy(subnet: Any, url: str, folder: Path) -> None:
    bucket, _, prefix = url[len("s3://") :].partition("/")
    access = S3Settings(
        endpoint_url=subnet.s3_endpoint,
        bucket=bucket,
        access_key_id=subnet.s3_key,
        secret_access_key=subnet.s3_key,
    )
    client = make_client(access, pool=1)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            target = folder / item["Key"][len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def describe(validator_row: dict) -> str:
    dataset = validator_row.get("dataset") or {}
    if not dataset:
        return ""
    counts = {e: d.get("records") for e, d in dataset["epochs"].items()}
    return f"dataset of validator uid {validator_row['uid']}: {dataset['url']} records {counts}"
