"""An embedded install that ran on SQLite finds its whole history in Postgres after the import:
read back through the application's own API and services, with the ids it had."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.app import create_app
from server.auth.tokens import find_token
from server.config import Settings
from server.crypto import SecretCipher
from server.embedded.sqlite_import import (
    ImportFailed,
    ImportRefused,
    import_sqlite_database,
    set_aside_broker_file,
)
from server.models import ApiToken, Base, Build, Job, Repository, TokenKind
from server.secrets.resolve import BuildContext, secrets_for_steps
from tests.conftest import SECRET_KEY, WEBHOOK_SECRET, RecordingTransport
from tests.support.embedded_history import (
    REPOSITORY,
    SECRET_NAME,
    SECRET_VALUE,
    START,
    EmbeddedHistory,
    log_text,
    write_old_embedded_database,
)
from tests.support.old_schema import empty_database

pytestmark = pytest.mark.integration


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database with nothing in it, not even the schema: the importer builds it."""
    with empty_database("postgresql", name="greenlight_import") as url:
        yield url


@pytest.fixture
def history(tmp_path: Path) -> EmbeddedHistory:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return write_old_embedded_database(data_dir / "greenlight.db", secret_key=SECRET_KEY)


def row_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return {
                table.name: connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def app_client(url: str, tmp_path: Path) -> TestClient:
    settings = Settings(
        database_url=url,
        broker_url="memory://",
        data_dir=tmp_path / "data",
        github_webhook_secret=WEBHOOK_SECRET,
        secret_key=SECRET_KEY,
    )
    return TestClient(create_app(settings, transport=RecordingTransport()))


def test_an_old_embedded_database_arrives_whole_with_its_ids(
    history: EmbeddedHistory, postgres_url: str, tmp_path: Path
) -> None:
    result = import_sqlite_database(history.path, postgres_url)

    assert result.imported
    assert {name: count for name, count in result.rows.items() if count} == history.rows
    assert not history.path.exists()
    assert result.kept_as is not None and result.kept_as.name.startswith("greenlight.db.imported-")
    assert fingerprint(result.kept_as) != ""  # kept, never deleted

    auth = {"Authorization": f"Bearer {history.user_token}"}
    with app_client(postgres_url, tmp_path) as client:
        listed = client.get(f"/api/repos/{REPOSITORY}/builds", headers=auth, params={"limit": 200})
        assert listed.status_code == 200
        ids = [build["id"] for build in listed.json()]
        assert sorted(ids) == list(range(1, history.deploy_build_id + 1))

        first = client.get("/api/builds/1", headers=auth).json()
        assert first["commit_sha"] == f"{1:040x}"
        assert first["created_at"].startswith(START.strftime("%Y-%m-%dT%H:%M:%S.%f"))
        assert first["created_at"][-6:] in ("+00:00",) or first["created_at"].endswith("Z")
        assert [job["id"] for job in first["jobs"]] == [1, history.rerun_job_id]

        log = client.get("/api/builds/2/jobs/2/steps/0/log", headers=auth)
        assert log.status_code == 200
        expected = [
            log_text(2, seq, line)
            for seq in range(history.chunks_per_job)
            for line in range(history.lines_per_chunk)
        ]
        assert log.text.splitlines() == expected

        secrets = client.get(f"/api/repos/{REPOSITORY}/secrets", headers=auth)
        assert secrets.status_code == 200
        assert [secret["name"] for secret in secrets.json()] == [SECRET_NAME]

        deployments = client.get("/api/environments/production/deployments", headers=auth,
                                  params={"repository": REPOSITORY})  # fmt: skip
        assert deployments.status_code == 200
        assert [deployment["id"] for deployment in deployments.json()] == [1]

        # A re-run made on Postgres gets an id after every imported job.
        rerun = client.post(f"/api/jobs/{history.builds}/rerun", headers=auth)
        assert rerun.status_code in (200, 201, 202), rerun.text

    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    try:
        with Session(engine) as session:
            assert session.scalar(sa.select(sa.func.max(Job.id))) == history.rerun_job_id + 1
            build = Build(repository_id=1, number=999, event="push", ref="refs/heads/main", branch="main",
                          commit_sha="f" * 40)  # fmt: skip
            session.add(build)
            session.flush()
            assert build.id == history.deploy_build_id + 1

            runner_token = find_token(session, history.runner_token, TokenKind.runner)
            assert runner_token is not None and runner_token.labels == ["*"]
            assert find_token(session, "revoked", TokenKind.user) is None
            revoked = session.get(ApiToken, 3)
            assert revoked is not None and revoked.revoked is True
            assert revoked.created_at == START.replace(microsecond=0)
            repository = session.get(Repository, 1)
            assert repository is not None
            assert (repository.fork_approval, repository.auto_cancel_default_branch) == (True, False)

            [step_secrets] = secrets_for_steps(
                session,
                lambda: SecretCipher.from_setting(SECRET_KEY),
                BuildContext(repository_id=1, repository=REPOSITORY, branch="main", from_fork=False),
                [[SECRET_NAME]],
            )
            assert step_secrets.values == {SECRET_NAME: SECRET_VALUE}

            rerun_job = session.get(Job, history.rerun_job_id)
            assert rerun_job is not None and rerun_job.previous_attempt_id == 1
            assert rerun_job.labels == ["docker"]
            live = session.execute(sa.text("SELECT live_deployment_id FROM environments")).scalar()
            assert live == 1
            session.rollback()
    finally:
        engine.dispose()


def test_a_database_that_already_holds_a_history_is_refused_and_nothing_changes(
    history: EmbeddedHistory, postgres_url: str, tmp_path: Path
) -> None:
    import_sqlite_database(history.path, postgres_url)
    before = row_counts(postgres_url)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = write_old_embedded_database(other_dir / "greenlight.db", secret_key=SECRET_KEY)
    unchanged = fingerprint(other.path)

    with pytest.raises(ImportRefused, match="already holds rows"):
        import_sqlite_database(other.path, postgres_url)

    assert row_counts(postgres_url) == before
    assert fingerprint(other.path) == unchanged
    assert sorted(path.name for path in other_dir.iterdir()) == ["greenlight.db"]


BROKEN_ROWS = {
    # SQLite does not check foreign keys unless asked: a log chunk of a job that is gone.
    "log_chunks": "INSERT INTO log_chunks (job_id, step_index, seq, line_count, lines, created_at,"
    " text_bytes) VALUES (9999, 0, 0, 1, '[[0, \"stdout\", \"orphan\"]]', '2025-03-09 14:30:15', 6)",
    # Nor lengths: a SHA longer than any SHA.
    "deployments": "UPDATE deployments SET commit_sha = commit_sha || 'ff'",
    # A state this version does not know (written by hand, or by a newer version).
    "jobs": "UPDATE jobs SET state = 'paused' WHERE id = 2",
}


@pytest.mark.parametrize("table", sorted(BROKEN_ROWS))
def test_a_row_that_cannot_move_leaves_postgres_empty_and_the_file_as_it_was(
    table: str, history: EmbeddedHistory, postgres_url: str
) -> None:
    engine = sa.create_engine(f"sqlite:///{history.path}")
    with engine.begin() as connection:
        connection.execute(sa.text(BROKEN_ROWS[table]))
    engine.dispose()
    unchanged = fingerprint(history.path)

    with pytest.raises(ImportFailed, match=table):
        import_sqlite_database(history.path, postgres_url)

    assert set(row_counts(postgres_url).values()) == {0}
    assert fingerprint(history.path) == unchanged
    assert sorted(path.name for path in history.path.parent.iterdir()) == ["greenlight.db"]


def test_a_second_import_after_success_does_nothing(history: EmbeddedHistory, postgres_url: str) -> None:
    first = import_sqlite_database(history.path, postgres_url)
    after_first = row_counts(postgres_url)

    second = import_sqlite_database(history.path, postgres_url)

    assert first.imported and not second.imported
    assert second.rows == {}
    assert row_counts(postgres_url) == after_first
    assert [path.name for path in history.path.parent.iterdir()] == [first.kept_as.name]  # type: ignore[union-attr]


def test_the_old_broker_file_is_set_aside_unread(tmp_path: Path) -> None:
    broker = tmp_path / "broker.db"
    broker.write_bytes(b"kombu messages")

    kept = set_aside_broker_file(tmp_path)

    assert kept is not None and kept.name.startswith("broker.db.dropped-")
    assert kept.read_bytes() == b"kombu messages"
    assert not broker.exists()
    assert set_aside_broker_file(tmp_path) is None


def test_what_a_killed_server_left_in_the_write_ahead_log_is_imported_too(
    history: EmbeddedHistory, postgres_url: str
) -> None:
    # The embedded server wrote in WAL mode; killed, it leaves committed rows in greenlight.db-wal.
    script = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "db.execute('PRAGMA journal_mode=WAL')\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute(\"UPDATE builds SET commit_message = 'written last' WHERE id = 1\")\n"
        "db.commit()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(history.path)], check=True)
    assert Path(f"{history.path}-wal").stat().st_size > 0

    result = import_sqlite_database(history.path, postgres_url)

    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            message = connection.scalar(sa.text("SELECT commit_message FROM builds WHERE id = 1"))
    finally:
        engine.dispose()
    assert message == "written last"
    assert result.kept_as is not None
    assert sorted(path.name for path in history.path.parent.iterdir()) == sorted(
        [result.kept_as.name, f"{result.kept_as.name}-shm", f"{result.kept_as.name}-wal"]
    )


# An import killed after its commit and before the SQLite file was renamed: the process ends at
# once, as on a power cut (nothing of Python's clean-up runs).
_KILLED_BEFORE_THE_RENAME = (
    "import os, sys\n"
    "from pathlib import Path\n"
    "from server.embedded import sqlite_import\n"
    "sqlite_import.set_aside = lambda *_: os._exit(137)\n"
    "sqlite_import.import_sqlite_database(Path(sys.argv[1]), sys.argv[2])\n"
)


def test_an_import_killed_before_the_rename_is_finished_by_the_next_start(
    history: EmbeddedHistory, postgres_url: str
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BEFORE_THE_RENAME, str(history.path), postgres_url]
    )
    assert killed.returncode == 137
    imported = row_counts(postgres_url)
    assert {name: count for name, count in imported.items() if count} == history.rows
    unchanged = fingerprint(history.path)

    finished = import_sqlite_database(history.path, postgres_url)

    assert finished.imported and finished.finished_earlier
    assert finished.rows == {}
    assert row_counts(postgres_url) == imported  # nothing copied twice
    assert finished.kept_as is not None and fingerprint(finished.kept_as) == unchanged
    # The copy the killed import worked on is gone too: it held the whole database.
    assert [path.name for path in history.path.parent.iterdir()] == [finished.kept_as.name]


def test_another_file_after_an_import_is_still_refused(
    history: EmbeddedHistory, postgres_url: str, tmp_path: Path
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BEFORE_THE_RENAME, str(history.path), postgres_url]
    )
    assert killed.returncode == 137
    engine = sa.create_engine(f"sqlite:///{history.path}")
    with engine.begin() as connection:  # the same database, one row more since
        connection.execute(sa.text("UPDATE builds SET commit_message = 'changed after' WHERE id = 1"))
    engine.dispose()
    before = row_counts(postgres_url)

    with pytest.raises(ImportRefused, match="already holds rows"):
        import_sqlite_database(history.path, postgres_url)

    assert row_counts(postgres_url) == before
    assert history.path.exists()
