"""Multi-process metrics set up by the CLI before any process that counts starts. No
prometheus-client import here: it must first be imported after the variable is set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty ``path`` and point prometheus-client at it (inherited by the processes started
    afterwards). Emptied because the files of a previous run would add to this one's counts."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
