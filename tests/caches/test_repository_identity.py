"""A repository's caches are its id's: one registered again under the same name starts empty."""

from __future__ import annotations

from pathlib import Path

from contract.caches import CacheAccess, CacheHit
from runner.caches.store import CacheStore
from tests.caches.test_runner_caches import job_caches, workspace_with


def test_a_repository_registered_again_under_the_same_name_restores_nothing_of_the_old_one(
    tmp_path: Path,
) -> None:
    store = CacheStore(tmp_path / "store")
    old = CacheAccess(read=["branch/main"], write="branch/main", repository_id=1)
    first = job_caches(tmp_path / "1", workspace_with(tmp_path / "1", {"deps/a": "old"}), store, old)
    first.restore()
    first.save(passed=True)
    assert first.results[0].saved
    new = CacheAccess(read=["branch/main"], write="branch/main", repository_id=2)
    second = job_caches(tmp_path / "2", workspace_with(tmp_path / "2", {}), store, new)
    second.restore()
    assert second.results[0].hit is CacheHit.miss
