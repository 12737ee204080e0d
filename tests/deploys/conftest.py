"""A fake GitHub on a local port, and a client pointed at it (tests/support/github_fixtures.py)."""

from tests.support.github_fixtures import fake_github, github, pauses  # noqa: F401 (fixtures)
