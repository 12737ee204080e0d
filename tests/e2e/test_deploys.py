"""Continuous delivery end to end, on Postgres, Redis, Docker and git: two "Heroku-style" servers
(a bare repository each, served by `git daemon` on the Docker bridge, whose pre-receive hook wants
the environment's deploy key as a push option and whose post-receive hook checks the pushed
commit out for a small web process), a pipeline whose `deploy:` pushes there, and then:

1. a green push to staging deploys it, the check runs, staging serves the new version;
2. a red push to staging deploys nothing;
3. three quick pushes to master deploy only the newest, and production never goes backwards;
4. promote staging → production and rollback do what they say; the history shows it all;
5. pull requests into staging build but deploy nothing; a fork's gets no secret;
6. a branch whose own file says it deploys to production deploys nothing: production's rule
   (set with `greenlight env set`) does not allow it, and the history says so.
The deploy keys never appear in a stored log, a page, or a process log.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.deploy_targets import CHECK, Target, pipeline_file, running_targets
from tests.e2e.stack import Stack
from tests.e2e.test_secrets import greenlight, user_token
from tests.fixtures import pull_request_payload, push_payload
from tests.support import services

pytestmark = pytest.mark.integration

KEYS = {"staging": "stg-key-" + uuid.uuid4().hex[:12], "production": "prd-key-" + uuid.uuid4().hex[:12]}
REPO_WIDE_KEY = "repo-wide-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    with running_targets(tmp_path_factory.mktemp("servers"), KEYS) as found:
        yield found


class App:
    """The repository under test: its work tree, its "GitHub" clone, and the stack it talks to."""

    def __init__(self, stack: Stack, work: Path, url: str, name: str, targets: dict[str, Target]) -> None:
        self.stack, self.work, self.url, self.name, self.targets = stack, work, url, name, targets

    def commit(self, version: str, *, fail: bool = False, pipeline: str | None = None) -> str:
        (self.work / "FAIL").unlink(missing_ok=True)
        pipeline = pipeline or pipeline_file(self.targets)
        files = {"VERSION": version + "\n", ".greenlight.yml": pipeline, "check.py": CHECK}
        if fail:
            files["FAIL"] = "this commit's pipeline fails\n"
        return services.commit_files(self.work, files, version)

    def push(
        self, branch: str, version: str, *, fail: bool = False, pipeline: str | None = None
    ) -> tuple[str, int]:
        sha = self.commit(version, fail=fail, pipeline=pipeline)
        services.push(self.work, self.url, f"+HEAD:refs/heads/{branch}")
        reply = self.stack.deliver(push_payload(self.name, f"refs/heads/{branch}", sha, message=version))
        assert reply.status_code == 202, reply.text
        return sha, reply.json()["build_id"]

    def history(self, environment: str) -> list[dict[str, Any]]:
        reply = httpx.get(
            f"{self.stack.url}/api/environments/{environment}/deployments",
            params={"repository": self.name}, timeout=5,
        )  # fmt: skip
        return reply.json() if reply.status_code == 200 else []

    def settled(self, environment: str, timeout: float = 120) -> list[dict[str, Any]]:
        """The history once nothing is pending, queued or running there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.history(environment)
            if history and all(d["state"] not in ("pending", "queued", "running") for d in history):
                return history
            time.sleep(0.2)
        raise AssertionError(
            f"{environment} did not settle: {self.history(environment)}\n{self.stack.tail('worker')}"
        )

    def wait_served(self, environment: str, version: str, timeout: float = 120) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.targets[environment].served() == version:
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(
            f"{environment} never served {version}: {self.history(environment)}\n"
            + "\n".join(f"--- {n}\n{self.stack.tail(n)}" for n in ("worker", "runner", "deployer"))
        )


@pytest.fixture(scope="module")
def deployer(stack: Stack) -> Stack:
    """A runner that serves deploy jobs only (the stack's own serves `docker`)."""
    runner_dir = Path(stack.env["GREENLIGHT_DATA_DIR"]) / "deployer"
    name = f"e2e-deployer-{stack.url.rsplit(':', 1)[1]}"  # unique: see stack_env
    stack.start(
        "deployer", "runner", "--labels", "deploy", "--concurrency", "1",
        extra_env={"GREENLIGHT_RUNNER_NAME": name, "GREENLIGHT_RUNNER_DIR": str(runner_dir)},
    )  # fmt: skip
    return stack


