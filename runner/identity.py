"""The identity the server gave this runner (``RunnerRegistered.identity``), kept in the runner's
directory so that the next process of the runner knows, before it registers, what carries it.

Everything the runner creates on its Docker engine is labelled with it, and its sweeps (at start,
after a job, by the janitor, by disk hygiene) go by it alone: a name two installs can share says
nothing about whose a container is.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

IDENTITY_FILE = "identity"
# Where the runner runs its steps under that identity (its Docker engine's id, or the machine's):
# a directory that moved to another machine cannot vouch for what runs on the first one.
PLACE_FILE = "identity.place"
# What an identity may look like: it goes into label filters and file names.
_SHAPE = re.compile(r"^[0-9a-z]{16,64}$")


MACHINE_ID = Path("/etc/machine-id")


def machine_id() -> str | None:
    """This machine's id (where a host-process runner's steps run), None if it has none."""
    try:
        return MACHINE_ID.read_text().strip() or None
    except OSError:
        return None


class RunnerIdentity:
    """This runner's identity: the stored one until it registers, the server's from then on."""

    def __init__(self, runner_dir: Path) -> None:
        self.path = runner_dir / IDENTITY_FILE
        self.current: str | None = None

    def stored(self) -> str | None:
        """The identity an earlier process of this runner registered with, if any (and sane)."""
        try:
            value = self.path.read_text().strip()
        except OSError:
            return None
        return value if _SHAPE.match(value) else None

    def adopt(self, given: str) -> str:
        """Keep the identity the server gave (0600, replaced atomically) and use it from now on.
        A server that gives none (an older version) leaves the runner to make one of its own,
        random, kept across its restarts like a server's."""
        identity = given if _SHAPE.match(given) else (self.stored() or uuid.uuid4().hex)
        _write(self.path, identity)
        self.current = identity
        return identity

    def kept_at(self, place: str | None) -> bool:
        """Whether the identity was last used at ``place`` (None: unknown, never the same)."""
        try:
            return place is not None and (self.path.with_name(PLACE_FILE).read_text().strip() == place)
        except OSError:
            return False

    def keep_place(self, place: str) -> None:
        _write(self.path.with_name(PLACE_FILE), place)


def _write(path: Path, value: str) -> None:
    """0600, replaced atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    os.replace(temporary, path)
