"""A delivery is sent by the pass that holds it, once: a pass holds only the row it is sending,
and a pass whose claim ran out does not mark a row another pass took over."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

import server.notifications.sender as sender_module
from server.config import Settings
from server.models import JobState
from server.notifications.sender import send_due_notifications
from server.outbox.schedule import CLAIM
from tests.notifications.test_delivery import KEY, add_rule, deliveries, end_build, notifying  # noqa: F401
from tests.support.receivers import HttpReceiver

pytestmark = pytest.mark.integration


def test_a_row_waiting_behind_slow_requests_is_not_sent_twice_by_another_pass(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str],  # noqa: F811
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Three rules, one event: three rows. Each request takes a little over half a claim (within
    # the timeout); after two of them another worker process runs its pass.
    settings = notifying.model_copy(update={"notify_timeout_seconds": 61.0})
    for name in ("a", "b", "c"):
        add_rule(session_factory, settings, name, "webhook", url=f"{receiver.url}/{name}", key=KEY)
    end_build(session_factory, JobState.failed)
    real_deliver, clock, calls = sender_module.deliver, [sender_module.utcnow()], []
    monkeypatch.setattr(sender_module, "utcnow", lambda: clock[0])

    def slow(http: Any, settings: Settings, **kwargs: Any) -> None:
        calls.append(kwargs["delivery_id"])
        clock[0] += dt.timedelta(seconds=61)
        if len(calls) == 2:
            send_due_notifications(session_factory, settings)  # the other worker process
        real_deliver(http, settings, **kwargs)

    monkeypatch.setattr(sender_module, "deliver", slow)
    send_due_notifications(session_factory, settings)
    per_row = [request.headers["x-greenlight-delivery"] for request in receiver.requests]
    assert sorted(per_row) == sorted({*per_row}), f"sent more than once: {per_row}"
    assert len(per_row) == 3 and all(row.sent_at is not None for row in deliveries(session_factory))


def test_a_pass_whose_claim_ran_out_does_not_mark_the_row_another_pass_holds(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str],  # noqa: F811
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # The one request itself outlasts the claim: another pass takes the row and fails it; the
    # late first pass must not then mark it sent over the other pass's record.
    add_rule(session_factory, notifying, "a", "webhook", url=f"{receiver.url}/a", key=KEY)
    end_build(session_factory, JobState.failed)
    real_deliver, real_now, calls = sender_module.deliver, sender_module.utcnow, []

    def overtaken(http: Any, settings: Settings, **kwargs: Any) -> None:
        calls.append(kwargs["delivery_id"])
        if len(calls) == 1:
            later = real_now() + CLAIM + dt.timedelta(seconds=1)
            monkeypatch.setattr(sender_module, "utcnow", lambda: later)
            send_due_notifications(session_factory, settings)  # claims again, fails below
            monkeypatch.setattr(sender_module, "utcnow", real_now)
            real_deliver(http, settings, **kwargs)
            return
        raise sender_module.DeliveryFailed("receiver down")

    monkeypatch.setattr(sender_module, "deliver", overtaken)
    result = send_due_notifications(session_factory, notifying)
    [row] = deliveries(session_factory)
    assert (row.sent_at, row.attempts) == (None, 1), "the late pass overwrote the other pass's record"
    assert result.sent == []
