"""Extra variables of a started build: names that redirect what a step installs or runs are
refused, and a build started with any extra variable never deploys, since a variable can switch
the tests off (PYTEST_ADDOPTS=--collect-only) and turn an untested head green."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.builds.start import InvalidStartRequest, check_variables
from server.config import Settings
from server.models import Build
from tests.builds.test_start import start
from tests.conftest import RecordingTransport


@pytest.mark.parametrize(
    "name",
    ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE", "npm_config_registry",
     "NPM_CONFIG_USERCONFIG", "UV_INDEX_URL", "GOPROXY", "GOFLAGS", "JDK_JAVA_OPTIONS", "MAVEN_OPTS",
     "PERLLIB", "RUBYLIB", "NODE_PATH", "GCONV_PATH", "HOME", "HTTPS_PROXY", "http_proxy", "ALL_PROXY",
     "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "RUSTC_WRAPPER",
     "BUNDLE_GEMFILE"],
)  # fmt: skip
def test_names_that_redirect_what_a_step_installs_or_runs_are_refused(name: str) -> None:
    with pytest.raises(InvalidStartRequest, match="cannot be given as an extra variable"):
        check_variables({name: "https://attacker.example/x"})


def test_names_the_pipeline_reads_are_accepted() -> None:
    assert check_variables({"TARGET": "eu", "REGION": "x", "NPM_TOKEN_NAME": "a"}) == {
        "TARGET": "eu",
        "REGION": "x",
        "NPM_TOKEN_NAME": "a",
    }


@pytest.mark.integration
@pytest.mark.parametrize("name,value", [("PYTEST_ADDOPTS", "--collect-only"), ("TARGET", "eu")])
def test_a_build_started_with_extra_variables_never_deploys(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    repo_name: str, name: str, value: str,
) -> None:  # fmt: skip
    build = start(session_factory, settings, transport, branch="staging", variables={name: value})
    assert build.no_deploy_reason is not None and "extra variables" in build.no_deploy_reason
    with session_factory.begin() as session:
        plan_build(session, build.id, settings)
    with session_factory() as session:
        assert session.get(Build, build.id).deploys_on_green is False  # type: ignore[union-attr]
