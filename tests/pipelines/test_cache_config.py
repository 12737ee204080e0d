import pytest

from server.pipelines.loader import ConfigError, load_pipeline

STEPS = "image: debian\nsteps:\n  - name: test\n    run: make\n"


def error_for(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(text)
    return str(caught.value)


def test_a_cache_with_a_hashed_key_fallbacks_and_paths_loads() -> None:
    pipeline = load_pipeline(
        "cache:\n  key: pip-{{ hashFiles('requirements*.txt', 'setup.cfg') }}\n"
        "  restore_keys: pip-\n  paths: [~/.cache/pip, .venv/, /workspace/node_modules, /root/.m2]\n" + STEPS
    )
    (cache,) = pipeline.cache
    assert cache.key == "pip-{{ hashFiles('requirements*.txt', 'setup.cfg') }}"
    assert cache.restore_keys == ["pip-"]
    assert cache.paths == ["~/.cache/pip", ".venv", "node_modules", "/root/.m2"]


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ("{key: 'pip key', paths: [x]}", "a key is letters, digits"),
        ("{key: \"pip-{{ hashFiles('') }}\", paths: [x]}", "non-empty globs"),
        ("{key: \"{{ hashFiles('a') }}\", paths: [x]}", "starts with a letter or a digit"),
        ("{key: pip, paths: ['../outside']}", "leaves the workspace"),
        ("{key: pip, paths: ['.']}", "not the workspace itself"),
        ("{key: pip, paths: [/workspace]}", "not the workspace itself"),
        ("{key: pip, paths: [/]}", "root directory is not a cache"),
        ("{key: pip, paths: [/proc/self]}", "kernel file system"),
        ("{key: pip, paths: ['~bob/x']}", "only ~/..."),
        ("{key: pip, paths: [.git/objects]}", ".git is not a cache"),
        ("{key: pip, paths: []}", "cache.0.paths: Value should have at least 1 item"),
        ("{key: pip, restore_keys: ['../x'], paths: [a]}", "a fallback key"),
        ("{key: pip, paths: [a], pth: [b]}", "unknown key 'pth'"),
        ("{key: 'pip-${nope}', paths: [a]}", "is not a matrix value"),
    ],
)
def test_a_bad_cache_is_refused_with_a_clear_error(cache: str, expected: str) -> None:
    message = error_for(f"cache: {cache}\n" + STEPS)
    assert expected in message, message
    assert message.startswith(".greenlight.yml")


def test_each_matrix_job_gets_its_own_key() -> None:
    pipeline = load_pipeline(
        "matrix: {python: ['3.11', '3.12']}\n"
        "cache:\n  key: py${python}-{{ hashFiles('requirements.txt') }}\n"
        "  restore_keys: ['py${python}-']\n  paths: [.venv]\n" + STEPS
    )
    specs = [pipeline.cache[0].for_job(cell) for cell in pipeline.matrix_cells()]
    assert [spec.key for spec in specs] == [
        "py3.11-{{ hashFiles('requirements.txt') }}",
        "py3.12-{{ hashFiles('requirements.txt') }}",
    ]
    assert [spec.restore_keys for spec in specs] == [["py3.11-"], ["py3.12-"]]


def test_a_matrix_value_that_is_no_key_character_is_refused() -> None:
    message = error_for("matrix: {os: ['a b']}\ncache: {key: 'k-${os}', paths: [x]}\n" + STEPS)
    assert "a key is letters, digits" in message


@pytest.mark.parametrize(
    "cache",
    [
        "{key: pip, paths: [deps, deps/x]}",
        "{key: pip, paths: [deps/x, ./deps]}",
        "[{key: a, paths: [deps]}, {key: b, paths: [deps/sub]}]",
        "{key: pip, paths: [~/.cache, /root/.cache/pip]}",
        "{key: pip, paths: [~/x, x]}",
        "{key: pip, paths: [/opt/a, /opt/a]}",
    ],
)
def test_nested_or_repeated_cache_paths_are_refused(cache: str) -> None:
    message = error_for(f"cache: {cache}\n" + STEPS)
    assert "inside another cache path" in message, message
