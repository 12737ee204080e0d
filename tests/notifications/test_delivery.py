"""Notifications from a build's end to a real receiver: the outbox row written with the state
change (real Postgres), sent by the worker's sender to an HTTP server or an SMTP server the test
starts, signed, retried, sent once, and visible when it fails."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.control import rerun_build
from server.config import Settings
from server.db import make_session_factory
from server.models import Build, Job, JobState, NotificationDelivery, ReportedSuite, ReportedTest, Repository
from server.models.base import utcnow
from server.notifications.channels import pinned
from server.notifications.rules import ChannelSecret, set_rule
from server.notifications.sender import SendResult, send_due_notifications
from server.queue.reports import close_job
from server.wiring import wire_domain
from tests import factories
from tests.conftest import RecordingTransport
from tests.support.receivers import HttpReceiver, Mailbox

pytestmark = pytest.mark.integration

KEY = "signing-key-0123456789"
PUBLIC_URL = "https://ci.example.com"
URL = "/api/repos/acme/widgets/notifications"


@pytest.fixture
def notifying(settings: Settings) -> Settings:
    return settings.model_copy(update={"public_url": PUBLIC_URL, "notify_timeout_seconds": 5.0})


def add_rule(
    session_factory: sessionmaker[Session], settings: Settings, name: str, channel: str, *,
    url: str = "", key: str = "", recipients: tuple[str, ...] = (), events: tuple[str, ...] = (),
    branches: tuple[str, ...] = (),
) -> None:  # fmt: skip
    with session_factory.begin() as session:
        repo = session.scalars(sa.select(Repository)).one()
        secret = ChannelSecret(url=url, signing_key=key) if url else None
        set_rule(
            session, settings.secret_cipher(), repo, name, channel=channel, events=list(events),
            branches=list(branches), recipients=list(recipients), secret=secret,
        )  # fmt: skip


def end_build(
    session_factory: sessionmaker[Session], state: JobState, branch: str = "main", *,
    author: str = "Jane Doe", message: str = "Fix the widget\n\nlong body",
    reported: tuple[str, ...] = (),
) -> int:  # fmt: skip
    """A build of ``branch`` whose one job ends in ``state`` (the build's state follows, as it
    does when a runner reports), having reported tests of the ``reported`` outcomes."""
    with session_factory.begin() as session:
        repo = session.scalars(sa.select(Repository)).one()
        build = factories.build(session, repo, branch=branch)
        build.commit_author, build.commit_message = author, message
        job = factories.job(session, build)
        job_id, build_id = job.id, build.id
        suite = ReportedSuite(job_id=job.id, path="junit.xml", name="tests")
        session.add(suite)
        session.flush()
        for number, outcome in enumerate(reported):
            session.add(
                ReportedTest(
                    suite_id=suite.id, job_id=job.id, repository_id=repo.id, commit_sha=build.commit_sha,
                    job_name=job.name, identity=f"{number:064d}", name=f"test_{number}", classname="t",
                    outcome=outcome,
                )
            )  # fmt: skip
    with session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        close_job(session, job, state, None if state is JobState.passed else "step test failed (exit 1)")
    return build_id


def send(session_factory: sessionmaker[Session], settings: Settings) -> SendResult:
    return send_due_notifications(session_factory, settings)


def deliveries(session_factory: sessionmaker[Session]) -> list[NotificationDelivery]:
    with session_factory() as session:
        return list(session.scalars(sa.select(NotificationDelivery).order_by(NotificationDelivery.id)))


def time_passes(session_factory: sessionmaker[Session]) -> None:
    """Every retry is due now (as it would be once its backoff has passed)."""
    with session_factory.begin() as session:
        session.execute(
            sa.update(NotificationDelivery).values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
        )


def test_a_failed_build_posts_a_signed_versioned_body_once(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    add_rule(session_factory, notifying, "hook", "webhook", url=f"{receiver.url}/in", key=KEY)
    build_id = end_build(session_factory, JobState.failed)
    assert send(session_factory, notifying).sent and not send(session_factory, notifying).sent
    [request] = receiver.requests
    signed = f"{request.headers['x-greenlight-timestamp']}.{request.headers['x-greenlight-delivery']}."
    expected = "sha256=" + hmac.new(KEY.encode(), signed.encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-greenlight-signature-256"], expected)
    assert request.headers["x-greenlight-event"] == "build.failed" and request.path == "/in"
    body = json.loads(request.body)
    with session_factory() as session:
        number = session.get(Build, build_id).number  # type: ignore[union-attr]
    assert body == {
        "version": 1, "event": "build.failed", "repository": "acme/widgets", "branch": "main",
        "commit": {"sha": "a" * 40, "message": "Fix the widget", "author": "Jane Doe"},
        "build": {"number": number, "state": "failed", "reason": body["build"]["reason"],
                  "url": f"{PUBLIC_URL}/acme/widgets/builds/{number}",
                  "event": "push", "pull_request": None, "from_fork": False, "tests": None},
        "deployment": None, "occurred_at": body["occurred_at"],
    }  # fmt: skip


def test_the_same_event_reported_twice_is_one_message(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    from server.events import BuildChanged, events_of
    from server.models import BuildState

    add_rule(session_factory, notifying, "hook", "webhook", url=receiver.url, key=KEY)
    build_id = end_build(session_factory, JobState.failed)
    with session_factory.begin() as session:  # the reconciler, say, recomputes the same end
        events_of(session).build_changed(
            session, BuildChanged(build_id, BuildState.failed, "push", None, None)
        )
    send(session_factory, notifying)
    assert len(deliveries(session_factory)) == 1 and len(receiver.requests) == 1


def test_fixed_is_the_first_green_after_red_on_the_same_branch(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    add_rule(session_factory, notifying, "hook", "webhook", url=receiver.url, key=KEY)
    end_build(session_factory, JobState.passed)  # green after nothing: no message
    end_build(session_factory, JobState.failed)
    end_build(session_factory, JobState.failed, "feature/x")  # another branch's red
    end_build(session_factory, JobState.cancelled)  # says nothing about main's health
    end_build(session_factory, JobState.passed)  # fixed
    end_build(session_factory, JobState.passed)  # green after green: no message
    end_build(session_factory, JobState.passed, "feature/y")  # its branch was never red
    send(session_factory, notifying)
    events = [(json.loads(r.body)["event"], json.loads(r.body)["branch"]) for r in receiver.requests]
    assert events == [("build.failed", "main"), ("build.failed", "feature/x"), ("build.fixed", "main")]


def test_a_rule_hears_only_its_branches_and_events(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    add_rule(
        session_factory, notifying, "release", "slack", url=receiver.url,
        events=("build.errored",), branches=("release/*",),
    )  # fmt: skip
    end_build(session_factory, JobState.errored, "main")
    end_build(session_factory, JobState.failed, "release/1.0")
    end_build(session_factory, JobState.errored, "release/1.0")
    send(session_factory, notifying)
    [request] = receiver.requests
    text = json.loads(request.body)["text"]
    assert "acme/widgets release/1.0: build #" in text and "errored" in text
    assert text.endswith("/builds/" + text.split("build #")[1].split(" ")[0] + "|build page>")


def test_slack_text_escapes_markup_from_the_commit(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    add_rule(session_factory, notifying, "chat", "slack", url=receiver.url)
    end_build(session_factory, JobState.failed, message="<!channel> look & see")
    send(session_factory, notifying)
    text = json.loads(receiver.requests[0].body)["text"]
    assert "&lt;!channel&gt; look &amp; see" in text and "<!channel>" not in text


def test_a_receiver_that_fails_then_recovers_gets_the_message_once_and_the_failure_shows_meanwhile(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver,
    client: TestClient,
) -> None:  # fmt: skip
    receiver.answers = [(503, {}), (500, {})]
    add_rule(session_factory, notifying, "hook", "webhook", url=f"{receiver.url}/SECRETPATH", key=KEY)
    end_build(session_factory, JobState.failed)
    assert send(session_factory, notifying).failed
    [rule] = client.get(URL, headers=auth).json()
    last = rule["last_delivery"]
    assert last["status"] == "pending" and last["attempts"] == 1 and "HTTP 503" in last["last_error"]
    assert last["next_attempt_at"] is not None and "SECRETPATH" not in json.dumps(rule)
    assert not send(session_factory, notifying).sent  # not due before its backoff has passed
    time_passes(session_factory)
    assert send(session_factory, notifying).failed
    time_passes(session_factory)
    assert send(session_factory, notifying).sent
    time_passes(session_factory)
    assert not send(session_factory, notifying).sent
    assert len(receiver.requests) == 3 and len(receiver.delivered) == 1
    [delivery] = client.get(f"{URL}/deliveries", headers=auth).json()
    assert delivery["status"] == "sent" and delivery["attempts"] == 2 and delivery["last_error"] is None


def test_a_receiver_that_refuses_is_given_up_on_visibly_without_the_url(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver,
    client: TestClient,
) -> None:  # fmt: skip
    receiver.answers = [(404, {})]
    add_rule(session_factory, notifying, "chat", "slack", url=f"{receiver.url}/services/SECRETPATH")
    end_build(session_factory, JobState.failed)
    assert send(session_factory, notifying).gave_up
    time_passes(session_factory)
    assert not send(session_factory, notifying).failed
    [delivery] = client.get(f"{URL}/deliveries", headers=auth).json()
    assert delivery["status"] == "failed" and "HTTP 404" in delivery["last_error"]
    assert "SECRETPATH" not in delivery["last_error"]
    page = client.get("/acme/widgets", headers=auth).text
    assert "HTTP 404" in page and "SECRETPATH" not in page


def test_a_redirect_is_not_followed(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    receiver.answers = [(307, {"Location": f"{receiver.url}/elsewhere"})]
    add_rule(session_factory, notifying, "hook", "webhook", url=receiver.url, key=KEY)
    end_build(session_factory, JobState.failed)
    assert send(session_factory, notifying).gave_up
    assert [request.path for request in receiver.requests] == ["/"]
    assert "redirect" in (deliveries(session_factory)[0].last_error or "")


def test_private_addresses_are_refused_when_the_server_says_so(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    denying = notifying.model_copy(update={"notify_deny_private": True})
    add_rule(session_factory, denying, "hook", "webhook", url=receiver.url, key=KEY)
    end_build(session_factory, JobState.failed)
    assert send(session_factory, denying).gave_up and receiver.requests == []
    assert "non-public address" in (deliveries(session_factory)[0].last_error or "")


def test_an_email_goes_through_smtp_with_a_one_line_subject(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], mailbox: Mailbox
) -> None:
    mailing = notifying.model_copy(
        update={
            "smtp_host": mailbox.host,
            "smtp_port": mailbox.port,
            "smtp_starttls": False,
            "smtp_from": "ci@example.com",
        }
    )
    add_rule(session_factory, mailing, "team", "email", recipients=("dev@example.com",))
    end_build(
        session_factory,
        JobState.failed,
        author="Eve\r\nBcc: victim@example.org",
        message="x\r\nBcc: v@example.org",
    )
    assert send(session_factory, mailing).sent
    [(recipients, message)] = mailbox.messages
    assert recipients == ["dev@example.com"] and message["To"] == "dev@example.com" and message["Bcc"] is None
    subject = str(message["Subject"])
    assert subject.startswith("[Greenlight] acme/widgets main: build #") and "failed" in subject
    assert "\n" not in subject and "Eve Bcc: victim@example.org" in subject
    assert f"{PUBLIC_URL}/acme/widgets/builds/" in message.get_content()


def test_a_failed_builds_messages_give_its_test_counts(
    session_factory: sessionmaker[Session],
    notifying: Settings,
    auth: dict[str, str],
    receiver: HttpReceiver,
    mailbox: Mailbox,
) -> None:
    mailing = notifying.model_copy(
        update={
            "smtp_host": mailbox.host, "smtp_port": mailbox.port, "smtp_starttls": False,
            "smtp_from": "ci@example.com",
        }
    )  # fmt: skip
    add_rule(session_factory, mailing, "hook", "webhook", url=f"{receiver.url}/in", key=KEY)
    add_rule(session_factory, mailing, "chat", "slack", url=f"{receiver.url}/chat")
    add_rule(session_factory, mailing, "team", "email", recipients=("dev@example.com",))
    end_build(session_factory, JobState.failed, reported=("failed", "errored", "passed", "skipped"))
    assert send(session_factory, mailing).sent
    hook, chat = sorted(receiver.requests, key=lambda request: request.path)[::-1]
    assert json.loads(hook.body)["build"]["tests"] == {
        "total": 4, "passed": 1, "failed": 1, "errored": 1, "skipped": 1, "flaky": 0,
        "description": "2 failed of 4 tests",
    }  # fmt: skip
    assert "2 failed of 4 tests" in json.loads(chat.body)["text"]
    [(_, message)] = mailbox.messages
    assert "Tests: 2 failed of 4 tests" in message.get_content()


def test_email_refuses_a_server_without_starttls_when_it_is_required(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], mailbox: Mailbox,
    client: TestClient,
) -> None:  # fmt: skip
    strict = notifying.model_copy(update={"smtp_host": mailbox.host, "smtp_port": mailbox.port})
    add_rule(session_factory, strict, "team", "email", recipients=("dev@example.com",))
    end_build(session_factory, JobState.failed)
    assert send(session_factory, strict).failed and mailbox.messages == []
    [delivery] = client.get(f"{URL}/deliveries", headers=auth).json()
    assert delivery["status"] == "pending" and "STARTTLS" in delivery["last_error"]


def test_the_test_route_sends_now_and_says_how_it_went(
    client: TestClient, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    body = {"channel": "webhook", "url": receiver.url, "signing_key": KEY}
    assert client.put(f"{URL}/hook", json=body, headers=auth).status_code == 201
    assert client.post(f"{URL}/hook/test", headers=auth).json() == {"delivered": True, "error": None}
    assert json.loads(receiver.requests[0].body)["event"] == "test"
    receiver.answers = [(500, {})]
    reply = client.post(f"{URL}/hook/test", headers=auth).json()
    assert reply["delivered"] is False and "HTTP 500" in reply["error"]


def rerun(session_factory: sessionmaker[Session], build_id: int, state: JobState) -> None:
    """A person re-runs the build's failed jobs; the new attempts end in ``state``."""
    with session_factory.begin() as session:
        build = session.get(Build, build_id)
        assert build is not None
        jobs = rerun_build(session, build)
    with session_factory.begin() as session:
        for job in jobs:
            close_job(session, session.get(Job, job.id), state, None)  # type: ignore[arg-type]