@pytest.fixture(scope="module")
def app(
    stack: Stack, deployer: Stack, targets: dict[str, Target], tmp_path_factory: pytest.TempPathFactory
) -> App:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path_factory.mktemp("app")
    work = root / "work"
    services.make_git_repo(
        work,
        {"VERSION": "v0\n", ".greenlight.yml": pipeline_file(targets), "check.py": CHECK},
        branch="staging",
    )
    url = services.make_bare_clone(work, root / "origin.git")
    name = f"acme/app-{uuid.uuid4().hex[:8]}"
    from server.db import make_engine, make_session_factory
    from server.models import Repository

    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        session.add(Repository(full_name=name, clone_url=url, public=True))
    engine.dispose()
    user = user_token(stack)
    for environment, key in KEYS.items():
        result = greenlight(
            stack, "secret", "set", name, "DEPLOY_KEY", "--environment", environment, stdin=key, token=user
        )
        assert result.returncode == 0, result.stderr
    result = greenlight(stack, "secret", "set", name, "DEPLOY_KEY", stdin=REPO_WIDE_KEY, token=user)
    assert result.returncode == 0, result.stderr
    # Who may deploy where is the server's (the default branch is main): staging from staging;
    # production from master, and staging's commits by promotion.
    for environment, branches in (("staging", ["staging"]), ("production", ["master", "staging"])):
        flags = [flag for branch in branches for flag in ("--branch", branch)]
        result = greenlight(stack, "env", "set", name, environment, *flags, token=user)
        assert result.returncode == 0, result.stderr
    application = App(stack, work, url, name, targets)
    application.user = user  # type: ignore[attr-defined]
    return application


def test_1_a_green_push_to_staging_is_deployed_checked_and_served(app: App) -> None:
    started = time.monotonic()
    sha, build_id = app.push("staging", "s1")
    app.wait_served("staging", "s1")
    push_to_served = time.monotonic() - started
    build = app.stack.wait_for_build(build_id)
    assert build["state"] == "passed", build
    [deployment] = app.settled("staging")
    assert deployment["state"] == "succeeded" and deployment["commit_sha"] == sha, deployment
    assert deployment["check_passed"] is True and deployment["trigger"] == "auto"
    assert deployment["source_build_number"] == build["number"]
    deploy_build = httpx.get(f"{app.stack.url}/api/builds/{_build_id(app, deployment)}", timeout=5).json()
    [job] = deploy_build["jobs"]
    assert deploy_build["branch"] == "staging"  # the branch its commit came from
    page = httpx.get(f"{app.stack.url}{deploy_build['url']}", timeout=5).text
    assert f'href="/{app.name}/builds/{build["number"]}"' in page
    check_log = app.stack.step_log(deploy_build, "check")
    assert "serving s1 for staging mail to admins-of-staging" in check_log, check_log
    deploy_log = app.stack.step_log(deploy_build, "deploy")
    assert "deploying s1 to staging with key ********" in deploy_log, deploy_log
    # The green build stays green and is not counted with its deploy.
    assert app.stack.wait_for_build(build_id)["state"] == "passed"
    print(f"\nFIGURES git push + webhook → new version served: {push_to_served:.2f}s; ", end="")
    print(f"pipeline build {build['duration_seconds']:.2f}s; ", end="")
    print(f"deploy job (deploy + check) {job['duration_seconds']:.2f}s")


def test_2_a_red_push_to_staging_deploys_nothing(app: App) -> None:
    _, build_id = app.push("staging", "s2-broken", fail=True)
    assert app.stack.wait_for_build(build_id)["state"] == "failed"
    time.sleep(3)  # what a deploy check would need, had one been asked for
    assert [d["commit_sha"] for d in app.settled("staging")] == [app.history("staging")[0]["commit_sha"]]
    assert len(app.history("staging")) == 1 and app.targets["staging"].served() == "s1"


def test_3_three_quick_pushes_to_master_deploy_only_the_newest(app: App) -> None:
    seen: list[str] = []
    builds = []
    for version in ("p1", "p2", "p3"):
        sha, build_id = app.push("master", version)
        builds.append((version, sha, build_id))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        served = app.targets["production"].served()
        if served and (not seen or seen[-1] != served):
            seen.append(served)
        if served == "p3":
            break
        time.sleep(0.05)
    assert seen and seen[-1] == "p3", seen
    assert seen == sorted(seen), f"production went backwards: {seen}"
    history = app.settled("production")
    by_sha = {d["commit_sha"]: d for d in history}
    assert by_sha[builds[2][1]]["state"] == "succeeded"
    for _, sha, _ in builds[:2]:
        if sha in by_sha:  # asked for while it was still the head, and superseded
            assert by_sha[sha]["state"] == "skipped" and "superseded" in by_sha[sha]["reason"], by_sha[sha]
    assert [d for d in history if d["state"] == "succeeded"] == [by_sha[builds[2][1]]]
    time.sleep(2)
    assert app.targets["production"].served() == "p3"


