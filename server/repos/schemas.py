"""What the API takes and returns about a repository's registration and settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RepositorySettingsIn(BaseModel):
    """Settings a user token may change (only those given)."""

    model_config = ConfigDict(extra="forbid")

    fork_approval: bool | None = None
    public: bool | None = None
    # Runners that run steps as host processes may take its jobs (never a fork's).
    allow_host_runner: bool | None = None
    # Memory per job container unless the pipeline asks for less: "4g", "512m" or bytes.
    memory: str | None = None
    default_branch: str | None = None
    default_branch_priority: int | None = None
    branch_priority: int | None = None
    auto_cancel: bool | None = None
    auto_cancel_default_branch: bool | None = None
    clone_url: str | None = None


class RepositorySettingsOut(BaseModel):
    full_name: str
    fork_approval: bool
    public: bool
    allow_host_runner: bool
    memory_bytes: int | None = None
    default_branch: str = "main"
    default_branch_priority: int = 0
    branch_priority: int = 0
    auto_cancel: bool = True
    auto_cancel_default_branch: bool = False
    clone_url: str = ""


class RepositoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: str
    clone_url: str | None = None  # default https://github.com/OWNER/NAME.git
    default_branch: str = "main"
