"""Commands that run Greenlight's processes: server, worker, runner, migrate, and `up` (all of them)."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from server.cli.output import json_option
from server.config import get_settings


@click.command("migrate")
def migrate() -> None:
    """Bring the database schema to the latest version (Alembic)."""
    from server.migrate import UpgradeRefused, upgrade_to_head

    settings = get_settings()
    try:
        upgrade_to_head(settings.database_url)
    except UpgradeRefused as refused:
        raise click.ClickException(str(refused)) from None
    click.echo("database is at the latest schema")


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes")
def server(host: str, port: int, workers: int) -> None:
    """Serve webhooks, the runner API, the JSON API and the status pages (and /metrics: with
    several workers, each one's counts are kept under DATA_DIR/metrics and added up per scrape)."""
    import uvicorn

    settings = get_settings()
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
    settings = get_settings()
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
    """Everything on this machine with embedded defaults: SQLite, an SQLite broker, one runner."""
    from contract.spec import ALL_LABELS
    from server.cli.admin import create_token, write_local_cli_config
    from server.migrate import upgrade_to_head
    from server.models import TokenKind

    if data_dir is not None:
        os.environ["GREENLIGHT_DATA_DIR"] = str(data_dir)
    os.environ["GREENLIGHT_EMBEDDED"] = "true"
    get_settings.cache_clear()
    settings = get_settings()
    data = Path(settings.data_dir)
    _keep_private(data)
    stored = _embedded_secrets(data)
    if not os.environ.get("GREENLIGHT_GITHUB_WEBHOOK_SECRET"):
        os.environ["GREENLIGHT_GITHUB_WEBHOOK_SECRET"] = stored["webhook_secret"]
    upgrade_to_head(settings.database_url)
    if stored.get("runner_token_created") != "yes":
        # The one runner of this machine serves whatever it is started with (see below).
        create_token("embedded-runner", TokenKind.runner, stored["runner_token"], labels=[ALL_LABELS])
        _write_secrets(data, {**stored, "runner_token_created": "yes"})

    url = f"http://127.0.0.1:{port}"
    runner_name = os.environ.get("GREENLIGHT_RUNNER_NAME") or embedded_runner_name(data)
    env = {
        **os.environ,
        "GREENLIGHT_SERVER_URL": url,
        "GREENLIGHT_PUBLIC_URL": url,
        "GREENLIGHT_DATABASE_URL": settings.database_url,
        "GREENLIGHT_BROKER_URL": settings.broker_url,
        "GREENLIGHT_RUNNER_TOKEN": stored["runner_token"],
        # A local executor's step user cannot pass through the data directory: its runner then
        # needs a directory of its own elsewhere (it says so when it refuses to start).
        "GREENLIGHT_RUNNER_DIR": os.environ.get("GREENLIGHT_RUNNER_DIR", str(data / "runner")),
        "GREENLIGHT_DATA_DIR": str(data),
        "GREENLIGHT_RUNNER_NAME": runner_name,
        # The one runner also runs deploy jobs (label `deploy`), unless told otherwise.
        "GREENLIGHT_RUNNER_LABELS": os.environ.get("GREENLIGHT_RUNNER_LABELS", "docker,deploy"),
    }
    write_local_cli_config(url)
    greenlight = [sys.executable, "-m", "server.cli.main"]
    children = [
        subprocess.Popen([*greenlight, "server", "--port", str(port)], env=env),
        subprocess.Popen([*greenlight, "worker", "--concurrency", "1"], env=env),
        subprocess.Popen([*greenlight, "runner"], env=env),
    ]
    click.echo(
        f"\nGreenlight is up: {url}\n"
        f"  data: {data}\n"
        f"  runner: {runner_name}\n"
        f"  webhook: POST {url}/webhooks/github (secret in {data / 'secrets.env'})\n"
        f"  register a repository: greenlight repo add OWNER/NAME --clone-url PATH_OR_URL\n"
    )
    _supervise(children)


def embedded_runner_name(data: Path) -> str:
    """The name of ``greenlight up``'s runner: the same at every start of an install, different for
    each data directory, so that two installs on one machine can tell their runners apart (what
    a runner removes from the engine goes by the identity its server gave it, never by its name)."""
    return "embedded-" + hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:8]


def _supervise(children: list[subprocess.Popen[bytes]]) -> None:
    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [child for child in children if child.returncode not in (0, -signal.SIGTERM, None)]
    if failed:
        raise SystemExit(f"a Greenlight process exited with {failed[0].returncode}")


# What the data directory holds that nobody else may read: keys, tokens, databases.
_PRIVATE_FILES = ("secrets.env", "secret.key", "greenlight.db", "broker.db", "celerybeat-schedule")


def _keep_private(data: Path) -> None:
    """The data directory holds the key that decrypts every secret, the runner token, the webhook
    secret and the databases: it is 0700 and all created in it 0600/0700 (the umask, which the
    server, worker and runner processes inherit). Files of an older, laxer install are tightened."""
    os.umask(0o077)
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    data.chmod(0o700)
    for path in data.iterdir():
        if path.name.startswith(_PRIVATE_FILES) and path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def _embedded_secrets(data: Path) -> dict[str, str]:
    path = data / "secrets.env"
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    if "webhook_secret" not in values or "runner_token" not in values:
        values.setdefault("webhook_secret", secrets.token_urlsafe(32))
        values.setdefault("runner_token", "glr_" + secrets.token_urlsafe(32))
        _write_secrets(data, values)
    return values


def _write_secrets(data: Path, values: dict[str, str]) -> None:
    path = data / "secrets.env"
    # Created 0600: never readable by others, not even between a write and a chmod.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("".join(f"{key}={value}\n" for key, value in values.items()))


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
    """Let a runner finish its jobs and take no new ones (needs GREENLIGHT_TOKEN)."""
    from server.cli.remote import drain_runner

    drain_runner(runner_id)
