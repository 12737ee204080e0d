"""Directories for the embedded servers in tests. Started as root, `greenlight up` runs PostgreSQL as
an unprivileged system user who must pass through every directory above the data directory:
pytest's own temporary directories (0700, root's) would stop it, so these live in a directory
others may pass through but not list."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def passable_directory(prefix: str = "greenlight-test-") -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
