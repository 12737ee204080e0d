"""One rule for a repository's OWNER/NAME and one for a commit SHA, and no second copy of either."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.names import is_commit_sha, is_full_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name",
    [
        "acme/app",
        "Acme/App",
        "octocat/Hello-World",
        "a/b",
        "my-org_emu/repo.name_2",
        "o" * 39 + "/" + "n" * 100,
    ],
)
def test_names_github_allows_are_names(name: str) -> None:
    assert is_full_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "acme",
        "acme/app/extra",
        "acme/.",
        "acme/..",
        "-acme/app",  # read as an option by a command line
        "ac.me/app",  # owners are GitHub logins: no dots
        "o" * 40 + "/app",
        "acme/" + "n" * 101,
        "acme/app\n",
        "acme/äpp",
        "acme/app ",
        "",
        None,
        42,
    ],
)
def test_names_github_refuses_are_refused(name: object) -> None:
    assert not is_full_name(name)


@pytest.mark.parametrize(
    ("text", "valid"),
    [("a" * 40, True), ("0123456789abcdef" * 2 + "01234567", True), ("A" * 40, False),
     ("a" * 39, False), ("a" * 41, False), ("a" * 40 + "\n", False), ("g" * 40, False), (None, False)],
)  # fmt: skip
def test_a_commit_sha_is_forty_lower_case_hex_digits(text: object, valid: bool) -> None:
    assert is_commit_sha(text) is valid


def test_no_module_keeps_its_own_pattern_for_names_or_shas() -> None:
    copies = re.compile(r"\[0-9a-f\]\{40\}|\[A-Za-z0-9_.-\]\{1,100\}/")
    found = [
        str(path.relative_to(ROOT))
        for folder in ("server", "runner")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if copies.search(path.read_text()) and path != ROOT / "runner" / "names.py"
    ]
    assert found == []


def test_only_one_module_compares_repository_names_in_sql() -> None:
    lowering = re.compile(r"func\.lower\(|lower\(full_name\) =|lower\(:full_name\)")
    found = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "server").rglob("*.py"))
        if lowering.search(path.read_text())
    ]
    # The model declares the unique index the comparison goes by; log search lowers the text it
    # looks for by the database's rule, which compares no names.
    assert found == ["server/logs/queries.py", "server/models/repository.py", "server/repos/names.py"]
