"""Caches shared between runners through a real S3-compatible server (moto in server mode, over
HTTP): what one runner saved, another with an empty store of its own restores; an upload cut
short is never restored; scopes hold there as on the host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from contract.caches import CacheAccess, CacheHit
from runner.caches.shared import COMPLETE, SharedCaches
from runner.caches.store import CacheStore, scope_id
from tests.caches.test_runner_caches import job_caches, workspace_with
from tests.support import services
from tests.support.s3_server import CREDENTIALS, s3_server

pytestmark = pytest.mark.integration

MAIN = CacheAccess(read=["branch/main"], write="branch/main")
BUCKET = "caches"
SECRET = "the runners' own secret, not the bucket's"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def shared(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> SharedCaches:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"{BUCKET}-{os.getpid()}-{abs(hash(request.node.name)) % 10**8}"
    client.create_bucket(Bucket=bucket)
    return SharedCaches(bucket, secret=SECRET, endpoint_url=s3_endpoint)


def runner_caches(tmp_path: Path, name: str, files: dict[str, str], shared: SharedCaches, access=MAIN):  # type: ignore[no-untyped-def]
    store = CacheStore(tmp_path / name / "store")
    caches = job_caches(tmp_path / name, workspace_with(tmp_path / name, files), store, access)
    caches.shared = shared
    return caches


def test_a_runner_restores_what_another_runner_saved(tmp_path: Path, shared: SharedCaches) -> None:
    first = runner_caches(tmp_path, "a", {"requirements.txt": "x", "deps/lib": "built on a"}, shared)
    first.restore()
    first.save(passed=True)
    assert first.results[0].saved and first.results[0].note is None, first.results[0]

    second = runner_caches(tmp_path, "b", {"requirements.txt": "x"}, shared)
    second.restore()
    assert second.results[0].hit is CacheHit.hit, second.results[0]
    assert (second.workspace / "deps/lib").read_text() == "built on a"


def test_a_fallback_key_is_found_in_the_shared_store(tmp_path: Path, shared: SharedCaches) -> None:
    first = runner_caches(tmp_path, "a", {"requirements.txt": "old", "deps/lib": "old"}, shared)
    first.restore()
    first.save(passed=True)
    second = runner_caches(tmp_path, "b", {"requirements.txt": "new"}, shared)
    second.job = second.job.model_copy(
        update={"caches": [second.job.caches[0].model_copy(update={"restore_keys": ["deps-"]})]}
    )
    second.restore()
    assert second.results[0].hit is CacheHit.partial
    assert (second.workspace / "deps/lib").read_text() == "old"


def test_an_upload_cut_short_is_never_restored(tmp_path: Path, shared: SharedCaches) -> None:
    first = runner_caches(tmp_path, "a", {"requirements.txt": "x", "deps/lib": "half"}, shared)
    first.restore()
    first.save(passed=True)
    # As if the runner had been killed before its last upload: the entry has no ``complete``.
    entry = f"{shared.prefix}/"
    listed = shared.client.list_objects_v2(Bucket=shared.bucket, Prefix=entry)["Contents"]
    (marker,) = [item["Key"] for item in listed if item["Key"].endswith("/" + COMPLETE)]
    shared.client.delete_object(Bucket=shared.bucket, Key=marker)

    second = runner_caches(tmp_path, "b", {"requirements.txt": "x"}, shared)
    second.restore()
    assert second.results[0].hit is CacheHit.miss
    assert not (second.workspace / "deps").exists()


def test_a_pull_requests_upload_never_reaches_the_default_branch(
    tmp_path: Path, shared: SharedCaches
) -> None:
    pull = CacheAccess(read=["pull/9", "branch/main"], write="pull/9")
    poisoner = runner_caches(tmp_path, "a", {"requirements.txt": "x", "deps/evil": "x"}, shared, pull)
    poisoner.restore()
    poisoner.save(passed=True)
    assert poisoner.results[0].saved
    victim = runner_caches(tmp_path, "b", {"requirements.txt": "x"}, shared)
    victim.restore()
    assert victim.results[0].hit is CacheHit.miss


def test_a_store_that_does_not_answer_leaves_the_hosts_cache_working(tmp_path: Path) -> None:
    unreachable = SharedCaches(
        "nowhere", secret=SECRET, endpoint_url=f"http://127.0.0.1:{services.free_port()}"
    )
    caches = runner_caches(tmp_path, "a", {"requirements.txt": "x", "deps/lib": "y"}, unreachable)
    lines = caches.restore()
    assert caches.results[0].hit is CacheHit.miss and "shared cache store failed" in lines[0]
    caches.save(passed=True)
    result = caches.results[0]
    assert result.saved and "saved on this runner only" in (result.note or "")


def test_an_entry_rewritten_by_whoever_holds_the_buckets_credentials_is_a_miss(
    tmp_path: Path, shared: SharedCaches
) -> None:
    first = runner_caches(tmp_path, "a", {"requirements.txt": "x", "deps/lib": "good"}, shared)
    first.restore()
    first.save(passed=True)
    evil = runner_caches(tmp_path, "e", {"requirements.txt": "x", "deps/lib": "evil"}, shared)
    from runner.caches.archives import pack

    pack(evil.workspace / "deps", tmp_path / "evil.tar")
    listed = shared.client.list_objects_v2(Bucket=shared.bucket, Prefix=shared.prefix + "/")["Contents"]
    for item in listed:
        if item["Key"].endswith(".tar"):
            shared.client.upload_file(str(tmp_path / "evil.tar"), shared.bucket, item["Key"])

    victim = runner_caches(tmp_path, "b", {"requirements.txt": "x"}, shared)
    victim.restore()
    assert victim.results[0].hit is CacheHit.miss
    assert not (victim.workspace / "deps").exists()


def test_entry_names_are_keyed_with_the_runners_secret(tmp_path: Path, shared: SharedCaches) -> None:
    first = runner_caches(tmp_path, "a", {"requirements.txt": "x", "deps/lib": "good"}, shared)
    first.restore()
    first.save(passed=True)
    listed = shared.client.list_objects_v2(Bucket=shared.bucket, Prefix=shared.prefix + "/")["Contents"]
    assert listed and not any(scope_id("acme/widgets", "branch/main") in item["Key"] for item in listed)
    other = SharedCaches(shared.bucket, secret="another secret", endpoint_url=shared.client.meta.endpoint_url)
    second = runner_caches(tmp_path, "b", {"requirements.txt": "x"}, other)
    second.restore()
    assert second.results[0].hit is CacheHit.miss
