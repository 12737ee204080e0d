"""What a notification says, in each channel's form: one line of text (Slack, an e-mail's
subject), a short plain-text body (e-mail), and the JSON body of the signed webhook.

Every text here comes from a payload written when the event happened; branch names, commit
messages and authors come from a pushed commit, so they are made one line without control
characters (no header injection in an e-mail subject) and Slack's markup characters are escaped."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

_TITLES = {
    "build.failed": "failed",
    "build.fixed": "fixed",
    "build.errored": "errored (Greenlight could not run it)",
    "deployment.succeeded": "deployed",
    "deployment.failed": "deployment failed",
    "deployment.rolled_back": "rolled back",
    "test": "test message",
}
MAX_LINE = 200


def one_line(text: object, limit: int = MAX_LINE) -> str:
    """``text`` without line breaks or other control characters, at most ``limit`` characters."""
    cleaned = "".join(" " if unicodedata.category(char).startswith("C") else char for char in str(text or ""))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


def with_url(payload: dict[str, Any], public_url: str) -> dict[str, Any]:
    """The payload as sent: ``build.url`` (the build page under GREENLIGHT_PUBLIC_URL) in place of
    its path."""
    body = json.loads(json.dumps(payload))
    build = body.get("build") or {}
    path = build.pop("path", None)
    build["url"] = f"{public_url.rstrip('/')}{path}" if path else None
    return body


def summary(body: dict[str, Any]) -> str:
    """One line: ``acme/app main: build #12 failed (abc1234 by Jane: Fix the thing)``."""
    build = body.get("build") or {}
    deployment = body.get("deployment") or {}
    commit = body.get("commit") or {}
    what = _TITLES.get(str(body.get("event")), str(body.get("event")))
    if deployment:
        subject = f"{deployment.get('environment')}: deployment #{deployment.get('id')} {what}"
    elif body.get("event") == "test":
        subject = what
    else:
        subject = f"build #{build.get('number')} {what}"
    branch = f" {body['branch']}" if body.get("branch") else ""
    sha = str(commit.get("sha") or "")[:12]
    author = f" by {commit['author']}" if commit.get("author") else ""
    message = f": {commit['message']}" if commit.get("message") else ""
    detail = f" ({sha}{author}{message})" if sha else ""
    return one_line(f"{body.get('repository')}{branch}: {subject}{detail}", 400)


def email_subject(body: dict[str, Any]) -> str:
    return one_line(f"[Greenlight] {summary(body)}")


def email_text(body: dict[str, Any]) -> str:
    build = body.get("build") or {}
    deployment = body.get("deployment") or {}
    lines = [summary(body), ""]
    reason = deployment.get("reason") or build.get("reason")
    if reason:
        lines.append(f"Reason: {one_line(reason, 500)}")
    if tests := _tests(build):
        lines.append(f"Tests: {tests}")
    if build.get("url"):
        lines.append(f"Build: {build['url']}")
    lines.append(f"State: {one_line(deployment.get('state') or build.get('state'))}")
    return "\n".join(lines) + "\n"


def _tests(build: dict[str, Any]) -> str:
    """ "3 failed of 1,204 tests", when the build's jobs reported tests."""
    tests = build.get("tests") or {}
    return one_line(tests.get("description")) if tests else ""


def slack_message(body: dict[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message (Mattermost and Rocket.Chat take it too)."""
    build = body.get("build") or {}
    text = _slack_escape(summary(body))
    if tests := _tests(build):
        text += f" · {_slack_escape(tests)}"
    if build.get("url"):
        text += f" <{_slack_escape(build['url'])}|build page>"
    return {"text": text}


# An invisible character that breaks a mention or a link's syntax and leaves the text as it reads.
_ZERO_WIDTH_SPACE = "\u200b"


def _slack_escape(text: str) -> str:
    # Slack's markup: without this a commit message "<!channel>" would ping everyone.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Mattermost and Rocket.Chat read the same text as markdown with @-mentions: "@all" (or
    # "@channel", "@here", a person) would ping, and "[Sign in](https://…)" would show a link
    # whose target a commit chose.
    return text.replace("@", "@" + _ZERO_WIDTH_SPACE).replace("](", "]" + _ZERO_WIDTH_SPACE + "(")


def webhook_body(body: dict[str, Any]) -> bytes:
    """The signed webhook's body: the payload (``version`` 1) as compact JSON; the signature is
    computed over exactly these bytes."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
