"""The server stores a job's log within its budget whatever a runner sends (a rogue or broken
runner that ignores the budget it was given), and says where it cut."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from contract.log_budget import MAX_STORED_LINE_CHARS
from server.app import create_app
from server.builds.queries import log_lines
from server.config import Settings
from server.models import LogChunk
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_runner_api import as_job, claim, register

pytestmark = pytest.mark.integration


@pytest.fixture
def small_budget(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    app = create_app(
        settings.model_copy(update={"log_step_bytes": 1000, "log_job_bytes": 1500}), transport=transport
    )
    app.state.greenlight.session_factory = session_factory
    with TestClient(app) as client:
        yield client
    app.state.greenlight.engine.dispose()


def stored(session: Session, job_id: int, step_index: int) -> list[list[object]]:
    session.expire_all()
    return [list(line) for line in log_lines(session, job_id, step_index)]


def batch(form: str, step_index: int, seq: int, texts: list[str]) -> dict[str, object]:
    """A batch of stdout lines as single lines, or as a run joined in one text."""
    if form == "lines":
        lines = [{"at": 1.0, "stream": "stdout", "text": text} for text in texts]
        return {"step_index": step_index, "seq": seq, "lines": lines}
    return {
        "step_index": step_index,
        "seq": seq,
        "runs": [[1.0, "stdout", len(texts)]],
        "text": "\n".join(texts),
    }


FORMS = pytest.mark.parametrize("form", ["lines", "joined"])


@FORMS
def test_a_runner_ignoring_the_budget_gets_no_more_stored_and_the_log_says_so(
    small_budget: TestClient, session: Session, form: str
) -> None:
    token = factories.runner_token(session)
    factories.job(session, factories.build(session, factories.repository(session)), steps=2)
    session.commit()
    claimed = claim(small_budget, token, register(small_budget, token))
    assert claimed is not None
    assert claimed["spec"]["log_budget"] == {"step_bytes": 1000, "job_bytes": 1500}
    job_id = claimed["spec"]["job_id"]

    texts = ["x" * 99] * 50  # 100 bytes each with its newline
    for seq in range(3):
        reply = as_job(small_budget, claimed, "logs", batch(form, 0, seq, texts))
        assert reply.status_code == 204, reply.text
    first = stored(session, job_id, 0)
    assert [text for _, stream, text in first if stream == "stdout"] == ["x" * 99] * 10
    notices = [text for _, stream, text in first if stream == "system"]
    assert (
        notices[0]
        == "greenlight: log truncated: step output exceeded 1,000 bytes; 4,000 bytes dropped (by the server)"
    )

    as_job(small_budget, claimed, "logs", batch(form, 1, 0, texts))
    second = stored(session, job_id, 1)
    kept = [text for _, stream, text in second if stream == "stdout"]
    assert 0 < len(kept) < 10  # what the job's 1,500 bytes leave after the first step
    assert "log truncated: job output exceeded 1,500 bytes" in second[-1][2]
    session.expire_all()
    total = session.scalar(sa.select(sa.func.sum(LogChunk.text_bytes)).where(LogChunk.job_id == job_id))
    assert total <= 1500 + 64 * 1024


@FORMS
def test_a_line_longer_than_any_runner_sends_is_cut_when_stored(
    client: TestClient, session: Session, form: str
) -> None:
    token = factories.runner_token(session)
    factories.job(session, factories.build(session, factories.repository(session)), steps=1)
    session.commit()
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    huge = "y" * (MAX_STORED_LINE_CHARS + 1000)
    assert as_job(client, claimed, "logs", batch(form, 0, 0, [huge])).status_code == 204
    [line, notice] = stored(session, claimed["spec"]["job_id"], 0)
    assert len(line[2]) == MAX_STORED_LINE_CHARS
    assert notice[1] == "system" and "1,000 bytes dropped" in notice[2]


def test_a_log_batch_far_bigger_than_any_runner_sends_is_refused_unread(client: TestClient) -> None:
    body = b'{"step_index": 0, "seq": 0, "lines": [{"at": 1, "stream": "stdout", "text": "' + b"x" * (
        33 << 20
    )
    reply = client.post(
        "/api/runner/jobs/1/logs",
        content=body + b'"}]}',
        headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
    )
    assert reply.status_code == 413 and reply.json() == {"detail": "request body too large"}
