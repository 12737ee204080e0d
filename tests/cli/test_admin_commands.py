"""`greenlight doctor`, `prune` and `github redeliver` from a machine that knows only a server URL
and a user token (a config file): no database setting in sight, a real server on the other end."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from server.cli.config_file import write_config
from server.models import BuildState
from server.retention.logs import stored_log_bytes
from server.webhooks.signature import sign
from tests import factories
from tests.cli.support import as_json, bare_env, greenlight, ok
from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import push_payload
from tests.health.test_readiness import closed_port
from tests.retention.conftest import CHUNKS, build_with_logs
from tests.support.fake_github import FakeGitHub, running_fake
from tests.support.server_process import running_server, server_env
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

REPO = "acme/widgets"
HOOK = "42"


@pytest.fixture(scope="module")
def fake_github() -> Iterator[FakeGitHub]:
    yield from running_fake()


@pytest.fixture(scope="module")
def database_proxy(database_url: str) -> Iterator[TcpProxy]:
    """Between the server and its database, so that a test can take the database away."""
    target = make_url(database_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def running_url(
    database_url: str,
    database_proxy: TcpProxy,
    tmp_path_factory: pytest.TempPathFactory,
    fake_github: FakeGitHub,
) -> Iterator[str]:
    proxied = make_url(database_url).set(host="127.0.0.1", port=database_proxy.port)
    env = server_env(proxied.render_as_string(hide_password=False), tmp_path_factory.mktemp("server-data"))
    env.update(GREENLIGHT_GITHUB_TOKEN=fake_github.token, GREENLIGHT_GITHUB_API_URL=fake_github.url)
    with running_server(env) as (url, _port):
        yield url


@pytest.fixture
def env(server_url: str, admin_token: str, tmp_path: Path) -> dict[str, str]:
    """A fresh machine signed in by its config file alone (as `greenlight login` leaves it)."""
    config = write_config({"server_url": server_url, "token": admin_token}, tmp_path / "config.toml")
    return bare_env(tmp_path, GREENLIGHT_CONFIG=str(config))


def test_doctor_shows_the_servers_checks_and_this_machines_docker(env: dict[str, str]) -> None:
    checks = as_json(env, "doctor", "--no-docker")
    names = [check["name"] for check in checks]
    assert names == ["database", "migrations", "clock", "runners", "tokens", "broker", "github"], checks
    assert all(check["ok"] for check in checks), checks
    human = ok(env, "doctor", "--no-docker")
    assert "migrations" in human and "at head" in human
    # Docker is checked where the command runs (a runner host), and said to be so.
    no_engine = greenlight({**env, "DOCKER_HOST": f"tcp://127.0.0.1:{closed_port()}"}, "doctor", "--json")
    assert no_engine.returncode == 1 and "Traceback" not in no_engine.stderr, no_engine.stderr
    docker = json.loads(no_engine.stdout)[-1]
    assert docker["name"] == "docker" and not docker["ok"] and "dockerd" in docker["fix"]
    assert "this machine" in docker["detail"]
    assert "this machine" in ok(env, "doctor", "--help")


def test_doctor_with_a_refused_token_says_how_to_sign_in(env: dict[str, str]) -> None:
    refused = greenlight({**env, "GREENLIGHT_TOKEN": "glu_wrong"}, "doctor", "--no-docker")
    assert refused.returncode != 0 and "401" in refused.stderr and "greenlight login" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_prune_dry_run_then_prune_through_the_api(env: dict[str, str], session: Session) -> None:
    repo = factories.repository(session)
    for _ in range(4):  # the fourth is the latest of main: it stays
        build_with_logs(session, repo, "main", BuildState.passed, 40)
    session.commit()
    bad = greenlight(env, "prune", "--older-than", "soon")
    assert bad.returncode != 0 and "not an age like 30d" in bad.stderr and "Traceback" not in bad.stderr
    bad = greenlight(env, "prune", "--max-log-bytes", "lots")
    assert bad.returncode != 0 and "not a size like 10G" in bad.stderr
    assert stored_log_bytes(session) == 4 * CHUNKS * 99

    dry = ok(env, "prune", "--older-than", "30d", "--dry-run")
    assert f"would delete {3 * CHUNKS} log chunks of 3 builds: " in dry
    assert f"({3 * CHUNKS * 99} bytes)" in dry
    assert dry.count("acme/widgets#") == 3 and dry.count(", age)") == 3
    assert stored_log_bytes(session) == 4 * CHUNKS * 99
    done = as_json(env, "prune", "--older-than", "30d")
    assert (done["dry_run"], done["chunks"], done["builds"]) == (False, 3 * CHUNKS, 3)
    assert stored_log_bytes(session) == CHUNKS * 99
    kept = ok(env, "prune", "--max-log-bytes", "1")
    assert "deleted 0 log chunks" in kept and "still over the budget" in kept


def test_github_redeliver_through_the_api(
    env: dict[str, str], server_url: str, session: Session, fake_github: FakeGitHub
) -> None:
    factories.repository(session, REPO)
    session.commit()
    body = json.dumps(push_payload(REPO, "refs/heads/main", "7" * 40)).encode()
    stored = httpx.post(f"{server_url}/webhooks/github", content=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "g-stored",
        "X-GitHub-Hook-ID": HOOK, "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
    })  # fmt: skip
    assert stored.status_code in (200, 202), stored.text
    now = dt.datetime.now(dt.UTC)
    fake_github.add_delivery(
        REPO, HOOK, guid="g-recent", status_code=503, delivered_at=now - dt.timedelta(minutes=30)
    )
    fake_github.add_delivery(
        REPO, HOOK, guid="g-earlier", status_code=503, delivered_at=now - dt.timedelta(hours=3)
    )

    bad = greenlight(env, "github", "redeliver", "--since", "yesterday")
    assert bad.returncode != 0 and "neither a duration" in bad.stderr and "Traceback" not in bad.stderr
    first = ok(env, "github", "redeliver", REPO, "--since", "2h")
    assert "checked 1 hook(s)" in first
    assert "asked GitHub to redeliver g-recent" in first and "g-earlier" not in first
    again = as_json(env, "github", "redeliver", "--since", "1d")
    assert again["requested"] == ["g-earlier"] and again["errors"] == []
    assert "nothing to redeliver" in ok(env, "github", "redeliver", "--since", "1d")
    unknown = greenlight(env, "github", "redeliver", "acme/unknown")
    assert unknown.returncode != 0 and "acme/unknown is not registered" in unknown.stderr


def test_doctor_of_a_server_that_lost_its_database_shows_the_readiness_checks(
    env: dict[str, str], server_url: str, database_proxy: TcpProxy
) -> None:
    """The server cannot read the token then (it is in the database), yet it can say what is
    wrong: the CLI shows /readyz's checks rather than a bare 503."""
    database_proxy.cut()
    try:
        result = greenlight(env, "doctor", "--no-docker", "--json")
    finally:
        database_proxy.restore()
        wait_ready(server_url)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert not checks["database"]["ok"] and "GREENLIGHT_DATABASE_URL" in checks["database"]["fix"]


def wait_ready(url: str) -> None:
    """Until the server reads its database again (its pool's old connections were reset)."""
    for _ in range(100):
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError("the server did not find its database again")
