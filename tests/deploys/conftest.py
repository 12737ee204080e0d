"""A fake GitHub on a local port, and a client pointed at it (tests/support/github_fixtures.py);
a repository with its origin, runners and environment rules (tests/deploys/test_deploys.py),
bundled as one `world` (tests/deploys/world.py)."""

from tests.deploys.test_deploys import builder, origin, repo, runner  # noqa: F401 (fixtures)
from tests.deploys.world import world  # noqa: F401 (fixture)
from tests.support.github_fixtures import fake_github, github, pauses  # noqa: F401 (fixtures)
