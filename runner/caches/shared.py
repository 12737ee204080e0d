"""Caches shared between runners through an S3-compatible store, beside each host's own.

An entry is ``<prefix>/<scope id>/<key>/<path id>.tar`` per cached path, then
``<prefix>/<scope id>/<key>/complete``, written last: each object is written whole, and an entry
without its ``complete`` is never restored, so a runner killed while uploading shares nothing
half written. A runner restores from its host's store first, and fetches from here into it only
what it lacks (any entry on a miss, the exact key over a fallback). Credentials come from the
usual AWS variables or files of the runner's machine; no step ever sees them. Old entries are
the bucket's own lifecycle rules' to expire.

Whoever gets the bucket's credentials (a step reaching a cloud host's metadata service, say) could
write any entry: so ``complete`` holds an HMAC, keyed with a secret the runners alone hold, of the
entry's repository, scope, key and every archive's digest, checked before anything is restored
(an entry that fails it is a miss), and scope ids in object names are keyed with it too, so they
name no repository to whoever lists the bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runner.caches.store import CacheStore, SharedCacheError

logger = logging.getLogger(__name__)

COMPLETE = "complete"
# Errors of the store or of the way to it: the cache is then used as if the store were not there.
_StoreErrors = (BotoCoreError, ClientError, OSError)


@dataclass(frozen=True)
class SharedEntry:
    scope: str
    key: str


class SharedCaches:
    def __init__(
        self, bucket: str, *, secret: str, endpoint_url: str | None = None, prefix: str = "greenlight-caches"
    ) -> None:
        self.bucket = bucket
        self._secret = secret.encode()
        self.prefix = prefix.strip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60
            ),
        )

    def _scope(self, repository: str, scope: str) -> str:
        return hmac.new(self._secret, f"scope\n{repository}\n{scope}".encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    def _entry(self, repository: str, scope: str, key: str) -> str:
        return f"{self.prefix}/{self._scope(repository, scope)}/{key}/"

    def _signature(self, repository: str, scope: str, key: str, archives: list[Path]) -> bytes:
        signed = hmac.new(self._secret, f"entry\n{repository}\n{scope}\n{key}\n".encode(), hashlib.sha256)
        for archive in sorted(archives, key=lambda path: path.name):
            with open(archive, "rb") as file:
                digest = hashlib.file_digest(file, "sha256").hexdigest()
            signed.update(f"{archive.name} {digest}\n".encode())
        return signed.hexdigest().encode()

    def find(self, repository: str, scopes: list[str], key: str, prefixes: list[str]) -> SharedEntry | None:
        """As ``CacheStore.find``: the exact key, else the newest entry a prefix matches, scope by
        scope. Every method raises SharedCacheError for the store's failures."""
        try:
            return self._find(repository, scopes, key, prefixes)
        except _StoreErrors as error:
            raise SharedCacheError(str(error)) from None

    def _find(self, repository: str, scopes: list[str], key: str, prefixes: list[str]) -> SharedEntry | None:
        for scope in scopes:
            if self._complete(self._entry(repository, scope, key)):
                return SharedEntry(scope, key)
            base = f"{self.prefix}/{self._scope(repository, scope)}/"
            for prefix in prefixes:
                newest: tuple[Any, str] | None = None
                for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=base + prefix
                ):
                    for item in page.get("Contents", []):
                        name = item["Key"][len(base) :]
                        entry, _, last = name.partition("/")
                        if last == COMPLETE and (newest is None or item["LastModified"] > newest[0]):
                            newest = (item["LastModified"], entry)
                if newest is not None:
                    return SharedEntry(scope, newest[1])
        return None

    def _complete(self, entry: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=entry + COMPLETE)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def fetch(self, repository: str, found: SharedEntry, store: CacheStore) -> bool:
        """Copy the entry into the host's store (whole, or not at all)."""
        try:
            return self._fetch(repository, found, store)
        except _StoreErrors as error:
            raise SharedCacheError(str(error)) from None

    def _fetch(self, repository: str, found: SharedEntry, store: CacheStore) -> bool:
        entry = self._entry(repository, found.scope, found.key)
        with store.incoming() as incoming:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=entry
            ):
                for item in page.get("Contents", []):
                    name = item["Key"][len(entry) :]
                    if name.endswith(".tar") and "/" not in name:
                        self.client.download_file(self.bucket, item["Key"], str(incoming / name))
            signature = self.client.get_object(Bucket=self.bucket, Key=entry + COMPLETE)["Body"].read()
            expected = self._signature(repository, found.scope, found.key, list(incoming.iterdir()))
            if not hmac.compare_digest(signature, expected):
                logger.warning(
                    "shared cache entry %s%s fails its signature: not restored (written by something "
                    "that does not hold the runners' secret, or with another secret)",
                    entry,
                    COMPLETE,
                )
                return False
            return store.commit(incoming, repository, found.scope, found.key)

    def share(self, repository: str, scope: str, key: str, directory: Path) -> None:
        """Upload an entry of the host's store; its ``complete`` last."""
        try:
            self._share(repository, scope, key, directory)
        except _StoreErrors as error:
            raise SharedCacheError(str(error)) from None

    def _share(self, repository: str, scope: str, key: str, directory: Path) -> None:
        entry = self._entry(repository, scope, key)
        archives = sorted(directory.glob("*.tar"))
        if not archives or self._complete(entry):
            return  # nothing to share (the host evicted it already), or shared before
        for archive in archives:
            self.client.upload_file(str(archive), self.bucket, entry + archive.name)
        signature = self._signature(repository, scope, key, archives)
        self.client.put_object(Bucket=self.bucket, Key=entry + COMPLETE, Body=signature)
