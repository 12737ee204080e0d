"""JSON shapes of the environments API: an environment's rule, as set and as it applies."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.pipelines.config import EnvironmentName, Label


class EnvironmentRuleIn(BaseModel):
    """What to change; a field left out is kept as it is."""

    model_config = ConfigDict(extra="forbid")

    branches: list[str] | None = Field(
        default=None,
        max_length=50,
        description="branch globs allowed to deploy (as `when: branch`); [] goes back to the "
        "default branch only",
    )
    runner_labels: list[Label] | None = Field(
        default=None, max_length=20, description="labels its deploy jobs need ([]: the pipeline's runs_on)"
    )
    require_approval: bool | None = Field(
        default=None, description="each deployment waits until a signed-in user approves it"
    )
    promote_from: EnvironmentName | Literal[""] | None = Field(
        default=None,
        description="the environment promoted into this one: it comes after that one in the "
        'promotion order ("": the names decide again)',
    )


class EnvironmentRuleOut(BaseModel):
    repository: str
    name: EnvironmentName
    branches: list[str]  # as set ([]: none set)
    allowed_branches: list[str]  # as it applies (the default branch when none is set)
    runner_labels: list[str]
    require_approval: bool
    promote_from: str | None = None
    rule_updated_by: str | None
    rule_updated_at: dt.datetime | None
