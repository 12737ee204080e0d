"""The runner's side of dependency caches: keys from the workspace, the host's store (atomic,
least recently used first), restore and save within the scopes the server granted."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.caches import CacheAccess, CacheHit, CacheSpec
from runner.caches.job_caches import JobCaches, place
from runner.caches.keys import render_key
from runner.caches.store import INCOMING, STALE_INCOMING_SECONDS, CacheStore
from tests.runner.specs import make_job

KEY = "deps-{{ hashFiles('**/requirements*.txt') }}"
MAIN = CacheAccess(read=["branch/main"], write="branch/main")


def workspace_with(tmp_path: Path, files: dict[str, str]) -> Path:
    workspace = tmp_path / "workspace"
    for name, text in files.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(text)
    workspace.mkdir(parents=True, exist_ok=True)
    return workspace


def job_caches(
    tmp_path: Path, workspace: Path, store: CacheStore, access: CacheAccess, *, restore_keys: list[str] = ()
) -> JobCaches:
    job = make_job().model_copy(
        update={
            "caches": [CacheSpec(key=KEY, restore_keys=list(restore_keys), paths=["deps", "~/.cache/x"])],
            "cache_access": access,
        }
    )
    return JobCaches(job, store, workspace, tmp_path / f"mounts-{job.job_id}", "docker")


def test_hash_files_hashes_the_matching_files_in_path_order(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, {"requirements.txt": "a\n", "sub/requirements-dev.txt": "b\n"})
    inner = [hashlib.sha256(b"a\n").digest(), hashlib.sha256(b"b\n").digest()]
    assert render_key(KEY, workspace) == "deps-" + hashlib.sha256(b"".join(inner)).hexdigest()
    (workspace / "sub/requirements-dev.txt").write_text("c\n")
    assert render_key(KEY, workspace) != "deps-" + hashlib.sha256(b"".join(inner)).hexdigest()


def test_hash_files_never_follows_a_link_out_of_the_workspace(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "requirements.txt").write_text("the runner's own file\n")
    workspace = workspace_with(tmp_path, {"README": "x"})
    (workspace / "linked").symlink_to(outside)
    (workspace / "requirements.txt").symlink_to(outside / "requirements.txt")
    # Nothing but links match: the key is the same as with no file at all.
    assert render_key(KEY, workspace) == "deps-"


def test_a_green_job_saves_and_the_next_job_restores_workspace_and_home_paths(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store")
    access = CacheAccess(read=["branch/main"], write="branch/main")
    first_ws = workspace_with(tmp_path / "1", {"requirements.txt": "a\n", "deps/lib.py": "print(1)\n"})
    first = job_caches(tmp_path, first_ws, store, access)
    first.restore()
    mounts = first.mounts()
    assert list(mounts) == ["/root/.cache/x"]
    (mounts["/root/.cache/x"] / "wheel.whl").write_bytes(b"wheel")
    first.save(passed=True)
    assert first.results[0].hit is CacheHit.miss and first.results[0].saved

    second_ws = workspace_with(tmp_path / "2", {"requirements.txt": "a\n"})
    second = job_caches(tmp_path, second_ws, store, access)
    lines = second.restore()
    assert second.results[0].hit is CacheHit.hit, lines
    assert (second_ws / "deps/lib.py").read_text() == "print(1)\n"
    assert (second.mounts()["/root/.cache/x"] / "wheel.whl").read_bytes() == b"wheel"


def test_a_red_job_saves_nothing(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store")
    access = CacheAccess(read=["branch/main"], write="branch/main")
    caches = job_caches(tmp_path, workspace_with(tmp_path, {"deps/a": "x"}), store, access)
    caches.restore()
    caches.save(passed=False)
    assert not caches.results[0].saved and "did not pass" in (caches.results[0].note or "")
    assert not store.has("acme/widgets", "branch/main", caches.keys[0] or "")


def test_a_job_writes_only_its_own_scope_and_reads_the_others_it_was_given(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store")
    pull = CacheAccess(read=["pull/7", "branch/main"], write="pull/7")
    poisoner = job_caches(tmp_path, workspace_with(tmp_path / "p", {"deps/evil": "x"}), store, pull)
    poisoner.restore()
    poisoner.save(passed=True)
    key = poisoner.keys[0] or ""
    assert store.has("acme/widgets", "pull/7", key)
    assert not store.has("acme/widgets", "branch/main", key)

    main = CacheAccess(read=["branch/main"], write="branch/main")
    victim_ws = workspace_with(tmp_path / "v", {})
    victim = job_caches(tmp_path, victim_ws, store, main)
    victim.restore()
    assert victim.results[0].hit is CacheHit.miss
    assert not (victim_ws / "deps/evil").exists()


def test_a_fallback_key_restores_the_newest_entry_with_that_prefix(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store")
    access = CacheAccess(read=["branch/main"], write="branch/main")
    for number, text in ((1, "old"), (2, "new")):
        ws = workspace_with(tmp_path / str(number), {"requirements.txt": str(number), "deps/v": text})
        caches = job_caches(tmp_path, ws, store, access)
        caches.restore()
        caches.save(passed=True)
        os.utime(store.root, None)
    ws = workspace_with(tmp_path / "3", {"requirements.txt": "3"})
    caches = job_caches(tmp_path, ws, store, access, restore_keys=["deps-"])
    caches.restore()
    assert caches.results[0].hit is CacheHit.partial
    assert (ws / "deps/v").read_text() == "new"


def test_a_restore_never_writes_through_a_link_in_the_checkout(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store")
    access = CacheAccess(read=["branch/main"], write="branch/main")
    first = job_caches(tmp_path, workspace_with(tmp_path / "1", {"deps/file": "x"}), store, access)
    first.restore()
    first.save(passed=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = workspace_with(tmp_path / "2", {})
    (ws / "deps").symlink_to(outside)  # a pushed commit can hold such a link
    second = job_caches(tmp_path, ws, store, access)
    second.restore()
    assert list(outside.iterdir()) == []


def test_eviction_removes_the_least_recently_used_entries_beyond_the_budget(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store", budget_bytes=70_000)
    access = CacheAccess(read=["branch/main"], write="branch/main")
    keys = []
    for number in range(4):
        ws = workspace_with(tmp_path / str(number), {"requirements.txt": str(number)})
        (ws / "deps").mkdir()
        (ws / "deps/blob").write_bytes(os.urandom(15_000))
        caches = job_caches(tmp_path, ws, store, access)
        caches.restore()
        if number == 3:  # the first entry was used again just before the last save
            reused = workspace_with(tmp_path / "again", {"requirements.txt": "0"})
            again = job_caches(tmp_path, reused, store, access)
            again.restore()
            assert again.results[0].hit is CacheHit.hit
        caches.save(passed=True)
        keys.append(caches.keys[0] or "")
    kept = [store.has("acme/widgets", "branch/main", key) for key in keys]
    assert kept == [True, False, True, True]


def test_a_half_written_entry_is_never_restored(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "store")
    access = CacheAccess(read=["branch/main"], write="branch/main")
    ws = workspace_with(tmp_path / "1", {"deps/file": "x"})
    caches = job_caches(tmp_path, ws, store, access)
    caches.restore()
    with pytest.raises(KeyboardInterrupt), store.incoming() as incoming:
        (incoming / "half.tar").write_bytes(b"\0" * 100)
        raise KeyboardInterrupt  # the runner is killed while it writes
    assert not store.has("acme/widgets", "branch/main", caches.keys[0] or "")
    assert list((store.root / INCOMING).iterdir()) == []
    again = job_caches(tmp_path, ws, store, access)
    again.restore()
    assert again.results[0].hit is CacheHit.miss


def test_the_local_executor_keeps_home_paths_in_the_workspace_and_refuses_others(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, {})
    home = place("~/.cache/pip", "local", workspace, tmp_path / "mounts")
    assert home.host == workspace / ".cache/pip" and home.container is None
    elsewhere = place("/opt/cache", "local", workspace, tmp_path / "mounts")
    assert elsewhere.host is None and "only paths in the workspace or ~" in (elsewhere.refusal or "")
    in_docker = place("~/.cache/pip", "docker", workspace, tmp_path / "mounts")
    assert in_docker.container == "/root/.cache/pip" and in_docker.host is not None


SAVE_SLOWLY = """
import sys, time
from pathlib import Path
from contract.caches import CacheAccess, CacheSpec
from runner.caches.job_caches import JobCaches
from runner.caches.store import CacheStore
from tests.runner.specs import make_job

