"""Presigned S3 URLs for miners (uploads under their own prefix) and validators (reads).

Works with any S3-compatible endpoint (AWS, MinIO, R2, moto): ``endpoint_url``
switches to path-style addressing, which all of them accept. Keys follow
docs/architecture.md §3.4 and are built here from the caller's *verified* hotkey, never from
anything the caller typed, so a presigned upload cannot land in another
miner's prefix.

    gateway = S3Gateway.create(settings.s3)  # clients from common/s3_client.py
    url, fields = gateway.presign_upload(key, max_bytes, epoch_nonce, hotkey, expires_s)
    objects, token = gateway.list_and_presign(read_prefix(...), 200, None, expires_s)  # blocking
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from common import s3_layout
from common.s3_client import (
    ListedObject,
    classify,
    listed_objects,
    make_client,
    make_probe_client,
    next_token,
)
from config.storage import S3Settings
from data_api.health_probe import PROBE_TTL_S, HealthProbe

logger = logging.getLogger(__name__)

NONCE_METADATA = "x-amz-meta-epoch-nonce"
HOTKEY_METADATA = "x-amz-meta-miner-hotkey"


class S3Unavailable(RuntimeError):
    """The S3 endpoint could not be reached or refused the service's credentials."""


class BadContinuationToken(ValueError):
    """The listing's continuation token is not one this service handed out."""


def read_prefix(
    prefix: str,
    hotkey: str,
    epoch_id: int | None = None,
    source: str | None = None,
    zipcode: str | None = None,
) -> str:
    """The listing prefix for a miner's files, narrowed down the key path as far as given:
    ``{prefix}/hotkey={hotkey}/[epoch={e}/[source={s}/[zipcode={z}/]]]``.

    Raises ``s3_layout.InvalidKey`` for a part that does not fit the layout."""
    head = s3_layout.miner_prefix(prefix, hotkey, epoch_id)
    if epoch_id is None or source is None:
        return head
    head += f"source={source}/"
    return head if zipcode is None else head + f"zipcode={zipcode}/"


def object_key(
    prefix: str, hotkey: str, epoch_id: int, source: str, zipcode: str, content_hash: str
) -> str:
    """The key of one uploaded file (docs/architecture.md §3.4; ``common.s3_layout`` owns it).

    Raises ``s3_layout.InvalidKey`` for a part that does not fit the layout."""
    return s3_layout.build_key(prefix, hotkey, epoch_id, source, zipcode, content_hash)


class TokenSealer:
    """Continuation tokens the service hands out: S3's token, bound to its listing prefix.

    A validator can only continue a listing the service started, for the same
    prefix; anything else is refused before it reaches S3 (whose answer to a
    forged token varies by vendor, from 400 to a 500).
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, prefix: str, token: str) -> str:
        mac = hmac.new(self._key, f"{prefix}\n{token}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def seal(self, prefix: str, token: str) -> str:
        encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
        return f"{encoded}.{self._tag(prefix, token)}"

    def open(self, prefix: str, sealed: str) -> str:
        """S3's token inside ``sealed``; raises BadContinuationToken unless it is ours."""
        encoded, _, tag = sealed.partition(".")
        try:
            token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise BadContinuationToken(
                "continuation_token is not one this service issued"
            ) from None
        if not token or not hmac.compare_digest(tag, self._tag(prefix, token)):
            raise BadContinuationToken("continuation_token is not one this service issued")
        return token


class S3Gateway:
    def __init__(self, client: Any, bucket: str, prefix: str, probe_client: Any = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        # Answers "is S3 there?" within a health request's time: no retries, short timeouts.
        self.probe_client = probe_client or client

    @classmethod
    def create(cls, settings: S3Settings) -> S3Gateway:
        """A gateway on ``settings``' bucket: a client for presigning and listing, and a
        short-timeout one for health probes (``common/s3_client.py`` builds both)."""
        return cls(
            make_client(settings),
            settings.bucket,
            settings.prefix,
            probe_client=make_probe_client(settings),
        )

    def reachable(self) -> bool:
        """Whether the bucket answers now (HEAD bucket). Blocking: run in a thread."""
        try:
            self.probe_client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if classify(exc) is None:
                raise
            logger.warning("storage probe: bucket %s does not answer: %s", self.bucket, exc)
            return False
        return True

    def presign_upload(
        self, key: str, max_bytes: int, epoch_nonce: str, hotkey: str, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        """A presigned POST for exactly ``key``, at most ``max_bytes``, carrying the nonce.

        CPU only (no request to S3). The policy pins the key (boto3 adds the
        condition), the size range and the metadata, so none can be changed.
        """
        fields = {NONCE_METADATA: epoch_nonce, HOTKEY_METADATA: hotkey}
        conditions: list[Any] = [
            ["content-length-range", 1, int(max_bytes)],
            {NONCE_METADATA: epoch_nonce},
            {HOTKEY_METADATA: hotkey},
        ]
        post = self.client.generate_presigned_post(
            self.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=int(expires_s)
        )
        return post["url"], {k: str(v) for k, v in post["fields"].items()}

    def list_and_presign(
        self, prefix: str, max_keys: int, token: str | None, expires_s: int
    ) -> tuple[list[ListedObject], str | None]:
        """One page of objects under ``prefix`` with presigned GETs. Blocking: run in a thread.

        ``token`` is S3's own continuation token (see ``TokenSealer``). Raises S3Unavailable.
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if token:
            params["ContinuationToken"] = token
        try:
            page = self.client.list_objects_v2(**params)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            logger.warning("listing %s failed: %s", prefix, failure.detail)
            if failure.status is not None:  # S3 answered, with an error
                raise S3Unavailable(f"S3 listing failed ({failure.detail})") from exc
            raise S3Unavailable("S3 endpoint unreachable") from exc
        objects = [
            replace(
                listed,
                url=self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": listed.key},
                    ExpiresIn=int(expires_s),
                ),
            )
            for listed in listed_objects(page)
        ]
        return objects, next_token(page)


class StorageProbe(HealthProbe):
    """``/v1/health``'s view of S3: one HEAD bucket at a time, its answer kept ``ttl_s``."""

    def __init__(
        self,
        gateway: S3Gateway,
        ttl_s: float = PROBE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(lambda: asyncio.to_thread(gateway.reachable), ttl_s, clock)
        self.gateway = gateway
