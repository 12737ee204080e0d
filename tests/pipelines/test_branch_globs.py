"""One rule for branch globs, whoever asks: `when:`, deploy branches and secret scopes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bracex
import pytest
from wcmatch import glob

from server.pipelines import branch_globs
from server.pipelines.branch_globs import GlobError, branch_matches, check_glob


@pytest.mark.parametrize(
    ("branch", "globs", "expected"),
    [
        ("main", ["main"], True),
        ("release/1.0", ["release/*"], True),
        ("release/x/evil", ["release/*"], False),
        ("release/x/evil", ["release/**"], True),
        ("feature/a", ["main", "feature/*"], True),
        ("mainline", ["main"], False),
        ("v1", ["{v1,v2}"], True),
        ("Main", ["main"], False),
        ("main", [], False),
    ],
)
def test_a_star_stops_at_a_slash_and_only_globstar_crosses_it(
    branch: str, globs: list[str], expected: bool
) -> None:
    assert branch_matches(branch, globs) is expected


def test_globs_are_case_sensitive_and_posix_whatever_the_platform() -> None:
    # wcmatch otherwise follows the host: on macOS or Windows `MAIN` would match `main`, and `\`
    # would separate path segments.
    assert branch_globs.GLOB_FLAGS & glob.CASE and branch_globs.GLOB_FLAGS & glob.FORCEUNIX
    assert not branch_globs.GLOB_FLAGS & glob.FORCEWIN
    assert branch_matches("MAIN", ["main"]) is False
    assert branch_matches("release\\x", ["release/*"]) is False


class Counted:
    """Stands in for bracex's expansion and wcmatch's compilation, counting what each is asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.expanded = 0
        self.compiled = 0
        expand, compile_glob = bracex.iexpand, glob.compile

        def counted_expansion(*args: Any, **kwargs: Any) -> Iterator[str]:
            for pattern in expand(*args, **kwargs):
                self.expanded += 1
                yield pattern

        def counted_compilation(*args: Any, **kwargs: Any) -> Any:
            self.compiled += 1
            return compile_glob(*args, **kwargs)

        monkeypatch.setattr(branch_globs.bracex, "iexpand", counted_expansion)
        monkeypatch.setattr(branch_globs.glob, "compile", counted_compilation)


@pytest.mark.parametrize("bomb", ["{1..5000}", "{1..999}", "{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}"])
def test_a_brace_glob_beyond_the_limit_is_refused_before_it_is_expanded_or_compiled(
    bomb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a refusal costs is bounded by the limit, not by the size of the glob a pipeline file
    # asks for: at most the limit's worth of patterns is expanded, and none is compiled.
    branch_globs.compiled.cache_clear()
    counted = Counted(monkeypatch)
    with pytest.raises(GlobError) as caught:
        branch_matches("main", [bomb])
    assert bomb in str(caught.value) and "at most 64" in str(caught.value)
    with pytest.raises(GlobError):
        check_glob(bomb)
    assert counted.expanded <= 2 * branch_globs.MAX_EXPANSIONS and counted.compiled == 0


def test_a_glob_is_compiled_once_however_often_it_is_matched() -> None:
    pattern = "{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}/compiled-once"
    assert check_glob(pattern) == 64
    misses = branch_globs.compiled.cache_info().misses
    for branch in ("ac/x", "bdfhjl/compiled-once", "main"):
        branch_matches(branch, [pattern, "main"])
    assert branch_globs.compiled.cache_info().misses <= misses + 2  # the two globs, once each
    assert branch_matches("bdfhjl/compiled-once", [pattern]) is True
