"""A runner's claim, and a job's end with the runner's next claim: the two requests every job
passes through. Served by the FastAPI routes in ``runner_api`` (the documented API) and, on the
hot path, by ``hot_routes`` (the same functions without FastAPI's per-request machinery). A
refusal is a domain error (``NotARunnerToken``, ``RunnerNotRegistered``, ``JobClosed``), which
the app's exception handlers turn into its reply (``server/errors.py``)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from contract.spec import ClaimedJob, ClaimRequest, JobFinished
from server.config import Settings
from server.db import session_scope
from server.deps import AppState
from server.models import Job, JobState
from server.queue import reports
from server.queue.claims import Claimant, JobRefused, claim_next_job
from server.queue.runners import identify_runner

logger = logging.getLogger(__name__)


# Both open their session themselves: commit before the reply goes out.


def claim(state: AppState, token: str, body: ClaimRequest) -> ClaimedJob | None:
    with session_scope(state.session_factory) as session:
        runner = identify_runner(session, token, body.runner_id, claiming=True, claim_key=body.claim_key)
        claimed = _claim(session, runner, state.settings, body.claim_key)
    _log_claim(body.runner_id, claimed)
    return claimed


def finish(state: AppState, job_id: int, token: str, body: JobFinished) -> ClaimedJob | None:
    """The job's end; with ``next``, also the runner's next claim, in the same transaction (one
    commit per job). The job's token speaks for the runner that claimed it, so the claim needs
    no runner token; a runner whose token was revoked, or that is draining, gets no new job.

    A claim that fails for a reason of ours (a bug, not the database) must not hold up the end:
    the runner would retry the end in vain until its lease ran out. The end is then recorded
    alone, and the runner claims its next job as usual."""
    try:
        return _finish(state, job_id, token, body)
    except (reports.JobClosed, DBAPIError):
        raise  # a refusal, or a database the runner retries against
    except Exception:
        if body.next is None:
            raise
        logger.exception("claiming with the end of job %s failed; recording the end alone", job_id)
        return _finish(state, job_id, token, body.model_copy(update={"next": None}))


def _finish(state: AppState, job_id: int, token: str, body: JobFinished) -> ClaimedJob | None:
    with session_scope(state.session_factory) as session:
        finished = reports.finish_job_by_token(session, job_id, token, body, settings=state.settings)
        if body.next is None or finished.next_claimant is None:
            claimed = None
        else:
            claimed = _claim(session, finished.next_claimant, state.settings, body.next.claim_key)
    logger.info("job %s finished: %s", job_id, body.outcome.value)
    _log_claim(finished.runner_id, claimed)
    return claimed


# Jobs refused in a row before a claim gives up for now (the runner claims again later).
_REFUSALS_PER_CLAIM = 10


def _claim(
    session: Session, runner: Claimant, settings: Settings, claim_key: str | None
) -> ClaimedJob | None:
    """The runner's next job. A deploy job whose environment's rule no longer allows its branch
    (its deployment is then settled as refused, saying why), or a job that deploys nowhere asking
    for a deploy runner's labels, is ended here, unseen by the runner, and the claim goes on to
    the next job."""
    for _ in range(_REFUSALS_PER_CLAIM):
        try:
            return claim_next_job(session, runner, settings, claim_key=claim_key, key_locked=True)
        except JobRefused as refused:
            logger.warning("job %s refused at its claim: %s", refused.job_id, refused.reason)
            job = session.get(Job, refused.job_id, with_for_update=True, populate_existing=True)
            assert job is not None  # claimed a moment ago in this transaction
            reports.close_job(session, job, JobState.cancelled, refused.reason)
    return None


def _log_claim(runner_id: int, claimed: ClaimedJob | None) -> None:
    if claimed is not None:
        ids = {"job_id": claimed.spec.job_id, "build_id": claimed.spec.build_id, "runner_id": runner_id}
        logger.info("runner %s claimed job %s", runner_id, claimed.spec.job_id, extra=ids)
