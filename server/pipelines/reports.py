"""`reports:` in .greenlight.yml: test report files the runner collects from the workspace after
the job's steps (also after a failed step) and the server reads (``server/testreports/``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from contract.workspace_globs import check_workspace_glob

MAX_REPORT_GLOBS = 20


def _one_or_many(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError("expected a glob or a list of globs of files in the workspace, e.g. **/junit*.xml")
    return value


def _workspace_glob(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected a glob of files in the workspace, e.g. **/junit*.xml")
    return value


WorkspaceGlob = Annotated[str, BeforeValidator(_workspace_glob), AfterValidator(check_workspace_glob)]


class ReportsConfig(BaseModel):
    """`reports: {junit: ["**/junit*.xml"]}`: JUnit XML as pytest, Go (go-junit-report), Maven
    surefire and Jest (jest-junit) write it."""

    model_config = ConfigDict(extra="forbid")

    junit: Annotated[
        list[WorkspaceGlob], BeforeValidator(_one_or_many), Field(min_length=1, max_length=MAX_REPORT_GLOBS)
    ]

    def as_job_reports(self) -> dict[str, list[str]]:
        """What the planned job keeps (``Job.reports``) and the runner gets (``ReportsSpec``)."""
        return {"junit": list(self.junit)}
