"""/metrics on real Postgres: what was observed (deliveries, claims, finishes, logs, GitHub calls)
and what is (builds, jobs, queue, runners). Counters are per process, so tests compare before/after."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.github.client import GitHubClient, RetryPolicy
from server.github.errors import PermanentError
from tests import factories
from tests.fixtures import push_payload
from tests.metrics.scrape import value
from tests.queue.test_runner_api import as_job, claim, register
from tests.support.fake_github import running_fake
from tests.webhooks.test_endpoint import deliver

pytestmark = pytest.mark.integration

REPO = "acme/widgets"


def scrape(client: TestClient) -> str:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.text


def test_deliveries_are_counted_by_event_and_outcome_with_their_latency(
    client: TestClient, session: Session
) -> None:
    factories.repository(session, REPO)
    session.commit()
    before = scrape(client)
    delivery = str(uuid.uuid4())
    payload = push_payload(REPO, "refs/heads/main", "1" * 40)
    assert deliver(client, payload, delivery=delivery).status_code == 202
    assert deliver(client, payload, delivery=delivery).status_code == 200
    assert deliver(client, payload, secret="wrong-secret-0123456789").status_code == 401
    assert deliver(client, {"zen": "hi"}, event="ping").status_code == 200
    assert deliver(client, b"[1, 2", event="push").status_code == 400
    assert deliver(client, {"zen": "hi"}, event="made-up-event", secret="nope").status_code == 401
    after = scrape(client)

    def delta(event: str, outcome: str) -> float:
        name = "greenlight_webhook_deliveries_total"
        return value(after, name, event=event, outcome=outcome) - value(
            before, name, event=event, outcome=outcome
        )

    assert delta("push", "accepted") == 1
    assert delta("push", "duplicate") == 1
    assert delta("push", "bad_signature") == 1
    assert delta("ping", "pong") == 1
    assert delta("push", "malformed") == 1
    # An unauthenticated request does not get to invent label values.
    assert delta("other", "bad_signature") == 1
    assert "made-up-event" not in after
    count = "greenlight_webhook_seconds_count"
    assert value(after, count) - value(before, count) == 6


def test_builds_jobs_queue_depth_and_runners_come_from_the_database(
    client: TestClient, session: Session
) -> None:
    token = factories.runner_token(session)
    repo = factories.repository(session, REPO)
    build = factories.build(session, repo)
    for labels in (["docker"], ["docker"], ["arm64", "docker"]):
        factories.job(session, build, labels=labels)
    session.commit()
    runner_id = register(client, token, name="r1")
    beat = client.post("/api/runner/heartbeat", json={"runner_id": runner_id, "free_disk_bytes": 5 * 1024**3},
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert beat.status_code == 204
    text = scrape(client)
    assert value(text, "greenlight_database_up") == 1
    assert value(text, "greenlight_builds", state="queued") == 1
    assert value(text, "greenlight_jobs", state="queued") == 3
    assert value(text, "greenlight_queue_depth", labels="docker") == 2
    assert value(text, "greenlight_queue_depth", labels="arm64,docker") == 1
    assert value(text, "greenlight_queue_oldest_seconds", labels="docker") >= 0
    assert value(text, "greenlight_runners", state="idle") == 1
    assert value(text, "greenlight_runners", state="lost") == 0
    assert value(text, "greenlight_runner_free_disk_bytes", runner="r1") == 5 * 1024**3


def test_a_claim_and_a_finish_observe_dispatch_latency_job_duration_and_log_bytes(
    client: TestClient, session: Session
) -> None:
    token = factories.runner_token(session)
    factories.job(session, factories.build(session, factories.repository(session, REPO)), steps=1)
    session.commit()
    runner_id = register(client, token)
    before = scrape(client)
    claimed = claim(client, token, runner_id)
    assert claimed is not None
    lines = [{"at": 1.0, "stream": "stdout", "text": "héllo"}, {"at": 2.0, "stream": "stderr", "text": "x"}]
    assert as_job(client, claimed, "logs", {"step_index": 0, "seq": 0, "lines": lines}).status_code == 204
    # The runner's retry of the same batch is stored once and counted once.
    assert as_job(client, claimed, "logs", {"step_index": 0, "seq": 0, "lines": lines}).status_code == 204
    assert as_job(client, claimed, "finish", {"outcome": "passed"}).status_code == 204
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("greenlight_dispatch_seconds_count") == 1
    assert delta("greenlight_job_seconds_count", outcome="passed") == 1
    assert delta("greenlight_jobs_finished_total", state="passed") == 1
    assert delta("greenlight_log_bytes_total") == len("héllo".encode()) + 1
    assert delta("greenlight_log_lines_total") == 2
    # A claim that finds nothing observes nothing.
    assert claim(client, token, runner_id) is None
    assert value(scrape(client), "greenlight_dispatch_seconds_count") == value(
        after, "greenlight_dispatch_seconds_count"
    )


def test_github_api_calls_are_counted_by_outcome(client: TestClient) -> None:
    before = scrape(client)
    for fake in running_fake():
        with GitHubClient(fake.url, fake.token, retry=RetryPolicy(retries=0)) as github:
            github.request("GET", "/user")
        with (
            GitHubClient(fake.url, "wrong", retry=RetryPolicy(retries=0)) as github,
            pytest.raises(PermanentError),
        ):
            github.request("GET", "/user")
    after = scrape(client)
    for outcome in ("ok", "permanent"):
        name = "greenlight_github_api_calls_total"
        assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == 1


def test_a_scrape_while_the_database_is_down_says_so_instead_of_failing(client: TestClient) -> None:
    from server.db import make_engine
    from server.metrics.state import StateCollector

    down = make_engine("postgresql+psycopg://x:y@127.0.0.1:9/none")
    client.app.state.metrics_collector = StateCollector(down, 60)  # type: ignore[attr-defined]
    text = scrape(client)
    assert value(text, "greenlight_database_up") == 0
    assert "greenlight_webhook_seconds" in text
