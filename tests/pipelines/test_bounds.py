"""What a pushed `.greenlight.yml` can make the server build and store is bounded: the file, the
YAML's anchors and aliases, each command and variable, and the planned jobs; each limit is a
configuration error naming the file and what was exceeded, and the build fails at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import BuildState, Step
from server.pipelines.branch_globs import compiled
from server.pipelines.filters import BuildFacts, excluded_by
from server.pipelines.loader import MAX_GLOB_PATTERNS, ConfigError, load_pipeline
from tests.pipelines.test_planning import planned, pushed_repo

IMAGE = "greenlight-test/debian:bookworm"


def error_for(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(text)
    return str(caught.value)


def aliased_steps(steps: int, script_chars: int, cells: int = 1) -> str:
    """A small file whose steps all run one long anchored script: it expands far beyond its size."""
    text = f"image: {IMAGE}\n"
    if cells > 1:
        text += f"matrix: {{n: [{', '.join(str(n) for n in range(cells))}]}}\n"
    text += f'steps:\n  - name: s0\n    run: &script "{"A" * script_chars}"\n'
    return text + "".join(f"  - name: s{n}\n    run: *script\n" for n in range(1, steps))


def test_anchors_and_aliases_that_expand_far_beyond_the_file_are_refused_before_being_built() -> None:
    text = aliased_steps(steps=100, script_chars=60_000)
    assert len(text) < 64 * 1024
    message = error_for(text)
    assert message.startswith(".greenlight.yml: ")
    assert "anchors and aliases" in message and "characters" in message and "at most" in message


def test_a_billion_laughs_of_nested_lists_is_refused() -> None:
    lines = [f"image: {IMAGE}", 'x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{n}: &x{n} [{', '.join([f'*x{n - 1}'] * 9)}]" for n in range(1, 10)]
    lines += ["steps: [{name: a, run: true}]"]
    message = error_for("\n".join(lines) + "\n")
    assert "anchors and aliases" in message and "values" in message


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    assert error_for("steps: &a [*a]\n") == ".greenlight.yml:1: an alias refers to a value that contains it"


def test_yaml_nested_too_deeply_is_a_configuration_error() -> None:
    message = error_for("steps: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert message.startswith(".greenlight.yml: ") and "nested too deeply" in message


def test_a_file_over_the_size_limit_is_refused() -> None:
    text = f"image: {IMAGE}\nsteps:\n" + "".join(f"  - {{name: s{n}, run: true}}\n" for n in range(15_000))
    assert len(text.encode()) > 256 * 1024
    assert error_for(text) == (
        f".greenlight.yml: the file is {len(text.encode()):,} bytes; at most 262,144 (256 KiB)"
    )


def test_each_command_each_variable_and_the_number_of_variables_are_bounded() -> None:
    long_run = error_for(f'image: {IMAGE}\nsteps:\n  - name: a\n    run: [true, "{"x" * 70_000}"]\n')
    assert ".greenlight.yml:4: steps.0.run: a command is 70,000 characters; at most 65,536" in long_run
    long_value = error_for(
        f'image: {IMAGE}\nenv: {{BIG: "{"x" * 40_000}"}}\nsteps: [{{name: a, run: true}}]\n'
    )
    assert ".greenlight.yml:2: env.BIG: a value is 40,000 characters; at most 32,768" in long_value
    many = ", ".join(f"V{n}: x" for n in range(101))
    too_many = error_for(f"image: {IMAGE}\nsteps:\n  - name: a\n    run: true\n    env: {{{many}}}\n")
    assert ".greenlight.yml:5: steps.0.env: 101 variables; at most 100" in too_many
    service = error_for(
        f'image: {IMAGE}\nservices:\n  db:\n    image: x\n    env: {{P: "{"x" * 40_000}"}}\n'
        "steps: [{name: a, run: true}]\n"
    )
    assert "services.db.env.P: a value is 40,000 characters; at most 32,768" in service


@pytest.mark.integration
def test_the_expanded_plan_is_bounded_in_steps(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    axes = (
        "matrix: {a: ["
        + ", ".join(str(n) for n in range(8))
        + "], b: ["
        + ", ".join(str(n) for n in range(8))
        + "]}\n"
    )
    steps = "".join(f'  - {{name: s{n}, run: "true"}}\n' for n in range(40))
    url, sha = pushed_repo(tmp_path / "many", {".greenlight.yml": f"image: {IMAGE}\n{axes}steps:\n{steps}"})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.failed and build.jobs == []
    assert build.reason == (
        "configuration error:\n.greenlight.yml: the plan has 64 jobs of 40 steps, 2,560 steps in all; "
        "at most 2,000 per build"
    )


@pytest.mark.integration
def test_the_expanded_plan_is_bounded_in_size(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    axes = "matrix: {a: [0, 1, 2, 3, 4, 5, 6, 7], b: [0, 1, 2, 3, 4, 5, 6, 7]}\n"
    big = "".join(f'  - name: s{n}\n    run: "{"x" * 10_000}"\n' for n in range(20))
    url, sha = pushed_repo(tmp_path / "big", {".greenlight.yml": f"image: {IMAGE}\n{axes}steps:\n{big}"})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.failed and build.jobs == []
    assert build.reason is not None and build.reason.startswith(
        "configuration error:\n.greenlight.yml: the plan's commands and variables come to 12.2 MiB "
        "(64 jobs); at most 4 MiB per build"
    ), build.reason


@pytest.mark.integration
def test_a_small_file_of_aliases_fails_its_build_at_once_and_stores_nothing(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    text = aliased_steps(steps=40, script_chars=60_000, cells=8)
    assert len(text) < 66 * 1024
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": text})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.failed and build.jobs == []
    assert build.reason is not None and "anchors and aliases" in build.reason
    with session_factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Step)) == 0


@pytest.mark.integration
def test_a_file_over_the_size_limit_fails_its_build_without_being_read_whole(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": "# padding\n" * 1_000_000})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.failed
    assert build.reason == (
        "configuration error:\n.greenlight.yml: the file is 10,000,000 bytes; at most 262,144 (256 KiB)"
    )


@pytest.mark.parametrize(
    ("where", "line", "location"),
    [
        ("when: {branch: '{1..5000}'}\n", 2, "when.0.branch.include.0"),
        ("deploy: {staging: {branch: '{1..5000}', run: true}}\n", 2, "deploy.staging.branch.0"),
        ("steps:\n  - {name: a, run: true, when: {path: {exclude: ['{1..5000}']}}}\n", 3, None),
    ],
)
def test_a_brace_glob_that_expands_too_far_is_a_configuration_error_naming_line_and_glob(
    where: str, line: int, location: str | None
) -> None:
    steps = "" if where.startswith("steps:") else "steps: [{name: a, run: true}]\n"
    globs_before = compiled.cache_info().misses
    message = error_for(f"image: {IMAGE}\n{where}{steps}")
    assert compiled.cache_info().misses == globs_before  # counted, never compiled
    assert message.startswith(f".greenlight.yml:{line}: {location or ''}"), message
    assert "'{1..5000}'" in message and "at most 64" in message


def test_the_globs_of_a_file_are_bounded_in_all() -> None:
    # Each glob below the limit, but thousands of steps' worth of distinct ones would all be
    # compiled at every push: the file is refused having counted its patterns, compiling none.
    steps = "".join(
        f"  - {{name: s{n}, run: true, when: {{branch: ['{{a,b}}{{c,d}}{{e,f}}{{g,h}}{{i,j}}/{n}']}}}}\n"
        for n in range(100)
    )
    globs_before = compiled.cache_info().misses
    try:
        pipeline = load_pipeline(f"image: {IMAGE}\nsteps:\n{steps}")
    except ConfigError as error:
        message = str(error)
    else:  # what planning a push would then compile
        facts = BuildFacts("push", "main", None)
        message = "; ".join(str(excluded_by(step.when, facts)) for step in pipeline.steps)
    patterns = (compiled.cache_info().misses - globs_before) * 32  # each glob here is 32 patterns
    assert patterns <= MAX_GLOB_PATTERNS, patterns
    assert message == (
        ".greenlight.yml: the file's globs expand to 3,200 patterns (braces); at most 1,000"
    ), message


@pytest.mark.integration
def test_a_brace_bomb_fails_its_build_at_once_and_plans_nothing(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    steps = "".join(
        f"  - {{name: s{n}, run: true, when: {{branch: '{{1..{5000 + n}}}'}}}}\n" for n in range(100)
    )
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": f"image: {IMAGE}\nsteps:\n{steps}"})
    globs_before = compiled.cache_info().misses
    build = planned(session_factory, settings, url, sha)
    assert compiled.cache_info().misses == globs_before  # counted, never compiled
    assert build.state is BuildState.failed and build.jobs == []
    assert build.reason is not None
    where = "configuration error:\n.greenlight.yml:3: steps.0.when.0.branch.include.0: "
    assert build.reason.startswith(where), build.reason
    assert "'{1..5000}'" in build.reason


def many_path_filters(steps: int = 100, conditions: int = 9) -> str:
    """A 26 KB file: every step's `when:` tests the changed paths against the same 100 globs."""
    globs = ", ".join(f"'src{n}/**/*.py'" for n in range(100))
    first = ", ".join(["{path: {include: *g}}"] * (conditions - 1))
    text = f"image: {IMAGE}\nsteps:\n  - name: s0\n    run: true\n"
    text += f"    when: [{{path: {{include: &g [{globs}]}}}}, {first}]\n"
    again = ", ".join(["{path: {include: *g}}"] * conditions)
    return text + "".join(f"  - name: s{n}\n    run: true\n    when: [{again}]\n" for n in range(1, steps))


