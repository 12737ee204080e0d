"""A repository's notification rules: which channel hears which events of which branches. Set by
people with a user token on the server, never by a pipeline file (a pushed commit must not add a
recipient, nor silence the alerts about itself).

A channel's secret (the webhook URL, the signing key) goes in and never comes out: it is stored
encrypted with the repository secrets' key (``server/crypto.py``), bound to its rule's row, and
decrypted by the sender alone."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.crypto import SecretCipher, UndecryptableSecret
from server.models import NotificationRule, Repository
from server.models.base import utcnow
from server.secrets.service import SecretError, check_branches

CHANNELS = ("slack", "webhook", "email")
BUILD_EVENTS = ("build.failed", "build.fixed", "build.errored")
DEPLOYMENT_EVENTS = ("deployment.succeeded", "deployment.failed", "deployment.rolled_back")
EVENTS = BUILD_EVENTS + DEPLOYMENT_EVENTS
MAX_URL = 2000
MIN_SIGNING_KEY = 16
MAX_RECIPIENTS = 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class NotificationError(ValueError):
    """A rule that cannot be stored as asked, in words the user can act on."""


@dataclass(frozen=True)
class ChannelSecret:
    """What a channel must keep to itself: where to post, and the key that signs the body."""

    url: str = ""
    signing_key: str = ""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise NotificationError(
            f"{name!r} is not a valid notification name: up to 100 letters, digits, _ . -, "
            "starting with a letter or digit"
        )
    return name


def check_events(events: Sequence[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(events)) if events else list(EVENTS)
    unknown = [event for event in chosen if event not in EVENTS]
    if unknown:
        raise NotificationError(f"unknown event(s) {', '.join(unknown)}: choose from {', '.join(EVENTS)}")
    return chosen


def check_url(url: str) -> str:
    """An http(s) URL with a host and no user name or password in it. Where it may point (a
    private address) is decided when a message is sent (``GREENLIGHT_NOTIFY_DENY_PRIVATE``)."""
    if not url or len(url) > MAX_URL or any(char.isspace() or ord(char) < 32 for char in url):
        raise NotificationError(f"the URL must be one line of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        raise NotificationError("the URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotificationError("the URL must start with https:// or http:// and name a host")
    if parts.username or parts.password:
        raise NotificationError("the URL must not carry a user name or password")
    return url


def check_recipients(recipients: Sequence[str]) -> list[str]:
    addresses = list(dict.fromkeys(address.strip() for address in recipients if address.strip()))
    if not addresses:
        raise NotificationError("an e-mail channel needs at least one recipient")
    if len(addresses) > MAX_RECIPIENTS:
        raise NotificationError(f"at most {MAX_RECIPIENTS} recipients")
    for address in addresses:
        if not _is_address(address):
            raise NotificationError(f"{address!r} is not an e-mail address (name@example.com)")
    return addresses


def _is_address(text: str) -> bool:
    if len(text) > 254 or any(char.isspace() or ord(char) < 32 or char in "<>,;\"'" for char in text):
        return False
    try:
        parsed = Address(addr_spec=text)
    except (ValueError, IndexError):
        return False
    return bool(parsed.username and "." in parsed.domain)


def bound_to(repository_id: int, name: str) -> str:
    """What a rule's secret is bound to: it decrypts only in its own row."""
    return f"notification/{repository_id}/{name}"


