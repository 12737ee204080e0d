"""Which environments of a pipeline deploy a branch on their own (planning and the deploy check
both ask). What the file says is only half: the server's rule for each environment
(``server/environments/rules.py``) must allow the branch too."""

from __future__ import annotations

from server.models import Build
from server.models.build import DEPLOYING_EVENTS
from server.pipelines.branch_globs import branch_matches
from server.pipelines.config import PipelineConfig


def branch_deploys_to(pipeline: PipelineConfig, branch: str) -> list[str]:
    """Environments whose `branch:` globs match (promote-only ones never deploy on their own)."""
    return [
        name
        for name, environment in pipeline.deploy.items()
        if not environment.promote_only and branch_matches(branch, environment.branch)
    ]


def may_deploy_on_green(build: Build, pipeline: PipelineConfig) -> bool:
    """Asked at planning (``Build.deploys_on_green``): only a build of a branch's commit (a push, or
    one a person started without ``--no-deploy``), not from a fork, whose pipeline has an
    environment that deploys that branch on its own, is checked on green."""
    if not is_deploying_build(build.event, build.branch, build.from_fork, build.pull_request_number):
        return False
    return build.no_deploy_reason is None and bool(branch_deploys_to(pipeline, build.branch or ""))


def is_deploying_build(
    event: str, branch: str | None, from_fork: bool, pull_request_number: int | None
) -> bool:
    """Whether a build of this kind may ever deploy on green (planning and the deploy check ask)."""
    return event in DEPLOYING_EVENTS and branch is not None and not from_fork and pull_request_number is None
