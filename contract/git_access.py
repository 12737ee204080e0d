"""How one git fetch authenticates to a private repository, and the one redaction of URLs.

Shared by the server's mirror and the runner's mirror cache (the server imports it; it imports
nothing from the server). A credential reaches the fetching git process only:
- an HTTPS token through the environment of that process, read by an inline credential helper
  given with ``-c`` (its text names the variables, not the value): never in argv, never in a file;
- an SSH deploy key in a 0600 file in a private temporary directory, removed when the fetch
  ends, named by ``GIT_SSH_COMMAND``. Host keys: trust on first use into a known_hosts file of
  Greenlight's own (``accept-new``), so a host key that later changes fails the fetch.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import ValidationError

from contract.spec import GitCredential

_HOST_VARIABLE = "GREENLIGHT_GIT_HOST"
_USERNAME_VARIABLE = "GREENLIGHT_GIT_USERNAME"
_PASSWORD_VARIABLE = "GREENLIGHT_GIT_PASSWORD"  # noqa: S105 (the variable's name, not a value)
# Answers git's "get" with the two variables, and only for the clone URL's own host (a redirect
# elsewhere gets nothing); ignores "store" and "erase" (nothing to keep).
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; h=; while IFS= read -r line; do case "$line" in '
    f'host=*) h="${{line#host=}}";; esac; done; test "$h" = "${_HOST_VARIABLE}" || return 0; '
    f'printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_VARIABLE}" "${_PASSWORD_VARIABLE}"; }}; f'
)
# scheme://userinfo@ — the userinfo may itself hold an unencoded "@" (user:p@ss@host).
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)((?:[^/\s@]*@)+)")
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")


def redact_urls(text: str) -> str:
    """``text`` with the user information of every URL in it shown as ``***`` — every message,
    API field, page and log line that may hold a clone URL (or git's error quoting one) goes
    through here. A bare user name of an SSH URL (``ssh://git@host/…``) is not a secret and stays."""

    def replace(match: re.Match[str]) -> str:
        scheme, userinfo = match.group(1), match.group(2)
        if scheme[:-3].lower() in _SSH_SCHEMES and ":" not in userinfo and userinfo.count("@") == 1:
            return match.group(0)
        return f"{scheme}***@"

    return _USERINFO.sub(replace, text)


def has_secret_userinfo(url: str) -> bool:
    """Whether ``url`` carries something ``redact_urls`` hides (a password or token)."""
    return redact_urls(url) != url


@dataclass(frozen=True)
class SplitUrl:
    url: str  # without user information
    username: str | None = None
    password: str | None = None


def split_userinfo(url: str) -> SplitUrl:
    """``https://user:token@host/x.git`` → ``https://host/x.git``, user, token. URLs without a
    secret in them (and SSH user names) come back as they are."""
    if not has_secret_userinfo(url):
        return SplitUrl(url)
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    username = unquote(parts.username) if parts.username else None  # git decodes them too
    password = unquote(parts.password) if parts.password is not None else None
    return SplitUrl(urlunsplit(parts._replace(netloc=host)), username, password)


def fetch_source(clone_url: str, credential: GitCredential | None) -> tuple[str, GitCredential | None]:
    """The URL to fetch (without user information) and the credential to fetch it with: the one
    set for the repository, else one made of the URL's own user information (a URL registered
    with a token in it before credentials existed keeps working, and its token goes no further)."""
    split = split_userinfo(clone_url)
    try:
        if credential is None and split.password is not None:
            credential = GitCredential(kind="https", username=split.username or "git", secret=split.password)
        elif credential is None and split.username is not None:  # a token given as the user name
            credential = GitCredential(kind="https", secret=split.username)
    except ValidationError:
        pass  # not usable as a credential (a line break in it): the fetch fails as anonymous
    return split.url, credential


@dataclass(frozen=True)
class GitAccess:
    """What to add to one git command: options before its subcommand, and its environment."""

    options: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def git_access(credential: GitCredential | None, url: str, known_hosts: Path) -> Iterator[GitAccess]:
    """The options and environment for git commands that talk to ``url``, valid inside the
    ``with`` block (an SSH key file exists only that long)."""
    # Host keys: trust on first use into our own file (the account's own known_hosts counts too).
    host_keys = [
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={known_hosts} ~/.ssh/known_hosts",
    ]
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if credential is None:
        # Anonymous, or the account's own SSH keys and config (as before credentials existed).
        yield GitAccess(env={"GIT_SSH_COMMAND": shlex.join(["ssh", "-o", "BatchMode=yes", *host_keys])})
        return
    secret = credential.secret.get_secret_value()
    if credential.kind == "https":
        # The empty value first: git calls every configured helper, and one from a user's
        # ~/.gitconfig (`store`) would write the token to disk after a successful fetch.
        yield GitAccess(
            options=("-c", "credential.helper=", "-c", f"credential.helper={_CREDENTIAL_HELPER}"),
            env={
                _HOST_VARIABLE: urlsplit(url).netloc.rpartition("@")[2],
                _USERNAME_VARIABLE: credential.username,
                _PASSWORD_VARIABLE: secret,
            },
        )
        return
    directory = Path(tempfile.mkdtemp(prefix="greenlight-ssh-"))  # 0700, outside any workspace
    try:
        key = directory / "deploy_key"
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secret if secret.endswith("\n") else secret + "\n")  # ssh needs the newline
        # -F /dev/null: this key and no other identity or option from the account's ssh config.
        command = [
            "ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            *host_keys,
        ]  # fmt: skip
        yield GitAccess(env={"GIT_SSH_COMMAND": shlex.join(command), "GIT_SSH_VARIANT": "ssh"})
    finally:
        shutil.rmtree(directory, ignore_errors=True)
