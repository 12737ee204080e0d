"""An operator drains a runner (it finishes the jobs it runs and takes no new one) and resumes it.

The two refusal rules decide both what the API and the CLI do and which button the runners page
shows. A runner's process that drains itself (SIGTERM) goes through ``/api/runner/drain``, and a
runner that registers again (a restart) takes jobs again: draining is for the process running
now, and holds until it is resumed or exits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.models import Runner, RunnerState


class DrainRefused(Exception):
    """Draining or resuming does not apply to the runner in its current state."""


class UnknownRunner(LookupError):
    pass


def drain_refusal(runner: Runner) -> str | None:
    """Why ``runner`` cannot be drained now, or None."""
    if runner.state is RunnerState.draining:
        return f"runner {runner.name} is draining already"
    if runner.state in (RunnerState.lost, RunnerState.stopped):
        return (
            f"runner {runner.name} is {runner.state.value}: it runs nothing, "
            "and takes jobs again once it registers"
        )
    return None


def resume_refusal(runner: Runner) -> str | None:
    """Why ``runner`` cannot be resumed now, or None."""
    if runner.state is not RunnerState.draining:
        return f"runner {runner.name} is {runner.state.value}, not draining"
    return None


def drain_runner(session: Session, runner_id: int) -> Runner:
    runner = _locked(session, runner_id)
    if (refusal := drain_refusal(runner)) is not None:
        raise DrainRefused(refusal)
    runner.state = RunnerState.draining
    return runner


def resume_runner(session: Session, runner_id: int) -> Runner:
    """It claims again at its next poll; one that cannot run steps stays out as unavailable."""
    runner = _locked(session, runner_id)
    if (refusal := resume_refusal(runner)) is not None:
        raise DrainRefused(refusal)
    runner.state = RunnerState.unavailable if runner.unavailable_reason else RunnerState.idle
    return runner


def _locked(session: Session, runner_id: int) -> Runner:
    runner = session.get(Runner, runner_id, with_for_update=True)
    if runner is None:
        raise UnknownRunner(f"runner {runner_id} not found")
    return runner
