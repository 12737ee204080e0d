"""Reading environments and their history for the API, the CLI and the pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from server.auth.reading import Reader
from server.deploys.order import promotion_order
from server.deploys.schemas import DeploymentOut, EnvironmentOut, deployment_out
from server.environments.rules import allowed_branches, in_use
from server.models import Build, Deployment, DeploymentState, Environment, Repository

_Row = TypeVar("_Row", bound=Sequence[Any])


class AmbiguousEnvironment(LookupError):
    pass


@dataclass(frozen=True)
class EnvironmentRead:
    """An environment as the pages read it: its row, its API shape, the live deployment, and
    its earlier successful deployments of other commits (newest first; what a rollback offers)."""

    row: Environment
    out: EnvironmentOut
    live: Deployment | None
    earlier: list[DeploymentOut]
    builds: dict[int, Build]  # the builds of those deployments (shared by all environments read)


def environments_out(
    session: Session, public_url: str, repository_id: int | None = None, *, reader: Reader
) -> list[EnvironmentOut]:
    """Each environment in use that ``reader`` may read (of one repository, if given), by
    repository and in promotion order: what is live, its health, what is deploying, its rule."""
    return [read.out for read in environments_read(session, public_url, repository_id, reader=reader)]


def environments_read(
    session: Session, public_url: str, repository_id: int | None = None, *, reader: Reader, earlier: int = 0
) -> list[EnvironmentRead]:
    """``environments_out`` and more, in three queries whatever the number of environments: with
    ``earlier``, up to that many earlier successful deployments of each."""
    query = (
        sa.select(Environment, Repository.full_name, Repository.default_branch)
        .join(Repository, Repository.id == Environment.repository_id)
        .where(reader.readable(Repository.id), in_use())
        .order_by(Repository.full_name, Environment.name)
    )
    if repository_id is not None:
        query = query.where(Environment.repository_id == repository_id)
    rows = in_promotion_order(session.execute(query).all())
    if not rows:
        return []
    environment_ids = [environment.id for environment, *_ in rows]
    wanted = [
        sa.select(Deployment.id).where(
            Deployment.id.in_([e.live_deployment_id for e, *_ in rows if e.live_deployment_id])
        ),
        sa.select(Deployment.id).where(
            Deployment.environment_id.in_(environment_ids),
            Deployment.state.in_([DeploymentState.queued, DeploymentState.running]),
        ),
    ]
    if earlier:
        # A few more than asked: some may be of the live commit (the lateral keeps each an index scan).
        recent = (
            sa.select(Deployment.id)
            .where(Deployment.environment_id == Environment.id, Deployment.state == DeploymentState.succeeded)
            .order_by(Deployment.id.desc())
            .limit(earlier * 2)
            .lateral()
        )
        wanted.append(
            sa.select(recent.c.id)
            .select_from(Environment)
            .join(recent, sa.true())
            .where(Environment.id.in_(environment_ids))
        )
    deployments = list(
        session.scalars(
            sa.select(Deployment).where(Deployment.id.in_(sa.union(*wanted))).order_by(Deployment.id.desc())
        )
    )
    builds = builds_of(session, deployments)
    result = []
    for environment, full_name, default_branch in rows:
        own = [d for d in deployments if d.environment_id == environment.id]
        now = next((d for d in own if d.id == environment.live_deployment_id), None)
        deploying = next((d for d in own if d.state.active), None)
        before: dict[str, Deployment] = {}
        for deployment in own:
            if deployment.state is DeploymentState.succeeded and (
                now is None or deployment.commit_sha != now.commit_sha
            ):
                before.setdefault(deployment.commit_sha, deployment)
        out = EnvironmentOut(
            repository=full_name,
            name=environment.name,
            url=environment.url,
            healthy=environment.healthy,
            health_reason=environment.health_reason,
            live=deployment_out(now, environment, full_name, builds, public_url) if now else None,
            deploying=deployment_out(deploying, environment, full_name, builds, public_url)
            if deploying
            else None,
            allowed_branches=allowed_branches(environment.branches, default_branch),
            runner_labels=list(environment.runner_labels),
            require_approval=environment.require_approval,
        )
        choices = [
            deployment_out(d, environment, full_name, builds, public_url)
            for d in list(before.values())[:earlier]
        ]
        result.append(EnvironmentRead(environment, out, now, choices, builds))
    return result


@dataclass(frozen=True)
class LiveEnvironment:
    """An environment as the dashboard shows it: what is live there since when, and its health."""

    name: str
    healthy: bool
    health_reason: str | None
    commit_sha: str | None  # None: nothing live yet
    since: dt.datetime | None


def live_environments(session: Session, reader: Reader) -> dict[str, list[LiveEnvironment]]:
    """By repository name, each environment in use that ``reader`` may read, in promotion order:
    one query."""
    live = aliased(Deployment)  # in_use() looks at the environment's deployments on its own
    query = (
        sa.select(
            Environment,
            Repository.full_name,
            live.commit_sha,
            sa.func.coalesce(live.finished_at, live.created_at),
        )
        .join(Repository, Repository.id == Environment.repository_id)
        .outerjoin(live, live.id == Environment.live_deployment_id)
        .where(reader.readable(Repository.id), in_use())
    )
    found: dict[str, list[LiveEnvironment]] = {}
    for environment, full_name, sha, since in in_promotion_order(session.execute(query).all()):
        line = LiveEnvironment(environment.name, environment.healthy, environment.health_reason, sha, since)
        found.setdefault(full_name, []).append(line)
    return found


def in_promotion_order(rows: Sequence[_Row]) -> list[_Row]:
    """Rows of (environment, repository's name, …) sorted by repository, then by the promotion
    order of each repository's environments among those rows."""
    names: dict[str, list[Environment]] = {}
    for environment, full_name, *_ in rows:
        names.setdefault(full_name, []).append(environment)
    rank = {
        (full_name, name): at
        for full_name, environments in names.items()
        for at, name in enumerate(
            promotion_order([e.name for e in environments], {e.name: e.promote_from for e in environments})
        )
    }
    return sorted(rows, key=lambda row: (row[1], rank[(row[1], row[0].name)]))


def all_environments(session: Session, reader: Reader) -> list[tuple[Environment, str]]:
    """Every environment in use (``in_use``) ``reader`` may read with its repository's name, in the
    pages' order."""
    query = (
        sa.select(Environment, Repository.full_name)
        .join(Repository, Repository.id == Environment.repository_id)
        .where(reader.readable(Repository.id), in_use())
        .order_by(Repository.full_name, Environment.name)
    )
    return [
        (environment, full_name)
        for environment, full_name in in_promotion_order(session.execute(query).all())
    ]


def find_by_name(
    session: Session, name: str, repository_id: int | None, reader: Reader
) -> tuple[Environment, str] | None:
    """The environment called ``name`` (of the repository, if given) among those ``reader`` may
    read. Names are per repository: without one, a name that several repositories use is refused
    rather than guessed."""
    query = (
        sa.select(Environment, Repository.full_name)
        .join(Repository, Repository.id == Environment.repository_id)
        .where(Environment.name == name, reader.readable(Repository.id))
    )
    if repository_id is not None:
        query = query.where(Environment.repository_id == repository_id)
    rows = session.execute(query.limit(2)).all()
    if len(rows) > 1:
        raise AmbiguousEnvironment(
            f"several repositories have an environment named {name!r}; pass ?repository=OWNER/NAME"
        )
    return (rows[0][0], rows[0][1]) if rows else None


def history_out(
    session: Session, environment: Environment, full_name: str, public_url: str, limit: int = 50
) -> list[DeploymentOut]:
    deployments = session.scalars(
        sa.select(Deployment)
        .where(Deployment.environment_id == environment.id)
        .order_by(Deployment.id.desc())
        .limit(limit)
    ).all()
    builds = builds_of(session, deployments)
    return [deployment_out(d, environment, full_name, builds, public_url) for d in deployments]


def builds_of(session: Session, deployments: Iterable[Deployment]) -> dict[int, Build]:
    ids: Sequence[int] = [
        build_id for d in deployments for build_id in (d.source_build_id, d.deploy_build_id) if build_id
    ]
    return {b.id: b for b in session.scalars(sa.select(Build).where(Build.id.in_(ids)))} if ids else {}


def deployments_of_source(session: Session, build: Build, public_url: str) -> list[DeploymentOut]:
    """The deployments of a build's commit that came from it (automatic ones, and promotions and
    rollbacks back to it), oldest first, each with its environment and deploy build."""
    rows = session.execute(
        sa.select(Deployment, Environment)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(Deployment.source_build_id == build.id)
        .order_by(Deployment.id)
    ).all()
    builds = builds_of(session, [deployment for deployment, _ in rows])
    full_name = build.repository.full_name
    return [deployment_out(d, environment, full_name, builds, public_url) for d, environment in rows]


def deployment_of_build(
    session: Session, deploy_build: Build, public_url: str
) -> tuple[DeploymentOut, Build | None] | None:
    """For a deploy build's page: its deployment, and the build it deploys."""
    row = session.execute(
        sa.select(Deployment, Environment)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(Deployment.deploy_build_id == deploy_build.id)
    ).one_or_none()
    if row is None:
        return None
    deployment, environment = row
    builds = builds_of(session, [deployment])
    out = deployment_out(deployment, environment, deploy_build.repository.full_name, builds, public_url)
    return out, builds.get(deployment.source_build_id or 0)


def live_version(session: Session, repository_id: int, name: str) -> tuple[str | None, bool] | None:
    """The commit live on the repository's environment ``name`` (None: nothing live yet) and
    whether it is healthy; None when there is no such environment."""
    row = session.execute(
        sa.select(Deployment.commit_sha, Environment.healthy)
        .select_from(Environment)
        .outerjoin(Deployment, Deployment.id == Environment.live_deployment_id)
        .where(Environment.repository_id == repository_id, Environment.name == name)
    ).one_or_none()
    return None if row is None else (row.commit_sha, row.healthy)
