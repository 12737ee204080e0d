"""One function per thing a deployment depends on. Each returns a ``Check``: whether it is fine,
what was seen, and — when it is not — what to do about it, in words an operator can act on.

Checks never raise: a check that cannot run is a failed check with the reason. They use short
timeouts so that ``/readyz`` answers quickly even when a dependency hangs.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine, text

from server.config import Settings

CHECK_TIMEOUT_SECONDS = 3.0
# More than this between the server's clock and the database's breaks leases and heartbeats.
MAX_CLOCK_SKEW_SECONDS = 2.0
# Scopes that let a token set commit statuses (a classic token needs one of them).
STATUS_SCOPES = {"repo", "repo:status"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # Fine for now, but worth fixing (``fix`` says how): reported, never a failure.
    warning: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@lru_cache(maxsize=4)
def _migration_scripts(database_url: str) -> tuple[frozenset[str], frozenset[str]]:
    """The heads and all revisions of the migrations shipped with this code (read once per process).
    Alembic is imported here, not at start-up: it is slow to import and only /readyz needs it."""
    from alembic.script import ScriptDirectory

    from server.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config(database_url))
    known = frozenset(script.revision for script in scripts.walk_revisions())
    return frozenset(scripts.get_heads()), known


def check_database(engine: Engine) -> Check:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        return Check(
            "database",
            False,
            f"cannot reach the database: {_short(error)}",
            "check GREENLIGHT_DATABASE_URL and that the database server is running and accepts connections",
        )
    version = ".".join(str(part) for part in engine.dialect.server_version_info or ())
    return Check("database", True, f"reachable (PostgreSQL {version})")


def check_migrations(engine: Engine, database_url: str) -> Check:
    try:
        from alembic.runtime.migration import MigrationContext

        heads, known = _migration_scripts(database_url)
        with engine.connect() as connection:
            current = frozenset(MigrationContext.configure(connection).get_current_heads())
    except Exception as error:
        return Check("migrations", False, f"cannot read the schema version: {_short(error)}", _MIGRATE)
    if current == heads:
        return Check("migrations", True, f"at head ({', '.join(sorted(heads))})")
    if not current:
        return Check("migrations", False, "the database has no schema yet", _MIGRATE)
    unknown = current - known
    if unknown:
        return Check(
            "migrations",
            False,
            f"the database is at {', '.join(sorted(unknown))}, which this version does not know",
            "this server is older than its database: run the newer Greenlight version (never downgrade)",
        )
    return Check(
        "migrations",
        False,
        f"the database is at {', '.join(sorted(current))}, head is {', '.join(sorted(heads))}",
        _MIGRATE,
    )


def check_broker(broker_url: str) -> Check:
    from kombu import Connection

    try:
        with Connection(broker_url, connect_timeout=CHECK_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)
            transport = connection.transport_cls
    except Exception as error:
        return Check(
            "broker",
            False,
            f"cannot reach the broker: {_short(error)}",
            "check GREENLIGHT_BROKER_URL and that Redis (or RabbitMQ) is running",
        )
    return Check("broker", True, f"reachable ({transport})")


def check_docker() -> Check:
    try:
        import docker

        client = docker.from_env(timeout=int(CHECK_TIMEOUT_SECONDS))
        try:
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except Exception as error:
        return Check(
            "docker",
            False,
            f"no Docker engine answers: {_short(error)}",
            "start dockerd, or set DOCKER_HOST; runners on this host need it to run steps",
        )
    return Check("docker", True, f"engine {version}")


def check_runners(engine: Engine) -> Check:
    """Runners that are registered and alive but cannot run steps (their Docker engine does not
    answer): they take no job, so work waits for others. Read from what runners last reported."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT name, hostname, state, unavailable_reason FROM runners "
                    "WHERE state NOT IN ('lost', 'stopped') ORDER BY name"
                )
            ).all()
    except Exception as error:
        return Check("runners", False, f"cannot read the runners: {_short(error)}", "see 'database'")
    unavailable = [row for row in rows if row.state == "unavailable"]
    if unavailable:
        return Check(
            "runners",
            False,
            "; ".join(f"{row.name} on {row.hostname}: {row.unavailable_reason}" for row in unavailable)
            + " (it takes no job)",
            "start the Docker engine on that machine (or fix the runner's DOCKER_HOST): the runner "
            "checks again at every heartbeat and resumes by itself",
        )
    return Check("runners", True, f"{len(rows)} registered, all able to run steps")


