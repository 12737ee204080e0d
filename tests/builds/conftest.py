"""The git server and registered repository of tests/builds/test_start.py, for the other tests of
starting a build."""

from tests.builds.test_start import origin, repo_name  # noqa: F401 (fixtures)
