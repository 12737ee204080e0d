"""Start a build of a ref without a push: a person asks for one (event ``manual``), or a schedule.

The commit comes from the registered repository's clone URL, never from the request: a branch's
or tag's commit is asked of the git server, and a commit named in the request must be the tag's
commit, the branch's head, or a commit of the branch's history that Greenlight already built as
the branch's head (any other commit of the history, such as an intermediate commit of a merged
feature branch, was never reviewed as the branch and would get its branch-limited secrets). The
build then takes a push's path: planning reads the pipeline at that commit and applies its
`when:`, the GitHub status follows, and a green build of a branch that deploys on its own
deploys, unless the request said not to, the commit is not the branch's head (only a branch's
head ever deploys) or the request gave extra variables (a variable can switch the tests off, and
an untested head must not deploy).

Extra variables are for values the pipeline reads: names are checked, Greenlight's own names and
names that change how programs start or redirect what a step installs or runs are refused, and
at planning they sit underneath everything else (the file's `env:`, matrix values, a step's
`env:`, secrets and Greenlight's variables all win), so a variable can only fill a name nothing
else sets. They reach the build's steps, never a deploy job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.names import FULL_NAME_SHAPE, REF_NAME_SHAPE, is_commit_sha, is_full_name, is_ref_name
from server.builds.planning import mirror_for
from server.builds.service import next_build_number
from server.config import Settings
from server.db import after_commit
from server.git.mirror import GitError, Mirror
from server.models import Build, BuildState
from server.models.base import utcnow
from server.models.build import MANUAL_EVENT
from server.repos.service import get_repository
from server.secrets.service import NAME_PATTERN
from server.transport import Transport

# Events a build started here may carry (a schedule's firing is ``cron``).
START_EVENTS = frozenset({MANUAL_EVENT, "cron"})
MAX_VARIABLES = 50
MAX_VARIABLE_BYTES = 4096
# Names that change how a program or a shell starts (what it loads, runs first or finds on the
# path), or redirect what a step installs or runs (package indexes, proxies, CA bundles, compiler
# wrappers, the home directory holding tools' configuration): a variable could turn a step that
# holds a secret into something else. The one list of refused names.
_REFUSED_NAMES = re.compile(
    r"^(?:LD_.*|DYLD_.*|BASH_ENV|ENV|PATH|IFS|PS4|SHELLOPTS|BASHOPTS|CDPATH|PYTHON.*|NODE_OPTIONS|"
    r"PERL5OPT|PERL5LIB|PERLLIB|RUBYOPT|RUBYLIB|GEM_.*|BUNDLE_.*|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|"
    r"JDK_JAVA_OPTIONS|MAVEN_OPTS|GRADLE_OPTS|GIT_.*|PIP_.*|UV_.*|NPM_CONFIG_.*|YARN_.*|NODE_PATH|"
    r"NODE_EXTRA_CA_CERTS|GOPROXY|GOFLAGS|GONOSUMDB|GONOSUMCHECK|GOINSECURE|GOPRIVATE|GOSUMDB|"
    r"GOTOOLCHAIN|CARGO_.*|RUSTC|RUSTC_WRAPPER|RUSTFLAGS|GCONV_PATH|HOME|XDG_CONFIG_HOME|.*_PROXY|"
    r"SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|CURL_HOME|DOCKER_.*)$",
    re.IGNORECASE,
)
# A started commit that is not the branch's head says so in its reason: such a build is no
# evidence that the commit was ever the head.
NOT_THE_HEAD = "is not the head of"
_VARIABLE_NAME = re.compile(NAME_PATTERN)


class StartRefused(Exception):
    """A build cannot be started as asked, in words the person can act on."""


class InvalidStartRequest(StartRefused):
    """A malformed name, ref, commit or variable."""


class UnknownRepository(StartRefused):
    pass


class RefNotFound(StartRefused):
    """The branch or tag does not exist, or the commit is not on it."""


class CommitNotBuiltAsHead(RefNotFound):
    """A commit of the branch's history that Greenlight never built as the branch's head."""


class RepositoryUnreachable(StartRefused):
    """The git server did not answer (or refused the registered credential)."""


@dataclass(frozen=True)
class StartRequest:
    """``repository``: OWNER/NAME. Exactly one of ``branch`` and ``tag``; ``commit``: a full SHA
    in that branch's history (or the tag's commit), the head when omitted."""

    repository: str
    started_by: str
    branch: str | None = None
    tag: str | None = None
    commit: str | None = None
    event: str = MANUAL_EVENT
    variables: Mapping[str, str] = field(default_factory=dict)
    deploy: bool = True


@dataclass(frozen=True)
class StartedBuild:
    id: int
    number: int
    commit_sha: str
    # Why a green build will not deploy (None: it deploys if its branch deploys on its own).
    no_deploy_reason: str | None


def start_build(
    session: Session, settings: Settings, transport: Transport, request: StartRequest
) -> StartedBuild:
    """Create a pending build of the request's ref in the caller's transaction; planning is
    requested once it commits (and the reconciler asks again if that message is lost).

    Raises ``StartRefused`` (a subclass says which) before anything is written. The git server
    is asked before the repository's row is locked for the build number."""
    variables = check_variables(request.variables)
    _check_ref(request)
    repository = get_repository(session, request.repository)
    if repository is None:
        raise UnknownRepository(f"repository {request.repository} is not registered")
    mirror = mirror_for(session, settings, repository)
    sha, no_deploy_reason = _resolve(mirror, request)
    # A reason from _resolve: a commit of the branch's history other than its head.
    if no_deploy_reason is not None and not _built_as_head(session, repository.id, request.branch, sha):
        raise CommitNotBuiltAsHead(
            f"commit {sha} was never built as the head of {request.branch}: only the head of "
            f"{request.branch} or a commit built earlier as its head can be started"
        )
    author, message = mirror.commit_summary(sha)  # from the mirror, which now holds the commit
    if no_deploy_reason is None and not request.deploy:
        no_deploy_reason = f"not deployed: {request.started_by} started it without deploying"
    if no_deploy_reason is None and variables:
        no_deploy_reason = (
            "not deployed: started with extra variables: variables can change what the tests do"
        )
    kind, name = ("heads", request.branch) if request.branch is not None else ("tags", request.tag)
    build = Build(
        repository_id=repository.id,
        number=next_build_number(session, repository.id),
        event=request.event,
        ref=f"refs/{kind}/{name}",
        branch=request.branch,
        tag=request.tag,
        commit_sha=sha,
        commit_message=message,
        commit_author=author,
        sender="",
        started_by=request.started_by[:255],
        variables=variables,
        no_deploy_reason=no_deploy_reason,
        state=BuildState.pending,
        created_at=utcnow(),
        plan_attempts=0,
    )
    session.add(build)
    session.flush()
    build_id = build.id
    after_commit(session, lambda: transport.request_planning(build_id))
    return StartedBuild(build.id, build.number, sha, no_deploy_reason)


