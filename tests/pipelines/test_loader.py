import pytest

from server.pipelines.config import StepConfig
from server.pipelines.loader import ConfigError, load_pipeline
from server.pipelines.plan import script_for


def error_for(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(text)
    return str(caught.value)


def test_a_valid_pipeline_loads_with_durations_and_sizes() -> None:
    pipeline = load_pipeline(
        "image: debian\nenv: {A: 1, B: true}\nmemory: 512m\ntimeout: 1h\n"
        "steps:\n  - name: test\n    run: [make, make test]\n    timeout: 10m\n"
    )
    assert pipeline.env == {"A": "1", "B": "true"}
    assert pipeline.memory == 512 * 1024**2
    assert pipeline.timeout == 3600
    assert pipeline.steps[0].timeout == 600
    assert pipeline.runs_on == ["docker"]


def test_bad_yaml_names_file_line_and_column() -> None:
    message = error_for("image: debian\nsteps:\n  - name: a\n    run: [unclosed\n")
    assert message.startswith(".greenlight.yml:") and "invalid YAML" in message


def test_an_unknown_key_names_its_line_and_path() -> None:
    message = error_for("image: x\nsteps:\n  - name: a\n    run: make\n    imagee: y\n")
    assert ".greenlight.yml:5: steps.0.imagee: unknown key 'imagee'" in message


def test_an_unknown_key_named_like_a_type_is_still_named() -> None:
    # Found by fuzzing: a top-level key "str" was taken for pydantic's union branch, and the
    # message builder failed (an IndexError, not a ConfigError).
    with pytest.raises(ConfigError) as caught:
        load_pipeline("str:\n")
    assert ".greenlight.yml:1: str: unknown key 'str'" in str(caught.value)


def test_notify_in_the_pipeline_file_says_notifications_are_set_on_the_server() -> None:
    # A pushed commit must neither add a recipient nor silence the alerts about itself.
    message = error_for("image: x\nsteps:\n  - name: a\n    run: make\nnotify: {email: [me@evil.test]}\n")
    assert ".greenlight.yml:5: notify: unknown key 'notify'" in message
    assert "set on the server (greenlight notify add)" in message


def test_a_wrong_type_says_what_was_expected() -> None:
    message = error_for("image: x\nsteps:\n  - name: a\n    run: {make: test}\n")
    assert ".greenlight.yml:4: steps.0.run" in message
    assert "expected a command" in message


def test_a_bad_duration_says_what_a_duration_looks_like() -> None:
    message = error_for("image: x\nsteps:\n  - name: a\n    run: make\n    timeout: soon\n")
    assert ".greenlight.yml:5" in message and "30s, 10m or 1h30m" in message


def test_missing_steps_is_required() -> None:
    assert "steps: is required" in error_for("image: x\n")


def test_a_step_without_any_image_is_an_error() -> None:
    assert "has no image" in error_for("steps:\n  - name: a\n    run: make\n")


def test_duplicate_step_names_are_an_error() -> None:
    assert "repeated: a" in error_for("image: x\nsteps:\n  - {name: a, run: x}\n  - {name: a, run: y}\n")


def test_a_file_that_is_not_a_mapping_is_an_error() -> None:
    assert "expected a mapping" in error_for("- just\n- a list\n")


def test_an_invalid_env_name_is_an_error() -> None:
    assert "not a valid environment variable name" in error_for(
        "image: x\nenv: {'A-B': 1}\nsteps: [{name: a, run: x}]\n"
    )


def test_a_command_list_echoes_each_command_quoted_for_the_shell() -> None:
    script = script_for(StepConfig(name="s", run=["echo 'hi'", "make test"]))
    assert script.splitlines() == [
        "printf '%s\\n' '$ echo '\"'\"'hi'\"'\"''",
        "echo 'hi'",
        "printf '%s\\n' '$ make test'",
        "make test",
    ]


def test_yaml_scalars_in_run_are_commands() -> None:
    pipeline = load_pipeline("image: x\nsteps:\n  - {name: a, run: true}\n  - {name: b, run: [false, 1]}\n")
    assert [step.run for step in pipeline.steps] == ["true", ["false", "1"]]


def test_a_step_names_the_secrets_it_needs() -> None:
    pipeline = load_pipeline(
        "image: debian\nsteps:\n  - name: deploy\n    run: ./deploy\n    secrets: [DEPLOY_TOKEN, AWS_KEY]\n"
        "  - name: one\n    run: ./x\n    secrets: NPM_TOKEN\n  - name: none\n    run: ./y\n"
    )
    assert [step.secrets for step in pipeline.steps] == [["DEPLOY_TOKEN", "AWS_KEY"], ["NPM_TOKEN"], []]


def test_bad_secret_names_are_config_errors_naming_the_line() -> None:
    text = "image: debian\nsteps:\n  - name: deploy\n    run: ./deploy\n    secrets: [ok, 'not ok']\n"
    assert ".greenlight.yml:5: steps.0.secrets.1: String should match pattern" in error_for(text)
    clash = "image: debian\nsteps:\n  - name: d\n    run: x\n    env: {TOKEN: a}\n    secrets: [TOKEN]\n"
    assert "TOKEN cannot be both in env: and in secrets:" in error_for(clash)
    repeated = "image: debian\nsteps:\n  - name: d\n    run: x\n    secrets: [A_KEY, A_KEY]\n"
    assert "repeated: A_KEY" in error_for(repeated)
