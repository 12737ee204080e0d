"""Where the build machinery hands over to deploys (imported by ``server.builds.service``, so the
deploy modules, which build on it, are imported only when called)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.models import Build, BuildState
from server.pipelines.config import PipelineConfig

# ``Build.event`` of the builds that run deployments.
DEPLOY_EVENT = "deploy"


def deploy_build_finished(session: Session, build_id: int, state: BuildState) -> None:
    from server.deploys.service import deploy_build_finished as finished

    finished(session, build_id, state)


def deploy_copies_stopped(session: Session, build_ids: list[int]) -> list[tuple[int, list[str]]]:
    """Lost deploy jobs of these builds are known to have stopped: their environments may go on.
    Returns jobs to announce after commit."""
    from server.deploys.service import advance_after_lost_copies

    return advance_after_lost_copies(session, build_ids)


def may_deploy_on_green(build: Build, pipeline: PipelineConfig) -> bool:
    from server.deploys.checks import may_deploy_on_green as may_deploy

    return may_deploy(build, pipeline)


def record_deploy_check(session: Session, build_id: int) -> None:
    from server.deploys.checks import record_deploy_check as record

    record(session, build_id)
