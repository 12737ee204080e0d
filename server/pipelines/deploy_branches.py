"""Which environments of a pipeline deploy a branch on their own (planning and the deploy check
both ask)."""

from __future__ import annotations

from wcmatch import glob

from server.pipelines.config import PipelineConfig

_GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB | glob.BRACE


def branch_deploys_to(pipeline: PipelineConfig, branch: str) -> list[str]:
    """Environments whose `branch:` globs match (promote-only ones never deploy on their own)."""
    return [
        name
        for name, environment in pipeline.deploy.items()
        if environment.branch
        and not environment.promote_only
        and glob.globmatch(branch, environment.branch, flags=_GLOB_FLAGS)
    ]
