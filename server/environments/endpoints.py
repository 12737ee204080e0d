"""The environments API: each environment's rule (who may deploy where), read by readers and
changed with a user token only."""

from __future__ import annotations

from fastapi import APIRouter

from server.auth.reading import SIGNED_IN, ReaderDep
from server.auth.users import UserDep
from server.deps import SessionDep
from server.environments.schemas import EnvironmentRuleIn, EnvironmentRuleOut
from server.environments.service import rule_out, rules_of, set_rule
from server.repos.access import readable_repository

router = APIRouter(prefix="/api/repos/{owner}/{name}/environments", tags=["environments"])


@router.get("")
def list_rules(owner: str, name: str, session: SessionDep, reader: ReaderDep) -> list[EnvironmentRuleOut]:
    repository = readable_repository(session, f"{owner}/{name}", reader)
    return [
        rule_out(repository, environment.name, environment) for environment in rules_of(session, repository)
    ]


@router.get("/{environment}")
def show_rule(
    owner: str, name: str, environment: str, session: SessionDep, reader: ReaderDep
) -> EnvironmentRuleOut:
    repository = readable_repository(session, f"{owner}/{name}", reader)
    found = next((e for e in rules_of(session, repository) if e.name == environment), None)
    return rule_out(repository, environment, found)


@router.put("/{environment}")
def put_rule(
    owner: str, name: str, environment: str, body: EnvironmentRuleIn, session: SessionDep, user: UserDep
) -> EnvironmentRuleOut:
    """Change the environment's rule (the fields given); it holds for deployments asked for from
    now on and for deploy jobs not yet claimed."""
    repository = readable_repository(session, f"{owner}/{name}", SIGNED_IN)
    changed = set_rule(session, repository, environment, body, user.name)
    return rule_out(repository, changed.name, changed)
