"""The boto3 S3 client both sides use: timeouts and bounded retries from ``S3Settings``.

boto3 is imported lazily: only neurons that talk to S3 directly pay for it.

    client = make_client(settings, pool=16)
"""

from __future__ import annotations

from typing import Any

from config.storage import S3Settings


def make_client(settings: S3Settings, *, pool: int = 16) -> Any:
    """A boto3 S3 client with connect/read timeouts and bounded retries from ``settings``.

    ``pool`` is the number of HTTP connections kept (one per worker thread).
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        max_pool_connections=pool,
        signature_version="s3v4",
        # Custom endpoints (MinIO, moto, R2) want path-style keys; AWS picks its own.
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id or None,
        aws_secret_access_key=settings.secret_access_key or None,
        config=config,
    )
