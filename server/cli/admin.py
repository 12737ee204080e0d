"""Administrative commands: repositories, tokens, builds (they talk to the database directly,
so they run where the server's settings are)."""

from __future__ import annotations

import click
import sqlalchemy as sa

from contract.git_access import redact_urls
from server.auth.reading import SIGNED_IN
from server.auth.token_labels import DEFAULT_RUNNER_TOKEN_LABELS, InvalidLabel, parse_labels
from server.auth.tokens import new_token, token_hash
from server.builds import queries
from server.cli import remote
from server.cli.context import cli_session
from server.cli.terminal import show
from server.models import ApiToken, Build, TokenKind
from server.pipelines.config import parse_size
from server.repos.service import RepositoryError, add_repository, check_clone_url, get_repository


@click.group("repo")
def repo() -> None:
    """Register repositories."""


@repo.command("add")
@click.argument("full_name")
@click.option("--clone-url", help="Where to fetch from (default https://github.com/OWNER/NAME.git).")
@click.option("--default-branch", default="main", show_default=True)
def repo_add(full_name: str, clone_url: str | None, default_branch: str) -> None:
    """Register OWNER/NAME so that its webhooks start builds."""
    try:
        with cli_session() as session:
            repository = add_repository(session, full_name, clone_url, default_branch)
            click.echo(f"registered {repository.full_name} (clone URL {repository.clone_url})")
            click.echo(f"private? give it a token or deploy key: greenlight repo credential set {full_name}")
    except RepositoryError as error:
        raise click.ClickException(str(error)) from None


@repo.command("set")
@click.argument("full_name")
@click.option("--memory", help="Memory per job container unless the pipeline asks for less, e.g. 4g.")
@click.option("--default-branch", help="The branch whose jobs get the higher priority.")
@click.option("--default-branch-priority", type=int)
@click.option("--branch-priority", type=int, help="Priority of jobs of other branches.")
@click.option(
    "--auto-cancel/--no-auto-cancel", default=None, help="A new push cancels older builds of its branch."
)
@click.option("--auto-cancel-default-branch/--no-auto-cancel-default-branch", default=None)
@click.option(
    "--fork-approval/--no-fork-approval",
    default=None,
    help="Pull requests from forks wait until a maintainer runs `greenlight build approve`.",
)
@click.option(
    "--public/--private",
    default=None,
    help="Public: anyone may read its pages, logs and API data; private (the default): signed-in users only.",
)
@click.option(
    "--allow-host-runner/--no-allow-host-runner",
    default=None,
    help="Runners that run steps as host processes (--executor local) may take this repository's "
    "jobs (never a fork's pull request). Only for repositories whose every pusher you trust.",
)
@click.option("--clone-url")
def repo_set(full_name: str, memory: str | None, **changes: object) -> None:
    """Change a repository's settings (only the options given)."""
    with cli_session() as session:
        repository = get_repository(session, full_name)
        if repository is None:
            raise click.ClickException(f"{full_name} is not registered")
        if memory is not None:
            try:
                repository.memory_bytes = parse_size(memory)
            except ValueError as error:
                raise click.ClickException(f"--memory: {error}") from None
        if changes.get("clone_url") is not None:
            try:
                check_clone_url(full_name, str(changes["clone_url"]))
            except RepositoryError as error:
                raise click.ClickException(str(error)) from None
        renamed = {"auto_cancel": "auto_cancel_superseded"}
        for option, value in changes.items():
            if value is not None:
                setattr(repository, renamed.get(option, option), value)
        show(
            f"{repository.full_name}: memory={repository.memory_bytes or 'server default'} "
            f"default_branch={repository.default_branch} priorities={repository.default_branch_priority}/"
            f"{repository.branch_priority} auto_cancel={repository.auto_cancel_superseded} "
            f"(default branch: {repository.auto_cancel_default_branch}) "
            f"fork_approval={repository.fork_approval} public={repository.public} "
            f"allow_host_runner={repository.allow_host_runner}"
        )


@repo.command("list")
def repo_list() -> None:
    with cli_session() as session:
        for repository, build in queries.repositories_with_latest_build(session, SIGNED_IN):
            latest = f"#{build.number} {build.state.value}" if build else "no builds"
            show(f"{repository.full_name}\t{redact_urls(repository.clone_url)}\t{latest}")


@click.group("token")
def token() -> None:
    """API and runner tokens."""


@token.command("create")
@click.option("--name", required=True, help="Who or what will use it, e.g. runner-1.")
@click.option(
    "--kind", type=click.Choice([kind.value for kind in TokenKind]), default="runner", show_default=True
)
@click.option(
    "--labels",
    help="Runner tokens: the labels its runners may serve, comma-separated, e.g. deploy-prod,linux; "
    f"'*' for every label. Default: {','.join(DEFAULT_RUNNER_TOKEN_LABELS)} (no deploy jobs).",
)
def token_create(name: str, kind: str, labels: str | None) -> None:
    """Create a token and print it once (only its hash is stored)."""
    if kind != TokenKind.runner and labels is not None:
        raise click.ClickException("--labels: only runner tokens carry labels")
    allowed = _labels_option(labels) if labels is not None else None
    value = create_token(name, TokenKind(kind), labels=allowed)
    if kind == TokenKind.runner:
        click.echo(
            f"runner token {name} serves labels: {','.join(allowed or DEFAULT_RUNNER_TOKEN_LABELS)}", err=True
        )
    click.echo(value)


