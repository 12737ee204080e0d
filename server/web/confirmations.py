"""Production actions ask first, as GitHub does for what cannot be undone lightly: promoting to a
production environment, rolling it back, approving a deployment to it. The button leads to a page
that says what will happen and asks for the environment's name to be typed; the action's POST is
refused without it (``unconfirmed``), so no form elsewhere, no script and no forged request
skips the question. Other environments act at once.

The confirmation page carries the fields it was asked with (``source``, or a deployment to roll
back to) into its form unchanged: the action's own route checks them, as it does any form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from server.auth.reading import SIGNED_IN
from server.auth.session import ViewerDep
from server.deploys.actions import find_environment
from server.deploys.service import previous_success
from server.deps import SessionDep
from server.environments.production import is_production
from server.models import Deployment, Environment, Repository
from server.repos.access import readable_repository
from server.web.error_pages import PageRoute
from server.web.render import render

router = APIRouter(prefix="/-", include_in_schema=False, route_class=PageRoute)

ConfirmField = Annotated[str, Form(max_length=200)]
# What a confirmation page passes on to its action's form (``csrf`` and ``confirm`` are its own).
_PASSED_ON_LIMIT = 10


def unconfirmed(environment: str, confirm: str) -> str | None:
    """Why a POST acting on ``environment`` may not go ahead as sent, or None."""
    if is_production(environment) and confirm.strip() != environment:
        return f"Type {environment} to confirm: it is a production environment. Nothing was done."
    return None


@dataclass(frozen=True)
class Question:
    environment: str
    action: str  # the page's title and its button, e.g. "Roll back production"
    summary: str  # what runs there now and what will be deployed


def confirmation_page(
    request: Request, viewer: ViewerDep, repository: Repository, question: Question, *,
    fields: list[tuple[str, str]] | None = None, error: str | None = None,
) -> HTMLResponse:  # fmt: skip
    """The question, with ``fields`` (default: the query's) passed on to the action's form. With
    ``error``: the action's POST came unconfirmed, and is answered 422 with the question again."""
    _signed_in(viewer)
    if fields is None:
        fields = [(name, value) for name, value in request.query_params.multi_items()]
    fields = [(name, value) for name, value in fields if name not in ("csrf", "confirm", "back")]
    context = {
        "repository": repository,
        "environment": question.environment,
        "production": is_production(question.environment),
        "action": question.action,
        "url": request.url.path,
        "summary": question.summary,
        "fields": fields[:_PASSED_ON_LIMIT],
        "error": error,
    }
    return render(request, "confirm.html", context, viewer, status_code=422 if error else 200)


def _signed_in(viewer: ViewerDep) -> None:
    if viewer is None:
        raise HTTPException(403, "sign in to act on deployments")


def _repository(session: Session, owner: str, name: str) -> Repository:
    return readable_repository(session, f"{owner}/{name}", SIGNED_IN)  # the viewer is signed in


def _described(deployment: Deployment | None) -> str:
    if deployment is None:
        return "nothing"
    branch = f" of {deployment.branch}" if deployment.branch else ""
    return f"deployment #{deployment.id}, commit {deployment.commit_sha[:12]}{branch}"


def rollback_question(
    session: Session, repository: Repository, environment: str, to: int | None = None
) -> Question:
    """``to``: the deployment chosen to go back to (None: the previous successful one). The
    action's POST decides whether it may be deployed again; the question only names it."""
    found = find_environment(session, repository, environment)
    live = session.get(Deployment, found.live_deployment_id) if found.live_deployment_id else None
    if to is None:
        target = previous_success(session, found, live)
        going_back_to = _described(target) if target else "the previous successful deployment"
    else:
        chosen = session.get(Deployment, to)
        going_back_to = (
            _described(chosen) if chosen and chosen.environment_id == found.id else f"deployment #{to}"
        )
    summary = (
        f"{repository.full_name} {environment} runs {_described(live)}. Rolling back deploys "
        f"{going_back_to} again."
    )
    return Question(environment, f"Roll back {environment}", summary)


def promote_question(session: Session, repository: Repository, source: str, target: str) -> Question:
    origin = find_environment(session, repository, source)
    live = session.get(Deployment, origin.live_deployment_id) if origin.live_deployment_id else None
    summary = f"Deploys to {repository.full_name} {target} what runs on {source}: {_described(live)}."
    return Question(target, f"Promote {source} to {target}", summary)


def approve_question(session: Session, repository: Repository, deployment_id: int) -> Question:
    found = session.execute(
        sa.select(Deployment, Environment.name)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(Deployment.id == deployment_id, Environment.repository_id == repository.id)
    ).first()
    if found is None:
        raise HTTPException(404, f"{repository.full_name} has no deployment #{deployment_id}")
    deployment, environment = found
    summary = f"Lets {_described(deployment)} go ahead to {repository.full_name} {environment}."
    return Question(environment, f"Deploy to {environment}", summary)


@router.get("/repos/{owner}/{name}/environments/{environment}/rollback", response_class=HTMLResponse)
def confirm_rollback(
    owner: str, name: str, environment: str, request: Request, session: SessionDep, viewer: ViewerDep,
    to: str = "",
) -> HTMLResponse:  # fmt: skip
    _signed_in(viewer)
    repository = _repository(session, owner, name)
    if to and not to.isdigit():
        raise HTTPException(422, f"{to!r} is not a deployment number")
    question = rollback_question(session, repository, environment, int(to) if to else None)
    return confirmation_page(request, viewer, repository, question, fields=[("to", to)] if to else [])


@router.get("/repos/{owner}/{name}/environments/{target}/promote", response_class=HTMLResponse)
def confirm_promote(
    owner: str, name: str, target: str, request: Request, session: SessionDep, viewer: ViewerDep,
    source: str = "",
) -> HTMLResponse:  # fmt: skip
    _signed_in(viewer)
    repository = _repository(session, owner, name)
    question = promote_question(session, repository, source, target)
    return confirmation_page(request, viewer, repository, question)


@router.get("/repos/{owner}/{name}/deployments/{deployment_id}/approve", response_class=HTMLResponse)
def confirm_approve(
    owner: str, name: str, deployment_id: int, request: Request, session: SessionDep, viewer: ViewerDep
) -> HTMLResponse:
    _signed_in(viewer)
    repository = _repository(session, owner, name)
    question = approve_question(session, repository, deployment_id)
    return confirmation_page(request, viewer, repository, question)
