"""A workaround for kombu's Redis transport, applied by every Celery process of Greenlight (the
server's worker and the runners).

When the broker goes away while a task is unacknowledged, kombu closes the channel and tries to
put that message back with a connection that is already gone (``conninfo`` is None): an
``AttributeError`` that Celery treats as unrecoverable, and the worker process exits instead of
reconnecting (seen with kombu 5.7). Nothing is lost by
skipping that restore in Greenlight: Postgres is the truth, and the reconciler re-announces every
queued job and re-requests every unplanned build.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_PATCHED = "_greenlight_tolerates_a_closed_connection"


def tolerate_restore_on_closed_connection() -> None:
    """Idempotent; a no-op where kombu's Redis transport is not installed. Also: a channel asked
    for a client once its connection is gone (an ack or a restore after the broker went away)
    raises redis' ConnectionError, which Celery recovers from by reconnecting, instead of an
    AttributeError, which it treats as unrecoverable."""
    try:
        import redis
        from kombu.transport import redis as kombu_redis
    except ImportError:  # pragma: no cover - the redis extra is always installed
        return
    channel = kombu_redis.Channel
    if not getattr(channel._connparams, _PATCHED, False):
        connparams = channel._connparams

        def _connparams(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.connection is None or getattr(self.connection, "client", None) is None:
                raise redis.exceptions.ConnectionError("the broker connection is closed")
            return connparams(self, *args, **kwargs)

        setattr(_connparams, _PATCHED, True)
        channel._connparams = _connparams
    qos = kombu_redis.QoS
    if getattr(qos.restore_unacked, _PATCHED, False):
        return
    original = qos.restore_unacked

    def restore_unacked(self: Any, client: Any = None) -> Any:
        if client is None and getattr(self.channel.connection, "client", None) is None:
            logger.warning(
                "the broker connection closed before %d unacknowledged message(s) could be put "
                "back; the reconciler announces their work again",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return original(self, client)

    setattr(restore_unacked, _PATCHED, True)
    qos.restore_unacked = restore_unacked
