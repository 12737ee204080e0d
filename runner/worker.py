"""`greenlight runner`: a Celery worker whose queues are its labels and whose task wakes the agent."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO

from celery import Celery, signals
from celery.exceptions import Reject

from contract.broker import tolerate_restore_on_closed_connection
from contract.spec import JOB_AVAILABLE_TASK, broker_transport_options, label_queue
from runner import dir_lock
from runner.agent import RunnerAgent
from runner.config import RunnerSettings
from runner.executors.base import Executor
from runner.executors.step_processes import none_running, processes_of
from runner.executors.step_user import StepUser, StepUsers, scheduler_problem, step_user, step_user_problem
from runner.hygiene import DiskHygiene
from runner.identity import RunnerIdentity, machine_id
from runner.images import RunnerImages
from runner.janitor import start_janitor

logger = logging.getLogger(__name__)

# How long a runner that cannot claim holds a wake-up before it gives it back to its queue.
GIVE_BACK_PAUSE_SECONDS = 1.0


def local_step_users(settings: RunnerSettings) -> StepUsers:
    """The users the local executor runs steps as, one per job it runs at once, once each is known
    to be a safe one; else exit. Every process of a job's user is killed when its steps end: a
    user another job (or any other program) runs as would lose its processes, and could read the
    job's environment while it runs."""
    names = [name.strip() for name in settings.runner_run_as.split(",") if name.strip()]
    users: list[StepUser] = []
    for name in names:
        try:
            user = step_user(name)
        except ValueError as error:
            raise SystemExit(
                f"--run-as: {error}: create a user for steps alone, e.g. `useradd --system --no-create-home "
                f"--shell /usr/sbin/nologin {name}` (see README, 'Runners without Docker')"
            ) from None
        if user in users:
            raise SystemExit(
                f"--run-as: {user.name} is named twice: each job that runs at once needs a user of its own"
            )
        if problem := step_user_problem(user, settings.runner_dir, settings.data_dir) or scheduler_problem(
            user
        ):
            raise SystemExit(f"the local executor will not start: {problem}")
        if others := processes_of(user.uid):
            raise SystemExit(
                f"the local executor will not start: {user.name} already runs processes "
                f"({', '.join(map(str, others[:10]))}); "
                "steps run as it could read their environment and would have them killed: give steps a "
                "user of their own (see README, 'Runners without Docker')"
            )
        users.append(user)
    if len(users) < settings.runner_concurrency:
        raise SystemExit(
            f"--concurrency {settings.runner_concurrency} needs {settings.runner_concurrency} step users "
            f"(--run-as {','.join(names)} names {len(users)}): each job that runs at once has one of its own"
        )
    banner = "!" * 78
    print(
        f"{banner}\n! Steps run as HOST PROCESSES (user {', '.join(user.name for user in users)}), without\n"
        f"! container isolation, for repositories that allow it (greenlight repo set --allow-host-runner),\n"
        f"! never for pull requests from forks, never for deploys.\n{banner}",
        file=sys.stderr,
    )
    return StepUsers(users)


# What `greenlight up` named its runner before each install's runner had a name of its own.
EMBEDDED_RUNNER_OLD_NAME = "embedded"


def legacy_runner_names(settings: RunnerSettings) -> list[str]:
    """The names under which older versions may have left this runner's containers (labelled with
    the name alone): the start-up log names them, and never removes them."""
    names = [settings.runner_name]
    if settings.embedded and EMBEDDED_RUNNER_OLD_NAME not in names:
        names.append(EMBEDDED_RUNNER_OLD_NAME)
    return names


def make_runner_celery(settings: RunnerSettings, agent: RunnerAgent) -> Celery:
    tolerate_restore_on_closed_connection()
    celery = Celery("greenlight-runner", broker=settings.broker_url)
    celery.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings.broker_url),
        worker_hijack_root_logger=False,
        # Nothing of Greenlight's uses Celery's remote control: off, no process listens for
        # broadcast commands that anyone holding the broker's password could send.
        worker_enable_remote_control=False,
    )

    @celery.task(name=JOB_AVAILABLE_TASK, shared=False, ignore_result=True)
    def job_available(job_id: int | None = None) -> None:
        if not agent.wake():
            # Back to the end of the queue, for a runner of these labels that can claim: used up
            # here, the job would wait for the reconciler's next announcement. The pause keeps a
            # runner alone on its queues from spinning on it.
            time.sleep(GIVE_BACK_PAUSE_SECONDS)
            raise Reject("this runner cannot claim now", requeue=True)

    @signals.worker_ready.connect(weak=False)
    def _register(**_: object) -> None:
        agent.start()
        _cancel_on_quit(agent)

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(how: str = "Warm", **_: object) -> None:
        # SIGTERM (warm): drain — running jobs finish, nothing new is claimed.
        if how == "Warm":
            agent.drain()
        else:
            agent.stop()

    @signals.worker_shutdown.connect(weak=False)
    def _shut_down(**_: object) -> None:
        # The last jobs have ended (or end now): the server shows this runner stopped, not lost.
        agent.report_stopped()

    return celery


