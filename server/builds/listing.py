"""Build lists for the pages, every one an index range scan whatever the number of builds:
keyset pagination on ``id`` under (repository, id), (repository, branch, id), (repository, state, id)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.reading import Reader
from server.builds.start import NOT_THE_HEAD
from server.models import Build, BuildState, Repository
from server.models.build import DEPLOY_EVENT

# A deploy build carries the branch its commit came from, but a branch's state (its badge, the
# dashboard, its latest build) is its pipeline's: a failed deploy does not turn it red.
_NOT_A_DEPLOY = Build.event != DEPLOY_EVENT
# The states that say something about a branch's code. A skipped build ([skip ci], `when:`) and a
# cancelled one say nothing, and an unfinished one has not said it yet: the badge and the
# dashboard's default-branch column both show the latest build of the branch in one of these.
VERDICT_STATES = (BuildState.passed, BuildState.failed, BuildState.errored, BuildState.timed_out)
# And only a build of the branch's head as it is: not one started by hand of an older commit (its
# no_deploy_reason says so), nor one started with extra variables (they can switch tests off):
# either could say "passing" while the head fails.
_A_VERDICT = sa.and_(
    Build.state.in_(VERDICT_STATES),
    sa.or_(Build.no_deploy_reason.is_(None), ~Build.no_deploy_reason.contains(NOT_THE_HEAD)),
    sa.or_(Build.started_by.is_(None), sa.cast(Build.variables, sa.Text) == "{}"),
)


@dataclass(frozen=True)
class BuildFilter:
    branch: str | None = None
    event: str | None = None
    state: BuildState | None = None


def filtered_builds(
    session: Session, repository: Repository, wanted: BuildFilter, *, before_id: int | None, limit: int
) -> list[Build]:
    query = sa.select(Build).where(Build.repository_id == repository.id)
    if wanted.branch:
        query = query.where(Build.branch == wanted.branch)
    if wanted.event:
        query = query.where(Build.event == wanted.event)
    if wanted.state:
        query = query.where(Build.state == wanted.state)
    if before_id is not None:
        query = query.where(Build.id < before_id)
    return list(session.scalars(query.order_by(Build.id.desc()).limit(limit)))


# A loose index scan: one probe of (repository_id, branch, id) per distinct branch, instead of
# grouping every build of the repository (100,000 builds, 40 branches: 40 probes, not 100,000 rows).
_LATEST_PER_BRANCH = sa.text(
    """
    WITH RECURSIVE branches(name) AS (
        (SELECT branch FROM builds WHERE repository_id = :repository AND branch IS NOT NULL
         ORDER BY branch LIMIT 1)
        UNION ALL
        SELECT (SELECT branch FROM builds WHERE repository_id = :repository AND branch > branches.name
                ORDER BY branch LIMIT 1)
        FROM branches WHERE branches.name IS NOT NULL
    )
    SELECT latest FROM (
        SELECT (SELECT id FROM builds WHERE repository_id = :repository AND branch = branches.name
                AND event <> 'deploy' ORDER BY id DESC LIMIT 1) AS latest
        FROM branches WHERE name IS NOT NULL
    ) AS per_branch
    WHERE latest IS NOT NULL
    ORDER BY latest DESC LIMIT :limit
    """
)


def branches_with_latest_build(session: Session, repository: Repository, limit: int = 30) -> list[Build]:
    """The latest build of each of the most recently built branches (the default branch first)."""
    wanted = {"repository": repository.id, "limit": limit}
    ids = list(session.scalars(_LATEST_PER_BRANCH, wanted))
    builds = list(session.scalars(sa.select(Build).where(Build.id.in_(ids))))
    return sorted(builds, key=lambda b: (b.branch != repository.default_branch, -b.id))


def dashboard_rows(
    session: Session, reader: Reader, recent: int = 5
) -> list[tuple[Repository, Build | None, list[Build]]]:
    """Each repository, its default branch's latest build with a verdict (the badge's build) and its
    last few builds (deploy builds aside: the environments column shows deploys): two queries
    whatever the number of repositories (LATERAL index scans). Only repositories ``reader`` may read."""
    readable = reader.readable(Repository.id)
    repositories = list(session.scalars(sa.select(Repository).where(readable).order_by(Repository.full_name)))
    newest = (
        sa.select(Build.id)
        .where(Build.repository_id == Repository.id, _NOT_A_DEPLOY)
        .order_by(Build.id.desc())
        .correlate(Repository)  # not the outer query's builds
    )
    last_ids = newest.limit(recent).lateral()
    default_ids = newest.where(Build.branch == Repository.default_branch, _A_VERDICT).limit(1).lateral()
    picked = sa.union_all(
        sa.select(last_ids.c.id, sa.false().label("default"))
        .select_from(Repository)
        .join(last_ids, sa.true())
        .where(readable),
        sa.select(default_ids.c.id, sa.true())
        .select_from(Repository)
        .join(default_ids, sa.true())
        .where(readable),
    ).subquery()
    found = session.execute(
        sa.select(Build, picked.c.default).join(picked, picked.c.id == Build.id).order_by(Build.id.desc())
    ).all()
    last: dict[int, list[Build]] = {}
    defaults: dict[int, Build] = {}
    for build, default in found:
        if default:
            defaults[build.repository_id] = build
        else:
            last.setdefault(build.repository_id, []).append(build)
    return [(r, defaults.get(r.id), last.get(r.id, [])) for r in repositories]


def badge_state(session: Session, repository: Repository, branch: str | None) -> str:
    """passing / failing / unknown for the branch's latest build with a verdict (``VERDICT_STATES``):
    the build the dashboard shows for the default branch too."""
    state = session.scalar(
        sa.select(Build.state)
        .where(
            Build.repository_id == repository.id,
            Build.branch == (branch or repository.default_branch),
            _NOT_A_DEPLOY,
            _A_VERDICT,
        )
        .order_by(Build.id.desc())
        .limit(1)
    )
    if state is None:
        return "unknown"
    return "passing" if state is BuildState.passed else "failing"
