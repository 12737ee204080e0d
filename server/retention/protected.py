"""Which finished builds keep their logs whatever their age or the size budget.

Kept: the latest build of each ref (branch, tag or pull request; deploy builds count apart, so
a deploy of ``main`` does not make the latest push build of ``main`` look old), and every build
of a commit that is deployed: the commit live in an environment and the one of its latest
successful deployment (a rollback or an audit looks at those). Unfinished builds are never
candidates at all. The builds kept for deploys keep their expired artifacts too (a rollback
deploys them again).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import Build, Deployment, DeploymentState, Environment
from server.models.build import UNFINISHED_BUILD_STATES


@dataclass(frozen=True)
class Deployed:
    """The commits deployed now, and the builds that made or ran them."""

    commit_shas: frozenset[str]
    build_ids: frozenset[int]


def deployed_now(session: Session) -> Deployed:
    live = sa.select(Environment.live_deployment_id).where(Environment.live_deployment_id.is_not(None))
    latest_success = (
        sa.select(sa.func.max(Deployment.id))
        .where(Deployment.state == DeploymentState.succeeded)
        .group_by(Deployment.environment_id)
    )
    rows = session.execute(
        sa.select(Deployment.commit_sha, Deployment.source_build_id, Deployment.deploy_build_id).where(
            sa.or_(Deployment.id.in_(live), Deployment.id.in_(latest_success))
        )
    ).all()
    return Deployed(
        commit_shas=frozenset(sha for sha, _, _ in rows),
        build_ids=frozenset(i for _, source, deploy in rows for i in (source, deploy) if i is not None),
    )


def may_lose_logs(deployed: Deployed) -> sa.ColumnElement[bool]:
    """A condition on ``Build``: finished, not the latest of its ref, not of a deployed commit."""
    newer = sa.orm.aliased(Build)
    has_newer = (
        sa.select(newer.id)
        .where(
            newer.repository_id == Build.repository_id,
            newer.ref == Build.ref,
            newer.event == Build.event,
            newer.id > Build.id,
        )
        .exists()
    )
    return sa.and_(
        Build.state.not_in(UNFINISHED_BUILD_STATES),
        Build.finished_at.is_not(None),
        has_newer,
        sa.not_(kept_for_deploys(deployed)),
    )


def kept_for_deploys(deployed: Deployed) -> sa.ColumnElement[bool]:
    """A condition on ``Build``: of a deployed commit, or one that made or ran a deployment kept
    (live, or an environment's rollback target). Its logs and its artifacts stay."""
    conditions: list[sa.ColumnElement[bool]] = []
    if deployed.commit_shas:
        conditions.append(Build.commit_sha.in_(sorted(deployed.commit_shas)))
    if deployed.build_ids:
        conditions.append(Build.id.in_(sorted(deployed.build_ids)))
    return sa.or_(sa.false(), *conditions)
