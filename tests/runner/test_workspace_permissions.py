"""A job's workspace and the runner's directory: nobody else on the machine may write into a
checkout (or read a mirror of private code) between the fetch and the steps."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.config import RunnerSettings
from runner.worker import prepare_runner_dir
from runner.workspace import prepare_workspace
from tests.runner import specs
from tests.support import services


@pytest.fixture
def runner_umask() -> Iterator[None]:
    """``prepare_runner_dir`` sets the process's umask, as the runner process does: put it back."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_a_job_workspace_is_not_world_writable_and_the_runner_dir_is_closed(
    tmp_path: Path, runner_umask: None
) -> None:
    sha = services.make_git_repo(tmp_path / "origin", {"README": "hi\n", "src/app.py": "print(1)\n"})
    settings = RunnerSettings(broker_url="memory://", runner_token="t", runner_dir=tmp_path / "runner")
    prepare_runner_dir(settings)
    job = specs.make_job().model_copy(update={"clone_url": str(tmp_path / "origin"), "commit_sha": sha})
    workspace = prepare_workspace(job, settings.runner_dir)

    assert stat.S_IMODE(settings.runner_dir.stat().st_mode) == 0o700
    modes = {path: stat.S_IMODE(path.lstat().st_mode) for path in [workspace, *workspace.rglob("*")]}
    assert not [path for path, mode in modes.items() if mode & 0o022], modes  # no one else writes
    # A step container may run as any user: it reads the checkout (the runner dir keeps others out).
    assert modes[workspace] == 0o755 and modes[workspace / "src" / "app.py"] & 0o004
    for mirror_path in (settings.runner_dir / "mirrors").rglob("*"):
        assert not stat.S_IMODE(mirror_path.lstat().st_mode) & 0o077, mirror_path
