"""Collecting workspace files by glob: what matches, and what a step cannot make the runner read."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from contract.workspace_globs import WorkspaceGlobError, check_workspace_glob
from runner.collect import CollectError, collect, create_in_workspace, open_collected

LIMITS = {"max_files": 100, "max_bytes": 1_000_000}


def _write(root: Path, path: str, data: bytes = b"x") -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)


def _paths(workspace: Path, *patterns: str, **limits: int) -> list[str]:
    return [each.path for each in collect(workspace, list(patterns), **{**LIMITS, **limits}).files]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    return root


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the workspace that a step would like the runner to read (its token)."""
    path = tmp_path / "runner-token"
    path.write_text("the runner's token")
    return path


def test_globs_match_files_and_a_directory_takes_every_file_under_it(workspace: Path) -> None:
    for path in ["dist/a.whl", "dist/sub/b.whl", "dist/notes.txt", "src/x.py", "junit.xml", "t/junit-2.xml"]:
        _write(workspace, path)
    assert _paths(workspace, "dist/**/*.whl") == ["dist/a.whl", "dist/sub/b.whl"]
    assert _paths(workspace, "dist/") == ["dist/a.whl", "dist/notes.txt", "dist/sub/b.whl"]
    assert _paths(workspace, "**/junit*.xml") == ["junit.xml", "t/junit-2.xml"]
    assert _paths(workspace, "./src/*.py", "{junit.xml,nothing}") == ["junit.xml", "src/x.py"]
    assert _paths(workspace, "missing/**") == []


def test_wildcards_skip_hidden_names_unless_the_glob_spells_the_dot(workspace: Path) -> None:
    _write(workspace, ".git/config")
    _write(workspace, ".coverage")
    _write(workspace, "a.txt")
    assert _paths(workspace, "**") == ["a.txt"]
    assert _paths(workspace, ".coverage") == [".coverage"]


def test_a_symlink_to_a_file_outside_the_workspace_is_skipped_and_named(
    workspace: Path, secret: Path
) -> None:
    _write(workspace, "out/real.txt")
    os.symlink(secret, workspace / "out" / "x")
    collection = collect(workspace, ["out/*"], **LIMITS)
    assert [each.path for each in collection.files] == ["out/real.txt"]
    assert collection.skipped == ["out/x: a symlink, not followed"]


def test_a_symlinked_directory_is_never_entered(workspace: Path, secret: Path) -> None:
    os.symlink(secret.parent, workspace / "out")
    os.symlink(secret.parent, workspace / "deep")
    _write(workspace, "real/file")
    os.symlink(secret.parent, workspace / "real" / "link")
    assert _paths(workspace, "out/**") == []  # the walk's start is the symlink
    assert _paths(workspace, "deep/runner-token") == []
    assert _paths(workspace, "**") == ["real/file"]
    assert _paths(workspace, "real/link/runner-token") == []


def test_a_symlink_to_a_file_inside_the_workspace_is_skipped_too(workspace: Path) -> None:
    _write(workspace, "a.txt")
    os.symlink("a.txt", workspace / "b.txt")
    assert _paths(workspace, "*.txt") == ["a.txt"]