def test_a_rerun_that_fails_again_says_so_and_one_that_passes_is_fixed_unless_a_newer_build_spoke(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    add_rule(session_factory, notifying, "hook", "webhook", url=receiver.url, key=KEY)
    first = end_build(session_factory, JobState.failed)
    rerun(session_factory, first, JobState.failed)
    rerun(session_factory, first, JobState.passed)  # the branch was red until now: fixed
    second = end_build(session_factory, JobState.failed, "feature/x")
    end_build(session_factory, JobState.passed, "feature/x")  # fixed by a newer build
    rerun(session_factory, second, JobState.passed)  # the branch is green already: nothing
    send(session_factory, notifying)
    events = [(json.loads(r.body)["event"], json.loads(r.body)["branch"]) for r in receiver.requests]
    assert events == [
        ("build.failed", "main"), ("build.failed", "main"), ("build.fixed", "main"),
        ("build.failed", "feature/x"), ("build.fixed", "feature/x"),
    ]  # fmt: skip


def test_a_commit_that_owes_messages_wakes_the_sender_and_one_that_owes_none_does_not(
    engine: sa.Engine, session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str],
    receiver: HttpReceiver,
) -> None:  # fmt: skip
    woken = RecordingTransport()
    factory = make_session_factory(engine)
    wire_domain(factory, woken, reports_to_github=False)
    end_build(factory, JobState.failed)  # no rule yet
    assert woken.notification_wake_ups == 0
    add_rule(factory, notifying, "hook", "webhook", url=receiver.url, key=KEY)
    end_build(factory, JobState.failed)
    assert woken.notification_wake_ups == 1 and len(deliveries(factory)) == 1


