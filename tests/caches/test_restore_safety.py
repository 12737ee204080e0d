"""A restore writes only inside the cache's own directory: never through a link the checkout or
the archive holds, whatever the length of the path behind the link."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from contract.caches import CacheAccess, CacheHit, CacheSpec
from runner.caches.archives import ArchiveError, unpack
from runner.caches.job_caches import JobCaches
from runner.caches.store import CacheStore
from tests.runner.specs import make_job

PULL = CacheAccess(read=["pull/7"], write="pull/7")
STEPS = "abcdefghijklmnop"


def long_link_chain(directory: Path, target: Path) -> str:
    """Links and long directories under ``directory`` (each path under PATH_MAX, as git can hold
    them) whose resolution passes PATH_MAX before reaching ``target``; the name of the link."""
    component, last = "d" * 240, "l" * 230
    here = Path(".")
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        for step in STEPS:
            os.mkdir(here / component)
            os.symlink(component, here / step)
            here = here / component
        os.symlink("../" * len(STEPS), here / last)
        ups = len(str(directory).strip("/").split("/"))
        os.symlink("/".join(STEPS) + "/" + last + "/" + "../" * ups + str(target).lstrip("/"), "x")
    finally:
        os.chdir(cwd)
    return "x"


def member_of(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.mode = kind, link, 0o755
    return member


def caches(job_dir: Path, workspace: Path, store: CacheStore) -> JobCaches:
    job = make_job().model_copy(
        update={"caches": [CacheSpec(key="k1", paths=["deps"])], "cache_access": PULL}
    )
    return JobCaches(job, store, workspace, job_dir / "mounts", "docker")


def test_a_link_chain_in_the_checkout_never_leads_a_restore_out_of_the_workspace(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    store = CacheStore(tmp_path / "store")
    first_ws = tmp_path / "ws1"
    (first_ws / "deps" / "x").mkdir(parents=True)
    (first_ws / "deps" / "x" / "pwned").write_text("* * * * * root id\n")
    first = caches(tmp_path / "j1", first_ws, store)
    first.restore()
    first.save(passed=True)
    assert first.results[0].saved

    second_ws = tmp_path / "ws2"
    (second_ws / "deps").mkdir(parents=True)
    long_link_chain(second_ws / "deps", outside)
    second = caches(tmp_path / "j2", second_ws, store)
    second.restore()
    assert list(outside.iterdir()) == []
    # The cache's content replaced what the checkout had there, links and all.
    assert second.results[0].hit is CacheHit.hit
    assert (second_ws / "deps" / "x" / "pwned").read_text() == "* * * * * root id\n"
    assert not (second_ws / "deps" / "x").is_symlink()


def test_an_archive_writing_through_its_own_links_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    destination = tmp_path / "restored"
    destination.mkdir()
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        # Each member is created through the links before it: every path stays short.
        component, last, here = "d" * 240, "l" * 230, ""
        for step in STEPS:
            tar.addfile(member_of(here + component, tarfile.DIRTYPE))
            tar.addfile(member_of(here + step, tarfile.SYMTYPE, component))
            here += step + "/"
        tar.addfile(member_of(here + last, tarfile.SYMTYPE, "../" * len(STEPS)))
        ups = len(str(destination).strip("/").split("/"))
        link = "/".join(STEPS) + "/" + last + "/" + "../" * ups + str(outside).lstrip("/")
        tar.addfile(member_of("x", tarfile.SYMTYPE, link))
        payload = b"owned\n"
        member = tarfile.TarInfo("x/pwned")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    with pytest.raises(ArchiveError):
        unpack(archive, destination)
    assert list(outside.iterdir()) == []


def test_a_link_to_anywhere_is_restored_as_a_link(tmp_path: Path) -> None:
    source = tmp_path / "venv"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "python").symlink_to("/usr/bin/python3")
    archive = tmp_path / "venv.tar"
    from runner.caches.archives import pack

    pack(source, archive)
    destination = tmp_path / "restored"
    destination.mkdir()
    unpack(archive, destination)
    assert os.readlink(destination / "bin" / "python") == "/usr/bin/python3"


def test_a_dot_dot_after_a_link_is_resolved_after_the_link(tmp_path: Path) -> None:
    from runner.caches.archives import inside

    workspace = tmp_path / "ws"
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    workspace.mkdir()
    (workspace / "link").symlink_to(tmp_path / "elsewhere" / "deep")
    assert not inside(workspace / "link" / ".." / "x", workspace)
    assert not inside(workspace / "link" / ".." / "missing" / "y", workspace)
    assert inside(workspace / "missing" / "y", workspace)
