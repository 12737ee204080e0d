"""`artifacts:` in the pipeline file: what loads, and the errors a user can act on."""

from __future__ import annotations

import pytest

from server.pipelines.loader import ConfigError, load_pipeline

BASE = "image: debian\nsteps:\n  - name: build\n    run: make\n"


def error_for(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(text)
    return str(caught.value)


def test_paths_when_and_expiry_load() -> None:
    pipeline = load_pipeline(
        BASE + "artifacts:\n  paths: [dist/*.whl, coverage/]\n  when: always\n  expire_in: 2 weeks\n"
    )
    assert pipeline.artifacts is not None
    assert pipeline.artifacts.rules(default_expiry=30 * 86400) == {
        "paths": ["dist/*.whl", "coverage/"], "when": "always", "expire_seconds": 14 * 86400,
    }  # fmt: skip


def test_one_path_a_default_when_and_the_servers_expiry() -> None:
    pipeline = load_pipeline(BASE + "artifacts:\n  paths: dist/app.tar.gz\n")
    assert pipeline.artifacts is not None
    assert pipeline.artifacts.rules(default_expiry=3600) == {
        "paths": ["dist/app.tar.gz"], "when": "on_success", "expire_seconds": 3600,
    }  # fmt: skip


def test_the_servers_expiry_caps_the_files() -> None:
    """A pushed file may keep artifacts less long than the server's setting, never longer."""

    def kept_for(expire_in: str, server: int | None) -> int | None:
        pipeline = load_pipeline(BASE + f"artifacts:\n  paths: [a]\n  expire_in: {expire_in}\n")
        assert pipeline.artifacts is not None
        return pipeline.artifacts.rules(default_expiry=server)["expire_seconds"]

    assert kept_for("never", 3600) == 3600
    assert kept_for("520w", 3600) == 3600
    assert kept_for("2h", 3600) == 3600
    assert kept_for("30m", 3600) == 1800
    assert kept_for("never", None) is None  # the server keeps them until a person removes them
    assert kept_for("2w", None) == 14 * 86400


@pytest.mark.parametrize(
    ("paths", "said"),
    [
        ("[/etc/shadow]", "is absolute"),
        ("['~/.ssh/id_rsa']", "is absolute"),
        ("[../secrets]", "climbs out of the workspace"),
        ("['{..,x}/y']", "climbs out of the workspace"),
        ("['.']", "names the whole workspace"),
        ("['{1..500}']", "expands to more than 64"),
        ("[]", "at least 1"),
    ],
)
def test_a_path_that_could_leave_the_workspace_is_an_error_naming_the_line(paths: str, said: str) -> None:
    message = error_for(BASE + f"artifacts:\n  paths: {paths}\n")
    assert said in message and "artifacts" in message and ":6" in message, message


def test_when_and_expiry_errors_say_what_is_expected() -> None:
    assert "on_success" in error_for(BASE + "artifacts:\n  paths: [a]\n  when: sometimes\n")
    assert "12h, 7d, 2w" in error_for(BASE + "artifacts:\n  paths: [a]\n  expire_in: soon\n")
    assert "paths" in error_for(BASE + "artifacts:\n  path: [a]\n")
