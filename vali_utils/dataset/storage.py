"""Where the dataset lives: a local folder or an S3 prefix, behind three calls.

    storage = open_storage("s3://bucket/dataset", settings.s3)   # or a local path
    storage.put("v1/manifests/epoch=12.json", data)
    storage.get("v1/manifests/epoch=12.json")                     # KeyError when absent
    storage.list("v1/manifests/")                                 # keys, sorted

Blocking calls (boto3, file I/O): the exporter runs them off the event loop.
A local ``put`` writes a temporary file and renames it, so a file is never
seen half written; S3 objects appear whole by nature. Neither makes an
*epoch* appear at once: the manifest does (``vali_utils/dataset/publish.py``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from common.s3_client import S3Outcome, classify, make_client
from config.storage import S3Settings

S3_SCHEME = "s3://"


class DatasetStorage(Protocol):
    location: str  # where it is, for logs and reports

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]: ...

    def local_path(self, key: str) -> Path | None: ...


class LocalStorage:
    """A folder; keys are relative paths under it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key[:100]!r} leaves the dataset folder")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        folder = base if base.is_dir() else base.parent
        if not folder.exists():
            return []
        root = self.root.resolve()
        keys = (
            str(p.resolve().relative_to(root))
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return sorted(k for k in keys if k.startswith(prefix))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


class S3Storage:
    """A bucket prefix on any S3-compatible endpoint (boto3, the settings' timeouts)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"{S3_SCHEME}{bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:  # botocore's errors, sorted by the one boto3 boundary
            failure = classify(exc)
            if failure is not None and failure.outcome is S3Outcome.MISSING:
                raise KeyError(key) from None
            raise
        with response["Body"] as body:
            return body.read()

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        strip = len(self._key(""))
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        ):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", ()))
        return sorted(keys)

    def local_path(self, key: str) -> Path | None:
        return None


def open_storage(url: str, s3: S3Settings | None = None) -> DatasetStorage:
    """``s3://bucket/prefix`` (endpoint, region and credentials from ``s3``) or a folder.

    Raises ValueError for a bad bucket name or prefix.
    """
    if not url.startswith(S3_SCHEME):
        return LocalStorage(Path(url))
    bucket, _, prefix = url[len(S3_SCHEME) :].partition("/")
    settings = replace(s3 or S3Settings(), bucket=bucket, prefix=prefix.strip("/"))
    return S3Storage(make_client(settings, pool=8), settings.bucket, settings.prefix)
