"""`services:` and `matrix:` in `.greenlight.yml`: what loads, and what is refused with its line."""

from __future__ import annotations

import pytest

from server.pipelines import matrix
from server.pipelines.loader import ConfigError, load_pipeline


def error_for(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(text)
    return str(caught.value)


STEPS = "steps: [{name: a, run: x}]\n"


def test_services_load_with_env_command_words_and_readiness() -> None:
    pipeline = load_pipeline(
        "image: debian\nservices:\n"
        "  db: {image: postgres:16, env: {POSTGRES_PASSWORD: 1}, ready: {tcp: 5432}}\n"
        "  cache: {image: redis:7, command: \"redis-server --port '7000'\",\n"
        "          ready: {command: redis-cli ping, timeout: 1m}}\n"
        "  plain: {image: nginx, command: [nginx, -g, daemon off;]}\n" + STEPS
    )
    db, cache, plain = pipeline.services.values()
    assert db.env == {"POSTGRES_PASSWORD": "1"} and db.command is None
    assert (db.ready.tcp, db.ready.timeout) == (5432, 30)  # type: ignore[union-attr]
    assert cache.command == ["redis-server", "--port", "7000"]
    assert (cache.ready.command, cache.ready.timeout) == ("redis-cli ping", 60)  # type: ignore[union-attr]
    assert plain.command == ["nginx", "-g", "daemon off;"] and plain.ready is None


def test_a_service_name_that_is_no_host_name_is_refused_on_its_line() -> None:
    message = error_for("image: x\nservices:\n  db: {image: x}\n  My_DB: {image: x}\n" + STEPS)
    assert ".greenlight.yml:4: services.My_DB: service name 'My_DB' must be usable as a host name" in message


def test_an_unknown_service_key_is_refused_on_its_line() -> None:
    message = error_for("image: x\nservices:\n  db:\n    image: x\n    port: 5432\n" + STEPS)
    assert ".greenlight.yml:5: services.db.port: unknown key 'port'" in message


def test_a_service_needs_an_image() -> None:
    assert ".greenlight.yml:3: services.db.image: is required" in error_for(
        "image: x\nservices:\n  db: {env: {A: 1}}\n" + STEPS
    )


def test_readiness_is_either_a_port_or_a_command() -> None:
    both = error_for("image: x\nservices:\n  db:\n    image: x\n    ready: {tcp: 1, command: y}\n" + STEPS)
    assert ".greenlight.yml:5: services.db.ready: set either `tcp: PORT` or `command: ...`" in both
    assert "services.db.ready.tcp" in error_for(
        "image: x\nservices:\n  db: {image: x, ready: {tcp: 70000}}\n" + STEPS
    )
    assert "30s, 10m or 1h30m" in error_for(
        "image: x\nservices:\n  db: {image: x, ready: {tcp: 1, timeout: later}}\n" + STEPS
    )


def test_a_service_command_with_an_unclosed_quote_is_refused() -> None:
    message = error_for('image: x\nservices:\n  db: {image: x, command: "run \'oops"}\n' + STEPS)
    assert "services.db.command: could not split the command into words" in message


def test_too_many_services_are_refused() -> None:
    services = "".join(f"  s{i}: {{image: x}}\n" for i in range(11))
    assert "services" in error_for(f"image: x\nservices:\n{services}" + STEPS)


def test_matrix_values_become_cells_and_image_references_resolve() -> None:
    pipeline = load_pipeline(
        "image: python:${python}\nmatrix:\n  python: ['3.11', 3.12]\n  fast: [true]\n" + STEPS
    )
    assert pipeline.matrix_cells() == [{"python": "3.11", "fast": "true"}, {"python": "3.12", "fast": "true"}]


def test_an_image_naming_an_unknown_matrix_value_is_refused_on_its_line() -> None:
    message = error_for(
        "image: x\nmatrix: {python: ['3.12']}\n"
        "steps:\n  - name: a\n    image: 'python:${pyhton}'\n    run: x\n"
    )
    assert message == (
        ".greenlight.yml:5: steps.0.image: ${pyhton} is not a matrix value of every job "
        "(only `matrix:` values can be used in images)"
    )


def test_an_image_reference_without_a_matrix_is_refused() -> None:
    assert "${python} is not a matrix value" in error_for("image: 'python:${python}'\n" + STEPS)


def test_a_value_only_some_includes_set_cannot_be_used_in_an_image() -> None:
    text = "image: 'x:${extra}'\nmatrix:\n  a: [1, 2]\n  include: [{a: 1, extra: y}]\n" + STEPS
    assert "${extra} is not a matrix value of every job" in error_for(text)


def test_matrix_names_must_be_variable_names_and_not_greenlight_ones() -> None:
    message = error_for("image: x\nmatrix:\n  a-b: [1]\n  GREENLIGHT_BRANCH: [x]\n  CI: [x]\n" + STEPS)
    assert (
        ".greenlight.yml:3: matrix.a-b: matrix name 'a-b' must be a valid environment variable name"
        in message
    )
    assert (
        ".greenlight.yml:4: matrix.GREENLIGHT_BRANCH: matrix name 'GREENLIGHT_BRANCH' is reserved" in message
    )
    assert ".greenlight.yml:5: matrix.CI: matrix name 'CI' is reserved" in message


def test_matrix_axis_values_must_be_a_list_of_scalars() -> None:
    assert ".greenlight.yml:3: matrix.python: expected a list" in error_for(
        "image: x\nmatrix:\n  python: '3.12'\n" + STEPS
    )
    assert ".greenlight.yml:3: matrix.python.0" in error_for(
        "image: x\nmatrix:\n  python: [{a: 1}]\n" + STEPS
    )
    assert ".greenlight.yml:2: matrix: expected a mapping" in error_for("image: x\nmatrix: [a, b]\n" + STEPS)


def test_an_empty_matrix_after_exclude_is_refused() -> None:
    text = "image: x\nmatrix:\n  a: [1]\n  exclude: [{a: 1}]\n" + STEPS
    assert (
        ".greenlight.yml:2: matrix: the matrix produces no jobs (every combination is excluded)"
        in error_for(text)
    )


def test_exclude_must_name_axes() -> None:
    text = "image: x\nmatrix:\n  a: [1]\n  exclude: [{b: 1}]\n" + STEPS
    assert "`exclude` names b, which is not a matrix axis" in error_for(text)


def test_expand_follows_github_actions_include_and_exclude_rules() -> None:
    cells = matrix.expand(
        {"os": ["linux", "mac"], "python": ["3.11", "3.12"]},
        include=[
            {"os": "linux", "python": "3.12", "coverage": "yes"},  # extends one cell
            {"python": "3.13", "os": "linux"},  # contradicts every cell: a new one
            {"shell": "bash"},  # only new keys: added to every cell
            {"os": "mac", "shell": "zsh"},  # may overwrite an added value, never an axis value
        ],
        exclude=[{"os": "mac", "python": "3.11"}],
    )
    assert cells == [
        {"os": "linux", "python": "3.11", "shell": "bash"},
        {"os": "linux", "python": "3.12", "coverage": "yes", "shell": "bash"},
        {"os": "mac", "python": "3.12", "shell": "zsh"},
        {"python": "3.13", "os": "linux", "shell": "bash"},
    ]


def test_expand_refuses_more_jobs_than_the_maximum_before_building_them() -> None:
    with pytest.raises(matrix.MatrixError, match="at most 64 per build"):
        matrix.expand({"a": [str(i) for i in range(65)]})
    with pytest.raises(matrix.MatrixError, match="before `exclude`; at most 4096"):
        matrix.expand({name: [str(i) for i in range(10)] for name in "abcd"})


def test_job_names_show_the_values_and_stay_within_the_column() -> None:
    assert matrix.job_name("pipeline", {}) == "pipeline"
    assert matrix.job_name("pipeline", {"python": "3.11", "db": "pg"}) == "pipeline (python=3.11, db=pg)"
    long = matrix.job_name("pipeline", {f"k{i}": "v" * 50 for i in range(8)})
    assert len(long) == 200 and long.endswith("…)")


def test_substitution_replaces_only_known_references() -> None:
    assert matrix.substitute("python:${python}-slim", {"python": "3.12"}) == "python:3.12-slim"
    assert matrix.unknown_references("a:${x}-${y}", {"x": "1"}) == ["y"]
