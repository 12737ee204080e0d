"""Promote, rollback, approve and environment rules from the deployments page, for signed-in users
(CSRF-checked forms). The same service calls as the token API (``server/deploys/endpoints.py``,
``server/environments/endpoints.py``). Acting on a production environment needs its name typed
on a confirmation page first (``server/web/confirmations.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from server.auth.session import ViewerDep
from server.deploys.actions import approve_deployment, promote, rollback
from server.deploys.messages import announce_after_commit
from server.deps import SessionDep, StateDep
from server.environments.schemas import EnvironmentRuleIn
from server.environments.service import set_rule
from server.models import Repository
from server.repos.service import get_repository
from server.web.actions import BackField, CsrfField, allowed
from server.web.confirmations import (
    ConfirmField,
    approve_question,
    confirmation_page,
    promote_question,
    rollback_question,
    unconfirmed,
)
from server.web.error_pages import PageRoute
from server.web.login import local_path

router = APIRouter(prefix="/-", include_in_schema=False, route_class=PageRoute)

EnvironmentField = Annotated[str, Form(min_length=1, max_length=100)]


@router.post("/repos/{owner}/{name}/environments/{target}/promote", response_model=None)
def promote_environment(
    owner: str, name: str, target: str, request: Request, session: SessionDep, state: StateDep,
    viewer: ViewerDep, source: EnvironmentField, csrf: CsrfField = "", back: BackField = "/-/deployments",
    confirm: ConfirmField = "",
) -> Response:  # fmt: skip
    user = allowed(request, state, viewer, csrf)
    repository = _repository(session, owner, name)
    if (refusal := unconfirmed(target, confirm)) is not None:
        question = promote_question(session, repository, source, target)
        return confirmation_page(
            request, viewer, repository, question, fields=[("source", source)], error=refusal
        )
    _, announcements = promote(session, state.settings, repository, source, target, f"{user.name} (promote)")
    announce_after_commit(session, announcements)
    return RedirectResponse(local_path(back), status_code=303)


@router.post("/repos/{owner}/{name}/environments/{environment}/rollback", response_model=None)
def rollback_environment(
    owner: str, name: str, environment: str, request: Request, session: SessionDep, state: StateDep,
    viewer: ViewerDep, csrf: CsrfField = "", back: BackField = "/-/deployments", confirm: ConfirmField = "",
    to: Annotated[str, Form(max_length=20)] = "",
) -> Response:  # fmt: skip
    """Roll back to the deployment the form names (``to``), or to the previous success."""
    user = allowed(request, state, viewer, csrf)
    repository = _repository(session, owner, name)
    if to and not to.isdigit():
        raise HTTPException(422, f"{to!r} is not a deployment number")
    target = int(to) if to else None
    if (refusal := unconfirmed(environment, confirm)) is not None:
        question = rollback_question(session, repository, environment, target)
        fields = [("to", to)] if to else []
        return confirmation_page(request, viewer, repository, question, fields=fields, error=refusal)
    _, announcements = rollback(session, repository, environment, f"{user.name} (rollback)", target)
    announce_after_commit(session, announcements)
    return RedirectResponse(local_path(back), status_code=303)


@router.post("/repos/{owner}/{name}/deployments/{deployment_id}/approve", response_model=None)
def approve(
    owner: str, name: str, deployment_id: int, request: Request, session: SessionDep, state: StateDep,
    viewer: ViewerDep, csrf: CsrfField = "", back: BackField = "/-/deployments", confirm: ConfirmField = "",
) -> Response:  # fmt: skip
    user = allowed(request, state, viewer, csrf)
    repository = _repository(session, owner, name)
    question = approve_question(session, repository, deployment_id)
    if (refusal := unconfirmed(question.environment, confirm)) is not None:
        return confirmation_page(request, viewer, repository, question, fields=[], error=refusal)
    _, announcements = approve_deployment(session, repository, deployment_id, user.name)
    announce_after_commit(session, announcements)
    return RedirectResponse(local_path(back), status_code=303)


ListField = Annotated[str, Form(max_length=5000)]


@router.post("/repos/{owner}/{name}/environments/{environment}/rule")
def set_environment_rule(
    owner: str, name: str, environment: str, request: Request, session: SessionDep, state: StateDep,
    viewer: ViewerDep, csrf: CsrfField = "", branches: ListField = "", runner_labels: ListField = "",
    require_approval: Annotated[str, Form(max_length=10)] = "",
) -> RedirectResponse:  # fmt: skip
    """The whole rule as the form shows it: branch globs and labels separated by commas or
    spaces (no branches: the default branch only), approval as a checkbox."""
    user = allowed(request, state, viewer, csrf)
    repository = _repository(session, owner, name)
    try:
        change = EnvironmentRuleIn(
            branches=_words(branches),
            runner_labels=_words(runner_labels),
            require_approval=bool(require_approval),
        )
        set_rule(session, repository, environment, change, user.name)
    except ValidationError as error:  # a RuleError is answered by server/errors.py
        raise HTTPException(422, str(error)) from None
    return RedirectResponse(f"/-/deployments#env-{repository.full_name}-{environment}", status_code=303)


def _words(text: str) -> list[str]:
    return [word for word in text.replace(",", " ").split() if word]


def _repository(session: SessionDep, owner: str, name: str) -> Repository:
    repository = get_repository(session, f"{owner}/{name}")
    if repository is None:
        raise HTTPException(404, f"repository {owner}/{name} is not registered")
    return repository
