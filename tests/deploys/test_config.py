"""`deploy:` in `.greenlight.yml`: what is accepted, what is refused (with file and line), and
which branches deploy where on their own."""

from __future__ import annotations

import pytest

from server.pipelines.deploy_branches import branch_deploys_to
from server.pipelines.loader import ConfigError, load_pipeline

BASE = "image: debian\nsteps: [{name: test, run: 'true'}]\n"


def test_environments_take_branches_commands_secrets_url_check_and_variables() -> None:
    pipeline = load_pipeline(
        BASE + "deploy:\n"
        "  staging: {branch: staging, run: ./deploy, secrets: DEPLOY_KEY, url: https://s.example.com,\n"
        "            check: [./smoke, ./health], env: {MAIL: admins}, rollback_on_failure: true}\n"
        "  production: {branch: [master, main], run: ./deploy, promote_only: true, runs_on: deploy-prod}\n"
        "  preview: {branch: 'feature/*', run: ./preview, timeout: 5m}\n"
    )
    staging = pipeline.deploy["staging"]
    assert (
        staging.branch == ["staging"]
        and staging.secrets == ["DEPLOY_KEY"]
        and staging.env == {"MAIL": "admins"}
    )
    assert (
        staging.check == ["./smoke", "./health"]
        and staging.rollback_on_failure
        and staging.runs_on == ["deploy"]
    )
    assert pipeline.deploy["production"].runs_on == ["deploy-prod"]
    assert pipeline.deploy["preview"].timeout == 300
    assert branch_deploys_to(pipeline, "staging") == ["staging"]
    assert branch_deploys_to(pipeline, "master") == []  # promote_only: only a person promotes to it
    assert branch_deploys_to(pipeline, "feature/login") == ["preview"]
    assert branch_deploys_to(pipeline, "feature/a/b") == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  staging: {branch: staging}", "deploy.staging.run: is required"),
        ("  staging: {run: x, when: staging}", "unknown key 'when'"),
        ("  Staging!: {run: x}", "deploy"),
        ("  staging: {run: x, env: {GREENLIGHT_ENVIRONMENT: prod}}", "set by Greenlight itself"),
        ("  staging: {run: x, url: 'javascript:alert(1)'}", "deploy.staging.url"),
        # An escape sequence (here an OSC 8 link hiding its target) rides on anything shown of the URL.
        (
            '  staging: {run: x, url: "https://ok.example/\\e]8;;https://evil.example/\\aclick\\e]8;;\\a"}',
            "deploy.staging.url: expected a URL without spaces, control or invisible characters",
        ),
        ('  staging: {run: x, url: "https://ok.example/\\u202egpj.exe"}', "url: expected a URL without"),
        ('  staging: {run: x, url: "https://ok.example/a b"}', "url: expected a URL without"),
        ("  staging: {run: x, secrets: ['bad name']}", "deploy.staging.secrets"),
    ],
)
def test_a_bad_environment_is_refused_with_where_and_why(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_pipeline(BASE + "deploy:\n" + entry + "\n")
    assert message in str(error.value) and ".greenlight.yml:" in str(error.value)
