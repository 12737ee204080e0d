"""Domain errors are answered once, by the app's exception handlers (``server/errors.py``), with
the very bytes an endpoint's ``HTTPException(status, str(error))`` used to give."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from server.errors import DOMAIN_ERRORS, install_error_replies
from server.queue.reports import JobClosed
from server.queue.runners import NotARunnerToken, RunnerNotRegistered
from server.web.security import security_headers


def _app(raised: Exception) -> TestClient:
    app = FastAPI()
    install_error_replies(app, headers=security_headers(https=False))

    @app.get("/refused")
    def refused() -> None:
        raise raised

    return TestClient(app)


@pytest.mark.parametrize(
    ("error_type", "status"), DOMAIN_ERRORS.items(), ids=lambda v: getattr(v, "__name__", v)
)
def test_a_domain_error_is_answered_as_the_endpoint_answered_it_by_hand(
    error_type: type[Exception], status: int
) -> None:
    error = error_type.__new__(error_type)
    Exception.__init__(error, "what the user can act on: «ü»")
    mapped = _app(error).get("/refused")
    by_hand = _app(HTTPException(status, str(error))).get("/refused")
    assert (mapped.status_code, mapped.headers.raw, mapped.content) == (
        by_hand.status_code,
        by_hand.headers.raw,
        by_hand.content,
    )
    assert mapped.json() == {"detail": "what the user can act on: «ü»"}


def test_a_subclass_gets_its_own_status_before_its_base_classes() -> None:
    assert _app(RunnerNotRegistered("runner 7 is not registered")).get("/refused").status_code == 403
    assert _app(NotARunnerToken("not a runner token")).get("/refused").status_code == 401
    assert _app(JobClosed("job 3 is not running")).get("/refused").status_code == 409


def test_an_error_outside_the_table_is_still_a_bug_of_ours() -> None:
    app = _app(LookupError("job 3 not found"))
    reply = TestClient(app.app, raise_server_exceptions=False).get("/refused")
    assert (reply.status_code, reply.json()) == (500, {"detail": "internal server error"})
    assert reply.headers["x-frame-options"] == "DENY"
