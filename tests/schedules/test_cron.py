"""When a schedule is due next: cron expressions read by a cron library, in the schedule's time
zone, across daylight saving changes as cron itself runs them."""

from __future__ import annotations

import datetime as dt

import pytest

from server.schedules.cron import ScheduleError, check_cron, check_timezone, next_due

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


def test_the_next_due_time_is_in_the_schedules_time_zone_and_stored_in_utc() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer.
    assert next_due("0 3 * * *", BERLIN, utc(2026, 1, 10, 12, 0)) == utc(2026, 1, 11, 2, 0)
    assert next_due("0 3 * * *", BERLIN, utc(2026, 7, 10, 12, 0)) == utc(2026, 7, 11, 1, 0)
    assert next_due("0 3 * * *", "UTC", utc(2026, 7, 10, 12, 0)) == utc(2026, 7, 11, 3, 0)


def test_a_due_time_is_strictly_after_the_moment_given() -> None:
    assert next_due("0 3 * * *", "UTC", utc(2026, 7, 11, 3, 0)) == utc(2026, 7, 12, 3, 0)


def test_a_time_that_the_spring_forward_skips_runs_right_after_the_jump_once() -> None:
    # On 29 March 2026 Berlin's clocks go from 02:00 to 03:00 (01:00 UTC): 02:30 never happens.
    on_the_day = next_due("30 2 * * *", BERLIN, utc(2026, 3, 28, 12, 0))
    assert on_the_day == utc(2026, 3, 29, 1, 0)  # 03:00 CEST, the first minute after the jump
    assert next_due("30 2 * * *", BERLIN, on_the_day) == utc(2026, 3, 30, 0, 30)  # 02:30 CEST


def test_a_time_that_the_fall_back_repeats_runs_once() -> None:
    # On 25 October 2026 Berlin's 02:00-03:00 happens twice; a daily 02:30 runs the first time.
    first = next_due("30 2 * * *", BERLIN, utc(2026, 10, 24, 12, 0))
    assert first == utc(2026, 10, 25, 0, 30)
    assert next_due("30 2 * * *", BERLIN, first) == utc(2026, 10, 26, 1, 30)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("", "five fields"),
        ("0 3 * *", "five fields"),
        ("0 3 * * * *", "five fields"),
        ("61 * * * *", "minute"),
        ("0 0 30 2 *", "day-of-month"),
        ("@daily", "five fields"),
    ],
)
def test_an_expression_cron_cannot_read_is_refused_in_words(expression: str, words: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        check_cron(expression)
    assert words in str(refused.value) and "minute hour day-of-month month day-of-week" in str(refused.value)


def test_a_time_zone_must_be_a_known_iana_name() -> None:
    assert check_timezone("Europe/Berlin") == "Europe/Berlin"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "/etc/localtime"):
        with pytest.raises(ScheduleError, match="time zone"):
            check_timezone(bad)
