"""Parsing pull_request payloads: real payloads (a fork's, a fork repository's own PR), and the
shapes GitHub would never send."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from server.webhooks.events import Ignored, MalformedPayload
from server.webhooks.pull_requests import PullRequestClosed, PullRequestEvent, parse_pull_request
from tests.fixtures import github_payload


def parsed(payload: dict[str, Any]) -> PullRequestEvent:
    event = parse_pull_request(payload)
    assert isinstance(event, PullRequestEvent)
    return event


def test_a_pull_request_from_a_fork_builds_its_head_and_is_marked_from_a_fork() -> None:
    event = parsed(github_payload("pull_request_from_fork"))
    assert event.from_fork
    assert (event.repository, event.number, event.title) == ("surya/mycoolapp", 15, "from another repo")
    assert event.head_repository == "release-engineering/mycoolapp"
    assert event.commit_sha == "01923503d64d52cfd5af76fe66367b66532149e6"
    assert (event.source_branch, event.target_branch) == ("master", "master")
    assert event.ref == "refs/pull/15/head"  # fetched from the base repository, not the fork
    assert event.url == "https://github.acme.com/surya/mycoolapp/pull/15"


def test_a_pull_request_inside_a_repository_that_is_itself_a_fork_is_not_from_a_fork() -> None:
    payload = github_payload("pr_sync")
    assert payload["repository"]["fork"] is True and payload["pull_request"]["head"]["repo"]["fork"] is True
    event = parsed(payload)
    assert not event.from_fork
    assert (event.action, event.number, event.commit_sha) == (
        "synchronize",
        1,
        "8102e371cd01cf668893cb2d04a04d52331b1dc9",
    )
    assert (event.source_branch, event.target_branch) == ("master", "bradrydzewski-patch-1")


@pytest.mark.parametrize("fixture", ["pull_request_opened", "pull_request_synchronize"])
def test_opened_and_synchronize_of_a_same_repository_branch_build(fixture: str) -> None:
    event = parsed(github_payload(fixture))
    assert not event.from_fork and event.head_repository == "Codertocat/Hello-World"
    assert event.source_branch == "changes" and event.target_branch == "master"


def test_a_deleted_fork_counts_as_a_fork() -> None:
    payload = github_payload("pull_request_from_fork")
    payload["pull_request"]["head"]["repo"] = None
    event = parsed(payload)
    assert event.from_fork and event.head_repository is None


def test_reopened_builds_and_closed_cancels() -> None:
    payload = github_payload("pull_request_opened")
    payload["action"] = "reopened"
    assert isinstance(parse_pull_request(payload), PullRequestEvent)
    payload["action"] = "closed"
    assert parse_pull_request(payload) == PullRequestClosed("Codertocat/Hello-World", 2)


@pytest.mark.parametrize("action", ["edited", "labeled", "assigned", "review_requested"])
def test_other_actions_are_ignored_with_a_reason(action: str) -> None:
    payload = github_payload("pull_request_opened")
    payload["action"] = action
    result = parse_pull_request(payload)
    assert isinstance(result, Ignored) and action in result.reason


def test_skip_markers_in_the_title_are_honoured() -> None:
    payload = github_payload("pull_request_opened")
    payload["pull_request"]["title"] = "Docs only [CI SKIP]"
    assert parsed(payload).skip_requested
    assert not parsed(github_payload("pull_request_opened")).skip_requested


def _broken(change: str) -> dict[str, Any]:
    payload = copy.deepcopy(github_payload("pull_request_from_fork"))
    pr = payload["pull_request"]
    if change == "number is text":
        payload["number"] = "15"
    elif change == "number is a boolean":
        payload["number"] = True
    elif change == "number is negative":
        payload["number"] = pr["number"] = -1
    elif change == "numbers disagree":
        pr["number"] = 16
    elif change == "bad head sha":
        pr["head"]["sha"] = "HEAD~1"
    elif change == "head ref is a command":
        pr["head"]["ref"] = "$(touch /tmp/pwned)"
    elif change == "base ref climbs":
        pr["base"]["ref"] = "../../etc"
    elif change == "base repository is another one":
        pr["base"]["repo"]["id"] = 999
    elif change == "no base repository id":
        del pr["base"]["repo"]["id"]
    elif change == "no pull_request":
        del payload["pull_request"]
    return payload


@pytest.mark.parametrize(
    "change",
    [
        "number is text",
        "number is a boolean",
        "number is negative",
        "numbers disagree",
        "bad head sha",
        "head ref is a command",
        "base ref climbs",
        "base repository is another one",
        "no base repository id",
        "no pull_request",
    ],
)
def test_malformed_pull_requests_are_refused(change: str) -> None:
    with pytest.raises(MalformedPayload):
        parse_pull_request(_broken(change))
