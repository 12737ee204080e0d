import pytest

from server.webhooks.events import (
    BranchDeleted,
    Ignored,
    MalformedPayload,
    PushEvent,
    is_valid_ref,
    parse_push,
)
from tests.fixtures import github_payload, push_payload


def test_push_to_a_branch_builds_its_head_commit() -> None:
    event = parse_push(github_payload("push"))
    assert isinstance(event, PushEvent)
    assert (event.repository, event.branch, event.tag) == ("Codertocat/Hello-World", "master", None)
    assert event.commit_sha == "199eddf46df50de8d02e99bf1c5fdb4101338224"
    assert event.event == "push"


def test_push_of_a_tag_builds_the_tagged_commit() -> None:
    event = parse_push(github_payload("push_tag"))
    assert isinstance(event, PushEvent)
    assert (event.tag, event.branch, event.event) == ("v0.0.1", None, "tag")
    assert event.commit_sha == github_payload("push_tag")["head_commit"]["id"]


def test_push_deleting_a_branch_starts_no_build_and_says_which_branch_went() -> None:
    result = parse_push(github_payload("push_branch_delete"))
    assert result == BranchDeleted("bradrydzewski/drone-test-go", "feature-branch")


def test_push_deleting_a_tag_starts_no_build() -> None:
    result = parse_push(github_payload("push_tag_delete"))
    assert isinstance(result, Ignored)
    assert "deleted" in result.reason


@pytest.mark.parametrize("message", ["fix typo [skip ci]", "[CI SKIP] docs", "wip\n\n[skip ci]"])
def test_skip_markers_in_the_head_commit_message_are_honoured(message: str) -> None:
    event = parse_push(push_payload("o/r", "refs/heads/main", "a" * 40, message))
    assert isinstance(event, PushEvent) and event.skip_requested


def test_a_normal_message_does_not_skip() -> None:
    event = parse_push(push_payload("o/r", "refs/heads/main", "a" * 40, "skip the ci talk"))
    assert isinstance(event, PushEvent) and not event.skip_requested


@pytest.mark.parametrize(
    "ref",
    [
        "refs/heads/$(touch /tmp/pwned)",
        "refs/heads/a..b",
        "refs/heads/-x/../..",
        "main",
        "refs/heads/x;y z",
        "refs/heads/",
    ],
)
def test_refs_git_would_refuse_are_malformed(ref: str) -> None:
    with pytest.raises(MalformedPayload):
        parse_push(push_payload("o/r", ref, "a" * 40))


def test_a_ref_with_shell_syntax_git_allows_is_just_a_name() -> None:
    assert is_valid_ref("refs/heads/$(touch${IFS}/tmp/pwned)")


def test_a_head_commit_id_that_is_not_a_sha_is_malformed() -> None:
    with pytest.raises(MalformedPayload):
        parse_push(push_payload("o/r", "refs/heads/main", "1234; rm -rf /"))


def test_a_repository_name_that_is_not_owner_slash_name_is_malformed() -> None:
    with pytest.raises(MalformedPayload):
        parse_push(push_payload("../../etc", "refs/heads/main", "a" * 40))
