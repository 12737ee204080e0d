"""LocalExecutor: real /bin/sh processes, run as an unprivileged user, in a temporary workspace."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.spec import JobSpec, LogLine, ServiceSpec, StepOutcome, StepSpec
from runner.executors.base import ExecutorError, StepResult
from runner.executors.lines import MAX_LINE_CHARS
from runner.executors.local import STEP_PATH, LocalExecutor
from runner.executors.step_processes import processes_of
from runner.executors.step_user import StepUser, StepUsers
from tests.runner import specs
from tests.runner.specs import MiB


def unused_uid() -> int:
    """A uid of no account, and one per test process: every process of the step user is killed
    when a step ends, so two test runs at once (or a real user) must not share it."""
    uid = 61000 + os.getpid() % 3000
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if not processes_of(uid):
                return uid
        uid += 1


# The tests run as root; steps run as a user of their own, as a runner's should.
_UID = unused_uid()
STEP_USER = StepUser("greenlight-test-step", _UID, _UID)


def step_users() -> StepUsers:
    return StepUsers([STEP_USER])


def make_job(*, memory: int = 1024 * MiB, services: list[ServiceSpec] | None = None, **env: str) -> JobSpec:
    # RLIMIT_AS counts address space, not memory: the shell needs more room than a container does.
    job = specs.make_job(memory=memory, services=services, **env)
    return job.model_copy(update={"allow_host_runner": True})


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """The workspace: pytest's own temporary directories lie under a 0700 one the step user
    cannot pass through."""
    base = Path(tempfile.mkdtemp(prefix="greenlight-local-test-"))
    workspace = base / "workspace"
    workspace.mkdir()
    yield workspace
    shutil.rmtree(base)


class Lines(list[LogLine]):
    def __call__(self, line: LogLine) -> None:
        self.append(line)

    def of(self, stream: str) -> list[str]:
        return [line.text for line in self if line.stream == stream]


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(step_users())
    executor.setup(make_job(), tmp_path)
    yield executor
    executor.teardown()


def run(
    executor: LocalExecutor, step: StepSpec, cancel: threading.Event | None = None
) -> tuple[StepResult, Lines]:
    lines = Lines()
    return executor.run_step(step, lines, cancel or threading.Event()), lines


def is_alive(pid: int) -> bool:
    """Whether ``pid`` still runs 2 s from now: SIGKILL lands asynchronously, and a killed process
    may linger as a zombie until init reaps it."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return False
        if fields[0] == "Z":
            return False
        time.sleep(0.05)
    return True


def test_step_output_arrives_line_by_line_with_streams(executor: LocalExecutor) -> None:
    script = r"""echo one; echo two >&2; printf 'thr'; sleep 0.1; printf 'ee\r\n'; printf 'caf\303\251\n'
printf 'to stderr, no newline' >&2; printf 'tail'"""
    result, lines = run(executor, specs.make_step(script))
    assert result.outcome is StepOutcome.passed and result.exit_code == 0
    assert lines.of("stdout") == ["one", "three", "café", "tail"]
    assert lines.of("stderr") == ["two", "to stderr, no newline"]


def test_endless_line_is_split_not_buffered_forever(executor: LocalExecutor) -> None:
    _, lines = run(executor, specs.make_step(f"head -c {MAX_LINE_CHARS * 2 + 5} /dev/zero | tr '\\0' x"))
    assert [len(text) for text in lines.of("stdout")] == [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]


def test_failing_step_reports_exit_code(executor: LocalExecutor) -> None:
    result, _ = run(executor, specs.make_step("exit 3"))
    assert (result.outcome, result.exit_code, result.reason) == (StepOutcome.failed, 3, "exit code 3")


def test_script_stops_at_its_first_failing_command(executor: LocalExecutor) -> None:
    result, lines = run(executor, specs.make_step("echo before; false; echo after"))
    assert result.outcome is StepOutcome.failed
    assert lines.of("stdout") == ["before"]


def test_step_past_its_timeout_is_killed_with_its_children(executor: LocalExecutor, tmp_path: Path) -> None:
    began = time.monotonic()
    result, _ = run(executor, specs.make_step("sleep 60 & echo $! > child; sleep 60", timeout=1))
    assert (result.outcome, result.reason) == (StepOutcome.timed_out, "timed out after 1s")
    assert time.monotonic() - began < 5
    assert not is_alive(int((tmp_path / "child").read_text()))


