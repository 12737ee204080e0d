"""The SQLite database an embedded install of an older Greenlight left behind (``greenlight.db`` at
an old migration), with a history in every table that existed then: for the importer's tests and
its benchmark."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from server.auth.tokens import new_token
from server.auth.tokens import token_hash as hash_of
from server.crypto import SecretCipher
from server.migrate import alembic_config
from server.secrets.service import bound_to

# The revision the embedded mode's file is left at: before protected environments, public
# repositories, credentials, runner token labels, job copy deadlines and runner identities.
OLD_REVISION = "0014"
REPOSITORY = "acme/app"
SECRET_NAME = "DEPLOY_KEY"
SECRET_VALUE = "ssh-ed25519 AAAA-the-deploy-key"
# A moment with microseconds, so that a copy that loses precision or shifts zones shows.
START = dt.datetime(2025, 3, 9, 14, 30, 15, 123456, tzinfo=dt.UTC)
# START without its microseconds, as a person in UTC+2 would have typed it.
OFFSET_TEXT = "2025-03-09T16:30:15+02:00"


@dataclass(frozen=True)
class EmbeddedHistory:
    path: Path
    builds: int  # push builds 1..builds, then one deploy build
    chunks_per_job: int
    lines_per_chunk: int
    user_token: str
    runner_token: str
    rows: dict[str, int]  # rows written per table

    @property
    def deploy_build_id(self) -> int:
        return self.builds + 1

    @property
    def rerun_job_id(self) -> int:
        return self.builds + 2  # jobs 1..builds, the deploy job, then build 1's second attempt


def log_text(job_id: int, seq: int, line: int) -> str:
    return f"job {job_id} chunk {seq} line {line}: ✓ compiled module_{line}.py"


def write_old_embedded_database(
    path: Path,
    *,
    secret_key: str,
    builds: int = 3,
    chunks_per_job: int = 2,
    lines_per_chunk: int = 3,
    revision: str = OLD_REVISION,
) -> EmbeddedHistory:
    url = f"sqlite:///{path}"
    command.upgrade(alembic_config(url), revision)
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    tables = metadata.tables
    user_token, runner_token = new_token("glu"), new_token("glr")
    cipher = SecretCipher.from_setting(secret_key)
    ciphertext, key_id = cipher.encrypt(SECRET_VALUE, bound_to(1, SECRET_NAME, ""))
    at = [START + dt.timedelta(minutes=minute) for minute in range(builds + 3)]
    deploy = builds + 1
    rows: dict[str, list[dict[str, object]]] = {
        "repositories": [
            dict(id=1, full_name=REPOSITORY, clone_url="https://github.com/acme/app.git",
                 default_branch="main", webhook_secret="per-repo-secret", last_build_number=deploy,
                 created_at=START, memory_bytes=2**31, auto_cancel_superseded=True,
                 auto_cancel_default_branch=False, default_branch_priority=10, branch_priority=0,
                 fork_approval=True)
        ],
        "api_tokens": [
            dict(id=1, name="alice", kind="user", token_hash=hash_of(user_token), created_at=START,
                 last_used_at=None, revoked=False),
            dict(id=2, name="box-1", kind="runner", token_hash=hash_of(runner_token),
                 created_at=START, last_used_at=START, revoked=False),
            dict(id=3, name="old", kind="user", token_hash=hash_of("revoked"), created_at=START,
                 revoked=True),
        ],
        "runners": [
            dict(id=1, name="box-1", hostname="box-1.local", labels=["docker", "linux"], concurrency=2,
                 version="0.9.0", executor="docker", state="idle", token_id=2, registered_at=START,
                 last_seen_at=at[-1], free_disk_bytes=50 * 2**30)
        ],
        "builds": [
            dict(id=n, repository_id=1, number=n, event="push", ref="refs/heads/main", branch="main",
                 commit_sha=f"{n:040x}", commit_message=f"Change {n}\n\nWith a body", commit_author="Alice",
                 sender="alice", state="passed" if n % 7 else "failed", created_at=at[n - 1],
                 started_at=at[n - 1] + dt.timedelta(seconds=1), finished_at=at[n],
                 plan_attempts=1, from_fork=False, deploys_on_green=n == builds, before_sha=f"{n - 1:040x}")
            for n in range(1, builds + 1)
        ]
        + [
            dict(id=deploy, repository_id=1, number=deploy, event="deploy", ref="refs/heads/main",
                 branch="main", commit_sha=f"{builds:040x}", commit_message="", commit_author="",
                 sender="greenlight", state="passed", created_at=at[-1], started_at=at[-1],
                 finished_at=at[-1], plan_attempts=0, from_fork=False)
        ],
        "jobs": [
            dict(id=n, build_id=n, name="test", state="passed" if n % 7 else "failed", labels=["docker"],
                 priority=10, env={"CI": "true"}, timeout_seconds=3600, memory_bytes=2**30, cpus=1.5,
                 pids=512, queued_at=at[n - 1], started_at=at[n - 1], finished_at=at[n], runner_id=1,
                 cancel_requested=False, attempt=1, previous_attempt_id=None, is_latest=n != 1,
                 services=[{"name": "db", "image": "postgres:16"}])
            for n in range(1, deploy + 1)
        ]
        + [
            dict(id=deploy + 1, build_id=1, name="test", state="passed", labels=["docker"], priority=10,
                 env={}, timeout_seconds=3600, memory_bytes=2**30, cpus=1.0, pids=512, queued_at=at[-1],
                 cancel_requested=False, attempt=2, previous_attempt_id=1, is_latest=True, services=[])
        ],
        "steps": [
            dict(id=n, job_id=n, index=0, name="unit", image="python:3.12", script="pytest -q",
                 env={"PYTHONHASHSEED": "0"}, timeout_seconds=600, state="passed", exit_code=0,
                 started_at=at[n - 1], finished_at=at[n], duration_seconds=60.25, filtered=False,
                 secrets=[SECRET_NAME] if n == deploy else [])
            for n in range(1, deploy + 2)
        ],
        "log_chunks": [
            dict(id=(n - 1) * chunks_per_job + seq + 1, job_id=n, step_index=0, seq=seq,
                 line_count=lines_per_chunk,
                 lines=[[0.5 * line, "stdout", log_text(n, seq, line)] for line in range(lines_per_chunk)],
                 created_at=at[n - 1],
                 text_bytes=sum(len(log_text(n, seq, line).encode()) for line in range(lines_per_chunk)))
            for n in range(1, deploy + 1)
            for seq in range(chunks_per_job)
        ],
        "secrets": [
            dict(id=1, repository_id=1, name=SECRET_NAME, environment="", branches=["main"],
                 ciphertext=ciphertext, key_id=key_id, created_at=START, updated_at=at[1])
        ],
        "environments": [
            dict(id=1, repository_id=1, name="production", url="https://app.example.com",
                 live_deployment_id=1, healthy=True, created_at=START)
        ],
        "deployments": [
            dict(id=1, environment_id=1, commit_sha=f"{builds:040x}", branch="main", source_build_id=builds,
                 deploy_build_id=deploy, trigger="auto", triggered_by="greenlight",
                 config={"script": ["./deploy.sh"], "url": "https://app.example.com"}, state="succeeded",
                 check_passed=True, created_at=at[-1], started_at=at[-1], finished_at=at[-1],
                 github_deployment_id=2**40, github_version=3, github_sent_version=3, github_attempts=0,
                 github_gave_up=False)
        ],
        "deploy_checks": [dict(build_id=builds, created_at=at[-2], done_at=at[-1], outcome="deployed")],
        "webhook_deliveries": [
            dict(id=n, hook_id="42", delivery_id=f"delivery-{n}", event="push",
                 repository_full_name=REPOSITORY, outcome="build", build_id=n, received_at=at[n - 1])
            for n in range(1, builds + 1)
        ],
        "github_status_reports": [
            dict(id=n, build_id=n, context="greenlight/test", state="success", description="passed",
                 version=2, sent_version=2, sent_state="success", sent_at=at[n], attempts=0,
                 next_attempt_at=at[n], gave_up=False, updated_at=at[n])
            for n in range(1, builds + 1)
        ],
        "github_redeliveries": [
            dict(id=1, repository_full_name=REPOSITORY, hook_id="42", guid="delivery-1",
                 github_delivery_id=2**35, event="push", requested_at=at[1], outcome="requested")
        ],
        "service_liveness": [dict(name="runner_api", alive_at=at[-1], up_since=START)],
    }  # fmt: skip
    try:
        with engine.begin() as connection:
            for name, values in rows.items():
                # One column list per table: a row that leaves a column out stores NULL there.
                names = {key for row in values for key in row}
                connection.execute(tables[name].insert(), [{k: row.get(k) for k in names} for row in values])
            # Written by hand, as SQL at the console would: a text time with its offset.
            connection.execute(
                sa.text("UPDATE api_tokens SET created_at = :at WHERE id = 3"), {"at": OFFSET_TEXT}
            )
    finally:
        engine.dispose()
    return EmbeddedHistory(
        path=path,
        builds=builds,
        chunks_per_job=chunks_per_job,
        lines_per_chunk=lines_per_chunk,
        user_token=user_token,
        runner_token=runner_token,
        rows={name: len(values) for name, values in rows.items()},
    )
