"""The kombu workaround: a channel closing after its broker connection is gone no longer raises
(Celery would call that unrecoverable and exit), and a live connection still restores."""

from __future__ import annotations

import kombu
import pytest

from contract.broker import tolerate_restore_on_closed_connection
from tests.support import services

pytestmark = pytest.mark.integration


def test_restoring_unacked_messages_after_the_connection_is_gone_does_not_raise() -> None:
    tolerate_restore_on_closed_connection()
    tolerate_restore_on_closed_connection()  # idempotent
    connection = kombu.Connection(services.redis_url())
    channel = connection.default_channel
    channel.qos._delivered["a-delivery-tag"] = object()
    channel.connection.client = None  # what a lost connection leaves behind when the channel closes
    assert channel.qos.restore_unacked() is None
    assert not channel.qos._delivered


def test_a_live_connection_still_restores_through_kombu(monkeypatch: pytest.MonkeyPatch) -> None:
    tolerate_restore_on_closed_connection()
    connection = kombu.Connection(services.redis_url())
    channel = connection.default_channel
    restored: list[str] = []
    monkeypatch.setattr(
        type(channel.qos), "restore_by_tag", lambda self, tag, client=None: restored.append(tag)
    )
    channel.qos._delivered["a-delivery-tag"] = object()
    channel.qos.restore_unacked()
    assert restored == ["a-delivery-tag"]
    connection.release()


def test_a_client_asked_of_a_channel_whose_connection_is_gone_is_a_connection_error() -> None:
    import redis

    tolerate_restore_on_closed_connection()
    connection = kombu.Connection(services.redis_url())
    channel = connection.default_channel
    channel.connection.client = None
    channel._pool = None
    with pytest.raises(redis.exceptions.ConnectionError):  # recoverable for Celery: it reconnects
        channel.qos.ack("a-delivery-tag")
