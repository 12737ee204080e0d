"""Which branches may deploy to an environment: the environment's rule, kept on the server by
people (``greenlight env set``), never read from the pushed commit.

- An environment with branch globs deploys commits of matching branches only (the glob rules of
  `when: branch`: ``*`` stops at ``/``).
- An environment without any (every environment a pipeline names before someone sets a rule)
  deploys only the repository's default branch: a push of any other branch, whatever its
  `.greenlight.yml` says, deploys nothing until a person allows that branch.
- A pipeline's `deploy.<env>.branch` picks which of the allowed branches deploy on their own
  (``server/pipelines/deploy_branches.py``): it narrows, it never widens.

Asked when a deployment is requested (automatically, promote, rollback), when it is approved,
and again when a runner claims its deploy job, with the rule as it is at that moment.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import Deployment, DeploymentState, Environment, Repository
from server.pipelines.branch_globs import branch_matches
from server.pipelines.config import DEFAULT_DEPLOY_LABELS


def allowed_branches(rule: list[str], default_branch: str) -> list[str]:
    """The globs an environment's rule (its ``branches``) allows: the default branch alone when
    none are set."""
    return list(rule) or [default_branch]


def deploy_labels(environment: Environment, config: dict[str, Any]) -> list[str]:
    """The labels a deploy job needs: the environment's runners when the server names them (a
    pipeline file cannot move a protected environment's deploys elsewhere), else the file's
    `runs_on` as frozen in the deployment (``config``)."""
    return list(environment.runner_labels or config.get("labels") or DEFAULT_DEPLOY_LABELS)


def reserved_label_refusal(session: Session, repository_id: int, labels: list[str]) -> str | None:
    """Why a job that deploys nowhere may not ask for ``labels`` (None: it may). The labels deploy
    jobs run on are theirs alone: the default deploy label, and every label an environment's rule
    names, of any repository (a runner takes every repository's jobs). Otherwise a branch, or a
    fork's pull request, could put `runs_on: [deploy-prod]` in its file and run on the
    production deploy runner. Asked at planning, and again at the claim."""
    if not labels:
        return None
    asked = set(labels)
    reserved: dict[str, str] = dict.fromkeys(asked & set(DEFAULT_DEPLOY_LABELS), "deploy jobs")
    rules = session.execute(
        sa.select(
            Environment.name, Environment.repository_id, Environment.runner_labels, Repository.full_name
        )
        .join(Repository, Repository.id == Environment.repository_id)
        .order_by(Environment.repository_id != repository_id, Repository.full_name, Environment.name)
    )
    for name, owner, runner_labels, full_name in rules:
        for label in asked & set(runner_labels or ()):
            whose = name if owner == repository_id else f"{full_name} {name}"
            reserved.setdefault(label, f"deploy jobs of {whose}")
    if not reserved:
        return None
    label = min(reserved)
    return (
        f"runs_on: {label} is reserved for {reserved[label]}; only deploy jobs run on the runners "
        f"of an environment (remove {label} from runs_on, or run this under `deploy:`)"
    )


def branch_refusal(environment: Environment, repository: Repository, branch: str | None) -> str | None:
    """None when ``branch`` may deploy to ``environment``; otherwise why not, in words a person can
    act on (the history and the API show it)."""
    allowed = allowed_branches(environment.branches, repository.default_branch)
    if branch is not None and branch_matches(branch, allowed):
        return None
    what = f"branch {branch}" if branch is not None else "a commit of no branch"
    allow = (
        f"allow it with `greenlight env set {repository.full_name} {environment.name} --branch "
        f"{branch or 'BRANCH'}`"
    )
    if environment.branches:
        return f"refused: {environment.name} allows branches {', '.join(allowed)} only, not {what}; {allow}"
    return (
        f"refused: {environment.name} has no branch rule, so only the default branch "
        f"{repository.default_branch} deploys there, not {what}; {allow}"
    )


def in_use() -> sa.ColumnElement[bool]:
    """Environments worth listing: with a rule set by a person, or with a deployment that was not
    refused. Any push may name any environment under `deploy:`, and its refused deployment needs
    the environment's row; such a row alone is listed nowhere (its history is still there, by
    name: ``/api/environments/NAME/deployments``, ``greenlight deploy history``)."""
    tried = (
        sa.select(Deployment.id)
        .where(Deployment.environment_id == Environment.id, Deployment.state != DeploymentState.refused)
        .exists()
    )
    return sa.or_(Environment.rule_updated_at.is_not(None), tried)


def deploy_job_refusal(session: Session, deploy_build_id: int) -> str | None:
    """At the claim: may the deploy build's deployment still deploy, by its environment's rule as
    it is now? (A rule changed after the deployment was asked for wins.)"""
    row = session.execute(
        sa.select(Deployment.branch, Environment, Repository)
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(Repository, Repository.id == Environment.repository_id)
        .where(Deployment.deploy_build_id == deploy_build_id)
    ).one_or_none()
    if row is None:
        return "refused: this deploy job belongs to no deployment"
    return branch_refusal(row.Environment, row.Repository, row.branch)
