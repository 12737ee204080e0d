"""Removing what a step user left in the directories every user may write to. A job's workspace
goes with the job; these would otherwise carry one job's files (build output, a planted program,
a FIFO) to the next job of the same step user, maybe another repository's."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from runner.executors.step_user import StepUser

log = logging.getLogger(__name__)

# Not temporary files of ours: the places every user may write to, cleared of the step user's.
SHARED_PLACES = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # noqa: S108


def remove_files_of(user: StepUser, places: tuple[Path, ...] = SHARED_PLACES) -> None:
    """Remove every entry of ``places`` that ``user`` owns, with all it holds; a symlink itself,
    never its target. Call once no process of the user runs, so nothing is made meanwhile."""
    for place in places:
        try:
            entries = list(os.scandir(place))
        except OSError:
            continue  # no such place here
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_uid == user.uid:
                    _remove(Path(entry.path), entry, user)


def _remove(path: Path, entry: os.DirEntry[str], user: StepUser) -> None:
    try:
        if entry.is_dir(follow_symlinks=False):
            # The user may have closed it (chmod 0): root passes anyway. rmtree works through file
            # descriptors and does not follow symlinks inside (avoids_symlink_attacks on Linux).
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as error:
        log.error("could not remove %s of step user %s: %s", path, user.name, error)