def _cancel_on_quit(agent: RunnerAgent) -> None:
    """SIGQUIT and SIGINT (Ctrl-C) cancel running jobs, then shut down like SIGTERM does, so that
    the worker waits while each job kills and removes its containers and reports "cancelled".
    (Celery's own cold shutdown cannot stop thread-pool tasks, and would leave containers.)"""
    if threading.current_thread() is not threading.main_thread():
        logger.warning("cannot install the SIGQUIT handler outside the main thread")
        return
    warm_shutdown = signal.getsignal(signal.SIGTERM)

    def cancel_then_stop(signum: int, frame: FrameType | None) -> None:
        agent.stop()
        if callable(warm_shutdown):
            warm_shutdown(signum, frame)

    signal.signal(signal.SIGQUIT, cancel_then_stop)
    signal.signal(signal.SIGINT, cancel_then_stop)


_dir_lock: IO[str] | None = None
# The janitor of this process: its stdin is a pipe that closes when this process ends.
_janitor: subprocess.Popen[bytes] | None = None
# How long a runner waits for the janitor of its dead predecessor to finish cleaning up.
JANITOR_WAIT_SECONDS = 60.0


def _claim_runner_dir(settings: RunnerSettings) -> None:
    """One runner process per directory: at start a runner wipes its workspaces and sweeps the
    containers of its identity, which would destroy the live work of a second process sharing
    them. The janitor of a dead predecessor may hold the directory for a moment: wait for it."""
    global _dir_lock
    lock = dir_lock.take(settings.runner_dir, dir_lock.RUNNER)
    if lock is None and dir_lock.live_runner_holds(settings.runner_dir) is None:
        logger.info("waiting for the clean-up after an earlier process of this runner")
        lock = dir_lock.take(settings.runner_dir, dir_lock.RUNNER, wait_seconds=JANITOR_WAIT_SECONDS)
    if lock is None:
        raise SystemExit(
            f"another runner process already uses {settings.runner_dir}: give each runner process its own "
            "GREENLIGHT_RUNNER_DIR and --name"
        )
    _dir_lock = lock


def _docker_client() -> object:
    import docker

    return docker.from_env()


def prepare_runner_dir(settings: RunnerSettings) -> None:
    """The runner's directory and all it creates are its own (0700 directories, 0600 files): it
    holds mirrors of private code and the image ledger. A local executor's step user may pass
    through it (0711) to the one workspace it is handed, and read nothing else."""
    os.umask(0o077)
    settings.runner_dir.mkdir(parents=True, exist_ok=True)
    settings.runner_dir.chmod(0o711 if settings.runner_executor == "local" else 0o700)


def run_runner(settings: RunnerSettings) -> None:
    executor_name = settings.runner_executor
    availability: Callable[[], str | None] | None = None
    sweep = None
    place: Callable[[], str | None] = machine_id
    janitor_kills: list[StepUser] = []
    prepare_runner_dir(settings)
    # First: a janitor still ending the processes of a dead predecessor's step users must be done
    # before the local executor checks that they run nothing.
    _claim_runner_dir(settings)
    identity = RunnerIdentity(settings.runner_dir)
    images = RunnerImages(settings.runner_dir / "pulled-images.json")
    if executor_name == "local":
        from runner.executors.local import LocalExecutor

        step_users = local_step_users(settings)
        janitor_kills = list(step_users.users)

        def make_executor() -> Executor:
            return LocalExecutor(step_users)

        def sweep(of: str) -> bool:
            # Steps here are the step users' processes (checked above to be none, which without
            # /proc proves nothing): an earlier process's jobs are over only if none runs.
            return none_running(step_users.users)
    else:
        from runner.executors.docker import DockerExecutor
        from runner.executors.docker_engine import engine_id, engine_problem, sweep_orphans

        def make_executor() -> Executor:
            # Jobs are claimed only once registered, by when the identity is the server's.
            assert identity.current is not None
            return DockerExecutor(
                runner_name=settings.runner_name,
                identity=identity.current,
                pull=settings.runner_pull,
                images=images,
            )

        def sweep(of: str) -> bool:
            return sweep_orphans(of, legacy_names=legacy_runner_names(settings))

        availability = engine_problem
        place = engine_id

    def watch(registered_as: str) -> None:
        global _janitor
        _janitor = start_janitor(settings.runner_dir, registered_as, executor_name, janitor_kills)

    agent = RunnerAgent(
        settings,
        make_executor,
        executor_name,
        sweep,
        availability=availability,
        identity=identity,
        after_registering=watch,
        place=place,
    )
    if settings.runner_min_free_disk > 0:
        agent.hygiene = DiskHygiene(
            settings.runner_dir,
            lambda: identity.current,
            settings.runner_min_free_disk,
            agent.running_jobs,
            images,
            docker_client=_docker_client if executor_name == "docker" else None,
        )
    celery = make_runner_celery(settings, agent)
    queues = ",".join(label_queue(label) for label in settings.runner_labels)
    celery.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.runner_concurrency}",
            f"--queues={queues}",
            f"--hostname=runner-{settings.runner_name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
        ]
    )
