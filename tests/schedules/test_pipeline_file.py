"""What `.greenlight.yml` may say about schedules: it selects steps by schedule, and never
declares one (schedules are kept on the server)."""

from __future__ import annotations

import pytest

from server.pipelines.config import GlobFilter
from server.pipelines.loader import ConfigError, load_pipeline

STEPS = "image: x\nsteps:\n  - name: a\n    run: make\n"


def test_when_selects_steps_by_event_cron_and_schedule_name() -> None:
    pipeline = load_pipeline(
        "image: x\nsteps:\n  - name: refresh\n    run: make\n"
        "    when: {event: cron, schedule: [nightly, 'weekly-*']}\n"
    )
    [condition] = pipeline.steps[0].when
    assert condition.event == ["cron"]
    assert condition.schedule == GlobFilter(include=["nightly", "weekly-*"])


@pytest.mark.parametrize("key", ["cron", "schedule", "schedules"])
def test_a_pipeline_file_that_declares_a_schedule_is_told_where_schedules_live(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(f"{STEPS}{key}:\n  nightly: '0 3 * * *'\n")
    message = str(caught.value)
    assert f".greenlight.yml:5: {key}: unknown key '{key}': schedules are kept on the server" in message
    assert "greenlight schedule add" in message
