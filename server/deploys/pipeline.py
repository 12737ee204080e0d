"""The pipeline strip of a repository page: its environments in promotion order, what is live in
each, how far each is behind the environment it takes its commits from, what a promote would
ship, and what a rollback could go back to.

"Behind" counts what Greenlight knows, not what git knows: the commits of the builds (pushed,
started by hand or on a schedule; never deploys) of the earlier environment's live branch, from
the build live here (excluded) up to the build live there, newest first. A commit pushed together
with others is built once, under the newest: only that one is counted. Asking git instead would
cost a fetch of the mirror on every page view."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.reading import Reader
from server.deploys.queries import environments_read
from server.deploys.schemas import DeploymentOut, EnvironmentOut
from server.models import Build, Repository
from server.models.build import DEPLOY_EVENT

# Commits listed under "behind" (the count goes further, up to the builds scanned).
BEHIND_LISTED = 10
# Builds looked at to count the commits behind: a bounded index range, however far behind.
BEHIND_SCANNED = 500
# Earlier successful deployments a rollback form offers.
ROLLBACK_CHOICES = 5


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str
    author: str | None
    build_number: int


@dataclass
class Stage:
    environment: EnvironmentOut
    # The commit live here: its build's first message line (None: nothing live, or its build is gone).
    live_message: str | None = None
    # The environment it takes commits from (the one before it), and that one's live deployment.
    previous: str | None = None
    source: DeploymentOut | None = None
    source_healthy: bool = True  # promote refuses an unhealthy source
    # Commits live on ``previous`` and not here, newest first (at most BEHIND_LISTED), how many
    # there are (a lower bound when ``behind_at_least``), and whether what is live here is newer.
    behind: list[Commit] = field(default_factory=list)
    behind_count: int = 0
    behind_at_least: bool = False
    ahead: bool = False
    rollback_choices: list[DeploymentOut] = field(default_factory=list)

    @property
    def promote_ships(self) -> DeploymentOut | None:
        """What promoting ``previous`` here would deploy (None: nothing new to ship)."""
        live = self.environment.live
        if self.source is None or (live is not None and live.commit_sha == self.source.commit_sha):
            return None
        return self.source


def pipeline_view(session: Session, repository: Repository, reader: Reader) -> list[Stage]:
    """The repository's environments in use, in promotion order, as the strip shows them: three
    queries, and one more per environment that has one before it."""
    reads = environments_read(session, "", repository.id, reader=reader, earlier=ROLLBACK_CHOICES)
    by_name = {read.row.name: read for read in reads}
    stages = []
    for at, read in enumerate(reads):
        stage = Stage(environment=read.out, rollback_choices=read.earlier)
        if read.live is not None and (built := read.builds.get(read.live.source_build_id or 0)):
            stage.live_message = (built.commit_message or "").split("\n", 1)[0]
        configured = read.row.promote_from
        previous = by_name.get(configured or "") or (reads[at - 1] if at else None)
        if previous is not None:
            stage.previous = previous.row.name
            if previous.live is not None and previous.out.live is not None:
                stage.source, stage.source_healthy = previous.out.live, previous.out.healthy
                live_build = read.live.source_build_id if read.live else None
                _behind(session, repository, stage, previous.live.source_build_id, live_build)
        stages.append(stage)
    return stages


def _behind(
    session: Session, repository: Repository, stage: Stage, source_build: int | None, live_build: int | None
) -> None:
    """Fill in the commits live on the previous environment and not on this one."""
    source, live = stage.source, stage.environment.live
    assert source is not None
    if source_build is None or (live is not None and live.commit_sha == source.commit_sha):
        return
    if live is not None and live_build is not None and live_build > source_build:
        stage.ahead = True
        return
    query = sa.select(Build.commit_sha, Build.commit_message, Build.commit_author, Build.number).where(
        Build.repository_id == repository.id,
        Build.branch == source.branch,
        Build.event != DEPLOY_EVENT,
        Build.id <= source_build,
    )
    if live is not None and live_build is not None:
        query = query.where(Build.id > live_build)
    scanned = session.execute(query.order_by(Build.id.desc()).limit(BEHIND_SCANNED)).all()
    seen: dict[str, Commit] = {}
    for sha, message, author, number in scanned:
        if sha not in seen and (live is None or sha != live.commit_sha):
            seen[sha] = Commit(sha, (message or "").split("\n", 1)[0], author, number)
    stage.behind = list(seen.values())[:BEHIND_LISTED]
    stage.behind_count = len(seen)
    stage.behind_at_least = len(scanned) == BEHIND_SCANNED