def check_variables(variables: Mapping[str, str]) -> dict[str, str]:
    """The extra variables as stored, or ``InvalidStartRequest`` naming the first bad one."""
    if len(variables) > MAX_VARIABLES:
        raise InvalidStartRequest(f"{len(variables)} variables given; at most {MAX_VARIABLES}")
    checked = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not _VARIABLE_NAME.match(name):
            raise InvalidStartRequest(
                f"{name!r} is not a valid variable name: letters, digits and _, not starting with a digit"
            )
        if name.upper().startswith("GREENLIGHT_") or name.upper() == "CI":
            raise InvalidStartRequest(f"{name!r} is reserved for the variables Greenlight sets itself")
        if _REFUSED_NAMES.match(name):
            raise InvalidStartRequest(
                f"{name!r} changes how programs start or what a step installs or runs; "
                "it cannot be given as an extra variable"
            )
        if not isinstance(value, str) or "\0" in value or len(value.encode()) > MAX_VARIABLE_BYTES:
            raise InvalidStartRequest(
                f"the value of {name} must be text of at most {MAX_VARIABLE_BYTES} bytes, without NUL"
            )
        checked[name] = value
    return checked


def _built_as_head(session: Session, repository_id: int, branch: str | None, sha: str) -> bool:
    """Whether Greenlight built ``sha`` as the head of ``branch``: pushed as it, or started while it
    was the head."""
    started_as_head = sa.and_(
        Build.event.in_(START_EVENTS),
        sa.or_(Build.no_deploy_reason.is_(None), ~Build.no_deploy_reason.contains(NOT_THE_HEAD)),
    )
    built = sa.exists().where(
        Build.repository_id == repository_id,
        Build.branch == branch,
        Build.ref == f"refs/heads/{branch}",
        Build.commit_sha == sha,
        sa.or_(Build.event == "push", started_as_head),
    )
    return bool(session.scalar(sa.select(built)))


def _check_ref(request: StartRequest) -> None:
    if request.event not in START_EVENTS:
        raise InvalidStartRequest(f"a started build's event is one of {', '.join(sorted(START_EVENTS))}")
    if not is_full_name(request.repository):
        raise InvalidStartRequest(f"{request.repository!r} is not {FULL_NAME_SHAPE}")
    if (request.branch is None) == (request.tag is None):
        raise InvalidStartRequest("name exactly one branch or one tag")
    name = request.branch if request.branch is not None else request.tag
    if not is_ref_name(name):
        raise InvalidStartRequest(f"{name!r} is not {REF_NAME_SHAPE}")
    if request.commit is not None and not is_commit_sha(request.commit):
        raise InvalidStartRequest(f"{request.commit!r} is not a full commit SHA (40 lower-case hex digits)")


def _resolve(mirror: Mirror, request: StartRequest) -> tuple[str, str | None]:
    """(the commit to build, why it must not deploy or None), from the git server."""
    try:
        if request.tag is not None:
            sha = mirror.tag_commit(request.tag)
            if sha is None:
                raise RefNotFound(f"tag {request.tag} not found in {mirror.shown_url}")
            if request.commit is not None and request.commit != sha:
                raise RefNotFound(f"tag {request.tag} is commit {sha}, not {request.commit}")
            mirror.ensure_commit(sha)
            return sha, None
        assert request.branch is not None
        head = mirror.branch_head(request.branch)
        if head is None:
            raise RefNotFound(f"branch {request.branch} not found in {mirror.shown_url}")
        mirror.ensure_commit(head)
        if request.commit is None or request.commit == head:
            return head, None
        # A commit from elsewhere would be built as this branch: its `when: branch`, the secrets
        # limited to the branch and its environments would apply to code never pushed to it.
        try:
            mirror.ensure_commit(request.commit)
        except GitError:
            raise RefNotFound(f"commit {request.commit} is not in {mirror.shown_url}") from None
        if not mirror.is_ancestor(request.commit, head):
            raise RefNotFound(f"commit {request.commit} is not in the history of branch {request.branch}")
        return request.commit, (
            f"not deployed: {request.commit[:12]} {NOT_THE_HEAD} {request.branch} "
            f"(the head is {head[:12]}); only a branch's head deploys"
        )
    except GitError as error:
        raise RepositoryUnreachable(f"Greenlight could not read the repository: {error}") from None
