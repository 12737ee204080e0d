"""One rule for branch globs, whoever asks: `when:`, deploy branches and secret scopes."""

from __future__ import annotations

import pytest

from server.pipelines.branch_globs import branch_matches


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