def test_path_filters_match_each_changed_path_against_each_distinct_glob_once() -> None:
    # Not every path against every glob again for each step's conditions: that multiplies by the
    # steps and their conditions.
    pipeline = load_pipeline(many_path_filters())
    changed = tuple(f"other/{n}.txt" for n in range(2000))
    facts = BuildFacts("push", "main", changed).within(pipeline.path_globs())
    assert facts.changed_paths == changed
    before = compiled.cache_info()
    reasons = [excluded_by(step.when, facts) for step in pipeline.steps]
    after = compiled.cache_info()
    assert after.hits + after.misses - before.hits - before.misses == len(set(pipeline.path_globs()))
    assert all(reason and "matches none of the 2000 changed files" in reason for reason in reasons)


def test_a_diff_too_large_to_match_against_the_files_path_globs_counts_as_unknown() -> None:
    # Unknown changes let a path filter pass, as for a force-push: a build is never skipped on a guess.
    pipeline = load_pipeline(many_path_filters())
    facts = BuildFacts("push", "main", tuple(f"other/{n}.txt" for n in range(10_000)))
    within = facts.within(pipeline.path_globs())
    assert within.changed_paths is None and within.branch == "main" and within.event == "push"
    assert all(excluded_by(step.when, within) is None for step in pipeline.steps)
