"""After-commit messages deploys need (announce a deploy job, wake the deploy check), wired once
per session factory like commit statuses (``enable_deploy_messages``). Without it, nothing is
lost: the reconciler re-announces queued jobs and sweeps deploy checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from server.db import after_commit

_KEY = "greenlight.deploy_messages"


@dataclass(frozen=True)
class DeployMessages:
    announce_job: Callable[[int, list[str]], None]
    request_deploy_check: Callable[[int], None]
    # None when this server does not report to GitHub.
    request_deployment_report: Callable[[int], None] | None = None


def deploy_messages(transport: Any, *, reports_to_github: bool = False) -> DeployMessages:
    """The messages, sent through a ``server.transport.Transport``."""
    return DeployMessages(
        announce_job=transport.announce_job,
        request_deploy_check=transport.request_deploy_check,
        request_deployment_report=transport.request_deployment_report if reports_to_github else None,
    )


def enable_deploy_messages(session_factory: sessionmaker[Session], messages: DeployMessages) -> None:
    info = dict(session_factory.kw.get("info") or {})
    info[_KEY] = messages
    session_factory.configure(info=info)


def announce_after_commit(session: Session, announcements: list[tuple[int, list[str]]]) -> None:
    messages = session.info.get(_KEY)
    if not isinstance(messages, DeployMessages) or not announcements:
        return

    def announce() -> None:
        for job_id, labels in announcements:
            messages.announce_job(job_id, labels)

    after_commit(session, announce)


def deploy_check_after_commit(session: Session, build_id: int) -> None:
    messages = session.info.get(_KEY)
    if isinstance(messages, DeployMessages):
        after_commit(session, lambda: messages.request_deploy_check(build_id))


def report_after_commit(session: Session, deployment_id: int) -> None:
    """Wake the GitHub deployments sender (the periodic pass would find the row anyway)."""
    messages = session.info.get(_KEY)
    if isinstance(messages, DeployMessages) and messages.request_deployment_report is not None:
        notify = messages.request_deployment_report
        after_commit(session, lambda: notify(deployment_id))
