"""The janitor: what a runner killed outright (SIGKILL, OOM killer, a crash) leaves running is
stopped at once, even if that runner never starts again.

Design. Right after registering, the runner starts ``python -m runner.janitor`` in a session of
its own, with its identity, and holds the write end of a pipe that is the janitor's stdin. The
janitor only reads. Whatever ends the runner process, the kernel closes that pipe, and the janitor
reads EOF: it then takes the runner directory's lock (``runner.dir_lock``), which the runner held
for its whole life, and with it removes every container and network labelled with the runner's
identity (the Docker executor), or kills every process of the runner's step users (the local
executor), then releases the lock and exits.

- Why a process apart, in its own session: a signal sent to the runner's process group (Ctrl-C in
  a terminal, a supervisor stopping the group) must not end the janitor with the runner; and
  nothing inside the dead process can act after SIGKILL.
- Why the lock: the identity is the same for every process of a runner. A runner started again
  takes the lock before it sweeps and claims, and holds it while it runs jobs; a janitor that
  cannot get the lock within a short grace (the dying runner closing its files) leaves the
  directory to that runner, which sweeps for itself at start. A janitor holding the lock makes a
  new runner wait until it is done, instead of refusing to start. So a janitor never touches the
  containers of a live runner process.
- A runner that exits cleanly (drained or stopped) has torn everything down already; its janitor
  sweeps, finds nothing, and exits. A janitor killed in turn changes nothing for correctness: the
  next start of the runner sweeps what carries its identity.
- Not covered: a runner whose whole machine or container dies (a janitor in the same container
  dies with it). Its next start sweeps; until then the server's lease has closed its jobs.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from runner import dir_lock
from runner.executors.step_user import StepUser

log = logging.getLogger("runner.janitor")

# How long the janitor waits for the dying runner's lock before it concludes that a new process of
# the runner holds it (and sweeps for itself).
LOCK_GRACE_SECONDS = 5.0


def start_janitor(
    runner_dir: Path, identity: str, executor: str, step_users: Sequence[StepUser] = ()
) -> subprocess.Popen[bytes]:
    """Start the janitor of this runner process. Keep the returned process referenced for the
    runner's life: its stdin is the pipe whose end tells the janitor that the runner is gone."""
    argv = [sys.executable, "-m", "runner.janitor", str(runner_dir), identity, "--executor", executor]
    argv += [f"--step-user={user.uid}:{user.gid}" for user in step_users]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, start_new_session=True, close_fds=True)


def clean_up_after(runner_dir: Path, identity: str, executor: str, step_users: Sequence[StepUser]) -> bool:
    """Once the runner is gone: remove what carries ``identity`` (or end the step users'
    processes), if no newer process of the runner holds its directory. Whether it cleaned up."""
    try:
        lock = dir_lock.take(runner_dir, dir_lock.JANITOR, wait_seconds=LOCK_GRACE_SECONDS)
    except OSError as error:  # the directory was removed: whether a newer process runs is unknown
        log.error(
            "runner %s is gone, but its directory cannot be locked (%s): nothing removed", identity, error
        )
        return False
    if lock is None:
        log.info("a newer process of runner %s holds %s; it cleans up for itself", identity, runner_dir)
        return False
    try:
        if executor == "docker":
            from runner.executors.docker_engine import sweep_orphans

            if sweep_orphans(identity):
                log.warning("runner %s is gone: none of its containers or networks is left", identity)
            else:
                log.error("runner %s is gone: some of its containers or networks are left", identity)
        for user in step_users:
            from runner.executors.step_processes import end_processes_of

            if left := end_processes_of(user):
                log.error("runner %s is gone: processes of uid %d still run: %s", identity, user.uid, left)
    finally:
        lock.close()
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.janitor", description=__doc__.split("\n")[0])
    parser.add_argument("runner_dir", type=Path)
    parser.add_argument("identity")
    parser.add_argument("--executor", choices=("docker", "local"), default="docker")
    parser.add_argument("--step-user", type=_uid_gid, action="append", default=[], metavar="UID:GID")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s janitor: %(message)s")
    # Blocks until the runner process is gone: it never writes, and only its end closes the pipe.
    while sys.stdin.buffer.read(65536):
        pass
    clean_up_after(args.runner_dir, args.identity, args.executor, args.step_user)


def _uid_gid(value: str) -> StepUser:
    uid, _, gid = value.partition(":")
    return StepUser(uid, int(uid), int(gid))


if __name__ == "__main__":
    main()