def check_runner_tokens(engine: Engine) -> Check:
    """Runner tokens that serve every label (``*``; upgrading gave every existing runner token
    that) while deploys are protected: their runners may claim a protected environment's deploy
    jobs and get its secrets. A warning: nothing is broken, but the token should be narrowed."""
    from server.models import ApiToken, Environment, Repository, Secret, TokenKind
    from server.models.secret import ANY_ENVIRONMENT

    try:
        with engine.connect() as connection:
            tokens = connection.execute(
                sa.select(ApiToken.id, ApiToken.name, ApiToken.labels)
                .where(ApiToken.kind == TokenKind.runner, ApiToken.revoked.is_(False))
                .order_by(ApiToken.id)
            ).all()
            environments = connection.execute(
                sa.select(Repository.full_name, Environment.name, Environment.runner_labels)
                .join(Repository, Repository.id == Environment.repository_id)
                .order_by(Repository.full_name, Environment.name)
            ).all()
            scoped = connection.execute(
                sa.select(sa.func.count()).select_from(Secret).where(Secret.environment != ANY_ENVIRONMENT)
            ).scalar_one()
    except Exception as error:
        return Check("tokens", False, f"cannot read the runner tokens: {_short(error)}", "see 'database'")
    wide = [token for token in tokens if "*" in (token.labels or ())]
    protected = [
        f"{row.full_name} {row.name} runs on {', '.join(row.runner_labels)}"
        for row in environments
        if row.runner_labels
    ]
    if scoped:
        protected.append("environment-scoped secrets exist")
    if not wide:
        return Check("tokens", True, f"{len(tokens)} runner token(s), none serving every label (*)")
    if not protected:
        return Check("tokens", True, f"{len(tokens)} runner token(s); no environment has runners or secrets")
    named = "; ".join(f"runner token {token.id} ({token.name}) serves every label (*)" for token in wide)
    return Check(
        "tokens",
        True,
        f"{named}, so its runners may claim deploy jobs and their secrets: {'; '.join(protected)}",
        "narrow each to what its runners run: `greenlight token labels "
        + ", ".join(f"{token.id} LABELS" for token in wide)
        + "` (e.g. docker for build runners, an environment's runner labels for its deploy runners)",
        warning=True,
    )


def check_github_token(settings: Settings) -> Check | None:
    """None when no token is configured (nothing is reported to GitHub, nothing to check)."""
    token = settings.github_token.get_secret_value()
    if not token:
        return None
    url = settings.github_api_url.rstrip("/") + "/user"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "Greenlight-doctor"}
    try:
        response = httpx.get(url, headers=headers, timeout=CHECK_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        return Check(
            "github", False, f"cannot reach {settings.github_api_url}: {_short(error)}", _GITHUB_URL_FIX
        )
    if response.status_code == 401:
        return Check(
            "github",
            False,
            "GitHub refuses the token (401 Bad credentials)",
            "create a new token and set GREENLIGHT_GITHUB_TOKEN",
        )
    if not response.is_success:
        return Check("github", False, f"GET /user answered {response.status_code}", _GITHUB_URL_FIX)
    raw = response.headers.get("x-oauth-scopes")
    if raw is None:
        # Fine-grained tokens and app tokens carry no scope list; their permissions show on use.
        return Check("github", True, "token accepted (fine-grained: permissions are checked on use)")
    scopes = {scope.strip() for scope in raw.split(",") if scope.strip()}
    if scopes & STATUS_SCOPES:
        return Check("github", True, f"token accepted, scopes: {', '.join(sorted(scopes)) or 'none'}")
    return Check(
        "github",
        False,
        f"the token's scopes ({', '.join(sorted(scopes)) or 'none'}) cannot set commit statuses",
        "give the token the 'repo:status' scope ('repo' for private repositories), "
        "or 'admin:repo_hook' too for redelivery",
    )


def check_clock_skew(engine: Engine) -> Check:
    try:
        with engine.connect() as connection:
            before = time.time()
            database_now: dt.datetime = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
            after = time.time()
    except Exception as error:
        return Check("clock", False, f"cannot read the database's clock: {_short(error)}", "see 'database'")
    skew = database_now.timestamp() - (before + after) / 2
    if abs(skew) <= MAX_CLOCK_SKEW_SECONDS:
        return Check("clock", True, f"skew vs the database {skew:+.3f}s")
    return Check(
        "clock",
        False,
        f"the server's clock is {-skew:+.1f}s off the database's",
        "run NTP (chrony or systemd-timesyncd) on both machines; leases and heartbeats depend on it",
    )


_MIGRATE = "run `greenlight migrate` with the same GREENLIGHT_DATABASE_URL"
_GITHUB_URL_FIX = "check GREENLIGHT_GITHUB_API_URL (GitHub Enterprise: https://HOST/api/v3) and the network"


def _short(error: BaseException) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:300]
