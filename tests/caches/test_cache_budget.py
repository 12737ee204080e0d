"""A save stays within the runner's cache budget before it writes anything, and one
repository's pull requests cannot flush the caches of the others' branches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contract.caches import CacheAccess, CacheSpec
from runner.caches import job_caches as job_caches_module
from runner.caches.job_caches import JobCaches
from runner.caches.store import CacheStore
from tests.runner.specs import make_job

MAIN = CacheAccess(read=["branch/main"], write="branch/main")


def caches_of(
    tmp_path: Path, repository: str, access: CacheAccess, store: CacheStore, blob: int
) -> JobCaches:
    workspace = tmp_path / "workspace"
    (workspace / "deps").mkdir(parents=True)
    (workspace / "deps" / "blob").write_bytes(os.urandom(blob))
    job = make_job().model_copy(
        update={
            "repository": repository,
            "caches": [CacheSpec(key=f"k-{tmp_path.name}", paths=["deps"])],
            "cache_access": access,
        }
    )
    return JobCaches(job, store, workspace, tmp_path / "mounts", "docker")


def test_a_sparse_file_over_the_budget_is_never_packed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CacheStore(tmp_path / "store", budget_bytes=10 * 1024 * 1024)
    caches = caches_of(tmp_path, "acme/widgets", MAIN, store, 10)
    with open(caches.workspace / "deps" / "big", "wb") as file:
        file.truncate(200 * 1024 * 1024)  # 200 MiB that take no disk until packed
    packed: list[Path] = []
    real_pack = job_caches_module.pack
    monkeypatch.setattr(job_caches_module, "pack", lambda d, a: packed.append(d) or real_pack(d, a))
    caches.restore()
    caches.save(passed=True)
    assert packed == []
    assert not caches.results[0].saved and "budget" in (caches.results[0].note or "")


def test_a_pull_requests_entries_go_before_other_repositories_branch_caches(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store", budget_bytes=70_000)
    main = caches_of(tmp_path / "main", "acme/tools", MAIN, store, 15_000)
    main.restore()
    main.save(passed=True)
    assert main.results[0].saved
    pull = CacheAccess(read=["pull/9"], write="pull/9")
    for number in range(6):
        flood = caches_of(tmp_path / f"pull{number}", "mallory/flood", pull, store, 15_000)
        flood.restore()
        flood.save(passed=True)
    assert store.has("acme/tools", "branch/main", main.keys[0] or "")
