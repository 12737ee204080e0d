"""Repository credentials on real Postgres: set through the API (user token, value encrypted,
never answered back), handed to a runner only in its claim and only for the fetch, and used by
the server's own mirror over a real sshd."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import mirror_for, plan_build
from server.cli.main import cli
from server.config import Settings
from server.models import Build, BuildState, Repository, RepositoryCredential
from server.secrets.credentials import set_credential
from tests import factories
from tests.secrets.test_claims import claimed_spec
from tests.support import services
from tests.support.private_git import ssh_git_server

pytestmark = pytest.mark.integration

TOKEN = "ghp_RepositoryCredential0123456789"
URL = "/api/repos/acme/widgets/credential"


def test_set_show_and_remove_never_answer_the_value(
    client: TestClient, session: Session, auth: dict[str, str]
) -> None:
    reply = client.put(URL, json={"value": TOKEN + "\n"}, headers=auth)
    assert reply.status_code == 201, reply.text
    assert reply.json()["credential"] == "set (https token, user x-access-token)" and TOKEN not in reply.text
    stored = session.query(RepositoryCredential).one()
    assert TOKEN.encode() not in stored.ciphertext
    again = client.put(URL, json={"value": TOKEN, "username": "ci-bot"}, headers=auth)
    assert again.status_code == 200 and again.json()["username"] == "ci-bot"
    shown = client.get(URL, headers=auth)
    assert shown.json()["credential"] == "set (https token, user ci-bot)" and TOKEN not in shown.text
    assert TOKEN not in client.get("/api/repos").text
    assert client.delete(URL, headers=auth).status_code == 204
    assert client.get(URL, headers=auth).status_code == 404


def test_every_route_needs_a_user_token_and_errors_do_not_echo_the_value(
    client: TestClient, session: Session, auth: dict[str, str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer glu_nope"}):
        assert client.put(URL, json={"value": TOKEN}, headers=headers).status_code == 401
        assert client.get(URL, headers=headers).status_code == 401
        assert client.delete(URL, headers=headers).status_code == 401
    not_a_key = client.put(URL, json={"kind": "ssh", "value": TOKEN}, headers=auth)
    assert not_a_key.status_code == 422 and TOKEN not in not_a_key.text and "PRIVATE KEY" in not_a_key.text
    two_lines = client.put(URL, json={"value": f"{TOKEN} {TOKEN}"}, headers=auth)
    assert two_lines.status_code == 422 and TOKEN not in two_lines.text
    extra = client.put(URL, json={"value": TOKEN, "secret": TOKEN}, headers=auth)
    assert extra.status_code == 422 and TOKEN not in extra.text


def test_the_claim_carries_the_credential_for_the_fetch_and_no_step_gets_it(
    client: TestClient, session: Session, settings: Settings
) -> None:
    repo = factories.repository(session, clone_url=f"https://old-bot:{TOKEN}-url@git.example.com/acme/w.git")
    set_credential(session, settings.secret_cipher(), repo, "https", TOKEN)
    build = factories.build(session, repo)
    job = factories.job(session, build, steps=2)
    job.steps[1].secrets = []
    session.commit()
    spec = claimed_spec(client, session)
    assert spec["credential"] == {"kind": "https", "username": "x-access-token", "secret": TOKEN}
    # The set credential wins over a token left in an old URL, and the URL goes without it.
    assert spec["clone_url"] == "https://git.example.com/acme/w.git"
    assert TOKEN not in str([spec["steps"], spec["env"], spec["services"], spec["mask"]])


def test_a_token_left_in_an_old_clone_url_travels_as_the_credential(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, clone_url=f"https://old-bot:{TOKEN}@git.example.com/acme/w.git")
    factories.job(session, factories.build(session, repo), steps=1)
    session.commit()
    spec = claimed_spec(client, session)
    assert spec["clone_url"] == "https://git.example.com/acme/w.git"
    assert spec["credential"] == {"kind": "https", "username": "old-bot", "secret": TOKEN}


def test_the_server_mirror_reads_the_pipeline_over_ssh_with_the_deploy_key_only(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    pipeline = "image: greenlight-test/debian:bookworm\nsteps:\n  - name: test\n    run: true\n"
    sha = services.make_git_repo(tmp_path / "work", {".greenlight.yml": pipeline})
    services.make_bare_clone(tmp_path / "work", tmp_path / "served" / "app.git")
    with ssh_git_server(tmp_path / "sshd") as sshd:
        builds = {}
        for name, key in (("acme/with-key", sshd.client_key), ("acme/without", None)):
            with session_factory.begin() as session:
                repo = factories.repository(session, name, sshd.url(tmp_path / "served" / "app.git"))
                if key is not None:
                    set_credential(session, settings.secret_cipher(), repo, "ssh", key)
                build = factories.build(session, repo, sha=sha)
                build.state = BuildState.pending
                builds[name] = build.id
        for build_id in builds.values():
            with session_factory.begin() as session:
                plan_build(session, build_id, settings)
        with session_factory() as session:
            repo = session.scalars(sa.select(Repository).where(Repository.full_name == "acme/with-key")).one()
            # The deploy check's `ls-remote` (is this still the branch head?) uses the key too.
            assert mirror_for(session, settings, repo).branch_head("main") == sha
    with session_factory() as session:
        planned, refused = (session.get(Build, builds[name]) for name in ("acme/with-key", "acme/without"))
        assert planned is not None and planned.state is BuildState.queued, planned and planned.reason
        assert refused is not None and refused.state is BuildState.errored
        assert "Permission denied" in (refused.reason or ""), refused.reason
    key_line = sshd.client_key.splitlines()[1].encode()
    assert all(
        key_line not in file.read_bytes() for file in Path(settings.data_dir).rglob("*") if file.is_file()
    )
    assert sshd.host_public_key.split()[1] in (Path(settings.data_dir) / "ssh" / "known_hosts").read_text()


def test_the_cli_reads_the_value_from_standard_input_only(monkeypatch: pytest.MonkeyPatch) -> None:
    on_argv = CliRunner().invoke(cli, ["repo", "credential", "set", "acme/widgets", TOKEN])
    assert on_argv.exit_code != 0 and "standard input" in on_argv.output
