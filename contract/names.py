"""The names GitHub gives that Greenlight checks and compares: a repository's OWNER/NAME and a
commit's SHA. One rule for each, imported by the server (webhooks, the CLI, the API, the GitHub
client, the git mirror) and by the runner's job contract, so no two places can disagree.

GitHub treats OWNER/NAME case-insensitively (``Acme/App`` and ``acme/app`` are one repository),
so Greenlight does too: names are compared and kept unique by ``name_key``, and the spelling
registered first is the one shown. The pattern admits ASCII only, so Python's ``str.lower`` and
SQL's ``lower()`` agree on every name that passes it.
"""

from __future__ import annotations

import re

# An owner is a GitHub login (user or organisation): letters, digits, hyphens (and the
# underscore of enterprise-managed users), at most 39, never starting with a hyphen, which a
# command line would read as an option. A repository name: letters, digits, ``-``, ``_``, ``.``,
# at most 100, and neither ``.`` nor ``..``, which GitHub reserves and a path would climb by.
FULL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,38}/(?!\.\.?$)[A-Za-z0-9_.-]{1,100}$"
# A full commit SHA-1 as GitHub and git print it: 40 lower-case hex digits. Abbreviations and
# upper case are refused rather than guessed at: a SHA is compared as text everywhere.
SHA_PATTERN = r"^[0-9a-f]{40}$"
# A branch deletion's "after", a new branch's "before": no commit.
ZERO_SHA = "0" * 40
# A branch or tag name Greenlight accepts from outside (a person, a schedule): the characters git
# and GitHub allow in practice, and nothing ``git check-ref-format`` refuses or an argument list
# could read as an option (a leading ``-``).
REF_NAME_PATTERN = (
    r"^(?!-)(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)(?!.*(?:^|/)\.)(?!.*\.lock(?:/|$))(?!.*[/.]$)"
    r"[A-Za-z0-9._/@+-]{1,255}$"
)
REF_NAME_SHAPE = "a branch or tag name (letters, digits, '.', '_', '-', '+', '@' and '/', as git allows)"
# What a name must look like, for messages.
FULL_NAME_SHAPE = "OWNER/NAME (letters, digits, '-', '_' and '.', as on GitHub)"

_FULL_NAME = re.compile(FULL_NAME_PATTERN)
_SHA = re.compile(SHA_PATTERN)
_REF_NAME = re.compile(REF_NAME_PATTERN)


def is_full_name(text: object) -> bool:
    """Whether ``text`` is a repository's OWNER/NAME as GitHub allows it."""
    return isinstance(text, str) and _FULL_NAME.fullmatch(text) is not None


def is_commit_sha(text: object) -> bool:
    """Whether ``text`` is a full commit SHA (the zero SHA included: see ``ZERO_SHA``)."""
    return isinstance(text, str) and _SHA.fullmatch(text) is not None


def is_ref_name(text: object) -> bool:
    """Whether ``text`` is a branch or tag name (without ``refs/heads/``) Greenlight will look up."""
    return isinstance(text, str) and text != "@" and _REF_NAME.fullmatch(text) is not None


def name_key(full_name: str) -> str:
    """What two spellings of one repository's name have in common: its lower case. The database
    keeps ``lower(full_name)`` unique, and every lookup compares by it."""
    return full_name.lower()
