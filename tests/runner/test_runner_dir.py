"""One runner process per directory: a second one refuses to start instead of wiping the first's work."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import worker
from runner.config import RunnerSettings


def test_a_second_runner_on_the_same_directory_refuses_to_start(tmp_path: Path) -> None:
    settings = RunnerSettings(broker_url="memory://", runner_token="t", runner_dir=tmp_path)
    worker._claim_runner_dir(settings)
    first = worker._dir_lock
    try:
        with pytest.raises(SystemExit, match="already uses"):
            worker._claim_runner_dir(settings)
    finally:
        assert first is not None
        first.close()
        worker._dir_lock = None


def test_another_directory_is_free(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        worker._claim_runner_dir(
            RunnerSettings(broker_url="memory://", runner_token="t", runner_dir=tmp_path / name)
        )
        assert worker._dir_lock is not None
        worker._dir_lock.close()
    worker._dir_lock = None
