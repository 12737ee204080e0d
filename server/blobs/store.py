"""Blob stores: bytes under a key the server made, on the server's disk or in an S3-compatible bucket.

A blob arrives as a finished file in the store's ``spool`` directory (streamed there, counted and
hashed by the caller): the disk store renames it into place, the S3 store uploads it in parts
(boto3's transfer, bounded memory) and removes it. Reads are streamed in chunks. Keys are made by
the server (``artifacts/<build>/<random>``), never from a name a runner or a step chose.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from server.config import Settings

CHUNK_BYTES = 1024 * 1024
_KEY = re.compile(r"^[a-z]+/[0-9]+/[A-Za-z0-9_-]{16,64}$")


class BlobStore(Protocol):
    spool: Path  # where callers write what they will ``put`` (same file system as a disk store)

    def put(self, key: str, source: Path) -> None:
        """Store the file ``source`` (which is gone afterwards) under ``key``."""

    def read(self, key: str) -> Iterator[bytes]:
        """The blob's bytes, in chunks (``FileNotFoundError`` when there is none)."""

    def delete(self, key: str) -> None:
        """Remove the blob; none there is no error."""

    def listed(self, kind: str) -> Iterator[tuple[str, dt.datetime]]:
        """Every blob key of ``kind`` (``artifacts``) stored, with when it was written."""


def _checked(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"not a blob key: {key!r}")
    return key


class DiskStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.spool = root / "spool"
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, key: str, source: Path) -> None:
        target = self.root / _checked(key)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(source, target)

    def read(self, key: str) -> Iterator[bytes]:
        with open(self.root / _checked(key), "rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk

    def delete(self, key: str) -> None:
        (self.root / _checked(key)).unlink(missing_ok=True)

    def listed(self, kind: str) -> Iterator[tuple[str, dt.datetime]]:
        top = self.root / kind
        for folder in sorted(top.iterdir()) if top.is_dir() else ():
            for blob in sorted(folder.iterdir()) if folder.is_dir() else ():
                key = f"{kind}/{folder.name}/{blob.name}"
                if _KEY.match(key):
                    try:
                        written = blob.stat().st_mtime
                    except FileNotFoundError:  # deleted meanwhile
                        continue
                    yield key, dt.datetime.fromtimestamp(written, dt.UTC)


class S3Store:
    def __init__(self, client: Any, bucket: str, spool: Path) -> None:
        self._client = client
        self._bucket = bucket
        self.spool = spool
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, key: str, source: Path) -> None:
        try:
            self._client.upload_file(str(source), self._bucket, _checked(key))
        finally:
            source.unlink(missing_ok=True)

    def read(self, key: str) -> Iterator[bytes]:
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=_checked(key))["Body"]
        except self._client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=_checked(key))

    def listed(self, kind: str) -> Iterator[tuple[str, dt.datetime]]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=f"{kind}/")
        for page in pages:
            for item in page.get("Contents", []):
                if _KEY.match(item["Key"]):
                    yield item["Key"], item["LastModified"]


def blob_store(settings: Settings) -> BlobStore:
    """The store the settings name: an S3 bucket when ``blob_s3_bucket`` is set, else
    ``<data dir>/blobs``."""
    root = Path(settings.data_dir) / "blobs"
    if not settings.blob_s3_bucket:
        return DiskStore(root)
    import boto3  # only a server that uses a bucket loads it

    credentials = {}
    if settings.blob_s3_access_key_id:
        credentials = {
            "aws_access_key_id": settings.blob_s3_access_key_id,
            "aws_secret_access_key": settings.blob_s3_secret_access_key.get_secret_value(),
        }
    client = boto3.client(
        "s3",
        endpoint_url=settings.blob_s3_endpoint_url or None,
        region_name=settings.blob_s3_region,
        **credentials,
    )
    return S3Store(client, settings.blob_s3_bucket, root / "spool")


_stores: dict[tuple[str, ...], BlobStore] = {}


def store_of(settings: Settings) -> BlobStore:
    """The settings' blob store, made once per process (a boto3 client is not cheap to make)."""
    key = (
        str(settings.data_dir),
        settings.blob_s3_bucket,
        settings.blob_s3_endpoint_url,
        settings.blob_s3_region,
        settings.blob_s3_access_key_id,
    )
    if key not in _stores:
        _stores[key] = blob_store(settings)
    return _stores[key]
