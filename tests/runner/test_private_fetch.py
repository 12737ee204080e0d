"""The runner's mirror cache fetches private repositories with the job's credential, over HTTPS
(a real `git http-backend` behind basic auth) and SSH (a real sshd), and the checked-out
workspace keeps no trace of it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.git_access import git_access
from contract.spec import GitCredential, JobSpec
from runner.workspace import WorkspaceError, prepare_workspace
from tests.runner.specs import make_job
from tests.support import services
from tests.support.private_git import PrivateHttpGit, http_git_server, ssh_git_server

TOKEN = "ghp_PrivateRepoToken0123456789"


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str]:
    """A bare repository at ``<tmp>/served/app.git`` and its commit."""
    sha = services.make_git_repo(tmp_path / "work", {"README": "private\n"})
    services.make_bare_clone(tmp_path / "work", tmp_path / "served" / "app.git")
    return tmp_path / "served" / "app.git", sha


@pytest.fixture
def http_git(tmp_path: Path, origin: tuple[Path, str]) -> Iterator[PrivateHttpGit]:
    with http_git_server(tmp_path / "served", "x-access-token", TOKEN) as server:
        yield server


def job_for(url: str, sha: str, credential: GitCredential | None = None) -> JobSpec:
    return make_job().model_copy(update={"clone_url": url, "commit_sha": sha, "credential": credential})


def everything_under(path: Path) -> bytes:
    return b"".join(file.read_bytes() for file in path.rglob("*") if file.is_file())


def test_a_clone_url_with_a_token_leaves_no_token_in_the_workspace_or_the_error(
    http_git: PrivateHttpGit, origin: tuple[Path, str], tmp_path: Path
) -> None:
    """A URL registered before credentials existed (``https://user:token@host/…``) still
    fetches, but the workspace's `origin` and any failure carry the URL without the token."""
    _, sha = origin
    url = f"http://x-access-token:{TOKEN}@{http_git.url.removeprefix('http://')}/app.git"
    workspace = prepare_workspace(job_for(url, sha), tmp_path / "runner")
    assert (workspace / "README").read_text() == "private\n"
    assert TOKEN.encode() not in everything_under(workspace / ".git")
    origin_url = subprocess.run(
        ["git", "-C", str(workspace), "remote", "get-url", "origin"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert origin_url == f"{http_git.url}/app.git"
    assert http_git.argv_with_password == []

    wrong = url.replace(TOKEN, TOKEN[:-1] + "X")
    with pytest.raises(WorkspaceError) as failure:
        prepare_workspace(job_for(wrong, sha), tmp_path / "other-runner")
    assert TOKEN[:-1] not in str(failure.value) and "Authentication failed" in str(failure.value)


def test_an_https_token_fetches_and_stays_out_of_the_workspace(
    http_git: PrivateHttpGit, origin: tuple[Path, str], tmp_path: Path
) -> None:
    _, sha = origin
    url = f"{http_git.url}/app.git"
    with pytest.raises(WorkspaceError) as refused:
        prepare_workspace(job_for(url, sha), tmp_path / "anonymous")
    assert "could not read Username" in str(refused.value) or "401" in str(refused.value)

    credential = GitCredential(kind="https", secret=TOKEN)
    workspace = prepare_workspace(job_for(url, sha, credential), tmp_path / "runner")
    assert (workspace / "README").read_text() == "private\n"
    assert any(header and header.startswith("Basic ") for header in http_git.authorizations)
    assert http_git.argv_with_password == []  # not on any command line while git fetched
    assert TOKEN.encode() not in everything_under(workspace)
    assert TOKEN.encode() not in everything_under(tmp_path / "runner")  # nor in the mirror cache

    wrong = GitCredential(kind="https", username="someone", secret=TOKEN + "-wrong")
    with pytest.raises(WorkspaceError) as failure:
        prepare_workspace(job_for(url, sha, wrong), tmp_path / "wrong")
    assert TOKEN not in str(failure.value) and "app.git" in str(failure.value)


def test_an_ssh_deploy_key_fetches_and_its_key_file_is_gone_after(
    origin: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = origin
    with ssh_git_server(tmp_path / "sshd") as sshd:
        url = sshd.url(path)
        with pytest.raises(WorkspaceError):
            prepare_workspace(job_for(url, sha), tmp_path / "anonymous")

        credential = GitCredential(kind="ssh", secret=sshd.client_key)
        workspace = prepare_workspace(job_for(url, sha, credential), tmp_path / "runner")
        assert (workspace / "README").read_text() == "private\n"
        key_line = sshd.client_key.splitlines()[1].encode()
        assert key_line not in everything_under(tmp_path / "runner")
        # accept-new: the host key was pinned into the runner's own known_hosts on first use
        known_hosts = (tmp_path / "runner" / "ssh" / "known_hosts").read_text()
        assert sshd.host_public_key.split()[1] in known_hosts

        # A pinned host whose key changed is refused (a man in the middle would look like this).
        pinned = tmp_path / "other-runner" / "ssh" / "known_hosts"
        pinned.parent.mkdir(parents=True)
        pinned.write_text(known_hosts.replace(sshd.host_public_key.split()[1], _another_host_key(tmp_path)))
        with pytest.raises(WorkspaceError) as changed:
            prepare_workspace(job_for(url, sha, credential), tmp_path / "other-runner")
        assert "host key" in str(changed.value).lower()


def _another_host_key(tmp_path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    return (tmp_path / "other.pub").read_text().split()[1]


def test_the_token_is_given_only_to_the_clone_urls_own_host(tmp_path: Path) -> None:
    """A redirect to another host must not take the token along: git asks the helper per host."""
    credential = GitCredential(kind="https", secret=TOKEN)
    with git_access(credential, "https://git.example.com:8443/acme/app.git", tmp_path / "kh") as access:

        def fill(host: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["git", *access.options, "credential", "fill"],
                input=f"protocol=https\nhost={host}\n\n", capture_output=True, text=True, check=False,
                env={**os.environ, **access.env, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"},
            )  # fmt: skip

        assert f"password={TOKEN}" in fill("git.example.com:8443").stdout
        assert TOKEN not in fill("elsewhere.example.com").stdout + fill("git.example.com").stdout