root = Path(sys.argv[1])
job = make_job().model_copy(update={
    "caches": [CacheSpec(key="deps-{{ hashFiles('requirements.txt') }}", paths=["deps"])],
    "cache_access": CacheAccess(read=["branch/main"], write="branch/main"),
})
caches = JobCaches(job, CacheStore(root / "store"), root / "workspace", root / "mounts", "docker")
caches.restore()
while True:  # saves again and again until it is killed
    caches.save(passed=True)
    time.sleep(0.01)
"""


def test_a_runner_killed_while_saving_leaves_nothing_that_restores(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, {"requirements.txt": "x"})
    (workspace / "deps").mkdir()
    for number in range(200):
        (workspace / "deps" / f"blob-{number}").write_bytes(os.urandom(64 * 1024))
    store = CacheStore(tmp_path / "store")
    incoming = store.root / INCOMING
    # The saver packs into a store that never commits, so it is forever in the middle of writing
    # an archive when the kill comes.
    script = SAVE_SLOWLY.replace(
        "caches.restore()", "CacheStore.commit = lambda *given: False\ncaches.restore()"
    )
    saver = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        while not any(path.stat().st_size > 0 for path in incoming.rglob("*.tar")):
            assert time.monotonic() < deadline and saver.poll() is None, "the saver never started writing"
            time.sleep(0.01)
    finally:
        saver.send_signal(signal.SIGKILL)
        saver.wait()
    assert list(incoming.rglob("*.tar")), "killed before anything was half written"
    caches = job_caches(tmp_path, workspace_with(tmp_path / "next", {"requirements.txt": "x"}), store, MAIN)
    caches.restore()
    assert caches.results[0].hit is CacheHit.miss
    # What the killed runner left is removed once it is stale.
    store.evict()
    assert list(incoming.rglob("*.tar"))  # young: another save may still be filling it
    old = time.time() - 2 * STALE_INCOMING_SECONDS
    for left in incoming.iterdir():
        os.utime(left, (old, old))
    store.evict()
    assert list(incoming.iterdir()) == []


def test_a_store_that_cannot_be_written_fails_the_save_not_the_job(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    store = CacheStore(tmp_path / "not-a-directory")
    caches = job_caches(tmp_path, workspace_with(tmp_path, {"deps/a": "x"}), store, MAIN)
    caches.restore()
    caches.save(passed=True)
    result = caches.results[0]
    assert result.hit is CacheHit.miss and not result.saved
    assert (result.note or "").startswith("not saved:"), result
