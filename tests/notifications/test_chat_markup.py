"""Text from a commit cannot mention everyone nor dress a link up in a Slack-compatible chat
(Mattermost and Rocket.Chat read @all, @channel, @here and markdown links in a webhook's text)."""

from __future__ import annotations

import re

import pytest

from server.notifications.messages import slack_message

BODY = {
    "event": "build.failed",
    "repository": "acme/app",
    "branch": "main",
    "commit": {"sha": "a" * 40, "author": "@here", "message": ""},
    "build": {"number": 12, "url": "https://ci.example.com/acme/app/builds/12"},
}


@pytest.mark.parametrize("mention", ["@all", "@channel", "@here", "@everyone", "@jane"])
def test_a_mention_in_a_commit_pings_nobody(mention: str) -> None:
    body = {**BODY, "commit": {**BODY["commit"], "message": f"hey {mention} look"}}  # type: ignore[dict-item]
    text = slack_message(body)["text"]
    assert not re.search(r"(?<![\w])@[A-Za-z]", text), text


def test_a_markdown_link_in_a_commit_stays_text() -> None:
    message = "Sign in again [here](https://evil.example/login) or ![x](https://evil.example/p.png)"
    body = {**BODY, "commit": {**BODY["commit"], "message": message}}  # type: ignore[dict-item]
    text = slack_message(body)["text"]
    assert not re.search(r"\]\(", text), text
    assert text.endswith(" <https://ci.example.com/acme/app/builds/12|build page>")
