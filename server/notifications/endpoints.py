"""The notifications API: a repository's rules (create or replace, list, remove, send a test
message) and its recent deliveries. Every route needs a user token; no route returns a channel's
URL or signing key, and the body is parsed without echoing it (it holds them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from server.auth.users import UserDep
from server.crypto import UndecryptableSecret
from server.deps import SessionDep, StateDep
from server.models import NotificationRule, Repository
from server.models.base import utcnow
from server.notifications.channels import DeliveryFailed
from server.notifications.events import PAYLOAD_VERSION
from server.notifications.queries import last_deliveries, recent_deliveries
from server.notifications.rules import (
    ChannelSecret,
    NotificationError,
    delete_rule,
    find_rule,
    list_rules,
    read_secret,
    set_rule,
)
from server.notifications.schemas import DeliveryOut, RuleIn, RuleOut, TestOut
from server.notifications.sender import deliver, http_client
from server.secrets.endpoints import read_body_without_echo, registered_repository

router = APIRouter(prefix="/api/repos/{owner}/{name}/notifications", tags=["notifications"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": RuleIn.model_json_schema()}}}
}


def rule_out(repository: Repository, rule: NotificationRule, last: DeliveryOut | None) -> RuleOut:
    return RuleOut(
        repository=repository.full_name,
        name=rule.name,
        channel=rule.channel,
        events=list(rule.events),
        branches=list(rule.branches),
        recipients=list(rule.recipients),
        pull_requests=rule.pull_requests,
        url_set=rule.channel != "email" and rule.ciphertext is not None,
        signing_key_set=rule.channel == "webhook" and rule.ciphertext is not None,
        created_by=rule.created_by,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        last_delivery=last,
    )


async def _rule_in(request: Request) -> RuleIn:
    return await read_body_without_echo(request, RuleIn)


@router.get("")
def list_notifications(owner: str, name: str, session: SessionDep, _user: UserDep) -> list[RuleOut]:
    repository = registered_repository(session, owner, name)
    last = last_deliveries(session, repository)
    return [rule_out(repository, rule, last.get(rule.name)) for rule in list_rules(session, repository)]


@router.get("/deliveries")
def list_deliveries(
    owner: str, name: str, session: SessionDep, _user: UserDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:  # fmt: skip
    """The newest messages first: sent, pending (with their next attempt) or failed (given up)."""
    return recent_deliveries(session, registered_repository(session, owner, name), limit)


@router.put("/{rule_name}", openapi_extra=_BODY_DOC, responses={201: {"model": RuleOut}})
def put_notification(
    owner: str,
    name: str,
    rule_name: str,
    user: UserDep,
    body: Annotated[RuleIn, Depends(_rule_in)],
    response: Response,
    session: SessionDep,
    state: StateDep,
) -> RuleOut:
    """Create or replace a rule (201 when new). Its URL and signing key are encrypted before they
    are stored; left out when replacing, the stored ones are kept."""
    repository = registered_repository(session, owner, name)
    given = None
    if body.url is not None or body.signing_key is not None:
        given = ChannelSecret(
            url=body.url.get_secret_value() if body.url else "",
            signing_key=body.signing_key.get_secret_value() if body.signing_key else "",
        )
    try:
        rule, created = set_rule(
            session, state.settings.secret_cipher(), repository, rule_name, channel=body.channel,
            events=body.events, branches=body.branches, recipients=body.recipients, secret=given,
            pull_requests=body.pull_requests,
            who=f"token {user.name}",
        )  # fmt: skip
    except NotificationError as error:
        raise HTTPException(422, str(error)) from None
    response.status_code = 201 if created else 200
    return rule_out(repository, rule, None)


@router.delete("/{rule_name}", status_code=204)
def remove_notification(
    owner: str, name: str, rule_name: str, session: SessionDep, _user: UserDep
) -> Response:
    repository = registered_repository(session, owner, name)
    if not delete_rule(session, repository, rule_name):
        raise HTTPException(404, f"{owner}/{name} has no notification {rule_name}")
    return Response(status_code=204)


@router.post("/{rule_name}/test")
def test_notification(
    owner: str, name: str, rule_name: str, session: SessionDep, _user: UserDep, state: StateDep
) -> TestOut:
    """Send a test message through the rule's channel now, and say whether it was delivered (the
    outbox is not involved: nothing is retried)."""
    repository = registered_repository(session, owner, name)
    rule = find_rule(session, repository, rule_name)
    if rule is None:
        raise HTTPException(404, f"{owner}/{name} has no notification {rule_name}")
    try:
        secret = read_secret(state.settings.secret_cipher(), rule)
    except UndecryptableSecret as error:
        return TestOut(delivered=False, error=f"the channel's secret cannot be read: {error}")
    payload = {
        "version": PAYLOAD_VERSION,
        "event": "test",
        "repository": repository.full_name,
        "branch": None,
        "commit": {},
        "build": None,
        "deployment": None,
        "occurred_at": utcnow().isoformat(),
    }
    try:
        with http_client(state.settings) as http:
            deliver(
                http, state.settings, channel=rule.channel, payload=payload, recipients=list(rule.recipients),
                url=secret.url if secret else "", signing_key=secret.signing_key if secret else "",
                delivery_id="test",
            )  # fmt: skip
    except DeliveryFailed as error:
        return TestOut(delivered=False, error=str(error))
    return TestOut(delivered=True, error=None)