def test_background_process_does_not_hold_a_finished_step_open(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    began = time.monotonic()
    result, _ = run(executor, specs.make_step("sleep 60 & echo $! > child; echo done"))
    assert result.outcome is StepOutcome.passed
    assert time.monotonic() - began < 5
    assert not is_alive(int((tmp_path / "child").read_text()))


def test_cancel_stops_a_running_step_within_seconds(executor: LocalExecutor) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    began = time.monotonic()
    result, _ = run(executor, specs.make_step("sleep 60"), cancel)
    assert (result.outcome, result.reason) == (StepOutcome.cancelled, "cancelled")
    assert time.monotonic() - began < 3


def alive_processes_of(uid: int) -> list[int]:
    """The processes of ``uid`` that still run 2 s from now (see ``is_alive``)."""
    deadline = time.monotonic() + 2
    while (alive := processes_of(uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


DAEMON = (
    # Leaves the step's session and process group, as a step that means to outlive its job would,
    # and reads every environment it can (a later deploy's secrets, were it run as this user).
    "setsid sh -c 'echo $$ > daemon; while :; do cat /proc/*/environ > /dev/null 2>&1; sleep 0.1; done' "
    "> /dev/null 2>&1 < /dev/null &\n"
    "while [ ! -s daemon ]; do sleep 0.05; done"
)


def test_a_process_that_leaves_the_steps_session_does_not_outlive_the_step(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    result, _ = run(executor, specs.make_step(DAEMON))
    assert result.outcome is StepOutcome.passed
    assert not is_alive(int((tmp_path / "daemon").read_text()))
    assert alive_processes_of(STEP_USER.uid) == []


@pytest.mark.parametrize("stop", ["timeout", "cancel"])
def test_a_process_that_leaves_the_steps_session_is_killed_on_timeout_and_cancel(
    executor: LocalExecutor, tmp_path: Path, stop: str
) -> None:
    cancel = threading.Event()
    if stop == "cancel":
        threading.Timer(1.0, cancel.set).start()
    result, _ = run(
        executor, specs.make_step(f"{DAEMON}; sleep 60", timeout=1 if stop == "timeout" else 60), cancel
    )
    assert result.outcome in (StepOutcome.timed_out, StepOutcome.cancelled)
    assert alive_processes_of(STEP_USER.uid) == []


def test_processes_that_keep_forking_into_new_sessions_are_all_ended(executor: LocalExecutor) -> None:
    # Every child starts a session of its own and forks again: no group, session or parent holds
    # them together, and new ones appear while the old ones are killed.
    spawner = "while :; do setsid sh -c 'sleep 600 & sleep 600' & sleep 0.01; done"
    script = f'setsid sh -c "{spawner}" > /dev/null 2>&1 < /dev/null & sleep 1'
    result, _ = run(executor, specs.make_step(script))
    assert result.outcome is StepOutcome.passed
    assert alive_processes_of(STEP_USER.uid) == []


def start_as_step_user() -> subprocess.Popen[bytes]:
    """A process of the step user that no step of this executor started."""
    return subprocess.Popen(
        ["/bin/sh", "-c", "exec sleep 60"], user=STEP_USER.uid, group=STEP_USER.gid, extra_groups=[],
        start_new_session=True,
    )  # fmt: skip


def test_no_process_of_the_step_user_survives_teardown_nor_runs_into_the_next_job(tmp_path: Path) -> None:
    executor = LocalExecutor(step_users())
    executor.setup(make_job(), tmp_path)
    leftover = start_as_step_user()
    executor.teardown()
    leftover.wait(5)
    assert alive_processes_of(STEP_USER.uid) == []

    earlier = start_as_step_user()
    executor.setup(make_job(), tmp_path)  # the next job: nothing of the step user runs beside it
    earlier.wait(5)
    assert alive_processes_of(STEP_USER.uid) == []
    executor.teardown()


def test_what_a_job_leaves_in_the_shared_temporary_directories_is_removed_after_it(tmp_path: Path) -> None:
    # The next job of the step user (maybe another repository's) must find none of it.
    name = f"greenlight-leftover-{secrets.token_hex(4)}"
    theirs = Path("/tmp") / f"{name}-root"
    theirs.write_text("not the step user's")
    executor = LocalExecutor(step_users())
    executor.setup(make_job(), tmp_path)
    script = (
        f"echo built > /tmp/{name}; mkdir -p /var/tmp/{name}/deep; echo x > /var/tmp/{name}/deep/file; "
        f"echo s > /dev/shm/{name}; ln -s /etc/passwd /tmp/{name}-link; "
        f"mkdir /tmp/{name}-closed; echo y > /tmp/{name}-closed/file; chmod 0 /tmp/{name}-closed"
    )
    result, lines = run(executor, specs.make_step(script))
    assert result.outcome is StepOutcome.passed, lines
    executor.teardown()
    try:
        places = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))
        left = [path for place in places for path in place.glob(f"{name}*")]
        assert left == [theirs]
        assert Path("/etc/passwd").is_file()  # the link went, not its target
    finally:
        theirs.unlink()


def test_each_running_job_has_a_step_user_of_its_own(tmp_path: Path) -> None:
    users = step_users()
    first = LocalExecutor(users)
    first.setup(make_job(), tmp_path)
    with pytest.raises(ExecutorError, match="every step user is busy"):
        LocalExecutor(users).setup(make_job(), tmp_path)
    first.teardown()
    second = LocalExecutor(users)
    second.setup(make_job(), tmp_path)  # the first job's user, free again
    second.teardown()


def test_step_over_memory_limit_fails(tmp_path: Path) -> None:
    executor = LocalExecutor(step_users())
    executor.setup(make_job(memory=128 * MiB), tmp_path)
    result, lines = run(executor, specs.make_step("python3 -c 'data = b\"x\" * (300 << 20)'"))
    assert result.outcome is StepOutcome.failed
    assert "MemoryError" in lines.of("stderr")


def test_steps_share_the_workspace_and_run_in_it(executor: LocalExecutor, tmp_path: Path) -> None:
    run(executor, specs.make_step("echo built > artifact.txt", index=0))
    result, lines = run(executor, specs.make_step('pwd; echo "$HOME"; cat artifact.txt', index=1))
    assert result.outcome is StepOutcome.passed
    assert lines.of("stdout") == [str(tmp_path), str(tmp_path), "built"]


def test_job_env_reaches_the_step_and_step_env_wins(tmp_path: Path) -> None:
    executor = LocalExecutor(step_users())
    executor.setup(make_job(APP_ENV="test", LEVEL="job"), tmp_path)
    _, lines = run(executor, specs.make_step('echo "$APP_ENV $LEVEL"', LEVEL="step"))
    assert lines.of("stdout") == ["test step"]


def test_runner_environment_does_not_leak_into_steps(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLIGHT_RUNNER_TOKEN", "do-not-leak")
    monkeypatch.setenv("PATH", f"/opt/runner-only:{os.environ['PATH']}")
    _, lines = run(
        executor, specs.make_step('echo "token=${GREENLIGHT_RUNNER_TOKEN:-unset}"; echo "$PATH"; env')
    )
    assert lines.of("stdout")[:2] == ["token=unset", STEP_PATH]
    names = {line.split("=", 1)[0] for line in lines.of("stdout")[2:]}
    assert names <= {"PATH", "HOME", "LANG", "USER", "LOGNAME", "PWD", "SHLVL", "_"}, names


def test_env_values_are_not_shell_expanded(tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{secrets.token_hex(4)}"
    executor = LocalExecutor(step_users())
    executor.setup(make_job(TITLE=f"$(touch {marker})"), tmp_path)
    result, lines = run(executor, specs.make_step('echo "$TITLE"', BRANCH="`id`;x"))
    assert result.outcome is StepOutcome.passed
    assert lines.of("stdout") == [f"$(touch {marker})"]
    assert not marker.exists()


def test_a_job_with_services_is_refused_with_the_reason(tmp_path: Path) -> None:
    job = make_job(services=[ServiceSpec(name="db", image="postgres:16")])
    with pytest.raises(
        ExecutorError, match=r"cannot start services \(db\); the job needs a runner with Docker"
    ):
        LocalExecutor(step_users()).setup(job, tmp_path)


def test_a_step_runs_as_the_step_user_and_cannot_read_the_data_directory(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    # What `greenlight up` keeps (0600 files in a 0700 directory), and a 0600 file anyone may reach.
    data = tmp_path.parent / "data"
    data.mkdir(mode=0o700)
    key = data / "secret.key"
    key.write_text("the key that decrypts every secret")
    key.chmod(0o600)
    reachable = tmp_path.parent / "runner.token"
    reachable.write_text("glr_token")
    reachable.chmod(0o600)
    result, lines = run(
        executor, specs.make_step(f"id -u; id -G; cat {key} || cat {reachable} || echo refused")
    )
    assert result.outcome is StepOutcome.passed
    uid, groups, verdict = lines.of("stdout")
    assert int(uid) not in (0, os.getuid(), data.stat().st_uid) and int(uid) == STEP_USER.uid
    assert groups.split() == [str(STEP_USER.gid)]  # no supplementary group, root's least of all
    assert verdict == "refused"
    assert sum("Permission denied" in line for line in lines.of("stderr")) == 2


def test_the_workspace_is_the_step_users_alone(executor: LocalExecutor, tmp_path: Path) -> None:
    run(executor, specs.make_step("mkdir -p build && echo x > build/out"))
    info = tmp_path.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (STEP_USER.uid, 0o700)
    assert (tmp_path / "build" / "out").stat().st_uid == STEP_USER.uid


def test_a_symlink_in_the_checkout_does_not_hand_its_target_to_the_step_user(tmp_path: Path) -> None:
    target = tmp_path.parent / "runner-owned"
    target.write_text("x")
    target.chmod(0o600)
    (tmp_path / "link").symlink_to(target)
    LocalExecutor(step_users()).setup(make_job(), tmp_path)
    assert target.stat().st_uid == 0


@pytest.mark.parametrize(
    ("update", "refusal"),
    [
        ({"from_fork": True}, "a fork's pull request never runs as host processes"),
        ({"allow_host_runner": False}, "acme/widgets does not allow host-process runners"),
        ({"environment": "production"}, "a deploy .production. never runs as host processes"),
    ],
)
def test_a_fork_build_a_deploy_or_a_repository_that_did_not_opt_in_is_refused_before_anything_runs(
    tmp_path: Path, update: dict[str, object], refusal: str
) -> None:
    marker = tmp_path / "checked-out"
    marker.write_text("x")
    with pytest.raises(ExecutorError, match=refusal):
        LocalExecutor(step_users()).setup(make_job().model_copy(update=update), tmp_path)
    assert marker.stat().st_uid == 0  # not even handed over
