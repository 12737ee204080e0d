"""Which secret values a claimed job's steps get, decided when a runner claims the job (values
never sit in job or step rows, nor in a Celery message).

Rules, in the spirit of Woodpecker and GitHub Actions:
- a step gets only the secrets it names (`secrets: [KEY]`), as environment variables;
- a secret limited to branches goes only to builds of a matching branch (never to tags);
- a secret scoped to an environment is for that environment's deploy jobs, not for steps;
- a build from a fork's pull request gets none: the step runs without them, and its log says so;
- a step naming a secret it cannot have does not run: it fails, and its log says which secret
  is missing and how to set it (an empty variable would fail later, in a way that hides why).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.spec import MAX_REASON
from server.crypto import SecretCipher, UndecryptableSecret
from server.models import Secret
from server.models.secret import ANY_ENVIRONMENT
from server.pipelines.branch_globs import branch_matches
from server.secrets.service import bound_to


@dataclass
class StepSecrets:
    values: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    refused: str | None = None


@dataclass(frozen=True)
class BuildContext:
    """What decides a build's access to secrets."""

    repository_id: int
    repository: str  # OWNER/NAME, for messages
    branch: str | None
    from_fork: bool
    environment: str | None = None  # set for deploy jobs only


def secrets_for_steps(
    session: Session,
    cipher_of: Callable[[], SecretCipher],
    build: BuildContext,
    wanted: Iterable[Sequence[str]],
) -> list[StepSecrets]:
    """One ``StepSecrets`` per step, from the secret names each step asked for. ``cipher_of`` is
    called only if a value has to be decrypted, so jobs without secrets never need the key."""
    wanted = [list(names) for names in wanted]
    names = {name for step_names in wanted for name in step_names}
    if not names:
        return [StepSecrets() for _ in wanted]
    if build.from_fork:
        return [_withheld_from_fork(step_names) for step_names in wanted]
    rows = session.execute(
        sa.select(Secret).where(Secret.repository_id == build.repository_id, Secret.name.in_(names))
    ).scalars()
    by_name: dict[str, list[Secret]] = {}
    for row in rows:
        by_name.setdefault(row.name, []).append(row)
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name in sorted(names):
        secret, problem = _choose(by_name.get(name, []), name, build)
        if secret is None:
            problems[name] = problem
            continue
        try:
            values[name] = cipher_of().decrypt(
                secret.ciphertext, secret.key_id, bound_to(secret.repository_id, name, secret.environment)
            )
        except UndecryptableSecret as error:
            problems[name] = f'secret "{name}" of {build.repository} cannot be used: {error}'
    result = []
    for step_names in wanted:
        step = StepSecrets(values={name: values[name] for name in step_names if name in values})
        missing = [problems[name] for name in step_names if name in problems]
        if missing:
            refused = "; ".join(missing)
            step.refused = refused if len(refused) <= MAX_REASON else refused[: MAX_REASON - 1] + "…"
        result.append(step)
    return result


def _withheld_from_fork(names: list[str]) -> StepSecrets:
    if not names:
        return StepSecrets()
    return StepSecrets(
        notices=[
            f"secrets withheld: this build comes from a fork's pull request, so {', '.join(names)} "
            "are not set (the step runs without them)"
        ]
    )


def _choose(rows: list[Secret], name: str, build: BuildContext) -> tuple[Secret | None, str]:
    """The row that applies to this build, or why none does."""
    scoped = {row.environment: row for row in rows}
    secret = scoped.get(build.environment or ANY_ENVIRONMENT) or scoped.get(ANY_ENVIRONMENT)
    if secret is None:
        environments = sorted(env for env in scoped if env != ANY_ENVIRONMENT)
        if environments:
            return None, (
                f'secret "{name}" of {build.repository} is only for deploys to {", ".join(environments)}; '
                "pipeline steps do not get it (set a repository-wide one with "
                f"`greenlight secret set {build.repository} {name}`)"
            )
        return None, (
            f'secret "{name}" is not set for {build.repository}; set it with '
            f"`greenlight secret set {build.repository} {name}` (the value is read from standard input)"
        )
    # The same glob rules as `when: branch`: `release/*` does not reach `release/x/evil`.
    if secret.branches and not (build.branch is not None and branch_matches(build.branch, secret.branches)):
        what = f"branch {build.branch}" if build.branch is not None else "a tag"
        return None, (
            f'secret "{name}" of {build.repository} is limited to branches {", ".join(secret.branches)}; '
            f"this build is of {what}"
        )
    return secret, ""
