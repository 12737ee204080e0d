"""`artifacts:` in the pipeline file: which workspace files a job keeps, when, and for how long.

artifacts:
  paths: [dist/*.whl, coverage/]
  when: on_success          # or on_failure, always
  expire_in: 2w             # 30m, 12h, 7d, 2w, "1 week", "30 days" or never (the server's at most)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from contract.expiry import expiry_seconds
from contract.workspace_globs import check_workspace_glob


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _workspace_glob(pattern: str) -> str:
    check_workspace_glob(pattern)  # a WorkspaceGlobError (a ValueError) says what is wrong
    return pattern


WorkspaceGlob = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_workspace_glob)]


class ArtifactsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: Annotated[list[WorkspaceGlob], BeforeValidator(_one_or_many), Field(min_length=1, max_length=100)]
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    # Seconds; 0: never; None (not given): the server's (``GREENLIGHT_ARTIFACT_EXPIRE_IN``).
    expire_in: Annotated[int | None, BeforeValidator(expiry_seconds)] = None

    def rules(self, default_expiry: int | None) -> dict[str, Any]:
        """What the job row keeps (``Job.artifacts``) and the claim turns into the runner's rules.
        ``default_expiry`` (the server's setting; None: never) is also the longest: the pushed
        file may keep its artifacts less long, never longer (nor `never` unless the server is)."""
        asked = self.expire_in or None  # None: as long as the server keeps them
        if default_expiry is None:
            expiry = asked
        else:
            expiry = default_expiry if asked is None else min(asked, default_expiry)
        return {"paths": list(self.paths), "when": self.when, "expire_seconds": expiry}
