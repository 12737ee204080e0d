"""Which environments of a pipeline deploy a branch on their own (planning and the deploy check
both ask). What the file says is only half: the server's rule for each environment
(``server/environments/rules.py``) must allow the branch too."""

from __future__ import annotations

from server.models import Build
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
    """Asked at planning (``Build.deploys_on_green``): only a push to a branch, not from a fork,
    whose pipeline has an environment that deploys that branch on its own, is checked on green."""
    if build.event != "push" or build.branch is None or build.from_fork or build.pull_request_number:
        return False
    return bool(branch_deploys_to(pipeline, build.branch))