def test_a_fifo_is_skipped_without_hanging(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    collection = collect(workspace, ["*"], **LIMITS)
    assert collection.files == []
    assert collection.skipped == ["pipe: not a regular file"]


def test_opening_refuses_a_file_swapped_for_a_symlink_after_the_walk(workspace: Path, secret: Path) -> None:
    _write(workspace, "out/report.xml", b"<ok/>")
    _write(workspace, "dir/report.xml", b"<ok/>")
    [first, second] = collect(workspace, ["*/report.xml"], **LIMITS).files
    (workspace / "dir" / "report.xml").unlink()
    os.symlink(secret, workspace / "dir" / "report.xml")
    os.rename(workspace / "out", workspace / "gone")
    os.symlink(secret.parent, workspace / "out")
    with pytest.raises(CollectError, match=r"dir/report\.xml"):
        open_collected(workspace, first.path)
    with pytest.raises(CollectError, match=r"out/report\.xml"):
        open_collected(workspace, second.path)


def test_opening_reads_a_regular_file(workspace: Path) -> None:
    _write(workspace, "a/b.txt", b"contents")
    with open_collected(workspace, "a/b.txt") as file:
        assert file.read() == b"contents"
    with pytest.raises(CollectError):
        open_collected(workspace, "../workspace/a/b.txt")


@pytest.mark.parametrize(
    "pattern", ["/etc/shadow", "~/.ssh/id_rsa", "../x", "a/../../x", "{..,a}/x", "", "./"]
)
def test_globs_that_could_leave_the_workspace_are_refused(workspace: Path, pattern: str) -> None:
    with pytest.raises(WorkspaceGlobError):
        check_workspace_glob(pattern)
    with pytest.raises(WorkspaceGlobError):
        collect(workspace, [pattern], **LIMITS)


def test_braces_that_expand_too_far_are_refused() -> None:
    with pytest.raises(WorkspaceGlobError, match="expands to more than"):
        check_workspace_glob("{1..5000}.txt")


def test_more_files_than_the_limit_is_an_error_that_says_so(workspace: Path) -> None:
    for index in range(4):
        _write(workspace, f"f{index}")
    assert len(_paths(workspace, "*", max_files=4)) == 4
    with pytest.raises(CollectError, match="more than 3 files match; the limit is 3"):
        collect(workspace, ["*"], max_files=3, max_bytes=1000)


def test_more_bytes_than_the_limit_is_an_error_that_says_so(workspace: Path) -> None:
    _write(workspace, "a", b"x" * 600)
    _write(workspace, "b", b"x" * 600)
    assert collect(workspace, ["a"], max_files=10, max_bytes=1000).total_bytes == 600
    with pytest.raises(CollectError, match="more than 1,000 bytes"):
        collect(workspace, ["*"], max_files=10, max_bytes=1000)


def test_a_walk_past_the_entry_cap_is_an_error_that_names_the_cap(workspace: Path) -> None:
    """Entries that match nothing count too: a step can leave a tree far larger than any limit on
    the files kept, and the walk must stop before it costs the runner its memory."""
    (workspace / "reports").mkdir()
    _write(workspace, "reports/junit.xml")
    for index in range(49):
        (workspace / "reports" / f"empty-{index}").touch()
    assert _paths(workspace, "**/junit.xml", max_entries=51) == ["reports/junit.xml"]  # 50 + reports/
    with pytest.raises(CollectError, match=r"more than 50 entries.*the limit is 50"):
        collect(workspace, ["**/junit.xml"], **LIMITS, max_entries=50)
    with pytest.raises(CollectError, match="the limit is 50"):  # whatever the glob's start
        collect(workspace, ["reports/*.xml"], **LIMITS, max_entries=50)


def test_the_walk_does_not_hold_a_directorys_listing_or_every_path_it_saw(workspace: Path) -> None:
    for index in range(20_000):
        (workspace / f"empty-{index:05}").touch()
    tracemalloc.start()
    try:
        assert _paths(workspace, "**/junit.xml") == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak:,} bytes held while walking 20,000 entries"


def test_writing_into_the_workspace_makes_directories_and_reads_back(workspace: Path) -> None:
    with create_in_workspace(workspace, "dist/sub/app.txt") as file:
        file.write(b"built")
        file.seek(0)
        assert file.read() == b"built"
    assert (workspace / "dist" / "sub" / "app.txt").read_bytes() == b"built"


def test_writing_never_goes_through_a_checked_out_symlink(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, workspace / "dist")
    os.symlink(outside / "target", workspace / "file")
    with pytest.raises(CollectError, match="dist"):
        create_in_workspace(workspace, "dist/app.txt")
    with pytest.raises(CollectError, match="file"):
        create_in_workspace(workspace, "file")
    assert list(outside.iterdir()) == []
