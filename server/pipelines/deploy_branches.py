"""Which environments of a pipeline deploy a branch on their own (planning and the deploy check
both ask). What the file says is only half: the server's rule for each environment
(``server/environments/rules.py``) must allow the branch too."""

from __future__ import annotations

from server.pipelines.branch_globs import branch_matches
from server.pipelines.config import PipelineConfig


def branch_deploys_to(pipeline: PipelineConfig, branch: str) -> list[str]:
    """Environments whose `branch:` globs match (promote-only ones never deploy on their own)."""
    return [
        name
        for name, environment in pipeline.deploy.items()
        if not environment.promote_only and branch_matches(branch, environment.branch)
    ]
