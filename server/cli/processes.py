"""Commands that run Greenlight's processes: server, worker, runner, migrate, and `up` (all of them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from server.cli.output import json_option
from server.config import DEFAULT_DATA_DIR, HOME_DATA_DIR, MissingSettingError, get_settings

if TYPE_CHECKING:
    from server.config import Settings
    from server.embedded.supervisor import EmbeddedServer


@click.command("migrate")
def migrate() -> None:
    """Bring the database schema to the latest version (Alembic)."""
    from server.migrate import UpgradeRefused, upgrade_to_head

    settings = _settings_with_services(broker=False)
    try:
        upgrade_to_head(settings.database_url)
    except UpgradeRefused as refused:
        raise click.ClickException(str(refused)) from None
    click.echo("database is at the latest schema")


def _settings_with_services(*, broker: bool = True) -> Settings:
    settings = get_settings()
    try:
        if broker:
            settings.require_services()
        else:
            settings.require_database()
    except MissingSettingError as error:
        raise click.ClickException(str(error)) from None
    return settings


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes")
def server(host: str, port: int, workers: int) -> None:
    """Serve webhooks, the runner API, the JSON API and the status pages (and /metrics: with
    several workers, each one's counts are kept under DATA_DIR/metrics and added up per scrape)."""
    import uvicorn

    settings = _settings_with_services()
    settings.enforce_production_safety()
    if workers > 1:
        from server.metrics.multiprocess import prepare_multiprocess_dir

        # The workers share one listening socket, and libuv (under uvloop) accepts every pending
        # connection at once: a runner's keep-alive connections, opened in one burst, all went to
        # one worker, which served them on one core while the other idled (seen in bench.queue).
        # One accept per wake-up leaves the rest to the other workers.
        os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")

        prepare_multiprocess_dir(Path(settings.data_dir) / "metrics" / f"server-{port}")
    from contract.logs import dict_config, level_from_env

    uvicorn.run(
        "server.asgi:app", host=host, port=port, workers=workers, factory=True,
        log_level="info", access_log=False, proxy_headers=True, log_config=dict_config(level_from_env()),
        # A worker that imports the app on a busy machine may take longer than uvicorn's 5 s
        # default to answer its first health check; it was killed and restarted in a loop.
        timeout_worker_healthcheck=30,
    )  # fmt: skip


@click.command("worker")
@click.option("--concurrency", default=2, show_default=True)
@click.option("--beat/--no-beat", default=True, show_default=True, help="also schedule the reconciler")
@click.option("--metrics-port", type=int, help="Serve this worker's Prometheus metrics on this port.")
def worker(concurrency: int, beat: bool, metrics_port: int | None) -> None:
    """Background work on the server side: planning builds, reconciling the queue."""
    settings = _settings_with_services()
    if metrics_port:
        # Before the tasks module (and so prometheus-client) is imported; the pool's children inherit it.
        from server.metrics.multiprocess import prepare_multiprocess_dir

        prepare_multiprocess_dir(Path(settings.data_dir) / "metrics" / f"worker-{metrics_port}")
        from server.metrics.exposition import serve_multiprocess_metrics

        serve_multiprocess_metrics(metrics_port)
    from server.worker.tasks import worker_app

    arguments = ["worker", f"--concurrency={concurrency}", "--queues=greenlight.server", "--loglevel=INFO",
                 "--without-gossip", "--without-mingle", "--hostname=server-worker@%h"]  # fmt: skip
    if beat:
        arguments += ["--beat", f"--schedule={Path(settings.data_dir) / 'celerybeat-schedule'}"]
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    worker_app().worker_main(arguments)


@click.group("runner", invoke_without_command=True)
@click.option("--labels", help="Comma-separated labels this runner serves (default: docker; '*' for all).")
@click.option("--concurrency", type=int, help="Jobs run at once (default 1).")
@click.option("--name", help="Runner name (default: the host name).")
@click.option(
    "--executor",
    type=click.Choice(["docker", "local"]),
    help="docker (default): steps in containers; without an answering engine the runner takes no job. "
    "local: steps as host processes, only for repositories that allow it, never for forks "
    "(GREENLIGHT_RUNNER_EXECUTOR).",
)
@click.option(
    "--run-as",
    help="The unprivileged users the local executor runs steps as, comma-separated, one per job at once "
    "(GREENLIGHT_RUNNER_RUN_AS; default greenlight-step).",
)
@click.option(
    "--min-free-disk",
    help="Below this much free disk (e.g. 5G), remove the images, containers, networks, volumes, "
    "workspaces and mirrors this runner made and no job needs "
    "(GREENLIGHT_RUNNER_MIN_FREE_DISK; default: never).",
)
@click.pass_context
def runner(
    context: click.Context,
    labels: str | None,
    concurrency: int | None,
    name: str | None,
    executor: str | None,
    run_as: str | None,
    min_free_disk: str | None,
) -> None:
    """Run jobs: needs GREENLIGHT_BROKER_URL, GREENLIGHT_SERVER_URL and GREENLIGHT_RUNNER_TOKEN only.

    SIGTERM drains (running jobs finish, no new ones are taken); SIGQUIT or Ctrl-C cancels them.
    """
    if context.invoked_subcommand is not None:
        return
    from runner.config import RunnerSettings
    from runner.worker import run_runner

    overrides: dict[str, object] = {}
    if labels:
        overrides["runner_labels"] = labels
    if concurrency:
        overrides["runner_concurrency"] = concurrency
    if name:
        overrides["runner_name"] = name
    if executor:
        overrides["runner_executor"] = executor
    if run_as:
        overrides["runner_run_as"] = run_as
    if min_free_disk:
        overrides["runner_min_free_disk"] = min_free_disk
    run_runner(RunnerSettings(**overrides))  # type: ignore[arg-type]


@click.command("up")
@click.option("--port", default=8080, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where everything is kept.")
def up(port: int, data_dir: Path | None) -> None:
    """Everything on this machine: a private PostgreSQL and Redis kept in the data directory, the
    server, a worker and one runner. GREENLIGHT_DATABASE_URL / GREENLIGHT_BROKER_URL, when set,
    name servers to use instead of the embedded ones."""
    from server.embedded.children import EmbeddedServiceError
    from server.embedded.data_dir import DataDirInUseError, earlier_data_refusal, hold_data_dir, keep_private
    from server.embedded.supervisor import StopRequested, stop_on_signals

    if data_dir is not None:
        os.environ["GREENLIGHT_DATA_DIR"] = str(data_dir)
    os.environ["GREENLIGHT_EMBEDDED"] = "true"
    get_settings.cache_clear()
    data = Path(get_settings().data_dir)
    if data == DEFAULT_DATA_DIR != HOME_DATA_DIR and (refusal := earlier_data_refusal(data, HOME_DATA_DIR)):
        raise click.ClickException(refusal)
    keep_private(data)
    stop_on_signals()
    try:
        with hold_data_dir(data):
            _run_embedded(data, port)
    except (DataDirInUseError, EmbeddedServiceError) as error:
        raise click.ClickException(str(error)) from None
    except StopRequested:  # before anything was started
        return


def _run_embedded(data: Path, port: int) -> None:
    from server.cli.admin import write_local_cli_config
    from server.embedded.children import choose_port
    from server.embedded.data_dir import embedded_runner_name
    from server.embedded.postgres import EmbeddedPostgres
    from server.embedded.redis import EmbeddedRedis
    from server.embedded.secrets_file import ensure_secrets, write_secrets
    from server.embedded.supervisor import StopRequested, ignore_signals, supervise
    from server.migrate import UpgradeRefused, upgrade_to_head

    stored = ensure_secrets(data)
    if not os.environ.get("GREENLIGHT_GITHUB_WEBHOOK_SECRET"):
        os.environ["GREENLIGHT_GITHUB_WEBHOOK_SECRET"] = stored["webhook_secret"]
    configured = get_settings()
    servers: list[EmbeddedServer] = []
    if not os.environ.get("GREENLIGHT_BROKER_URL"):
        stored["redis_port"] = str(choose_port(configured.embedded_redis_port, stored.get("redis_port")))
        redis = EmbeddedRedis(
            data / "redis", password=stored["redis_password"], port=int(stored["redis_port"])
        )
        servers.append(redis)
    if not os.environ.get("GREENLIGHT_DATABASE_URL"):
        stored["postgres_port"] = str(
            choose_port(configured.embedded_postgres_port, stored.get("postgres_port"))
        )
        servers.append(EmbeddedPostgres(data / "postgres", password=stored["postgres_password"],
                                        app_password=stored["postgres_app_password"],
                                        port=int(stored["postgres_port"])))  # fmt: skip
    # The ports are kept before the servers start: the URLs of settings come from this file.
    write_secrets(data, stored)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        for server in servers:
            server.start()
        try:
            upgrade_to_head(settings.database_url)
        except UpgradeRefused as refused:
            raise click.ClickException(str(refused)) from None
        _import_an_earlier_sqlite_install(data, settings.database_url)
        _ensure_runner_token(stored["runner_token"])
        write_local_cli_config(f"http://{_local_host(settings.embedded_bind)}:{port}")
        runner_name = os.environ.get("GREENLIGHT_RUNNER_NAME") or embedded_runner_name(data)
        apps = _start_processes(settings, data, port, stored["runner_token"], runner_name)
        click.echo(_banner(settings, data, port, runner_name, servers))
        supervise(apps, servers, first=apps[-1])
    except StopRequested:
        pass
    finally:
        ignore_signals()
        for server in reversed(servers):
            server.stop()


def _import_an_earlier_sqlite_install(data: Path, database_url: str) -> None:
    """An install from before the embedded PostgreSQL: its database moves in once (the file is
    kept, renamed); its broker's file held only hints the reconciler sends again."""
    from server.embedded.sqlite_import import (
        ImportFailed,
        ImportRefused,
        import_sqlite_database,
        set_aside_broker_file,
    )

    if (data / "broker.db").exists():
        set_aside_broker_file(data)
    if not (data / "greenlight.db").exists():
        return
    click.echo(f"moving {data / 'greenlight.db'} into PostgreSQL (once)")
    try:
        result = import_sqlite_database(data / "greenlight.db", database_url)
    except (ImportRefused, ImportFailed) as error:
        raise click.ClickException(f"{error}; nothing was changed") from None
    if result.finished_earlier:
        click.echo(f"an earlier, cut-off start had moved its rows; the old file is kept as {result.kept_as}")
    else:
        click.echo(f"moved {sum(result.rows.values())} rows; the old file is kept as {result.kept_as}")


def _ensure_runner_token(value: str) -> None:
    """The one runner of this machine serves whatever it is started with (see below)."""
    from sqlalchemy import select

    from contract.spec import ALL_LABELS
    from server.auth.tokens import token_hash
    from server.cli.admin import create_token
    from server.cli.context import cli_session
    from server.models import ApiToken, TokenKind

    with cli_session() as session:
        known = session.scalar(select(ApiToken.id).where(ApiToken.token_hash == token_hash(value)))
    if known is None:
        create_token("embedded-runner", TokenKind.runner, value, labels=[ALL_LABELS])


def _local_host(bind: str) -> str:
    """How processes on this machine reach the server `up` runs on ``bind``."""
    from server.embedded.redis import EVERY_ADDRESS, LOOPBACK

    return LOOPBACK if bind == EVERY_ADDRESS else bind


def _start_processes(
    settings: Settings, data: Path, port: int, runner_token: str, runner_name: str
) -> list[subprocess.Popen[bytes]]:
    from server.embedded.children import die_with_parent

    url = f"http://{_local_host(settings.embedded_bind)}:{port}"
    env = {
        **os.environ,
        "GREENLIGHT_SERVER_URL": url,
        "GREENLIGHT_PUBLIC_URL": os.environ.get("GREENLIGHT_PUBLIC_URL", url),
        "GREENLIGHT_DATABASE_URL": settings.database_url,
        "GREENLIGHT_BROKER_URL": settings.broker_url,
        "GREENLIGHT_RUNNER_TOKEN": runner_token,
        # A local executor's step user cannot pass through the data directory: its runner then
        # needs a directory of its own elsewhere (it says so when it refuses to start).
        "GREENLIGHT_RUNNER_DIR": os.environ.get("GREENLIGHT_RUNNER_DIR", str(data / "runner")),
        "GREENLIGHT_DATA_DIR": str(data),
        "GREENLIGHT_RUNNER_NAME": runner_name,
        # The one runner also runs deploy jobs (label `deploy`), unless told otherwise.
        "GREENLIGHT_RUNNER_LABELS": os.environ.get("GREENLIGHT_RUNNER_LABELS", "docker,deploy"),
    }
    greenlight = [sys.executable, "-m", "server.cli.main"]
    # The runner never touches the database; if `up` dies, it cancels its jobs (SIGQUIT) rather
    # than draining them without a server, so that a new `up` finds its directory free.
    runner_env = {name: value for name, value in env.items() if name != "GREENLIGHT_DATABASE_URL"}
    # The runner last: `up` stops it first.
    commands = [
        (["server", "--host", settings.embedded_bind, "--port", str(port)], env, signal.SIGTERM),
        (["worker", "--concurrency", "1"], env, signal.SIGTERM),
        (["runner"], runner_env, signal.SIGQUIT),
    ]
    return [
        subprocess.Popen([*greenlight, *command], env=command_env, preexec_fn=die_with_parent(death))
        for command, command_env, death in commands
    ]


def _banner(
    settings: Settings, data: Path, port: int, runner_name: str, servers: list[EmbeddedServer]
) -> str:
    from server.embedded.redis import EVERY_ADDRESS, LOOPBACK

    bind = settings.embedded_bind
    url = f"http://{_local_host(bind)}:{port}"
    secrets_file = data / "secrets.env"
    lines = [
        f"\nGreenlight is up: {url}",
        f"  data: {data}",
        *(f"  {server.name}: port {server.port}, log {server.log}" for server in servers),
        f"  runner: {runner_name}",
        f"  webhook: POST {url}/webhooks/github (secret: webhook_secret in {secrets_file})",
        "  register a repository: greenlight repo add OWNER/NAME --clone-url PATH_OR_URL",
    ]
    embedded_broker = any(server.name == "Redis" for server in servers)
    if bind == LOOPBACK:
        lines.append(
            "  runners on other machines: start with GREENLIGHT_EMBEDDED_BIND=0.0.0.0 (or this machine's "
            "address) and a broker they can reach (GREENLIGHT_BROKER_URL)"
        )
    else:
        host = socket.gethostname() if bind == EVERY_ADDRESS else bind
        lines += [
            "  another runner: `greenlight token create NAME`, then on its machine",
            f"    GREENLIGHT_SERVER_URL=http://{host}:{port} GREENLIGHT_RUNNER_TOKEN=TOKEN "
            "GREENLIGHT_BROKER_URL=BROKER greenlight runner",
            "    BROKER: the GREENLIGHT_BROKER_URL this `up` was given"
            if not embedded_broker
            else "    BROKER: none yet: the embedded Redis listens on this machine only; give `up` a "
            "GREENLIGHT_BROKER_URL other machines may reach",
        ]
    return "\n".join(lines) + "\n"


@runner.command("list")
@json_option
def runner_list(as_json: bool) -> None:
    """Every runner: host, labels, state, last heartbeat, and the jobs it runs now."""
    from server.cli.remote import list_runners

    list_runners(as_json)


@runner.command("show")
@click.argument("runner_id", type=int)
@json_option
def runner_show(runner_id: int, as_json: bool) -> None:
    """What a runner has done: recent jobs and counts by outcome."""
    from server.cli.remote import show_runner

    show_runner(runner_id, as_json)


@runner.command("drain")
@click.argument("runner_id", type=int)
def runner_drain(runner_id: int) -> None:
    """Let a runner finish its jobs and take no new ones until resumed (needs GREENLIGHT_TOKEN)."""
    from server.cli.remote import drain_runner

    drain_runner(runner_id)


@runner.command("resume")
@click.argument("runner_id", type=int)
def runner_resume(runner_id: int) -> None:
    """Let a draining runner take jobs again (needs GREENLIGHT_TOKEN)."""
    from server.cli.remote import resume_runner

    resume_runner(runner_id)
