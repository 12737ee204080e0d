"""Setting and reading environments' rules. Only people change them (a user token, or a signed-in
browser); a pipeline file never does."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from server.environments.rules import allowed_branches, deploy_labels, in_use
from server.environments.schemas import EnvironmentRuleIn, EnvironmentRuleOut
from server.models import Build, Deployment, Environment, Job, JobState, Repository
from server.models.base import utcnow
from server.pipelines.config import DEFAULT_BUILD_LABELS, EnvironmentName
from server.secrets.service import SecretError, check_branches

_NAME: TypeAdapter[str] = TypeAdapter(EnvironmentName)


class RuleError(ValueError):
    """A rule that cannot be stored as asked, in words the user can act on."""


def set_rule(
    session: Session, repository: Repository, name: str, change: EnvironmentRuleIn, who: str
) -> Environment:
    """Create the environment if needed and change the parts of its rule that ``change`` names."""
    try:
        _NAME.validate_python(name)
    except ValidationError:
        raise RuleError(f"{name!r} is not an environment name (lowercase letters, digits, _ and -)") from None
    if common := set(change.runner_labels or ()) & set(DEFAULT_BUILD_LABELS):
        # Deploy runners' labels are reserved for deploy jobs: never the one every build job has.
        raise RuleError(
            f"{', '.join(sorted(common))} is the label build jobs run on by default; give "
            f"{name}'s deploy runners a label of their own (e.g. deploy-{name})"
        )
    environment = environment_for(session, repository.id, name, lock=True)
    if change.branches is not None:
        environment.branches = _branches(change.branches)
    if change.runner_labels is not None:
        environment.runner_labels = sorted(set(change.runner_labels))
        _relabel_queued_deploys(session, environment)
    if change.require_approval is not None:
        environment.require_approval = change.require_approval
    if change.promote_from is not None:
        environment.promote_from = _promote_from(session, environment, change.promote_from or None)
    environment.rule_updated_by, environment.rule_updated_at = who, utcnow()
    session.flush()
    return environment


def _promote_from(session: Session, environment: Environment, source: str | None) -> str | None:
    """``source`` if it keeps the promotion order a line: neither the environment itself nor one
    promoted (directly or not) from it."""
    if source is None:
        return None
    sources = dict(
        session.execute(
            sa.select(Environment.name, Environment.promote_from).where(
                Environment.repository_id == environment.repository_id
            )
        ).all()
    )
    step: str | None = source
    seen = set()
    while step is not None and step not in seen:
        if step == environment.name:
            via = "" if source == environment.name else f": {source} is promoted from {sources[source]}"
            raise RuleError(
                f"{environment.name} cannot be promoted from {source}, which would come after it{via}"
            )
        seen.add(step)
        step = sources.get(step)
    return source


def _relabel_queued_deploys(session: Session, environment: Environment) -> None:
    """Deploy jobs still waiting for a runner go to the runners the rule names now (the claim
    finds them there; the reconciler announces them again). The environment's row is locked, so
    no new deploy job of it appears meanwhile."""
    queued = session.execute(
        sa.select(Job, Deployment.config)
        .join(Build, Build.id == Job.build_id)
        .join(Deployment, Deployment.deploy_build_id == Build.id)
        .where(Deployment.environment_id == environment.id, Job.state == JobState.queued)
        .with_for_update(of=Job)
    ).all()
    for job, config in queued:
        job.labels = deploy_labels(environment, config)


def _branches(globs: Sequence[str]) -> list[str]:
    try:
        return check_branches(globs)
    except SecretError as error:  # the same patterns a secret's branch scope accepts
        raise RuleError(str(error)) from None


def environment_for(session: Session, repository_id: int, name: str, *, lock: bool = False) -> Environment:
    """The environment's row, created on first use (concurrent creators meet on the unique key)."""
    query = sa.select(Environment).where(Environment.repository_id == repository_id, Environment.name == name)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is not None:
        return found
    with session.begin_nested():
        session.add(Environment(repository_id=repository_id, name=name))
        with contextlib.suppress(sa.exc.IntegrityError):
            session.flush()
    return session.scalars((query.with_for_update() if lock else query).execution_options(
        populate_existing=True)).one()  # fmt: skip


def rules_of(session: Session, repository: Repository) -> list[Environment]:
    """The repository's environments in use (``in_use``), by name."""
    query = sa.select(Environment).where(Environment.repository_id == repository.id, in_use())
    return list(session.scalars(query.order_by(Environment.name)))


def rule_out(repository: Repository, name: str, environment: Environment | None) -> EnvironmentRuleOut:
    """The rule as set and as it applies (``environment`` None: not known yet, the default rule)."""
    branches = list(environment.branches) if environment is not None else []
    return EnvironmentRuleOut(
        repository=repository.full_name,
        name=name,
        branches=branches,
        allowed_branches=allowed_branches(branches, repository.default_branch),
        runner_labels=list(environment.runner_labels) if environment is not None else [],
        require_approval=environment is not None and environment.require_approval,
        promote_from=environment.promote_from if environment is not None else None,
        rule_updated_by=environment.rule_updated_by if environment is not None else None,
        rule_updated_at=environment.rule_updated_at if environment is not None else None,
    )