def test_anonymous_readers_do_not_see_who_is_notified(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], client: TestClient
) -> None:
    add_rule(session_factory, notifying, "team", "email", recipients=("dev@example.com",))
    assert "dev@example.com" in client.get("/acme/widgets", headers=auth).text
    page = client.get("/acme/widgets").text  # a public repository
    assert page.count("acme/widgets") and "dev@example.com" not in page and "Notifications" not in page


def test_a_checked_address_is_the_one_connected_to_and_the_name_stays_in_host(receiver: HttpReceiver) -> None:
    # What GREENLIGHT_NOTIFY_DENY_PRIVATE sends through once the address passed its check: the
    # name is not resolved again (DNS rebinding), yet the receiver sees the name it was given.
    port = receiver.url.rsplit(":", 1)[1]
    target, headers, extensions = pinned(f"http://localhost:{port}/in?x=1", "127.0.0.1")
    assert target == f"http://127.0.0.1:{port}/in?x=1" and extensions == {}
    with httpx.Client() as http:
        assert http.post(target, content=b"{}", headers=headers).is_success
    assert (
        receiver.requests[0].headers["host"] == f"localhost:{port}" and receiver.requests[0].path == "/in?x=1"
    )
    assert pinned("https://hooks.example.com/x", "2001:db8::1") == (
        "https://[2001:db8::1]/x", {"Host": "hooks.example.com"}, {"sni_hostname": "hooks.example.com"},
    )  # fmt: skip


def test_an_unexpected_error_fails_its_message_only_and_the_pass_goes_on(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], receiver: HttpReceiver,
    mailbox: Mailbox,
) -> None:  # fmt: skip
    broken = notifying.model_copy(
        update={"smtp_host": mailbox.host, "smtp_port": mailbox.port, "smtp_starttls": False,
                "smtp_from": "ci@example.com\r\nBcc: someone@example.org"}
    )  # fmt: skip
    add_rule(session_factory, broken, "a-team", "email", recipients=("dev@example.com",))
    add_rule(session_factory, broken, "hook", "webhook", url=receiver.url, key=KEY)
    end_build(session_factory, JobState.failed)
    result = send(session_factory, broken)
    assert len(result.sent) == 1 and len(result.failed) == 1 and mailbox.messages == []
    assert len(receiver.delivered) == 1
    failed = [delivery for delivery in deliveries(session_factory) if delivery.sent_at is None]
    assert [delivery.last_error for delivery in failed] == ["unexpected error (ValueError)"]
