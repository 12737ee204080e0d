"""Where the server's domains are put together, once per process: which domain reacts to which
event, how sessions record commit statuses for GitHub, and which after-commit messages they send.
The app (``create_app``) and the worker (``worker_app``) both call ``wire_domain``, so they run
the same set-up, and a session factory nobody wired refuses domain work loudly."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from server.builds.service import on_job_ended, on_planning_given_up
from server.deploys.checks import on_build_changed as deploy_on_build_changed
from server.deploys.messages import DeployMessages, deploy_messages, enable_deploy_messages
from server.deploys.service import advance_after_lost_copies
from server.events import DomainEvents
from server.github.outbox import StatusOutbox, report_build_change
from server.notifications.events import notify_on_build_changed
from server.transport import Transport


@dataclass(frozen=True)
class Domain:
    """What ``wire_domain`` built, held in the app's and the worker's state."""

    events: DomainEvents
    outbox: StatusOutbox
    # None: no after-commit messages; the reconciler and the periodic senders find everything.
    deploy_messages: DeployMessages | None


def wire_domain(
    session_factory: sessionmaker[Session], transport: Transport | None, *, reports_to_github: bool
) -> Domain:
    """Wire the sessions this factory makes: a job's end recomputes its build's state; a build's
    new state goes to GitHub (commit status), to deploys (a deploy build ended, a green build may
    deploy) and to notifications (a build failed, was fixed or errored; a deployment ended);
    stopped copies of deploy jobs let their environments go on; a build the reconciler could not
    get planned ends."""
    events = DomainEvents()
    events.on_job_ended(on_job_ended)
    events.on_build_changed(report_build_change)
    events.on_build_changed(deploy_on_build_changed)
    # After deploys: a deploy build's end has settled its deployment by then, which is what it reports.
    events.on_build_changed(notify_on_build_changed(transport.request_notifications if transport else None))
    events.on_copies_stopped(advance_after_lost_copies)
    events.on_planning_given_up(on_planning_given_up)
    events.attach(session_factory)
    notify = transport.request_status_report if transport is not None else None
    outbox = StatusOutbox(enabled=reports_to_github, notify=notify)
    outbox.attach(session_factory)
    messages = None
    if transport is not None:
        messages = deploy_messages(transport, reports_to_github=reports_to_github)
        enable_deploy_messages(session_factory, messages)
    return Domain(events, outbox, messages)
