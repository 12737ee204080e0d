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
# What an identity may look like: it goes into label filters and file names.
_SHAPE = re.compile(r"^[0-9a-z]{16,64}$")


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
        temporary = self.path.with_name(f".{IDENTITY_FILE}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(identity + "\n")
        os.replace(temporary, self.path)
        self.current = identity
        return identity
