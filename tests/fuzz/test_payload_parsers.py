"""Property: any payload gives an event, an Ignored saying why, or MalformedPayload — nothing else;
and what comes out as an event holds only validated refs and SHAs."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.names import is_commit_sha, is_full_name
from server.webhooks.events import (
    BranchDeleted,
    Ignored,
    MalformedPayload,
    PushEvent,
    is_valid_ref,
    parse_push,
)
from server.webhooks.pull_requests import PullRequestClosed, PullRequestEvent, parse_pull_request
from tests.fixtures import github_payload
from tests.fuzz.strategies import json_values, mutated

PUSHES = ["push", "push_branch_create", "push_branch_delete", "push_tag", "push_tag_delete"]
PULLS = ["pull_request_opened", "pull_request_synchronize", "pull_request_from_fork", "pr_sync"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_push(payload: Any) -> None:
    try:
        result = parse_push(payload)
    except MalformedPayload as error:
        assert str(error)
        return
    assert isinstance(result, PushEvent | BranchDeleted | Ignored)
    if isinstance(result, PushEvent):
        assert is_commit_sha(result.commit_sha) and is_valid_ref(result.ref)
        assert is_full_name(result.repository)
        assert (result.branch is None) != (result.tag is None)
        assert result.commit_url is None or result.commit_url.startswith("https://")
    elif isinstance(result, BranchDeleted):
        assert is_full_name(result.repository) and is_valid_ref(f"refs/heads/{result.branch}")
    else:
        assert result.reason


def check_pull_request(payload: Any) -> None:
    try:
        result = parse_pull_request(payload)
    except MalformedPayload as error:
        assert str(error)
        return
    assert isinstance(result, PullRequestEvent | PullRequestClosed | Ignored)
    if isinstance(result, PullRequestEvent):
        assert is_commit_sha(result.commit_sha) and is_full_name(result.repository)
        assert result.number > 0


@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_push_parser_on_any_object(payload: dict[str, Any]) -> None:
    check_push(payload)


@FUZZ
@given(st.sampled_from(PUSHES).flatmap(lambda name: mutated(github_payload(name))))
def test_push_parser_on_real_pushes_with_fields_replaced(payload: dict[str, Any]) -> None:
    check_push(payload)


@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_pull_request_parser_on_any_object(payload: dict[str, Any]) -> None:
    check_pull_request(payload)


@FUZZ
@given(st.sampled_from(PULLS).flatmap(lambda name: mutated(github_payload(name))))
def test_pull_request_parser_on_real_payloads_with_fields_replaced(payload: dict[str, Any]) -> None:
    check_pull_request(payload)


@FUZZ
@given(st.text(max_size=300))
def test_ref_validation_never_raises_and_refuses_what_git_would(ref: str) -> None:
    if is_valid_ref(ref):
        assert ref.startswith("refs/") and ".." not in ref and " " not in ref and "\x00" not in ref
