"""The data directory of `greenlight up`: private to its owner, used by one `up` at a time."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "up.lock"
# What the data directory holds that nobody else may read: keys, tokens, an older install's databases.
_PRIVATE_FILES = ("secrets.env", "secret.key", "greenlight.db", "broker.db", "celerybeat-schedule", LOCK_FILE)


def earlier_data_refusal(data: Path, earlier: Path) -> str | None:
    """Why `up` must not start on ``data`` (a default that does not exist yet) while an earlier
    start's data waits in ``earlier``: it would begin again, empty, beside it."""
    if data.exists() or not earlier.is_dir() or not any(earlier.iterdir()):
        return None
    return (
        f"the data of an earlier `greenlight up` is in {earlier}, but run as root it now keeps its "
        f"data in {data}, which its PostgreSQL's own user can reach: move it (mv {earlier} {data}), "
        "then start again"
    )


class DataDirInUseError(RuntimeError):
    """Another `greenlight up` runs on this data directory."""


def _make_parents(data: Path) -> None:
    """The directories above ``data`` that do not exist yet, made as `mkdir -p` makes them
    (0755, whatever the umask): PostgreSQL's own user must pass through them, run as root."""
    missing = [parent for parent in data.absolute().parents if not parent.exists()]
    for parent in reversed(missing):
        parent.mkdir(exist_ok=True)
        parent.chmod(0o755)  # a passage holding only the data directory, which is 0700


def keep_private(data: Path) -> None:
    """The data directory holds the key that decrypts every secret, the runner token, the webhook
    secret and the databases: it is 0700 and all created in it 0600/0700 (the umask, which the
    servers and the Greenlight processes inherit). Files of an older, laxer install are tightened."""
    _make_parents(data)
    os.umask(0o077)
    data.mkdir(mode=0o700, exist_ok=True)
    data.chmod(0o700)
    for path in data.iterdir():
        if path.name.startswith(_PRIVATE_FILES) and path.is_file() and not path.is_symlink():
            path.chmod(0o600)


@contextlib.contextmanager
def hold_data_dir(data: Path) -> Iterator[None]:
    """Held while `up` runs; the system lets it go when `up` ends, however it ends, so a killed
    `up` leaves no lock behind. A second `up` on the same directory is refused: two would run
    two servers on one database's files."""
    descriptor = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            raise DataDirInUseError(
                f"another `greenlight up` (pid {holder}) is running on {data}: stop it first, "
                "or give this one another --data-dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)


def embedded_runner_name(data: Path) -> str:
    """The name of ``greenlight up``'s runner: the same at every start of an install, different for
    each data directory, so that two installs on one machine can tell their runners apart (what
    a runner removes from the engine goes by the identity its server gave it, never by its name)."""
    return "embedded-" + hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:8]
