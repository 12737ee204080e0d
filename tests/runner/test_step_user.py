"""The local executor's step user: never root, never the owner of the runner's or the server's
directories, and a runner refuses to start with one that is."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import worker
from runner.config import RunnerSettings
from runner.executors.step_user import scheduler_problem, step_user, step_user_problem

NOBODY = step_user("nobody")


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="greenlight-step-user-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def settings(runner_dir: Path, **more: object) -> RunnerSettings:
    more.setdefault("runner_run_as", "nobody")
    return RunnerSettings(
        broker_url="memory://", runner_token="t", runner_dir=runner_dir, runner_executor="local", **more
    )  # type: ignore[arg-type]


def test_nobody_may_run_steps_from_a_runner_directory_it_can_pass_through(base: Path) -> None:
    assert step_user_problem(NOBODY, base / "runner", None) is None
    assert worker.local_step_users(settings(base / "runner")).users == (NOBODY,)


def test_root_is_refused(base: Path) -> None:
    with pytest.raises(SystemExit, match="which is root"):
        worker.local_step_users(settings(base / "runner", runner_run_as="root"))


def test_a_user_whose_group_passes_through_the_data_directory_is_refused(base: Path) -> None:
    """Started as root, `greenlight up` lets PostgreSQL's own user through the data directory by
    its group (0710) to its cluster: steps run as that user would reach every row of the server."""
    for name in ("runner", "data"):
        (base / name).mkdir()
    os.chown(base / "data", 0, NOBODY.gid)
    (base / "data").chmod(0o710)
    with pytest.raises(SystemExit, match="nobody's group may pass through the data directory"):
        worker.local_step_users(settings(base / "runner", data_dir=base / "data"))


def test_a_user_that_does_not_exist_is_refused(base: Path) -> None:
    with pytest.raises(SystemExit, match="there is no user 'no-such-user-here'"):
        worker.local_step_users(settings(base / "runner", runner_run_as="no-such-user-here"))


@pytest.mark.parametrize("owned", ["runner", "data"])
def test_the_owner_of_the_runner_or_data_directory_is_refused(base: Path, owned: str) -> None:
    for name in ("runner", "data"):
        (base / name).mkdir()
    os.chown(base / owned, NOBODY.uid, NOBODY.gid)
    with pytest.raises(SystemExit, match=f"nobody owns the {owned} directory"):
        worker.local_step_users(settings(base / "runner", data_dir=base / "data"))


def test_a_runner_directory_inside_a_closed_data_directory_is_refused(base: Path) -> None:
    data = base / "data"
    data.mkdir(mode=0o700)
    with pytest.raises(SystemExit, match=r"nobody cannot reach .* outside the data directory"):
        worker.local_step_users(settings(data / "runner", data_dir=data))


def test_the_default_step_user_is_a_dedicated_one_that_must_be_created(base: Path) -> None:
    # Not nobody: other daemons run as it, and every process of the step user is killed after
    # each step (and could read theirs, and they a step's secrets).
    settings_ = RunnerSettings(
        broker_url="memory://", runner_token="t", runner_dir=base / "runner", runner_executor="local"
    )  # type: ignore[call-arg]
    assert settings_.runner_run_as == "greenlight-step"
    with pytest.raises(SystemExit, match=r"there is no user 'greenlight-step'.*useradd --system"):
        worker.local_step_users(settings_)


def test_a_step_user_that_other_programs_run_as_is_refused(base: Path) -> None:
    other = subprocess.Popen(["sleep", "60"], user=NOBODY.uid, group=NOBODY.gid, extra_groups=[])
    try:
        with pytest.raises(SystemExit, match=rf"nobody already runs processes \(.*{other.pid}.*\)"):
            worker.local_step_users(settings(base / "runner"))
    finally:
        other.kill()
        other.wait()


def test_each_job_a_runner_runs_at_once_needs_a_step_user_of_its_own(base: Path) -> None:
    with pytest.raises(SystemExit, match="--concurrency 2 needs 2 step users"):
        worker.local_step_users(settings(base / "runner", runner_concurrency=2))
    with pytest.raises(SystemExit, match="nobody is named twice"):
        worker.local_step_users(
            settings(base / "runner", runner_concurrency=2, runner_run_as="nobody,nobody")
        )
    games = step_user("games")
    users = worker.local_step_users(
        settings(base / "runner", runner_concurrency=2, runner_run_as="nobody, games")
    )
    assert users.users == (NOBODY, games)


@pytest.fixture
def tools(base: Path) -> Path:
    """A directory for scheduler programs: only their presence matters, they are never run."""
    path = base / "bin"
    path.mkdir()
    return path


def install(tools: Path, name: str) -> None:
    (tools / name).write_text("#!/bin/sh\nexit 1\n")
    (tools / name).chmod(0o755)


@pytest.mark.parametrize(
    ("tool", "files", "refused"),
    [
        ("crontab", {}, "nobody may schedule commands with crontab"),  # cron's default: everyone
        ("crontab", {"cron.deny": "daemon\nnobody\n"}, None),
        ("crontab", {"cron.allow": "root\n", "cron.deny": ""}, None),
        ("crontab", {"cron.allow": "nobody\n"}, "nobody may schedule commands with crontab"),
        ("at", {}, None),  # at's default: root alone
        ("at", {"at.deny": "daemon\n"}, "nobody may schedule commands with at"),
        ("at", {"at.deny": "nobody\n"}, None),
    ],
)
def test_a_step_user_that_may_schedule_commands_for_later_is_refused(
    base: Path, tools: Path, tool: str, files: dict[str, str], refused: str | None
) -> None:
    # A cron or at job of the step user runs after the job's processes were killed, as that
    # user: it could read a later job's environment.
    etc = base / "etc"
    etc.mkdir()
    for name, text in files.items():
        (etc / name).write_text(text)
    assert scheduler_problem(NOBODY, etc, str(tools)) is None  # not installed: nothing to deny
    install(tools, tool)
    problem = scheduler_problem(NOBODY, etc, str(tools))
    assert (problem is None) if refused is None else (refused in (problem or "") and "deny" in problem)
