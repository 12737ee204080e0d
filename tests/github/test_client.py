"""The GitHub client over real HTTP against the fake GitHub: headers, retries, typed errors."""

from __future__ import annotations

import datetime as dt
import socket

import pytest

from server.github.client import GitHubClient, RetryPolicy
from server.github.errors import PermanentError, RateLimited, TransientError
from server.github.statuses import CommitStatus, create_commit_status
from tests.support.fake_github import FakeGitHub, rate_limited, retry_after, running_fake, server_error

SHA = "c" * 40
STATUSES = f"/repos/acme/widgets/statuses/{SHA}"


def test_requests_carry_the_token_user_agent_api_version_and_accept_headers(
    fake_github: FakeGitHub, github: GitHubClient
) -> None:
    create_commit_status(github, "acme/widgets", SHA, CommitStatus("pending", "queued"))
    [request] = fake_github.requests
    assert request.headers["authorization"] == f"Bearer {fake_github.token}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["user-agent"].startswith("Greenlight/")
    assert request.body == {"state": "pending", "context": "greenlight/pipeline", "description": "queued"}


def test_a_github_enterprise_base_url_keeps_its_path_prefix() -> None:
    for fake in running_fake(prefix="/api/v3"):
        with GitHubClient(fake.url, fake.token) as client:
            create_commit_status(client, "acme/widgets", SHA, CommitStatus("success", "passed"))
        assert fake.latest_status("acme/widgets", SHA, "greenlight/pipeline")["state"] == "success"  # type: ignore[index]


def test_a_5xx_is_retried_with_backoff_and_then_succeeds(
    fake_github: FakeGitHub, github: GitHubClient, pauses: list[float]
) -> None:
    fake_github.fail_next(server_error(502), times=2)
    create_commit_status(github, "acme/widgets", SHA, CommitStatus("success", "passed"))
    assert len(fake_github.requests_to("POST", STATUSES)) == 3
    assert pauses == [0.5, 1.0]
    assert fake_github.latest_status("acme/widgets", SHA, "greenlight/pipeline") is not None


def test_a_5xx_that_persists_becomes_a_transient_error_after_the_retries(
    fake_github: FakeGitHub, github: GitHubClient
) -> None:
    fake_github.fail_next(server_error(503), times=10)
    with pytest.raises(TransientError) as raised:
        create_commit_status(github, "acme/widgets", SHA, CommitStatus("success", "passed"))
    assert raised.value.status == 503
    assert len(fake_github.requests) == 3


def test_a_primary_rate_limit_raises_with_the_reset_time_and_is_not_retried_in_place(
    fake_github: FakeGitHub, github: GitHubClient
) -> None:
    reset = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)).replace(microsecond=0)
    fake_github.fail_next(rate_limited(reset))
    with pytest.raises(RateLimited) as raised:
        create_commit_status(github, "acme/widgets", SHA, CommitStatus("success", "passed"))
    assert raised.value.until == reset and raised.value.status == 403
    assert github.rate_limited_until == reset
    assert len(fake_github.requests) == 1


def test_a_short_retry_after_is_honoured_in_place_and_a_long_one_raised(
    fake_github: FakeGitHub, github: GitHubClient, pauses: list[float]
) -> None:
    fake_github.fail_next(retry_after(1))
    create_commit_status(github, "acme/widgets", SHA, CommitStatus("success", "passed"))
    assert len(pauses) == 1 and 0.5 < pauses[0] <= 1.0

    fake_github.fail_next(retry_after(120, status=403))
    before = dt.datetime.now(dt.UTC)
    with pytest.raises(RateLimited) as raised:
        create_commit_status(github, "acme/widgets", SHA, CommitStatus("failure", "failed"))
    assert before + dt.timedelta(seconds=119) <= raised.value.until <= before + dt.timedelta(seconds=122)


def test_a_bad_token_is_a_permanent_configuration_error(fake_github: FakeGitHub) -> None:
    with GitHubClient(fake_github.url, "ghp_wrong") as client, pytest.raises(PermanentError) as raised:
        create_commit_status(client, "acme/widgets", SHA, CommitStatus("success", "passed"))
    assert raised.value.status == 401 and raised.value.is_configuration
    assert "Bad credentials" in str(raised.value) and "ghp_wrong" not in str(raised.value)


def test_github_refuses_a_long_description_with_422_and_its_own_words(
    fake_github: FakeGitHub, github: GitHubClient
) -> None:
    body = {"state": "failure", "context": "greenlight/pipeline", "description": "x" * 141}
    with pytest.raises(PermanentError) as raised:
        github.request("POST", STATUSES, json=body)
    assert raised.value.status == 422 and not raised.value.is_configuration
    assert "description is too long (maximum is 140 characters)" in str(raised.value)


def test_descriptions_are_cut_to_140_characters_without_control_characters(
    fake_github: FakeGitHub, github: GitHubClient
) -> None:
    message = "configuration error:\n.greenlight.yml, line 3:\tunknown key\x1b[31m 'stepz'\x00 " + "y" * 200
    create_commit_status(github, "acme/widgets", SHA, CommitStatus("failure", message))
    status = fake_github.latest_status("acme/widgets", SHA, "greenlight/pipeline")
    assert status is not None
    description = status["description"]
    assert len(description) == 140 and description.endswith("…")
    assert description.startswith("configuration error: .greenlight.yml, line 3: unknown key [31m 'stepz' yy")
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in description)


def test_an_unreachable_github_is_a_transient_error(pauses: list[float]) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    client = GitHubClient(f"http://127.0.0.1:{port}", "t", retry=RetryPolicy(retries=1), sleep=pauses.append)
    with client, pytest.raises(TransientError) as raised:
        create_commit_status(client, "acme/widgets", SHA, CommitStatus("success", "passed"))
    assert raised.value.status is None and pauses == [0.5]


def test_names_and_shas_that_are_not_github_shaped_are_refused_before_any_request(
    fake_github: FakeGitHub, github: GitHubClient
) -> None:
    for name, sha in (("acme/widgets/../x", SHA), ("acme/widgets", "HEAD"), ("acme", SHA)):
        with pytest.raises(ValueError, match="refusing"):
            create_commit_status(github, name, sha, CommitStatus("success", "passed"))
    assert fake_github.requests == []