def test_4_promote_and_rollback_and_the_history(app: App) -> None:
    staging_live = app.settled("staging")[0]
    promoted = greenlight(app.stack, "deploy", "promote", app.name, "staging", "production", token=app.user)  # type: ignore[attr-defined]
    assert promoted.returncode == 0, promoted.stderr
    app.wait_served("production", "s1")
    latest = app.settled("production")[0]
    assert latest["trigger"] == "promote" and latest["commit_sha"] == staging_live["commit_sha"]
    assert latest["state"] == "succeeded"

    rolled = greenlight(app.stack, "deploy", "rollback", app.name, "production", token=app.user)  # type: ignore[attr-defined]
    assert rolled.returncode == 0, rolled.stderr
    app.wait_served("production", "p3")
    latest = app.settled("production")[0]
    assert latest["trigger"] == "rollback" and latest["state"] == "succeeded"

    history = greenlight(app.stack, "deploy", "history", app.name, "production", token=app.user)  # type: ignore[attr-defined]
    lines = history.stdout.splitlines()
    assert history.returncode == 0 and "rollback" in lines[0] and "promote" in lines[1], history.stdout
    overview = greenlight(app.stack, "deploy", "history", app.name).stdout
    assert "production:" in overview and "staging:" in overview and "healthy" in overview, overview
    page = httpx.get(f"{app.stack.url}/-/deployments", timeout=5).text
    assert app.name in page and latest["commit_sha"][:12] in page


def test_5_pull_requests_into_staging_deploy_nothing_and_a_fork_gets_no_secret(app: App) -> None:
    before = len(app.history("staging"))
    results = {}
    for number, base in ((41, "pull_request_opened"), (42, "pull_request_from_fork")):
        sha = app.commit(f"pr-{number}")
        services.push(app.work, app.url, f"+HEAD:refs/pull/{number}/head")
        payload = pull_request_payload(app.name, number, sha, base=base)
        payload["pull_request"]["base"]["ref"] = "staging"
        reply = app.stack.deliver(payload, event="pull_request")
        assert reply.status_code == 202, reply.text
        results[base] = app.stack.wait_for_build(reply.json()["build_id"])
    inside, fork = results["pull_request_opened"], results["pull_request_from_fork"]
    assert inside["state"] == "passed" and fork["state"] == "passed", (inside, fork)
    assert "probe key=[********]" in app.stack.step_log(inside, "probe")  # the repository-wide one, masked
    fork_log = app.stack.step_log(fork, "probe")
    assert "probe key=[unset]" in fork_log and "withheld" in fork_log, fork_log
    time.sleep(3)
    assert len(app.history("staging")) == before
    assert app.targets["staging"].served() == "s1"


def test_6_a_branch_whose_own_file_deploys_it_to_production_deploys_nothing(app: App) -> None:
    before = len(app.history("production"))
    served = app.targets["production"].served()
    sneaky = (
        pipeline_file(app.targets)
        .replace("    branch: master\n", "    branch: '*'\n")
        .replace('      - echo "deploying', '      - printenv DEPLOY_KEY | rev\n      - echo "deploying')
    )
    assert "branch: '*'" in sneaky and "rev" in sneaky
    sha, build_id = app.push("sneaky", "evil", pipeline=sneaky)
    assert app.stack.wait_for_build(build_id)["state"] == "passed"
    deadline = time.monotonic() + 60
    while len(app.history("production")) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    latest = app.settled("production")[0]
    assert latest["commit_sha"] == sha and latest["branch"] == "sneaky", latest
    assert latest["state"] == "refused" and latest["deploy_build_number"] is None, latest
    assert "production allows branches master, staging only, not branch sneaky" in latest["reason"]
    assert app.targets["production"].served() == served
    history = greenlight(app.stack, "deploy", "history", app.name, "production").stdout
    assert "refused" in history.splitlines()[0] and "sneaky" in history, history
    builds = httpx.get(f"{app.stack.url}/api/repos/{app.name}/builds", params={"limit": 100}, timeout=5)
    assert not [b for b in builds.json() if b["event"] == "deploy" and b["branch"] == "sneaky"]
    texts = [app.stack.tail(name, 100000) for name in ("server", "worker", "runner", "deployer")]
    assert all(KEYS["production"][::-1] not in text for text in texts)


def test_7_no_deploy_key_in_any_log_page_or_process_log(app: App) -> None:
    builds = httpx.get(
        f"{app.stack.url}/api/repos/{app.name}/builds", params={"limit": 100}, timeout=5
    ).json()
    texts = []
    for summary in builds:
        build = httpx.get(f"{app.stack.url}/api/builds/{summary['id']}", timeout=5).json()
        for job in build["jobs"]:
            for step in job["steps"]:
                texts.append(httpx.get(f"{app.stack.url}{step['log_url']}", timeout=10).text)
        texts.append(httpx.get(f"{app.stack.url}{build['url']}", timeout=5).text)
    texts.append(httpx.get(f"{app.stack.url}/-/deployments", timeout=5).text)
    texts += [app.stack.tail(name, 100000) for name in ("server", "worker", "runner", "deployer")]
    assert len(builds) >= 8
    for secret in (*KEYS.values(), REPO_WIDE_KEY, *(key[::-1] for key in KEYS.values())):
        assert all(secret not in text for text in texts), secret


def _build_id(app: App, deployment: dict[str, Any]) -> int:
    builds = httpx.get(
        f"{app.stack.url}/api/repos/{app.name}/builds", params={"limit": 100}, timeout=5
    ).json()
    return next(b["id"] for b in builds if b["number"] == deployment["deploy_build_number"])
