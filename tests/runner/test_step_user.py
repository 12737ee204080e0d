"""The local executor's step user: never root, never the owner of the runner's or the server's
directories, and a runner refuses to start with one that is."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import worker
from runner.config import RunnerSettings
from runner.executors.step_user import step_user, step_user_problem

NOBODY = step_user("nobody")


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="greenlight-step-user-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def settings(runner_dir: Path, **more: object) -> RunnerSettings:
    return RunnerSettings(
        broker_url="memory://", runner_token="t", runner_dir=runner_dir, runner_executor="local", **more
    )  # type: ignore[arg-type]


def test_nobody_may_run_steps_from_a_runner_directory_it_can_pass_through(base: Path) -> None:
    assert step_user_problem(NOBODY, base / "runner", None) is None
    assert worker.local_step_user(settings(base / "runner")) == NOBODY


def test_root_is_refused(base: Path) -> None:
    with pytest.raises(SystemExit, match="which is root"):
        worker.local_step_user(settings(base / "runner", runner_run_as="root"))


def test_a_user_that_does_not_exist_is_refused(base: Path) -> None:
    with pytest.raises(SystemExit, match="there is no user 'no-such-user-here'"):
        worker.local_step_user(settings(base / "runner", runner_run_as="no-such-user-here"))


@pytest.mark.parametrize("owned", ["runner", "data"])
def test_the_owner_of_the_runner_or_data_directory_is_refused(base: Path, owned: str) -> None:
    for name in ("runner", "data"):
        (base / name).mkdir()
    os.chown(base / owned, NOBODY.uid, NOBODY.gid)
    with pytest.raises(SystemExit, match=f"nobody owns the {owned} directory"):
        worker.local_step_user(settings(base / "runner", data_dir=base / "data"))


def test_a_runner_directory_inside_a_closed_data_directory_is_refused(base: Path) -> None:
    data = base / "data"
    data.mkdir(mode=0o700)
    with pytest.raises(SystemExit, match=r"nobody cannot reach .* outside the data directory"):
        worker.local_step_user(settings(data / "runner", data_dir=data))
