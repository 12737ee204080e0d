"""A channel's URL is a secret (a Slack webhook's path is its credential): no process logs it,
including a fresh one that only applies the logging set-up uvicorn hands its workers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.receivers import HttpReceiver

# What a worker process started by `greenlight server --workers 2` does: apply dict_config() in a
# fresh interpreter, then post to a channel (the test route sends from the server's process).
WORKER = textwrap.dedent(
    """
    import logging.config, sys
    from contract.logs import dict_config
    from server.config import Settings
    from server.notifications.channels import post
    from server.notifications.channels import http_client

    logging.config.dictConfig(dict_config("INFO"))
    settings = Settings(database_url="postgresql://x/y", broker_url="memory://", secret_key="k" * 32)
    with http_client(settings) as http:
        post(http, settings, sys.argv[1] + "/services/T000/B000/SLACKSECRETPATH", b"{}", {})
    logging.getLogger("greenlight.probe").info("posted")
    """
)


def test_a_fresh_worker_process_does_not_log_the_url_it_posts_to(receiver: HttpReceiver) -> None:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, receiver.url], capture_output=True, text=True, timeout=60, check=True
    )
    assert "posted" in out.stderr, out.stderr[-400:]  # the process logs at INFO
    assert [request.path for request in receiver.requests] == ["/services/T000/B000/SLACKSECRETPATH"]
    assert "SLACKSECRETPATH" not in out.stderr + out.stdout, out.stderr[-400:]