def create_token(
    name: str, kind: TokenKind, value: str | None = None, *, labels: list[str] | None = None
) -> str:
    """``labels``: for a runner token (default ``DEFAULT_RUNNER_TOKEN_LABELS``)."""
    value = value or new_token("glr" if kind is TokenKind.runner else "glu")
    if kind is TokenKind.runner:
        labels = labels or list(DEFAULT_RUNNER_TOKEN_LABELS)
    with cli_session() as session:
        session.add(ApiToken(name=name, kind=kind, token_hash=token_hash(value), labels=labels))
    return value


@token.command("labels")
@click.argument("token_id", type=int)
@click.argument("labels")
def token_labels(token_id: int, labels: str) -> None:
    """Set the labels a runner token's runners may serve (comma-separated; '*' for every label).
    Its runners' next claims are limited to them at once; runners that registered for labels
    the token no longer allows take no jobs of those labels."""
    allowed = _labels_option(labels)
    with cli_session() as session:
        found = session.get(ApiToken, token_id)
        if found is None or found.kind is not TokenKind.runner:
            raise click.ClickException(f"no runner token with id {token_id} (see `greenlight token list`)")
        found.labels = allowed
        show(f"runner token {found.name} serves labels: {','.join(allowed)}")


@token.command("list")
def token_list() -> None:
    """Tokens: id, kind, name, labels (runner tokens), revoked. Never the tokens themselves."""
    with cli_session() as session:
        for found in session.scalars(sa.select(ApiToken).order_by(ApiToken.id)):
            labels = ",".join(found.labels) if found.labels is not None else "-"
            revoked = "\trevoked" if found.revoked else ""
            show(f"{found.id}\t{found.kind.value}\t{found.name}\t{labels}{revoked}")


def _labels_option(text: str) -> list[str]:
    try:
        return parse_labels(text)
    except InvalidLabel as error:
        raise click.ClickException(f"--labels: {error}") from None


def describe_ref(build: Build) -> str:
    if build.pull_request_number is not None:
        fork = f" from a fork ({build.head_repository or 'deleted'})" if build.from_fork else ""
        return f"PR #{build.pull_request_number}{fork}: {build.pull_request_title or ''}"
    return build.branch or build.tag or build.ref


@click.group("build")
def build() -> None:
    """Inspect builds."""


@build.command("list")
@click.argument("full_name")
@click.option("--limit", default=20, show_default=True)
def build_list(full_name: str, limit: int) -> None:
    with cli_session() as session:
        repository = get_repository(session, full_name)
        if repository is None:
            raise click.ClickException(f"{full_name} is not registered")
        for item in queries.builds_of(session, repository, limit=limit):
            show(f"#{item.number}\t{item.state.value}\t{describe_ref(item)}\t{item.commit_sha[:12]}")


@build.command("show")
@click.argument("full_name")
@click.argument("number", type=int)
def build_show(full_name: str, number: int) -> None:
    with cli_session() as session:
        repository = get_repository(session, full_name)
        found = queries.build_by_number(session, repository, number) if repository else None
        if found is None:
            raise click.ClickException(f"build {full_name}#{number} not found")
        show(f"#{found.number} {found.state.value} {describe_ref(found)} {found.commit_sha}")
        if found.reason:
            show(found.reason)
        for job in found.jobs:
            show(f"  job {job.name}: {job.state.value}{' — ' + job.reason if job.reason else ''}")
            for step in job.steps:
                duration = f" {step.duration_seconds:.1f}s" if step.duration_seconds is not None else ""
                show(f"    {step.index} {step.name}: {step.state.value}{duration}")


@build.command("cancel")
@click.argument("build_id", type=int)
def build_cancel(build_id: int) -> None:
    """Cancel a build by id (through the API; needs GREENLIGHT_TOKEN)."""
    remote.cancel_build(build_id)


@build.command("approve")
@click.argument("build_id", type=int)
def build_approve(build_id: int) -> None:
    """Let a fork's pull request build run (through the API; needs GREENLIGHT_TOKEN)."""
    remote.approve_build(build_id)


@build.command("rerun")
@click.argument("build_id", type=int)
def build_rerun(build_id: int) -> None:
    """Re-run the jobs of a finished build that did not pass (through the API)."""
    remote.rerun_build(build_id)


@build.command("logs")
@click.argument("full_name")
@click.argument("number", type=int)
def build_logs(full_name: str, number: int) -> None:
    with cli_session() as session:
        repository = get_repository(session, full_name)
        found = queries.build_by_number(session, repository, number) if repository else None
        if found is None:
            raise click.ClickException(f"build {full_name}#{number} not found")
        for job in found.jobs:
            for step in job.steps:
                show(f"--- {job.name} / {step.name} ({step.state.value})")
                if job.logs_pruned_at is not None:
                    show(f"log pruned {job.logs_pruned_at:%Y-%m-%d} (retention)")
                    continue
                for _at, _stream, text in queries.log_lines(session, job.id, step.index):
                    show(text)