def set_rule(
    session: Session,
    cipher: SecretCipher,
    repository: Repository,
    name: str,
    *,
    channel: str,
    events: Sequence[str] | None,
    branches: Sequence[str] | None,
    recipients: Sequence[str] = (),
    secret: ChannelSecret | None = None,
    pull_requests: bool = False,
    who: str = "",
) -> tuple[NotificationRule, bool]:
    """Create or replace the rule ``name`` of ``repository``; returns it and whether it is new.
    Replacing a webhook rule without giving its secret again keeps the stored one; a new URL for
    a webhook needs a new signing key."""
    check_name(name)
    if channel not in CHANNELS:
        raise NotificationError(f"unknown channel {channel!r}: choose from {', '.join(CHANNELS)}")
    chosen_events = check_events(events)
    try:
        globs = check_branches(branches)
    except SecretError as error:
        raise NotificationError(str(error)) from None
    rule = find_rule(session, repository, name)
    created = rule is None
    if rule is not None and rule.channel != channel:
        raise NotificationError(f"{name} is a {rule.channel} channel: remove it first to make it {channel}")
    if rule is None:
        rule = NotificationRule(repository_id=repository.id, name=name, channel=channel, created_by=who)
    stored = _checked_secret(channel, secret, None if created else _stored_secret(cipher, rule))
    rule.recipients = check_recipients(recipients) if channel == "email" else []
    if channel == "email":
        rule.ciphertext, rule.key_id = None, None
    elif stored is not None:
        plain = json.dumps({"url": stored.url, "signing_key": stored.signing_key})
        rule.ciphertext, rule.key_id = cipher.encrypt(plain, bound_to(repository.id, name))
    rule.events, rule.branches, rule.updated_at = chosen_events, globs, utcnow()
    rule.pull_requests = pull_requests
    if created:
        session.add(rule)
    session.flush()
    return rule, created


def _checked_secret(
    channel: str, given: ChannelSecret | None, stored: ChannelSecret | None
) -> ChannelSecret | None:
    if channel == "email":
        if given is not None and (given.url or given.signing_key):
            raise NotificationError("an e-mail channel takes recipients, not a URL or signing key")
        return None
    url = given.url if given is not None and given.url else stored.url if stored is not None else ""
    if not url:
        raise NotificationError(f"a {channel} channel needs a url")
    key = given.signing_key if given is not None and given.signing_key else ""
    if channel == "slack":
        if key:
            raise NotificationError("a slack channel takes no signing key (only a webhook channel is signed)")
        return ChannelSecret(url=check_url(url))
    moved = stored is not None and url != stored.url
    if moved and not key:
        # The key was shared with the old URL's receiver only: kept for a new URL, it would sign
        # valid messages for whoever runs that host, to replay to the real receiver.
        raise NotificationError("a webhook channel moved to a new url needs a new signing_key")
    key = key or (stored.signing_key if stored is not None else "")
    if len(key) < MIN_SIGNING_KEY:
        raise NotificationError(
            f"a webhook channel needs a signing_key of at least {MIN_SIGNING_KEY} characters"
        )
    return ChannelSecret(url=check_url(url), signing_key=key)


def _stored_secret(cipher: SecretCipher, rule: NotificationRule) -> ChannelSecret | None:
    """The stored secret to keep when a rule is replaced; none if it no longer decrypts (its key
    was rotated out), so the replacement must give it again."""
    try:
        return read_secret(cipher, rule)
    except UndecryptableSecret:
        return None


def read_secret(cipher: SecretCipher, rule: NotificationRule) -> ChannelSecret | None:
    """The rule's secret, decrypted (for the sender; never for a reply)."""
    if rule.ciphertext is None or rule.key_id is None:
        return None
    document = json.loads(
        cipher.decrypt(rule.ciphertext, rule.key_id, bound_to(rule.repository_id, rule.name))
    )
    return ChannelSecret(url=document.get("url", ""), signing_key=document.get("signing_key", ""))


def find_rule(session: Session, repository: Repository, name: str) -> NotificationRule | None:
    return session.execute(
        sa.select(NotificationRule).where(
            NotificationRule.repository_id == repository.id, NotificationRule.name == name
        )
    ).scalar_one_or_none()


def list_rules(session: Session, repository: Repository) -> list[NotificationRule]:
    return list(
        session.scalars(
            sa.select(NotificationRule)
            .where(NotificationRule.repository_id == repository.id)
            .order_by(NotificationRule.name)
        )
    )


def delete_rule(session: Session, repository: Repository, name: str) -> bool:
    rule = find_rule(session, repository, name)
    if rule is None:
        return False
    session.delete(rule)
    session.flush()
    return True
